#if canImport(Glibc)
    import Glibc
#endif

/// What decides whether this process may ptrace another one: Yama's scope,
/// root, CAP_SYS_PTRACE. Read once, so an EPERM from PTRACE_SEIZE can be explained.
public struct TracePermission: Sendable, Equatable {
    /// /proc/sys/kernel/yama/ptrace_scope.
    public enum YamaScope: Int, Sendable, Equatable {
        /// Any process of the same user.
        case classic = 0
        /// Only a parent of the tracee (or CAP_SYS_PTRACE).
        case restricted = 1
        /// Only CAP_SYS_PTRACE.
        case adminOnly = 2
        /// No attaching at all, until reboot.
        case noAttach = 3
    }

    /// Nil when the kernel has no Yama.
    public let yamaScope: YamaScope?
    /// Effective user id 0.
    public let isRoot: Bool
    /// CAP_SYS_PTRACE (bit 19) in the effective set.
    public let hasPtraceCapability: Bool
    public let userID: UInt32

    public init(yamaScope: YamaScope?, isRoot: Bool, hasPtraceCapability: Bool, userID: UInt32) {
        self.yamaScope = yamaScope
        self.isRoot = isRoot
        self.hasPtraceCapability = hasPtraceCapability
        self.userID = userID
    }

    /// This process's permission now.
    public static func current() -> TracePermission {
        let yama = try? ProcFS.read("/proc/sys/kernel/yama/ptrace_scope").get()
        let status = (try? ProcFS.read("/proc/self/status").get()) ?? ""
        return TracePermission(
            yamaScope: yama.flatMap { Int($0.trimmingSuffix(while: \.isWhitespace)) }.flatMap(
                YamaScope.init(rawValue:)),
            isRoot: geteuid() == 0,
            hasPtraceCapability: ProcFS.statusField("CapEff", in: status).map(Self.hasPtraceCapability(capEff:))
                ?? false,
            userID: getuid())
    }

    /// Whether a `CapEff:` hex mask holds CAP_SYS_PTRACE.
    public static func hasPtraceCapability(capEff: String) -> Bool {
        let capSysPtrace: UInt64 = 1 << 19
        return (UInt64(capEff, radix: 16) ?? 0) & capSysPtrace != 0
    }

    /// Why ptrace said EPERM for `process`, as far as this side can tell.
    public func explainDenial(of process: QEMUProcess) -> String {
        switch yamaScope {
        case .noAttach:
            return "Yama's ptrace_scope is 3: no process may attach with ptrace, not even root, until reboot"
        case .adminOnly where !hasPtraceCapability:
            return "Yama's ptrace_scope is 2: only CAP_SYS_PTRACE may attach; run nestdbg as root"
        case .restricted where !hasPtraceCapability:
            return "Yama's ptrace_scope is 1: only QEMU's parent or CAP_SYS_PTRACE may attach; run nestdbg as root "
                + "or set kernel.yama.ptrace_scope=0"
        default:
            break
        }
        if !hasPtraceCapability && process.userID != userID {
            return "\(process.label) runs as user \(process.userID), nestdbg as \(userID); run nestdbg as root"
        }
        if hasPtraceCapability {
            return "ptrace refused although nestdbg has CAP_SYS_PTRACE: an LSM (SELinux, AppArmor) or a seccomp filter?"
        }
        return "ptrace refused (EPERM): QEMU may have made itself undumpable (-runas, setuid); run nestdbg as root"
    }
}
