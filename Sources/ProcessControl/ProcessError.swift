#if canImport(Glibc)
    import Glibc
#endif

/// Why nestdbg cannot reach or control another process: each case says what
/// failed, and the errno where a system call did.
public enum ProcessError: Error, Equatable, CustomStringConvertible {
    /// A system call failed: its name (with what it was asked) and errno.
    case system(call: String, errno: Int32)
    case noSuchProcess(pid: Int32)
    /// ptrace refused: the reason as far as nestdbg can tell (root, Yama, another tracer).
    case cannotTrace(pid: Int32, reason: String)
    /// The process is there but not what nestdbg needs (not a KVM process, no such vCPU...).
    case unsuitable(String)
    /// The traced thread stopped in a way nestdbg did not ask for and cannot continue from.
    case unexpectedStop(String)
    /// The process (or the traced thread) ended.
    case ended(String)
    /// QEMU's QMP socket: an answer that is an error or malformed, or a socket that is not QMP.
    case qmp(String)
    /// The QMP socket could not be reached: its path and connect(2)'s errno.
    case qmpUnreachable(path: String, errno: Int32)
    /// QEMU did not answer in time: what nestdbg was waiting for.
    case qmpTimeout(path: String, waitingFor: String, timeout: Duration)
    /// A guest-physical access leaves guest RAM: the first address that is not RAM.
    case outsideGuestRAM(address: UInt64)

    public var description: String {
        switch self {
        case let .system(call, errno): return "\(call) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case let .noSuchProcess(pid): return "no process with PID \(pid)"
        case let .cannotTrace(pid, reason): return "cannot trace process \(pid): \(reason)"
        case let .unsuitable(why): return why
        case let .unexpectedStop(what): return "unexpected stop of the traced thread: \(what)"
        case let .ended(what): return what
        case let .qmp(what): return "QMP: \(what)"
        case let .qmpUnreachable(path, errno): return "QMP: cannot connect to \(path): " + Self.unreachableReason(errno)
        case let .qmpTimeout(path, what, timeout):
            return "QMP: no answer from \(path) within \(timeout) waiting for \(what)"
        case let .outsideGuestRAM(address):
            return "guest-physical address 0x\(String(address, radix: 16)) is not in guest RAM (ROM, MMIO or unmapped)"
        }
    }

    /// connect(2)'s errno in the words of someone starting QEMU.
    private static func unreachableReason(_ errno: Int32) -> String {
        let text = "\(String(cString: strerror(errno))) (errno \(errno))"
        switch errno {
        case ENOENT: return text + ": no such socket; start QEMU with -qmp unix:PATH,server=on,wait=off"
        case ECONNREFUSED: return text + ": nothing listens there (QEMU ended, or PATH is not a socket)"
        case EACCES, EPERM: return text + ": run nestdbg as QEMU's user or as root"
        case ENAMETOOLONG: return text + ": a Unix socket path has at most 107 bytes"
        default: return text
        }
    }
}
