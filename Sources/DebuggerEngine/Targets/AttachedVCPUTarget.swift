import Foundation
import KVMControl
import ProcessControl
import SVMModel

#if canImport(Glibc)
    import Glibc
#endif

/// Guest-physical memory of a VM another process owns (QEMU's RAM, read
/// through its mappings).
public protocol GuestPhysicalMemory: AnyObject {
    func read(_ address: UInt64, count: Int) throws -> [UInt8]
    func write(_ bytes: [UInt8], at address: UInt64) throws
}

/// Where a vCPU of another process is: the process, the vCPU's thread and
/// its fd there, and how to reach guest memory and (optionally) QEMU's QMP.
public struct AttachPoint {
    public let pid: Int32
    public let vcpuIndex: UInt32
    public let thread: Int32
    /// The vCPU's fd number inside the process.
    public let vcpuFD: Int32
    public let memory: any GuestPhysicalMemory
    /// "QEMU 1234 (qemu-system-x86_64)", for the banner.
    public let processName: String
    /// Called once, after nestdbg's stops are armed and before the vCPU first
    /// runs under nestdbg (QMP `cont` for a QEMU started with -S).
    public var resumeProcess: (() throws -> Void)?

    public init(
        pid: Int32, vcpuIndex: UInt32, thread: Int32, vcpuFD: Int32, memory: any GuestPhysicalMemory,
        processName: String, resumeProcess: (() throws -> Void)? = nil
    ) {
        self.pid = pid
        self.vcpuIndex = vcpuIndex
        self.thread = thread
        self.vcpuFD = vcpuFD
        self.memory = memory
        self.processName = processName
        self.resumeProcess = resumeProcess
    }
}

/// A vCPU that belongs to another process (QEMU), attached with ptrace.
///
/// KVM answers a vCPU ioctl only from the VM's own process, so every ioctl
/// runs in QEMU's vCPU thread itself: nestdbg stops the thread (ptrace),
/// injects the system call, and puts the thread's registers back. Stops come
/// from KVM's tracepoints bound to that thread: their SIGTRAP makes KVM_RUN
/// return EINTR, the thread stops on its way to the signal, and the signal
/// is dropped, so QEMU simply enters KVM_RUN again, as after its own kicks.
///
/// QEMU blocks SIGTRAP in its vCPU threads: attaching unblocks it in that
/// thread (PTRACE_SETSIGMASK) and makes its disposition SIG_IGN, so that a
/// SIGTRAP still in flight when nestdbg dies is ignored rather than fatal;
/// `release()` restores both. The tracer is the thread that called
/// `claimVCPU()` (ptrace's rule): the engine's.
public final class AttachedVCPUTarget: RunnableTarget, @unchecked Sendable {
    public let point: AttachPoint
    public let name: String
    public var capabilities: TargetCapabilities { [] }
    public let symbols: [String: UInt64] = [:]
    public var vcpuThreadID: Int32? { point.thread }
    private let kvm: KVM
    private var thread: TracedThread?
    private var vcpu: RemoteVCPU?
    /// QEMU's signal state before nestdbg changed it, restored at release.
    private var savedMask: UInt64?
    private var savedTrapAction: [UInt8]?
    /// `point.resumeProcess`, until the first run calls it (then its QMP connection goes).
    private var pendingResume: (() throws -> Void)?
    /// Set when the process ended: nothing can be read or restored any more.
    private var ended: TargetEnded?
    /// `exit_reason` in QEMU's mapping of this vCPU's `kvm_run`, and its value
    /// before nestdbg made it harmless (see `armAgainstTracerDeath`).
    private var exitReasonAddress: UInt64?
    private var savedExitReason: [UInt8]?

    /// The value nestdbg's own pause signals carry (SIGUSR1 with SI_QUEUE):
    /// QEMU's kicks are SIGUSR1 too, and pass on untouched.
    static let kickValue: UInt64 = 0x6E65_7374_6462_6721  // "nestdbg!"

    public init(_ point: AttachPoint) throws {
        var point = point
        pendingResume = point.resumeProcess
        point.resumeProcess = nil
        self.point = point
        name = "\(point.processName) vCPU \(point.vcpuIndex)"
        kvm = try KVM()
    }

    // MARK: RunnableTarget

    /// Seizes the vCPU thread, stops it, and makes its SIGTRAPs harmless and
    /// deliverable. Must run on the engine's thread: it becomes the tracer.
    public func claimVCPU() throws {
        guard thread == nil else { return }
        let traced = try TracedThread.seize(pid: point.pid, tid: point.thread)
        thread = traced
        do {
            try stopInsideSystemCall(traced)
            exitReasonAddress = try QEMUProcess(pid: point.pid).memoryMappings().first {
                $0.path == "anon_inode:kvm-vcpu:\(point.vcpuIndex)" && $0.fileOffset == 0
            }.map { $0.start + KVMRunLayout.exitReasonOffset }
            try armAgainstTracerDeath(traced)
            vcpu = try RemoteVCPU(id: point.vcpuIndex, kvm: kvm) { [unowned self] request, argument, size in
                try self.remoteIoctl(request, argument, size: size)
            }
            // SIG_IGN first: from the moment SIGTRAP is unblocked, a stray one must not kill QEMU.
            savedTrapAction = try setSignalAction(SIGTRAP, ignore: true)
            let mask = try traced.signalMask()
            savedMask = mask
            try traced.setSignalMask(mask & ~(UInt64(1) << UInt64(SIGTRAP - 1)))
        } catch {
            try? release()
            throw error
        }
    }

    /// Stops the thread where a system call can be injected: inside a system
    /// call (KVM_RUN, or a futex while QEMU is paused), so that RIP - 2 is a
    /// `syscall` instruction. A thread caught in user code runs on briefly.
    private func stopInsideSystemCall(_ traced: TracedThread) throws {
        for attempt in 0..<50 {
            try traced.interrupt()
            let event = try traced.wait()
            guard case .stopped = event else {
                throw ProcessError.ended(
                    "QEMU's vCPU \(point.vcpuIndex) thread \(point.thread) ended while nestdbg attached")
            }
            if case let .stopped(.signal(info)) = event, !info.isPerfTrap {
                // A signal of QEMU's own (a kick) came first: deliver it and try again.
                try traced.resume(delivering: info.signal)
                continue
            }
            if try traced.learnSyscallInstruction(from: traced.registers()) { return }
            try traced.resume()
            usleep(useconds_t(1000 * min(attempt + 1, 20)))
        }
        throw ProcessError.unsuitable(
            "thread \(point.thread) of process \(point.pid) never stopped inside a system call")
    }

    /// The stop source binds its tracepoints to QEMU's vCPU thread; their
    /// SIGTRAP reaches nestdbg as that thread's signal stop.
    public func prepareForTracepointStops() throws -> Int32 { point.thread }

    public func run() throws -> VCPUExit {
        if let ended { throw ended }
        guard let thread else {
            throw TargetError.notSupported(operation: "KVM_RUN", target: "\(name) before attaching")
        }
        try disarm(thread)
        try thread.resume()
        if let resume = pendingResume {
            pendingResume = nil
            // On a thread of its own: QEMU's `cont` waits for this vCPU thread
            // (run_on_cpu), which only moves while nestdbg waits for its stops below.
            let box = UncheckedSendable(resume)
            Thread {
                do { try box.value() } catch {
                    FileHandle.standardError.write(Data("nestdbg: resuming QEMU: \(error)\n".utf8))
                }
            }.start()
        }
        while true {
            let event: ThreadEvent
            do { event = try thread.wait() } catch let error as ProcessError {
                throw end(error.description, status: nil)
            }
            switch event {
            case let .stopped(.signal(info)):
                // Ours: a tracepoint's SIGTRAP, or nestdbg's pause. Dropped on resume.
                if info.isPerfTrap || TracedThread.isQueuedByUs(info, value: Self.kickValue) {
                    try armAgainstTracerDeath(thread)
                    return .interrupted
                }
                // QEMU's own (SIG_IPI kicks, timers...): passed on unchanged.
                try thread.resume(delivering: info.signal)
            case .stopped(.interrupted), .stopped(.syscall):
                try thread.resume()
            case let .stopped(.exiting(status)):
                // Let it go: the whole process is exiting.
                try? thread.detach()
                throw end(describeExit(status), status: status)
            case let .exited(status):
                throw end("QEMU's vCPU thread exited (status \(status))", status: status << 8)
            case let .killed(signal):
                throw end("QEMU was killed by signal \(signal) (\(String(cString: strsignal(signal))))", status: nil)
            }
        }
    }

    /// "QEMU exited with status 1: isa-debug-exit value 0 (QEMU exits with value << 1 | 1)".
    private func describeExit(_ waitStatus: Int32) -> String {
        if waitStatus & 0x7F != 0 { return "QEMU is exiting on signal \(waitStatus & 0x7F)" }
        let code = (waitStatus >> 8) & 0xFF
        let debugExit =
            code & 1 == 1 ? ": the guest wrote \(code >> 1) to isa-debug-exit (QEMU exits with value << 1 | 1)" : ""
        return "QEMU exited with status \(code)\(debugExit)"
    }

    private func end(_ description: String, status: Int32?) -> TargetEnded {
        let code = status.map { ($0 >> 8) & 0xFF }
        let guestStatus = code.flatMap { $0 & 1 == 1 && (status ?? 0) & 0x7F == 0 ? $0 >> 1 : nil }
        let e = TargetEnded(description: description, guestStatus: guestStatus)
        ended = e
        thread = nil
        return e
    }

    public func kick() {
        // From any thread. If the vCPU is held by nestdbg, the signal waits for the next run.
        _ = TracedThread.queueSignal(SIGUSR1, value: Self.kickValue, pid: point.pid, tid: point.thread)
    }

    public func setSingleStep(_ enabled: Bool) throws {
        throw TargetError.notSupported(operation: "single-step", target: name)
    }

    /// Restores QEMU's signal state, closes nothing of QEMU's, and lets the
    /// thread go. Safe to call more than once; a no-op once the process ended.
    public func release() throws {
        guard let thread else { return }
        defer { self.thread = nil }
        // A SIGTRAP already queued (a tracepoint that fired just before the
        // events closed) is taken and dropped here, before SIGTRAP is
        // blocked again; else QEMU would keep it pending forever.
        if let pending = try? thread.pendingSignals(), pending & (UInt64(1) << UInt64(SIGTRAP - 1)) != 0 {
            try thread.resume()
            drain: while true {
                switch try thread.wait() {
                case let .stopped(.signal(info)) where info.signal == SIGTRAP: break drain
                case let .stopped(.signal(info)): try thread.resume(delivering: info.signal)
                case .stopped: break drain
                case .exited, .killed: return
                }
            }
        }
        if let savedTrapAction { _ = try setSignalAction(SIGTRAP, restoring: savedTrapAction) }
        if let savedMask { try thread.setSignalMask(savedMask) }
        try disarm(thread)
        try thread.detach()
    }

    /// If nestdbg dies (SIGKILL) while a system call it injected runs, the
    /// kernel lets the thread go on from there: back in QEMU's ioctl wrapper
    /// with that call's result, 0, in RAX instead of KVM_RUN's -EINTR. QEMU
    /// then reads `kvm_run.exit_reason`: still KVM_EXIT_INTR, which it does
    /// not expect with 0 ("unknown exit reason 10", the VM stops; measured).
    /// So while nestdbg holds the thread, exit_reason says
    /// KVM_EXIT_IRQ_WINDOW_OPEN, on which QEMU simply returns to its loop
    /// and enters KVM_RUN again. The other registers an injection changes
    /// are the ones a system call may clobber.
    private func armAgainstTracerDeath(_ thread: TracedThread) throws {
        guard let address = exitReasonAddress, savedExitReason == nil else { return }
        savedExitReason = try thread.readMemory(at: address, count: 4)
        try thread.writeMemory(KVMRunLayout.irqWindowOpenExitReason, at: address)
    }

    /// Puts exit_reason back before the thread runs on (it is QEMU's).
    private func disarm(_ thread: TracedThread) throws {
        guard let address = exitReasonAddress, let saved = savedExitReason else { return }
        try thread.writeMemory(saved, at: address)
        savedExitReason = nil
    }

    // MARK: reading the vCPU

    private func remote() throws -> RemoteVCPU {
        if let ended { throw ended }
        guard let vcpu else {
            throw TargetError.notSupported(operation: "a vCPU ioctl", target: "\(name) before attaching")
        }
        return vcpu
    }

    public func generalRegisters() throws -> GeneralRegisters { try remote().registers() }
    public func setGeneralRegisters(_ registers: GeneralRegisters) throws {
        throw TargetError.notSupported(operation: "writing registers", target: name)
    }
    public func specialRegisters() throws -> SpecialRegisters { try remote().specialRegisters() }
    public func debugRegisters() throws -> DebugRegisters { try remote().debugRegisters() }
    public func msrs(_ indices: [UInt32]) throws -> [UInt64] { try remote().msrs(indices) }

    public func nestedState() throws -> SVMNestedState? {
        let vcpu = try remote()
        guard vcpu.nestedStateMaxSize > 0 else { return nil }
        return try SVMNestedState(bytes: vcpu.nestedState().bytes)
    }

    public func isInGuestMode() throws -> Bool { try nestedState()?.flags.contains(.guestMode) ?? false }

    public func readPhysical(_ address: UInt64, count: Int) throws -> [UInt8] {
        try point.memory.read(address, count: count)
    }
    public func writePhysical(_ bytes: [UInt8], at address: UInt64) throws {
        throw TargetError.notSupported(operation: "writing guest memory", target: name)
    }
    public func translate(_ linear: UInt64) throws -> UInt64? { try remote().translate(linear) }

    // MARK: system calls in QEMU's thread

    /// Scratch memory in QEMU for an ioctl's argument: below the thread's
    /// stack pointer and its 128-byte red zone, which nothing uses while the
    /// thread is stopped in a system call.
    private func scratch(_ thread: TracedThread, size: Int) throws -> UInt64 {
        let rsp = try thread.registers().rsp
        return (rsp - 128 - UInt64(size) - 64) & ~63
    }

    /// One ioctl on QEMU's vCPU fd, run by QEMU's vCPU thread.
    private func remoteIoctl(_ request: UInt, _ argument: UnsafeMutableRawPointer?, size: Int) throws -> Int32 {
        guard let thread else { throw ended ?? TargetError.notSupported(operation: "a vCPU ioctl", target: name) }
        var address: UInt64 = 0
        if let argument, size > 0 {
            address = try scratch(thread, size: size)
            try thread.writeMemory(Array(UnsafeRawBufferPointer(start: argument, count: size)), at: address)
        }
        let r = try thread.syscall(SystemCall.ioctl, [UInt64(point.vcpuFD), UInt64(request), address])
        if let argument, size > 0 {
            let bytes = try thread.readMemory(at: address, count: size)
            bytes.withUnsafeBytes { argument.copyMemory(from: $0.baseAddress!, byteCount: size) }
        }
        return Int32(truncatingIfNeeded: r)
    }

    /// rt_sigaction in QEMU: SIG_IGN for `signal` (with `ignore`), or an
    /// action saved earlier (`restoring`). Returns the action it replaced
    /// (the kernel's struct sigaction: handler, flags, restorer, mask).
    private func setSignalAction(_ signal: Int32, ignore: Bool = false, restoring saved: [UInt8]? = nil) throws
        -> [UInt8]
    {
        guard let thread else { throw TargetError.notSupported(operation: "rt_sigaction", target: name) }
        let size = 32
        // SIG_IGN = 1
        let new = saved ?? [UInt8](repeating: 0, count: size).enumerated().map { $0.offset == 0 && ignore ? 1 : 0 }
        let address = try scratch(thread, size: 2 * size)
        try thread.writeMemory(new + [UInt8](repeating: 0, count: size), at: address)
        let r = try thread.syscall(SystemCall.rtSigaction, [UInt64(signal), address, address + UInt64(size), 8])
        if r < 0 {
            throw ProcessError.system(call: "rt_sigaction(\(signal)) in process \(point.pid)", errno: Int32(-r))
        }
        return try thread.readMemory(at: address + UInt64(size), count: size)
    }
}

/// A value moved to another thread by hand (QEMU's QMP client, used there alone).
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// x86-64 system call numbers nestdbg runs in another process.
enum SystemCall {
    static let ioctl = 16
    static let rtSigaction = 13
}

/// The process that ran the vCPU ended: nothing can be read from it any more.
public struct TargetEnded: Error, Equatable, CustomStringConvertible {
    public let description: String
    /// The guest's own exit status where the process says it (QEMU's isa-debug-exit).
    public let guestStatus: Int32?

    var stop: SourceStop {
        SourceStop(
            .processEnded(description: description, guestStatus: guestStatus), kvmExit: "none (the process ended)")
    }
}
