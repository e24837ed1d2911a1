/// Flags of `struct kvm_nested_state`.
public struct NestedStateFlags: OptionSet, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let guestMode = NestedStateFlags(rawValue: 0x1)
    public static let runPending = NestedStateFlags(rawValue: 0x2)
    public static let evmcs = NestedStateFlags(rawValue: 0x4)
    public static let mtfPending = NestedStateFlags(rawValue: 0x8)
    public static let gifSet = NestedStateFlags(rawValue: 0x100)

    static let names: [(NestedStateFlags, String)] = [
        (.guestMode, "GUEST_MODE"), (.runPending, "RUN_PENDING"), (.evmcs, "EVMCS"),
        (.mtfPending, "MTF_PENDING"), (.gifSet, "GIF_SET"),
    ]
    public var description: String {
        let known = NestedStateFlags.names.filter { contains($0.0) }.map(\.1)
        let rest = rawValue & ~NestedStateFlags.names.reduce(0) { $0 | $1.0.rawValue }
        return (known + (rest != 0 ? ["0x\(String(rest, radix: 16))"] : [])).joined(separator: "|")
    }
}

/// `KVM_GET_NESTED_STATE`'s answer: the raw blob (header + data, exactly
/// `header.size` bytes) and its parsed header. The SVM model decodes the data.
public struct NestedState: Equatable, Sendable {
    public static let headerSize = 128
    public static let formatVMX: UInt16 = 0
    public static let formatSVM: UInt16 = 1

    public var bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }

    private func load<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
        guard bytes.count >= offset + MemoryLayout<T>.size else { return 0 }
        return (0..<MemoryLayout<T>.size).reversed().reduce(T.zero) { ($0 << 8) | T(bytes[offset + $1]) }
    }

    public var flags: NestedStateFlags { NestedStateFlags(rawValue: load(0, UInt16.self)) }
    public var format: UInt16 { load(2, UInt16.self) }
    public var size: UInt32 { load(4, UInt32.self) }
    /// SVM: the vmcb12 GPA (valid in guest mode).
    public var vmcbPA: UInt64 { load(8, UInt64.self) }
    /// The data after the 128-byte header (SVM: a 4096-byte VMCB image).
    public var data: ArraySlice<UInt8> { bytes.dropFirst(NestedState.headerSize) }
}
