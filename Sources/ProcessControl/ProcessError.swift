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
    /// QEMU's QMP socket: connecting, or an answer that is an error or malformed.
    case qmp(String)

    public var description: String {
        switch self {
        case let .system(call, errno): return "\(call) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case let .noSuchProcess(pid): return "no process with PID \(pid)"
        case let .cannotTrace(pid, reason): return "cannot trace process \(pid): \(reason)"
        case let .unsuitable(why): return why
        case let .unexpectedStop(what): return "unexpected stop of the traced thread: \(what)"
        case let .ended(what): return what
        case let .qmp(what): return "QMP: \(what)"
        }
    }
}
