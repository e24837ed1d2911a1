import CProcess

#if canImport(Glibc)
    import Glibc
#endif

/// The x86-64 registers of a traced thread (`struct user_regs_struct`).
public struct ThreadRegisters: Equatable, Sendable {
    public var words: [UInt64]

    init(words: [UInt64]) { self.words = words }

    public var rip: UInt64 {
        get { words[Int(CPROC_RIP)] }
        set { words[Int(CPROC_RIP)] = newValue }
    }
    public var rsp: UInt64 { words[Int(CPROC_RSP)] }
    public var rax: UInt64 { words[Int(CPROC_RAX)] }
    /// The system call the thread was in when it stopped (-1: none).
    public var originalRAX: Int64 { Int64(bitPattern: words[Int(CPROC_ORIG_RAX)]) }
    /// The first three system call arguments (rdi, rsi, rdx).
    public var arguments: (UInt64, UInt64, UInt64) {
        (words[Int(CPROC_RDI)], words[Int(CPROC_RSI)], words[Int(CPROC_RDX)])
    }
    /// The system call's result where the thread stopped on its way out of one.
    public var result: Int64 { Int64(bitPattern: rax) }

    /// These registers set up to make system call `number` at `instruction` (a `syscall`).
    func calling(_ number: Int, _ arguments: [UInt64], at instruction: UInt64) -> ThreadRegisters {
        var r = self
        let slots = [CPROC_RDI, CPROC_RSI, CPROC_RDX, CPROC_R10, CPROC_R8, CPROC_R9]
        for (slot, value) in zip(slots, arguments) { r.words[Int(slot)] = value }
        r.words[Int(CPROC_RAX)] = UInt64(number)
        // Not inside a system call: the kernel must not restart anything when the thread resumes.
        r.words[Int(CPROC_ORIG_RAX)] = UInt64.max
        r.rip = instruction
        return r
    }

    /// What the thread must resume with so the interrupted system call
    /// behaves as if no stop had happened: the kernel's own restart rule for
    /// a signal without a handler, which it will not apply itself once
    /// nestdbg's system calls ran in between.
    func resumingInterruptedCall() -> ThreadRegisters {
        guard originalRAX >= 0 else { return self }
        var r = self
        switch result {
        case -512, -513, -514:  // ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND: the same call again
            r.words[Int(CPROC_RAX)] = UInt64(bitPattern: originalRAX)
            r.rip -= 2
        case -516:  // ERESTART_RESTARTBLOCK: restart_syscall(2)
            r.words[Int(CPROC_RAX)] = 219
            r.rip -= 2
        default:
            break
        }
        return r
    }
}

/// What a signal-delivery stop carries.
public struct SignalInfo: Equatable, Sendable {
    public let signal: Int32
    /// si_code: TRAP_PERF for a perf event's SIGTRAP, SI_QUEUE for a queued one, SI_TKILL...
    public let code: Int32
    public let sender: Int32
    public let value: UInt64

    public var isPerfTrap: Bool { signal == SIGTRAP && code == Int32(CPROC_TRAP_PERF) }
}

/// Why a traced thread stopped (ptrace(2)'s kinds of stop).
public enum ThreadStop: Equatable, Sendable {
    /// A signal is about to be delivered; resuming with it delivers it, with 0 drops it.
    case signal(SignalInfo)
    /// PTRACE_INTERRUPT (or a group stop): nothing to deliver.
    case interrupted
    /// Entering or leaving a system call (PTRACE_SYSCALL).
    case syscall
    /// The thread is exiting (the process's whole group, usually): its wait status.
    case exiting(waitStatus: Int32)
}

/// What waiting for a traced thread returned.
public enum ThreadEvent: Equatable, Sendable {
    case stopped(ThreadStop)
    /// Gone: exited with a status, or killed by a signal.
    case exited(status: Int32)
    case killed(signal: Int32)
}

/// One thread of another process, traced with PTRACE_SEIZE (never
/// EXITKILL: should nestdbg die, the kernel lets the thread go and it runs
/// on). Only the thread that seized it may call its methods (ptrace's rule);
/// `queueSignal` is the exception.
///
/// `syscall(_:_:)` runs a system call in the thread, in its process: the way
/// nestdbg issues ioctls on another process's KVM vCPU.
public final class TracedThread {
    public let pid: Int32
    public let tid: Int32
    /// Where the thread was stopped last, nil while it runs.
    public private(set) var currentStop: ThreadStop?
    /// A `syscall` instruction (0F 05) in the process: where injected calls run.
    private var syscallInstruction: UInt64?
    /// Signals that reached the thread while nestdbg's system calls ran in it:
    /// sent again when it resumes, so the process still gets them.
    private var deferredSignals: [Int32] = []

    private init(pid: Int32, tid: Int32) {
        self.pid = pid
        self.tid = tid
    }

    /// Seizes thread `tid` of process `pid`; it runs on until `interrupt()`.
    public static func seize(pid: Int32, tid: Int32) throws -> TracedThread {
        let r = cproc_seize(tid, UInt(CPROC_O_TRACESYSGOOD | CPROC_O_TRACEEXIT))
        if r == -ESRCH { throw ProcessError.noSuchProcess(pid: tid) }
        if r == -EPERM {
            throw ProcessError.cannotTrace(pid: pid, reason: "ptrace(PTRACE_SEIZE) of thread \(tid): EPERM")
        }
        if r < 0 { throw ProcessError.system(call: "ptrace(PTRACE_SEIZE, \(tid))", errno: -r) }
        return TracedThread(pid: pid, tid: tid)
    }

    // MARK: stopping and resuming

    /// Asks the running thread to stop; `wait()` then reports the stop.
    public func interrupt() throws {
        try check(cproc_interrupt(tid), "ptrace(PTRACE_INTERRUPT, \(tid))")
    }

    /// Waits for the thread's next stop or its end.
    public func wait() throws -> ThreadEvent {
        var status: Int32 = 0
        let r = cproc_wait(tid, &status)
        if r < 0 { throw ProcessError.system(call: "waitpid(\(tid), __WALL)", errno: -r) }
        return try decode(status)
    }

    /// The same without blocking: nil while the thread runs.
    public func poll() throws -> ThreadEvent? {
        var status: Int32 = 0
        let r = cproc_wait_nohang(tid, &status)
        if r < 0 { throw ProcessError.system(call: "waitpid(\(tid), __WALL|WNOHANG)", errno: -r) }
        return r == 0 ? nil : try decode(status)
    }

    private func decode(_ status: Int32) throws -> ThreadEvent {
        if cproc_exited(status) != 0 {
            currentStop = nil
            return .exited(status: cproc_exit_status(status))
        }
        if cproc_signaled(status) != 0 {
            currentStop = nil
            return .killed(signal: cproc_term_signal(status))
        }
        let signal = cproc_stop_signal(status)
        let stop: ThreadStop
        switch cproc_event(status) {
        case Int32(CPROC_EVENT_STOP):
            stop = .interrupted
        case Int32(CPROC_EVENT_EXIT):
            var message: UInt = 0
            _ = cproc_get_event_message(tid, &message)
            stop = .exiting(waitStatus: Int32(truncatingIfNeeded: message))
        default:
            if signal == SIGTRAP | 0x80 {
                stop = .syscall
            } else {
                var signo: Int32 = 0
                var code: Int32 = 0
                var sender: Int32 = 0
                var value: UInt64 = 0
                try check(cproc_get_siginfo(tid, &signo, &code, &sender, &value), "ptrace(PTRACE_GETSIGINFO, \(tid))")
                stop = .signal(SignalInfo(signal: signo, code: code, sender: sender, value: value))
            }
        }
        currentStop = stop
        return .stopped(stop)
    }

    /// Lets the thread run on, delivering `signal` (0: none) and then any
    /// signal that arrived while nestdbg's system calls ran.
    public func resume(delivering signal: Int32 = 0) throws {
        try check(cproc_cont(tid, signal), "ptrace(PTRACE_CONT, \(tid))")
        currentStop = nil
        sendDeferredSignals()
    }

    /// Lets the thread go: it is no longer traced.
    public func detach(delivering signal: Int32 = 0) throws {
        try check(cproc_detach(tid, signal), "ptrace(PTRACE_DETACH, \(tid))")
        currentStop = nil
        sendDeferredSignals()
    }

    private func sendDeferredSignals() {
        // Plain tgkill: their sender is nestdbg, but they are not `queueSignal`'s, so they pass on.
        for s in deferredSignals { _ = cproc_tgkill(pid, tid, s) }
        deferredSignals.removeAll()
    }

    /// Sends the thread `signal` carrying `value` (SI_QUEUE): a signal whose
    /// stop its tracer can tell from any other. Any thread may call this.
    public static func queueSignal(_ signal: Int32, value: UInt64, pid: Int32, tid: Int32) -> Int32 {
        cproc_queue_signal(pid, tid, signal, value)
    }

    /// Whether a signal stop is one nestdbg queued with `value`.
    public static func isQueuedByUs(_ info: SignalInfo, value: UInt64) -> Bool {
        info.code == Int32(CPROC_SI_QUEUE) && info.sender == getpid() && info.value == value
    }

    // MARK: state of a stopped thread

    public func registers() throws -> ThreadRegisters {
        var words = [UInt64](repeating: 0, count: Int(CPROC_REG_COUNT))
        try check(cproc_get_regs(tid, &words), "ptrace(PTRACE_GETREGS, \(tid))")
        return ThreadRegisters(words: words)
    }

    public func setRegisters(_ registers: ThreadRegisters) throws {
        try check(cproc_set_regs(tid, registers.words), "ptrace(PTRACE_SETREGS, \(tid))")
    }

    /// The thread's blocked-signal mask (bit n-1 for signal n).
    public func signalMask() throws -> UInt64 {
        var mask: UInt64 = 0
        try check(cproc_get_sigmask(tid, &mask), "ptrace(PTRACE_GETSIGMASK, \(tid))")
        return mask
    }

    public func setSignalMask(_ mask: UInt64) throws {
        try check(cproc_set_sigmask(tid, mask), "ptrace(PTRACE_SETSIGMASK, \(tid))")
    }

    /// Signals pending for this thread alone (SigPnd in /proc), bit n-1 for signal n.
    public func pendingSignals() throws -> UInt64 {
        let path = "/proc/\(pid)/task/\(tid)/status"
        guard let file = fopen(path, "r") else { throw ProcessError.system(call: "open(\(path))", errno: errno) }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(cString: line)
            if text.hasPrefix("SigPnd:") {
                return UInt64(String(text.dropFirst(7).filter(\.isHexDigit)), radix: 16) ?? 0
            }
        }
        return 0
    }

    /// Reads `count` bytes of the process's memory at `address`.
    public func readMemory(at address: UInt64, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let n = bytes.withUnsafeMutableBytes { cproc_read_memory(pid, address, $0.baseAddress, count) }
        if n < 0 {
            throw ProcessError.system(
                call: "process_vm_readv(\(pid), 0x\(String(address, radix: 16)), \(count))", errno: Int32(-n))
        }
        guard n == count else {
            throw ProcessError.unsuitable(
                "process \(pid): only \(n) of \(count) bytes readable at 0x\(String(address, radix: 16))")
        }
        return bytes
    }

    public func writeMemory(_ bytes: [UInt8], at address: UInt64) throws {
        let n = bytes.withUnsafeBytes { cproc_write_memory(pid, address, $0.baseAddress, bytes.count) }
        if n < 0 {
            throw ProcessError.system(
                call: "process_vm_writev(\(pid), 0x\(String(address, radix: 16)), \(bytes.count))", errno: Int32(-n))
        }
        guard n == bytes.count else {
            throw ProcessError.unsuitable(
                "process \(pid): only \(n) of \(bytes.count) bytes writable at 0x\(String(address, radix: 16))")
        }
    }

    // MARK: system calls in the thread

    /// Remembers the `syscall` instruction the stopped thread just came out
    /// of (at RIP - 2, if the thread stopped inside a system call). Returns
    /// whether one is known now.
    @discardableResult
    public func learnSyscallInstruction(from registers: ThreadRegisters) throws -> Bool {
        if syscallInstruction != nil { return true }
        syscallInstruction = syscallSite(before: registers)
        return syscallInstruction != nil
    }

    /// The `syscall` instruction at RIP - 2 of a thread stopped inside a system call.
    private func syscallSite(before registers: ThreadRegisters) -> UInt64? {
        guard registers.originalRAX >= 0, registers.rip >= 2 else { return nil }
        var word: UInt64 = 0
        guard cproc_peek(tid, registers.rip - 2, &word) == 0, word & 0xFFFF == 0x050F else { return nil }
        return registers.rip - 2
    }

    /// Runs system call `number` with `arguments` in the stopped thread and
    /// returns its result (a negative errno on failure), leaving every
    /// register as it was, so the thread resumes where it stopped. Signals
    /// that arrive meanwhile are kept for `resume`.
    public func syscall(_ number: Int, _ arguments: [UInt64]) throws -> Int64 {
        guard currentStop != nil else {
            throw ProcessError.unexpectedStop("thread \(tid) is running: stop it before a system call")
        }
        guard let instruction = syscallInstruction else {
            throw ProcessError.unsuitable(
                "thread \(tid): no syscall instruction known yet (it has not stopped inside a system call)")
        }
        let saved = try registers()
        // The thread's own call site where it has one: if the tracer dies
        // mid-call, the thread goes on from there, in the function it was
        // in (a site learned in another function would return into the
        // wrong frame: QEMU segfaulted once after nestdbg was SIGKILLed).
        try setRegisters(saved.calling(number, arguments, at: syscallSite(before: saved) ?? instruction))
        // Into the call, then out of it; a signal on the way is kept for later.
        var sawEntry = false
        while true {
            try check(cproc_syscall(tid, 0), "ptrace(PTRACE_SYSCALL, \(tid))")
            switch try wait() {
            case .stopped(.syscall):
                if sawEntry {
                    let result = try registers().result
                    try setRegisters(saved.resumingInterruptedCall())
                    return result
                }
                sawEntry = true
            case let .stopped(.signal(info)):
                if !deferredSignals.contains(info.signal) { deferredSignals.append(info.signal) }
            case .stopped(.interrupted):
                continue
            case let .stopped(.exiting(status)):
                throw ProcessError.ended("process \(pid) is exiting (wait status 0x\(String(status, radix: 16)))")
            case let .exited(status):
                throw ProcessError.ended("process \(pid) exited with status \(status)")
            case let .killed(signal):
                throw ProcessError.ended("process \(pid) was killed by signal \(signal)")
            }
        }
    }

    private func check(_ r: Int32, _ call: @autoclosure () -> String) throws {
        if r == -ESRCH { throw ProcessError.ended("thread \(tid) of process \(pid) is gone") }
        if r < 0 { throw ProcessError.system(call: call(), errno: -r) }
    }
}
