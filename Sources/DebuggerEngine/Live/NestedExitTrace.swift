import Glibc
import SVMModel

/// Counts the nested exits KVM reflects to L1, without stopping the guest:
/// KVM's `kvm_nested_vmexit_inject` tracepoint (tracefs), filtered to one
/// vCPU thread. This is how live watch sees every exit of a free-running guest.
public final class NestedExitTrace {
    public enum TraceError: Error, CustomStringConvertible {
        case unavailable(String)
        public var description: String {
            switch self {
            case let .unavailable(why): return "KVM's nested tracepoints are not available: \(why)"
            }
        }
    }

    private let root: String
    private let fd: Int32
    private var pending = [UInt8]()

    /// Enables the tracepoint for thread `tid` (root; mounts tracefs if needed).
    public init(threadID tid: Int32) throws {
        var found: String?
        for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] where access(dir + "/events/kvm", F_OK) == 0 {
            found = dir
            break
        }
        if found == nil, mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, nil) == 0,
            access("/sys/kernel/tracing/events/kvm", F_OK) == 0
        {
            found = "/sys/kernel/tracing"
        }
        guard let root = found else {
            throw TraceError.unavailable("no tracefs with kvm events (mount tracefs as root)")
        }
        self.root = root
        let event = root + "/events/kvm/kvm_nested_vmexit_inject"
        guard NestedExitTrace.write("common_pid == \(tid)", to: event + "/filter"),
            NestedExitTrace.write("1", to: event + "/enable")
        else {
            throw TraceError.unavailable("cannot enable \(event): \(String(cString: strerror(errno)))")
        }
        _ = NestedExitTrace.write("", to: root + "/trace")  // drop older events
        fd = open(root + "/trace_pipe", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            throw TraceError.unavailable("cannot open trace_pipe: \(String(cString: strerror(errno)))")
        }
    }

    deinit {
        close(fd)
        _ = NestedExitTrace.write("0", to: root + "/events/kvm/kvm_nested_vmexit_inject/enable")
        _ = NestedExitTrace.write("0", to: root + "/events/kvm/kvm_nested_vmexit_inject/filter")
    }

    private static func write(_ text: String, to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array((text + "\n").utf8)
        return bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count
    }

    private var names: [ArraySlice<UInt8>: UInt64?] = [:]
    private static let marker = Array("reason: ".utf8)

    /// The exits reported since the last call, by exit code. Reads at most
    /// `maxBytes` so a fast guest cannot keep the caller (the UI) here.
    public func drain(maxBytes: Int = 1 << 20) -> [UInt64: Int] {
        var counts: [UInt64: Int] = [:]
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var total = 0
        while total < maxBytes {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            total += n
            pending.append(contentsOf: buffer[0..<n])
            // Count complete lines; keep a partial last line for the next read.
            pending.withUnsafeBufferPointer { p in
                var lineStart = 0
                for i in 0..<p.count where p[i] == 10 {
                    if let code = NestedExitTrace.exitCode(p, lineStart, i, &names) { counts[code, default: 0] += 1 }
                    lineStart = i + 1
                }
                consumed = lineStart
            }
            pending.removeFirst(consumed)
        }
        return counts
    }
    private var consumed = 0

    /// The exit named after "reason: " in bytes [start, end), cached by name.
    private static func exitCode(
        _ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int,
        _ names: inout [ArraySlice<UInt8>: UInt64?]
    ) -> UInt64? {
        let m = NestedExitTrace.marker
        var i = start
        while i + m.count <= end {
            if p[i] == m[0], p[i + 1] == m[1], Array(p[i..<(i + m.count)]) == m {
                let nameStart = i + m.count
                var nameEnd = nameStart
                // Names may hold one space ("UD excp"); the next field starts with " ext_inf1".
                while nameEnd < end,
                    !(p[nameEnd] == 32 && nameEnd + 4 < end && p[nameEnd + 1] == UInt8(ascii: "e")
                        && p[nameEnd + 2] == UInt8(ascii: "x") && p[nameEnd + 3] == UInt8(ascii: "t")
                        && p[nameEnd + 4] == UInt8(ascii: "_"))
                { nameEnd += 1 }
                let key = ArraySlice(p[nameStart..<nameEnd])
                if let cached = names[key] { return cached }
                let code = SVMExit.code(traceName: String(decoding: key, as: UTF8.self))
                names[key] = code
                return code
            }
            i += 1
        }
        return nil
    }

    /// Counts the exits in trace text (the parser `drain` uses).
    public static func count(lines text: String) -> [UInt64: Int] {
        var counts: [UInt64: Int] = [:]
        var names: [ArraySlice<UInt8>: UInt64?] = [:]
        let bytes = Array(text.utf8)
        bytes.withUnsafeBufferPointer { p in
            var lineStart = 0
            for i in 0..<p.count where p[i] == 10 {
                if let code = exitCode(p, lineStart, i, &names) { counts[code, default: 0] += 1 }
                lineStart = i + 1
            }
        }
        return counts
    }
}
