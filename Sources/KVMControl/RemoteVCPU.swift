import CKVM

/// A vCPU of another process (QEMU's): the same typed ioctls as `VCPU`, each
/// handed to `channel`, which must issue it in a thread of the VM's owner
/// (KVM refuses vCPU ioctls from any other mm with EIO) and move the
/// argument's bytes both ways. KVMControl does not know how: the engine
/// injects the system call into the owner's thread.
public final class RemoteVCPU: VCPUIoctls {
    public let id: UInt32
    public let hasSREGS2: Bool
    public let nestedStateMaxSize: Int
    private let channel: (_ request: UInt, _ argument: UnsafeMutableRawPointer?, _ size: Int) throws -> Int32

    /// `kvm` answers the capability questions: the same kernel runs the other process's VM.
    public init(
        id: UInt32, kvm: KVM,
        channel: @escaping (_ request: UInt, _ argument: UnsafeMutableRawPointer?, _ size: Int) throws -> Int32
    ) throws {
        self.id = id
        hasSREGS2 = try kvm.checkExtension(.sregs2) > 0
        nestedStateMaxSize = try kvm.checkExtension(.nestedState)
        self.channel = channel
    }

    public func rawIoctl(_ request: UInt, _ argument: UnsafeMutableRawPointer?, size: Int) throws -> Int32 {
        try channel(request, argument, size)
    }

    /// The request number of KVM_RUN, to recognise a thread stopped inside it.
    public static let runRequest: UInt = CKVM_RUN
}
