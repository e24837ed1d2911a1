import KVMControl
import SVMModel

/// What a target lets the engine and the UI do beyond reading state.
public struct TargetCapabilities: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// nestdbg created the VM: it is the VMM, handles its I/O, and the VM ends with it.
    public static let ownsVM = TargetCapabilities(rawValue: 1 << 0)
    /// Guest memory and registers can be written.
    public static let canWrite = TargetCapabilities(rawValue: 1 << 1)
    /// The vCPU can execute one instruction at a time (KVM_SET_GUEST_DEBUG).
    public static let canSingleStep = TargetCapabilities(rawValue: 1 << 2)
    /// The target is a recording: nothing runs, stops are replayed.
    public static let isRecording = TargetCapabilities(rawValue: 1 << 3)
}

/// Why a target refused a request.
public enum TargetError: Error, Equatable, CustomStringConvertible {
    case noNestedSVM(String)
    case notSupported(operation: String, target: String)
    /// A vCPU ioctl from a thread that does not own the vCPU.
    case wrongThread(operation: String, owner: Int32, caller: Int32)

    public var description: String {
        switch self {
        case let .noNestedSVM(why): return "this KVM cannot run an L1 hypervisor: \(why) (use scripts/sandbox)"
        case let .notSupported(operation, target): return "\(operation) is not possible on \(target)"
        case let .wrongThread(operation, owner, caller):
            return
                "\(operation) from thread \(caller): the vCPU belongs to thread \(owner) (send the engine a command instead)"
        }
    }
}

/// What the engine may read and do on a vCPU, whoever runs it: nestdbg's own
/// VM, another process's vCPU, a recording. Stop sources run it; the stop
/// assembler reads it; nothing else touches KVM.
public protocol DebugTarget: AnyObject {
    /// For the banner: "demo", "image l1.elf".
    var name: String { get }
    var capabilities: TargetCapabilities { get }
    /// Symbols for display and tests (name → L1 address).
    var symbols: [String: UInt64] { get }

    func generalRegisters() throws -> GeneralRegisters
    func setGeneralRegisters(_ registers: GeneralRegisters) throws
    /// Special registers, with PDPTRs where KVM reports them (SREGS2).
    func specialRegisters() throws -> SpecialRegisters
    func debugRegisters() throws -> DebugRegisters
    func msrs(_ indices: [UInt32]) throws -> [UInt64]
    /// KVM_GET_NESTED_STATE decoded; nil on a KVM without nested state.
    func nestedState() throws -> SVMNestedState?
    /// Whether the vCPU runs L2, as cheaply as the target can tell.
    func isInGuestMode() throws -> Bool
    func readPhysical(_ address: UInt64, count: Int) throws -> [UInt8]
    func writePhysical(_ bytes: [UInt8], at address: UInt64) throws
    /// L1-linear to guest-physical through the vCPU's current paging (nil: not mapped).
    func translate(_ linear: UInt64) throws -> UInt64?
}

extension DebugTarget {
    func readVMCB(at address: UInt64) throws -> VMCB {
        try VMCB(bytes: readPhysical(address, count: VMCBLayout.size))
    }
}
