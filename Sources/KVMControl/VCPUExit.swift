import CKVM

/// Why `KVM_RUN` returned, decoded from `kvm_run`. Every exit reason maps to
/// a case; reasons nestdbg has no decoder for are `.unknown`, never a trap.
public enum VCPUExit: Equatable, Sendable {
    public enum Direction: UInt8, Sendable {
        case `in` = 0
        case out = 1
    }

    /// `KVM_EXIT_IO`. For `.out`, `data` holds what the guest wrote
    /// (`size × count` bytes); for `.in`, the VMM supplies it with `VCPU.completeIn`.
    case io(port: UInt16, direction: Direction, size: Int, count: Int, data: [UInt8])
    /// `KVM_EXIT_MMIO`.
    case mmio(address: UInt64, isWrite: Bool, length: Int, data: [UInt8])
    /// `KVM_EXIT_HLT` (only without an in-kernel irqchip).
    case hlt
    /// `KVM_EXIT_DEBUG`: exception 1 (#DB) or 3 (#BP), linear PC, DR6, DR7.
    case debug(exception: UInt32, pc: UInt64, dr6: UInt64, dr7: UInt64)
    /// `KVM_EXIT_SHUTDOWN`: a triple fault at the level KVM runs.
    case shutdown
    /// `KVM_EXIT_FAIL_ENTRY`: hardware refused the entry (on SVM, the VMCB exit code).
    case failEntry(reason: UInt64, cpu: UInt32)
    /// `KVM_EXIT_INTERNAL_ERROR` with its sub-error and data words.
    case internalError(suberror: UInt32, data: [UInt64])
    /// `KVM_RUN` returned EINTR (a kick or another signal), or `KVM_EXIT_INTR`.
    case interrupted
    /// `KVM_EXIT_SYSTEM_EVENT` (shutdown 1, reset 2, crash 3, ...).
    case systemEvent(type: UInt32, data: [UInt64])
    /// Any other exit reason, by number.
    case unknown(reason: UInt32)

    /// KVM's name for the exit, as in `KVM_EXIT_*`.
    public var kvmName: String {
        switch self {
        case .io: return "KVM_EXIT_IO"
        case .mmio: return "KVM_EXIT_MMIO"
        case .hlt: return "KVM_EXIT_HLT"
        case .debug: return "KVM_EXIT_DEBUG"
        case .shutdown: return "KVM_EXIT_SHUTDOWN"
        case .failEntry: return "KVM_EXIT_FAIL_ENTRY"
        case .internalError: return "KVM_EXIT_INTERNAL_ERROR"
        case .interrupted: return "KVM_EXIT_INTR"
        case .systemEvent: return "KVM_EXIT_SYSTEM_EVENT"
        case let .unknown(reason): return "KVM_EXIT_\(reason)"
        }
    }
}

/// Flags KVM sets in `kvm_run.flags` on x86.
public struct RunFlags: OptionSet, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let smm = RunFlags(rawValue: 1 << 0)
    public static let busLock = RunFlags(rawValue: 1 << 1)
    /// The vCPU was running L2 when it exited (6.10+, `KVM_CAP_X86_GUEST_MODE`).
    public static let guestMode = RunFlags(rawValue: 1 << 2)
}

/// Where things are in `struct kvm_run` (the vCPU's shared page), and the
/// exit codes another process's loop is handed: named once, from the header.
public enum KVMRunLayout {
    /// `kvm_run.exit_reason`: 8 bytes of flags come first (ckvm.c asserts it).
    public static let exitReasonOffset = UInt64(MemoryLayout<kvm_run>.offset(of: \kvm_run.exit_reason)!)
    /// KVM_EXIT_IRQ_WINDOW_OPEN as the 4 little-endian bytes of `exit_reason`.
    public static let irqWindowOpenExitReason: [UInt8] = withUnsafeBytes(
        of: UInt32(KVM_EXIT_IRQ_WINDOW_OPEN).littleEndian
    ) {
        Array($0)
    }
}
