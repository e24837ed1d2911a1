import CPerf

#if canImport(Glibc)
    import Glibc
#endif

/// A tracepoint to watch: which one, and whether its firing stops the thread.
public struct TracepointRequest: Sendable, Equatable {
    public let system: String
    public let name: String
    /// Each firing sends the thread SIGTRAP (perf `sigtrap`): a KVM_RUN in
    /// progress returns EINTR at the boundary where the event fired.
    public let stops: Bool

    public init(_ system: String, _ name: String, stops: Bool) {
        self.system = system
        self.name = name
        self.stops = stops
    }
}

/// A set of tracepoints bound to one thread, every sample of each into one
/// shared ring buffer (so they come out in the order they fired), with the
/// per-event counters perf keeps: they are exact even when the ring was
/// full, so they, not the ring, say what was lost. The thread must be
/// prepared first (`prepareCurrentThread`): SIGTRAP's default action kills.
public final class PerfTracepoints {
    public let formats: [TracepointFormat]
    private var fds: [Int32] = []
    private let ring: UnsafeMutableRawPointer
    private let ringLength: Int
    private let dataOffset: Int
    private let dataSize: Int

    /// Opens every request for `thread` (a kernel thread id), disabled.
    /// `ringPages` (a power of two) data pages hold samples between drains.
    public init(_ requests: [TracepointRequest], thread: Int32, tracefs: Tracefs, ringPages: Int = 64) throws {
        // One perf group reads back at most 16 counters (cperf_read_group).
        precondition((1...16).contains(requests.count) && ringPages > 0 && ringPages & (ringPages - 1) == 0)
        formats = try requests.map { try tracefs.format(system: $0.system, name: $0.name) }
        var opened: [Int32] = []
        do {
            for (i, request) in requests.enumerated() {
                // One group: the counters come back in one read at every stop.
                let fd = cperf_open_tracepoint(
                    thread, formats[i].id, request.stops ? 1 : 0, UInt64(i), opened.first ?? -1)
                if fd < 0 {
                    throw TraceError.system(
                        call: "perf_event_open(\(request.system):\(request.name), tid \(thread))", errno: -fd)
                }
                opened.append(fd)
            }
            let page = Int(sysconf(Int32(_SC_PAGESIZE)))
            ringLength = page * (ringPages + 1)
            let mapped = mmap(nil, ringLength, PROT_READ | PROT_WRITE, MAP_SHARED, opened[0], 0)
            if mapped == MAP_FAILED {
                throw TraceError.system(call: "mmap of the perf ring (\(ringPages) pages)", errno: errno)
            }
            ring = mapped!
            for fd in opened.dropFirst() {
                let r = cperf_set_output(fd, opened[0])
                if r < 0 {
                    munmap(ring, ringLength)
                    throw TraceError.system(call: "PERF_EVENT_IOC_SET_OUTPUT", errno: -r)
                }
            }
        } catch {
            opened.forEach { close($0) }
            throw error
        }
        fds = opened
        // data_offset and data_size are 0 on kernels before 4.1: the data then starts at the second page.
        let offset = Int(cperf_ring_data_offset(ring))
        dataOffset = offset == 0 ? ringLength / (ringPages + 1) : offset
        let size = Int(cperf_ring_data_size(ring))
        dataSize = size == 0 ? ringLength - dataOffset : size
    }

    deinit {
        fds.forEach { close($0) }
        munmap(ring, ringLength)
    }

    /// Installs the process's SIGTRAP handler (idempotent) and unblocks
    /// SIGTRAP in the calling thread: call it on the thread that will run.
    public static func prepareCurrentThread() throws {
        var r = cperf_install_sigtrap_handler()
        if r < 0 { throw TraceError.system(call: "sigaction(SIGTRAP)", errno: -r) }
        r = cperf_unblock_sigtrap_in_this_thread()
        if r < 0 { throw TraceError.system(call: "pthread_sigmask(SIG_UNBLOCK, SIGTRAP)", errno: -r) }
    }

    /// The calling thread's kernel id.
    public static func currentThreadID() -> Int32 { cperf_gettid() }

    /// TRAP_PERF signals this process has taken (all threads).
    public static var signalsTaken: UInt64 { cperf_sigtrap_count() }

    public func enable() throws {
        let r = cperf_enable(fds[0])
        if r < 0 { throw TraceError.system(call: "PERF_EVENT_IOC_ENABLE", errno: -r) }
    }

    public func disable() throws {
        let r = cperf_disable(fds[0])
        if r < 0 { throw TraceError.system(call: "PERF_EVENT_IOC_DISABLE", errno: -r) }
    }

    /// How often each event has fired since it was opened (while enabled), in
    /// request order: one read of the group.
    public func counts() throws -> [UInt64] {
        var values = [UInt64](repeating: 0, count: fds.count)
        let n = cperf_read_group(fds[0], &values, Int32(values.count))
        if n < 0 { throw TraceError.system(call: "read of the perf group's counters", errno: -n) }
        guard Int(n) == fds.count else {
            throw TraceError.system(call: "read of the perf group's counters (\(n) of \(fds.count))", errno: EIO)
        }
        return values
    }

    /// Takes every record written since the last drain, oldest first.
    public func drain() -> [TraceRecord] {
        let head = cperf_ring_head(ring)
        var tail = cperf_ring_tail(ring)
        let data = ring.advanced(by: dataOffset)
        var records: [TraceRecord] = []
        // A record may wrap around the end of the data area: copy in at most two pieces.
        func bytes(_ position: UInt64, _ count: Int) -> [UInt8] {
            let start = Int(position % UInt64(dataSize))
            let first = min(count, dataSize - start)
            return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
                let base = buffer.baseAddress!
                base.initialize(from: data.advanced(by: start).assumingMemoryBound(to: UInt8.self), count: first)
                if count > first {
                    (base + first).initialize(from: data.assumingMemoryBound(to: UInt8.self), count: count - first)
                }
                initialized = count
            }
        }
        func integer(_ position: UInt64, _ size: Int) -> UInt64 {
            bytes(position, size).enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        }
        while tail < head {
            // struct perf_event_header { u32 type; u16 misc; u16 size; }
            let type = Int(integer(tail, 4))
            let size = Int(integer(tail + 6, 2))
            guard size >= 8 else { break }
            // A sample with PERF_SAMPLE_RAW alone: u32 size, then the raw data. Other records are skipped.
            if type == CPERF_RECORD_SAMPLE {
                let rawSize = Int(integer(tail + 8, 4))
                let raw = bytes(tail + 12, min(rawSize, size - 12))
                if let id = TraceRecord.commonType(of: raw), let format = formats.first(where: { $0.id == id }) {
                    records.append(TraceRecord(format: format, bytes: raw))
                }
            }
            tail += UInt64(size)
        }
        cperf_ring_set_tail(ring, head)
        return records
    }
}
