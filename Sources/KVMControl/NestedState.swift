/// `KVM_GET_NESTED_STATE`'s answer: the raw blob (header + data, exactly
/// `header.size` bytes). KVMControl reads only what the ioctls need (the
/// format and size); the SVM model decodes flags and data.
public struct NestedState: Equatable, Sendable {
    public static let headerSize = 128

    public var bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }

    private func load<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
        guard bytes.count >= offset + MemoryLayout<T>.size else { return 0 }
        return (0..<MemoryLayout<T>.size).reversed().reduce(T.zero) { ($0 << 8) | T(bytes[offset + $1]) }
    }

    /// `kvm_nested_state.flags`, undecoded (bit 0 is KVM_STATE_NESTED_GUEST_MODE).
    public var rawFlags: UInt16 { load(0, UInt16.self) }
    /// `kvm_nested_state.format`: 0 VMX, 1 SVM.
    public var format: UInt16 { load(2, UInt16.self) }
    /// `kvm_nested_state.size`: header plus data.
    public var size: UInt32 { load(4, UInt32.self) }
}
