import KVMControl

/// Why bytes could not be read as an SVM nested-state blob.
public enum NestedStateError: Error, Equatable, CustomStringConvertible {
    case tooShort(Int)
    case notSVM(format: UInt16)
    case sizeMismatch(header: UInt32, actual: Int)
    case missingData(flags: String)

    public var description: String {
        switch self {
        case let .tooShort(n): return "a nested-state blob has a 128-byte header; this is \(n) bytes"
        case let .notSVM(format): return "nested-state format \(format) is not SVM (1)\(format == 0 ? "; 0 is VMX" : "")"
        case let .sizeMismatch(h, a): return "the header says \(h) bytes, the blob has \(a)"
        case let .missingData(flags): return "flags \(flags) say GUEST_MODE but the blob has no 4096-byte VMCB data"
        }
    }
}

/// `struct kvm_nested_state` in SVM format, decoded: the header, and (in guest
/// mode) the data page whose control half is KVM's cache of L1's vmcb12
/// controls and whose save half is L1's own state parked in vmcb01 (reference §5.1).
public struct SVMNestedState: Equatable, Sendable {
    public static let dataSize = 4096
    public let raw: NestedState
    /// The data page, laid out as a VMCB; nil outside guest mode.
    public let data: VMCB?

    public init(_ raw: NestedState) throws {
        let bytes = raw.bytes
        guard bytes.count >= NestedState.headerSize else { throw NestedStateError.tooShort(bytes.count) }
        guard raw.format == NestedState.formatSVM else { throw NestedStateError.notSVM(format: raw.format) }
        guard Int(raw.size) == bytes.count else { throw NestedStateError.sizeMismatch(header: raw.size, actual: bytes.count) }
        if bytes.count == NestedState.headerSize + SVMNestedState.dataSize {
            data = try VMCB(bytes: raw.data)
        } else if bytes.count == NestedState.headerSize {
            if raw.flags.contains(.guestMode) { throw NestedStateError.missingData(flags: raw.flags.description) }
            data = nil
        } else {
            throw NestedStateError.sizeMismatch(header: raw.size, actual: bytes.count)
        }
        self.raw = raw
    }

    public init(bytes: [UInt8]) throws { try self.init(NestedState(bytes: bytes)) }

    public var flags: NestedStateFlags { raw.flags }
    public var vmcbPA: UInt64 { raw.vmcbPA }
    /// The bytes, exactly as KVM returned them (round-trips).
    public var bytes: [UInt8] { raw.bytes }

    /// The data fields that belong to each half, for panes and JSON:
    /// control = cached vmcb12 controls, save = L1's state.
    public static let controlMeaning = "KVM's cache of L1's vmcb12 controls (exit fields are stale)"
    public static let saveMeaning = "L1's state parked in vmcb01 at VMRUN"

    /// Builds a blob (for tests and for editing state before KVM_SET_NESTED_STATE).
    public static func make(flags: NestedStateFlags, vmcbPA: UInt64, data: VMCB?) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: NestedState.headerSize)
        func put(_ v: UInt64, _ off: Int, _ n: Int) { for i in 0..<n { b[off + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) } }
        let size = NestedState.headerSize + (data == nil ? 0 : dataSize)
        put(UInt64(flags.rawValue), 0, 2)
        put(UInt64(NestedState.formatSVM), 2, 2)
        put(UInt64(size), 4, 4)
        put(vmcbPA, 8, 8)
        if let data { b += data.bytes }
        return b
    }
}
