/// Why bytes could not be read as an SVM nested-state blob.
public enum NestedStateError: Error, Equatable, CustomStringConvertible {
    case tooShort(Int)
    case notSVM(format: UInt16)
    case sizeMismatch(header: UInt32, actual: Int)
    case missingData(flags: String)

    public var description: String {
        switch self {
        case let .tooShort(n): return "a nested-state blob has a 128-byte header; this is \(n) bytes"
        case let .notSVM(format):
            return "nested-state format \(format) is not SVM (1)\(format == 0 ? "; 0 is VMX" : "")"
        case let .sizeMismatch(h, a): return "the header says \(h) bytes, the blob has \(a)"
        case let .missingData(flags): return "flags \(flags) say GUEST_MODE but the blob has no 4096-byte VMCB data"
        }
    }
}

/// Flags of `struct kvm_nested_state` (KVM_STATE_NESTED_*).
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

/// `struct kvm_nested_state` in SVM format, decoded: the header, and (in guest
/// mode) the data page whose control half is KVM's cache of L1's vmcb12
/// controls and whose save half is L1's own state parked in vmcb01 (reference §5.1).
public struct SVMNestedState: Equatable, Sendable {
    public static let dataSize = 4096
    public static let headerSize = 128
    public static let formatSVM: UInt16 = 1
    /// The blob exactly as KVM returned it (round-trips through KVM_SET_NESTED_STATE).
    public let bytes: [UInt8]
    public let flags: NestedStateFlags
    /// The vmcb12 GPA (valid in guest mode).
    public let vmcbPA: UInt64
    /// The data page, laid out as a VMCB; nil outside guest mode.
    public let data: VMCB?

    public init(bytes: [UInt8]) throws {
        func load(_ offset: Int, _ count: Int) -> UInt64 {
            (0..<count).reversed().reduce(UInt64(0)) { ($0 << 8) | UInt64(bytes[offset + $1]) }
        }
        guard bytes.count >= SVMNestedState.headerSize else { throw NestedStateError.tooShort(bytes.count) }
        let format = UInt16(load(2, 2))
        let size = UInt32(load(4, 4))
        flags = NestedStateFlags(rawValue: UInt16(load(0, 2)))
        vmcbPA = load(8, 8)
        guard format == SVMNestedState.formatSVM else { throw NestedStateError.notSVM(format: format) }
        guard Int(size) == bytes.count else { throw NestedStateError.sizeMismatch(header: size, actual: bytes.count) }
        if bytes.count == SVMNestedState.headerSize + SVMNestedState.dataSize {
            data = try VMCB(bytes: bytes.dropFirst(SVMNestedState.headerSize))
        } else if bytes.count == SVMNestedState.headerSize {
            if flags.contains(.guestMode) { throw NestedStateError.missingData(flags: flags.description) }
            data = nil
        } else {
            throw NestedStateError.sizeMismatch(header: size, actual: bytes.count)
        }
        self.bytes = bytes
    }

    /// The data fields that belong to each half, for panes and JSON:
    /// control = cached vmcb12 controls, save = L1's state.
    public static let controlMeaning = "KVM's cache of L1's vmcb12 controls (exit fields are stale)"
    public static let saveMeaning = "L1's state parked in vmcb01 at VMRUN"

    /// Builds a blob (for tests and for editing state before KVM_SET_NESTED_STATE).
    public static func make(flags: NestedStateFlags, vmcbPA: UInt64, data: VMCB?) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: headerSize)
        func put(_ v: UInt64, _ off: Int, _ n: Int) {
            for i in 0..<n { b[off + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
        }
        let size = headerSize + (data == nil ? 0 : dataSize)
        put(UInt64(flags.rawValue), 0, 2)
        put(UInt64(formatSVM), 2, 2)
        put(UInt64(size), 4, 4)
        put(vmcbPA, 8, 8)
        if let data { b += data.bytes }
        return b
    }
}

/// One field in which two nested-state blobs differ, with what it holds.
public struct NestedStateDifference: Equatable, Sendable {
    /// "flags", "vmcb_pa", "size", or a data field ("control.int_ctl", "save.rip").
    public let field: String
    public let first: String
    public let second: String
    /// What the field is to KVM: the header's, the cached controls', or L1's parked state's.
    public let meaning: String
}

extension VMCB {
    /// The fields whose values differ from `other`'s, in layout order
    /// (reserved ones too: KVM should leave them alone).
    public func differingFields(from other: VMCB) -> [VMCBField] {
        VMCBLayout.fields.filter { self[$0] != other[$0] }
    }

    /// A field's value as panes show it: the number (or bytes) and its meaning.
    public func shown(_ field: VMCBField) -> String {
        let value = self[field]
        let meaning = field.meaning(of: value, in: self)
        return meaning.isEmpty ? value.description : "\(value) (\(meaning))"
    }
}

extension SVMNestedState {
    /// Field by field against `other`: the header, then (when either is in
    /// guest mode) every data field by the VMCB layout, with what that half means.
    public func differences(from other: SVMNestedState) -> [NestedStateDifference] {
        var out: [NestedStateDifference] = []
        if flags != other.flags {
            out.append(
                NestedStateDifference(
                    field: "flags", first: "0x\(String(flags.rawValue, radix: 16)) (\(flags))",
                    second: "0x\(String(other.flags.rawValue, radix: 16)) (\(other.flags))",
                    meaning: "KVM_STATE_NESTED_*: guest mode, VMRUN pending, GIF"))
        }
        if vmcbPA != other.vmcbPA {
            out.append(
                NestedStateDifference(
                    field: "vmcb_pa", first: "0x\(String(vmcbPA, radix: 16))",
                    second: "0x\(String(other.vmcbPA, radix: 16))", meaning: "vmcb12's address in L1"))
        }
        if bytes.count != other.bytes.count {
            out.append(
                NestedStateDifference(
                    field: "size", first: "\(bytes.count)", second: "\(other.bytes.count)",
                    meaning: "header + data (4096 bytes in guest mode)"))
        }
        switch (data, other.data) {
        case let (a?, b?):
            for field in a.differingFields(from: b) {
                let half = field.area == .control ? SVMNestedState.controlMeaning : SVMNestedState.saveMeaning
                out.append(
                    NestedStateDifference(
                        field: field.name, first: a.shown(field), second: b.shown(field),
                        meaning: "\(field.summary); \(half)"))
            }
        case (nil, nil):
            break
        case (let a, _):
            out.append(
                NestedStateDifference(
                    field: "data", first: a == nil ? "none" : "4096 bytes",
                    second: a == nil ? "4096 bytes" : "none",
                    meaning: "the VMCB page KVM keeps only in guest mode"))
        }
        return out
    }
}
