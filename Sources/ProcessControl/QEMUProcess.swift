import CProcess

#if canImport(Glibc)
    import Glibc
#endif

/// A vCPU file descriptor of QEMU: `/proc/PID/fd/F -> anon_inode:kvm-vcpu:N`.
public struct VCPUDescriptor: Sendable, Equatable {
    /// KVM's vCPU id N (QEMU's cpu-index on x86).
    public let index: Int
    public let fileDescriptor: Int32
}

/// QEMU's KVM file descriptors.
public struct KVMDescriptors: Sendable, Equatable {
    /// The VM's descriptor (`anon_inode:kvm-vm`).
    public let vm: Int32?
    /// By vCPU index.
    public let vcpus: [VCPUDescriptor]
}

/// What /proc/PID/task/TID/syscall says a thread is doing.
public enum ThreadSyscallState: Sendable, Equatable {
    /// On a CPU or runnable: a vCPU running guest code is always here.
    case running
    /// Blocked, but not in a system call.
    case notInSyscall
    /// Blocked in system call `number` with its six arguments.
    case syscall(number: Int, arguments: [UInt64])

    /// The file's one line: "running", "-1 SP PC", or "NR A1 … A6 SP PC".
    public init?(parsing text: String) {
        let fields = text.split(whereSeparator: \.isWhitespace)
        if fields == ["running"] {
            self = .running
            return
        }
        guard let number = fields.first.flatMap({ Int($0) }) else { return nil }
        if number < 0 {
            self = .notInSyscall
            return
        }
        let arguments = fields.dropFirst().prefix(6).compactMap { parseHex($0) }
        guard arguments.count == 6 else { return nil }
        self = .syscall(number: number, arguments: arguments)
    }

    /// KVM_RUN, _IO(KVMIO, 0x80).
    static let kvmRun: UInt64 = 0xAE80

    /// The vCPU descriptor this thread is inside KVM_RUN on, if it is.
    var kvmRunDescriptor: Int32? {
        guard case let .syscall(number, arguments) = self, number == Int(CPROC_SYS_IOCTL),
            arguments[1] == Self.kvmRun, let fd = Int32(exactly: arguments[0])
        else { return nil }
        return fd
    }
}

/// The thread that traces a thread of QEMU (TracerPid in its status).
public struct Tracer: Sendable, Equatable {
    /// The tracing process (TracerPid names its thread; this is its process).
    public let pid: Int32
    /// Its command name, when it could be read.
    public let name: String?
    /// The thread of QEMU it traces.
    public let tracedThread: Int32
}

/// One line of /proc/PID/maps.
public struct MemoryMapping: Sendable, Equatable {
    public let start: UInt64
    public let end: UInt64
    public let isReadable: Bool
    public let isWritable: Bool
    /// MAP_SHARED ("s"): a memfd or file QEMU's RAM can live in.
    public let isShared: Bool
    public let fileOffset: UInt64
    /// The file (`/memfd:NAME (deleted)` for a memfd), nil for anonymous memory.
    public let path: String?

    public var size: UInt64 { end - start }

    /// The lines of /proc/PID/maps that parse.
    public static func parseMaps(_ text: String) -> [MemoryMapping] {
        text.split(separator: "\n").compactMap { line in
            // START-END PERMS OFFSET DEV INODE [PATH, which may hold spaces]
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count >= 5, let dash = fields[0].firstIndex(of: "-"),
                let start = UInt64(fields[0][..<dash], radix: 16),
                let end = UInt64(fields[0][fields[0].index(after: dash)...], radix: 16),
                let offset = UInt64(fields[2], radix: 16)
            else { return nil }
            let permissions = Array(fields[1])
            guard permissions.count == 4 else { return nil }
            let path = fields.count == 6 ? fields[5].trimmingPrefix(while: { $0 == " " }) : ""
            return MemoryMapping(
                start: start, end: end, isReadable: permissions[0] == "r", isWritable: permissions[1] == "w",
                isShared: permissions[3] == "s", fileOffset: offset, path: path.isEmpty ? nil : String(path))
        }
    }
}

/// A running QEMU seen through /proc: no QMP, no ptrace.
public struct QEMUProcess: Sendable, Equatable {
    public let pid: Int32
    /// The command name (/proc/PID/comm, at most 15 bytes: "qemu-system-x86").
    public let name: String
    public let commandLine: [String]
    /// The real user id QEMU runs as.
    public let userID: UInt32

    /// Reads PID's name and command line; `.noSuchProcess` when there is none.
    public init(pid: Int32) throws(ProcessError) {
        self.pid = pid
        guard pid > 0, case let .success(status) = ProcFS.read("/proc/\(pid)/status") else {
            throw .noSuchProcess(pid: pid)
        }
        name = ProcFS.statusField("Name", in: status) ?? "?"
        userID =
            ProcFS.statusField("Uid", in: status)?.split(whereSeparator: \.isWhitespace).first
            .flatMap { UInt32($0) } ?? 0
        // /proc also answers for a thread id that is no process: name the process.
        if let group = ProcFS.statusField("Tgid", in: status).flatMap({ Int32($0) }), group != pid {
            throw .unsuitable("\(pid) is a thread of process \(group) (\(name)), not a process: give \(group)")
        }
        let arguments = try ProcFS.read("/proc/\(pid)/cmdline").get()
        // NUL-terminated arguments: the last split is empty.
        var words = arguments.split(separator: "\0", omittingEmptySubsequences: false).map(String.init)
        if words.last == "" {
            words.removeLast()
        }
        commandLine = words
    }

    /// "process 1234 (qemu-system-x86)", for messages.
    public var label: String { "process \(pid) (\(name))" }

    // MARK: KVM descriptors and vCPU threads

    /// The VM and vCPU descriptors; `.unsuitable` when QEMU has no vCPU (not KVM).
    /// A QEMU still starting has none yet either: its QMP socket, even its
    /// greeting, come before the vCPUs (QMP answers a command only once they exist).
    public func kvmDescriptors() throws(ProcessError) -> KVMDescriptors {
        let directory = "/proc/\(pid)/fd"
        let names = try existing(ProcFS.list(directory))
        var vm: Int32?
        var vcpus: [VCPUDescriptor] = []
        for name in names {
            guard let fd = Int32(name), let target = ProcFS.readLink("\(directory)/\(name)") else { continue }
            if target == "anon_inode:kvm-vm" {
                vm = fd
            } else if target.hasPrefix("anon_inode:kvm-vcpu:"), let index = Int(target.dropFirst(20)) {
                vcpus.append(VCPUDescriptor(index: index, fileDescriptor: fd))
            }
        }
        guard !vcpus.isEmpty else {
            throw .unsuitable("\(label) has no KVM vCPU: not a QEMU with -accel kvm?")
        }
        return KVMDescriptors(vm: vm, vcpus: vcpus.sorted { $0.index < $1.index })
    }

    /// The thread ids of the process.
    public func threadIDs() throws(ProcessError) -> [Int32] {
        try existing(ProcFS.list("/proc/\(pid)/task")).compactMap { Int32($0) }.sorted()
    }

    /// What a thread is doing now, nil when it is gone or is a kernel worker.
    public func syscallState(ofThread thread: Int32) throws(ProcessError) -> ThreadSyscallState? {
        guard !isKernelWorker(thread) else { return nil }
        switch ProcFS.read("/proc/\(pid)/task/\(thread)/syscall") {
        case let .success(text): return ThreadSyscallState(parsing: text)
        case let .failure(error):
            if case let .system(_, code) = error, code == ENOENT || code == ESRCH { return nil }
            throw error
        }
    }

    /// The vCPU threads that are inside KVM_RUN at this moment (one look at each thread).
    public func vcpuThreadsInKVMRun() throws(ProcessError) -> [VCPUThread] {
        let descriptors = try kvmDescriptors()
        var found: [VCPUThread] = []
        for thread in try threadIDs() {
            guard let fd = try syscallState(ofThread: thread)?.kvmRunDescriptor,
                let vcpu = descriptors.vcpus.first(where: { $0.fileDescriptor == fd }),
                !found.contains(where: { $0.index == vcpu.index })
            else { continue }
            found.append(VCPUThread(index: vcpu.index, threadID: thread))
        }
        return found.sorted { $0.index < $1.index }
    }

    /// The thread that runs vCPU `index`, found without QMP: the thread seen
    /// inside ioctl(vcpu fd, KVM_RUN). That only shows while the vCPU waits in
    /// the kernel (a halted guest), so the threads are looked at `samples`
    /// times, `interval` apart. A vCPU running guest code shows as "running"
    /// and a paused QEMU's vCPUs wait outside KVM_RUN: then QMP is needed.
    public func vcpuThread(
        index: Int, samples: Int = 20, interval: Duration = .milliseconds(5)
    ) throws(ProcessError) -> VCPUThread {
        let descriptors = try kvmDescriptors()
        guard let vcpu = descriptors.vcpus.first(where: { $0.index == index }) else {
            let known = descriptors.vcpus.map { String($0.index) }.joined(separator: ", ")
            throw .unsuitable("\(label) has no vCPU \(index): its vCPUs are \(known)")
        }
        var running = Set<Int32>()
        var elsewhere = Set<Int32>()
        for sample in 0..<max(1, samples) {
            if sample > 0 { sleep(for: interval) }
            for thread in try threadIDs() {
                guard let state = try syscallState(ofThread: thread) else { continue }
                if state.kvmRunDescriptor == vcpu.fileDescriptor {
                    return VCPUThread(index: index, threadID: thread)
                }
                if state == .running { running.insert(thread) } else { elsewhere.insert(thread) }
            }
        }
        throw .unsuitable(
            "no thread of \(label) was inside KVM_RUN on vCPU \(index) (fd \(vcpu.fileDescriptor)) in \(samples) looks "
                + "(\(running.count) thread(s) seen running, \(elsewhere.subtracting(running).count) only waiting elsewhere): "
                + "/proc shows a vCPU's thread only while the vCPU waits in KVM_RUN; a vCPU running guest code shows as "
                + "running, and a paused QEMU's vCPU threads wait outside KVM_RUN. Give --qmp PATH: query-cpus-fast "
                + "names every vCPU thread")
    }

    /// io_uring and KVM's own workers live in the process but never leave
    /// the kernel; KVM's NX huge page recovery worker (a vhost task since 6.x)
    /// even shows the KVM_RUN of the vCPU that started it in its syscall file.
    private func isKernelWorker(_ thread: Int32) -> Bool {
        guard case let .success(stat) = ProcFS.read("/proc/\(pid)/task/\(thread)/stat"),
            let close = stat.lastIndex(of: ")")
        else { return false }
        // Fields after "(comm)": state is field 3, flags field 9.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 6, let flags = UInt64(fields[6]) else { return false }
        let ioWorker: UInt64 = 0x10
        let userWorker: UInt64 = 0x4000
        return flags & (ioWorker | userWorker) != 0
    }

    // MARK: QMP and RAM

    /// QEMU's QMP socket, from its command line (see `QEMUCommandLine`): a
    /// relative path is taken from QEMU's working directory, an inherited
    /// descriptor is looked up in /proc/net/unix. Nil when there is none.
    public func qmpSocketPath() -> String? {
        for source in QEMUCommandLine.qmpSockets(in: Array(commandLine.dropFirst())) {
            switch source {
            case let .path(path):
                if path.hasPrefix("/") { return path }
                guard let directory = ProcFS.readLink("/proc/\(pid)/cwd") else { continue }
                return directory + "/" + path
            case let .inheritedDescriptor(fd):
                if let path = boundPath(ofSocket: fd) { return path }
            }
        }
        return nil
    }

    /// The path a listening Unix socket descriptor is bound to.
    private func boundPath(ofSocket fd: Int32) -> String? {
        guard let target = ProcFS.readLink("/proc/\(pid)/fd/\(fd)"), target.hasPrefix("socket:["),
            case let .success(table) = ProcFS.read("/proc/net/unix")
        else { return nil }
        let inode = target.dropFirst(8).dropLast()
        // Num RefCount Protocol Flags Type St Inode Path
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            if fields.count >= 8, fields[6] == inode, fields[7].hasPrefix("/") { return String(fields[7]) }
        }
        return nil
    }

    /// /proc/PID/maps.
    public func memoryMappings() throws(ProcessError) -> [MemoryMapping] {
        MemoryMapping.parseMaps(try existing(ProcFS.read("/proc/\(pid)/maps")))
    }

    /// Guest RAM without QMP, only where QEMU's RAM is a memfd or a file
    /// (`-object memory-backend-memfd,…` / `memory-backend-file`): the largest
    /// shared, writable mapping of one, placed by `GuestRAMRange.pcConvention`
    /// (the first 2 GiB of a pc/q35 machine). QMP's `guestRAM()` is exact; this is the fallback.
    public func fallbackGuestRAM() throws(ProcessError) -> [GuestRAMRange] {
        let candidates = try memoryMappings().filter { mapping in
            guard let path = mapping.path, mapping.isShared, mapping.isReadable, mapping.isWritable,
                mapping.fileOffset == 0
            else { return false }
            // kvm_run pages, DRM buffers and the like are shared mappings too.
            let device = path.hasPrefix("/dev/") && !path.hasPrefix("/dev/shm/") && !path.hasPrefix("/dev/hugepages")
            return !path.hasPrefix("anon_inode:") && !device
        }
        guard let ram = candidates.max(by: { $0.size < $1.size }), let path = ram.path else {
            throw .unsuitable(
                "\(label) maps no memfd or file that could be guest RAM (its RAM is anonymous): give --qmp PATH, or start "
                    + "QEMU with -object memory-backend-memfd,id=pc.ram,size=SIZE -machine memory-backend=pc.ram")
        }
        return GuestRAMRange.pcConvention(hostAddress: ram.start, size: ram.size, blockName: path)
    }

    // MARK: Tracing

    /// The first thread of QEMU that something already traces (gdb, strace, another nestdbg).
    public func tracer() throws(ProcessError) -> Tracer? {
        for thread in try threadIDs() {
            guard case let .success(status) = ProcFS.read("/proc/\(pid)/task/\(thread)/status"),
                let tracer = ProcFS.statusField("TracerPid", in: status).flatMap({ Int32($0) }), tracer != 0
            else { continue }
            // TracerPid is the tracing thread: name its process.
            let tracerStatus = try? ProcFS.read("/proc/\(tracer)/status").get()
            let process = tracerStatus.flatMap { ProcFS.statusField("Tgid", in: $0) }.flatMap { Int32($0) } ?? tracer
            let name = tracerStatus.flatMap { ProcFS.statusField("Name", in: $0) }
            return Tracer(pid: process, name: name, tracedThread: thread)
        }
        return nil
    }

    /// Throws `.cannotTrace` naming the tracer when a thread of QEMU is already traced.
    public func ensureNotTraced() throws(ProcessError) {
        guard let tracer = try tracer() else { return }
        let who = tracer.pid == getpid() ? "nestdbg itself" : tracer.name ?? "?"
        let thread = tracer.tracedThread == pid ? "" : " (thread \(tracer.tracedThread))"
        throw .cannotTrace(pid: pid, reason: "already traced\(thread) by PID \(tracer.pid) (\(who)): gdb or strace?")
    }

    /// A /proc read of this process: a vanished /proc entry means the process ended.
    private func existing<Value>(_ result: Result<Value, ProcessError>) throws(ProcessError) -> Value {
        switch result {
        case let .success(value): return value
        case let .failure(error):
            if case let .system(_, code) = error, code == ENOENT || code == ESRCH { throw .noSuchProcess(pid: pid) }
            throw error
        }
    }
}

private func sleep(for duration: Duration) {
    let (seconds, attoseconds) = duration.components
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR {
        request = remaining
    }
}

extension StringProtocol {
    func trimmingSuffix(while predicate: (Character) -> Bool) -> String {
        var text = String(self)
        while let last = text.last, predicate(last) { text.removeLast() }
        return text
    }
}
