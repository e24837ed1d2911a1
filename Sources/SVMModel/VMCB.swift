/// The value of one VMCB field: an integer, or the bytes of a wider field.
public enum FieldValue: Equatable, Hashable, Sendable, CustomStringConvertible {
    case integer(UInt64)
    case bytes([UInt8])

    public var integer: UInt64? { if case let .integer(v) = self { return v } else { return nil } }
    public var isZero: Bool {
        switch self {
        case let .integer(v): return v == 0
        case let .bytes(b): return b.allSatisfy { $0 == 0 }
        }
    }
    /// `0x1000` for integers, memory-order hex pairs for byte runs (`0f01d8`).
    public var description: String {
        switch self {
        case let .integer(v): return hex(v)
        case let .bytes(b): return b.map { byteHex($0) }.joined()
        }
    }
}

/// Why bytes could not be read as a VMCB.
public enum VMCBError: Error, Equatable, CustomStringConvertible {
    case wrongSize(Int)
    public var description: String {
        switch self {
        case let .wrongSize(n): return "a VMCB is \(VMCBLayout.size) bytes, this is \(n)"
        }
    }
}

/// A 4 KiB VMCB page as a value. Field access goes through `VMCBLayout`.
public struct VMCB: Equatable, Hashable, Sendable {
    /// The page, exactly 4096 bytes.
    public private(set) var bytes: [UInt8]

    /// An all-zero VMCB.
    public init() { bytes = [UInt8](repeating: 0, count: VMCBLayout.size) }

    /// Reads a page; anything but 4096 bytes is an error.
    public init<C: Collection>(bytes: C) throws where C.Element == UInt8 {
        guard bytes.count == VMCBLayout.size else { throw VMCBError.wrongSize(bytes.count) }
        self.bytes = Array(bytes)
    }

    /// Encodes field values into a page (fields not given are zero).
    public init(values: [VMCBField: FieldValue]) {
        self.init()
        for (field, value) in values { self[field] = value }
    }

    /// Every field of the layout with its value.
    public var values: [VMCBField: FieldValue] {
        Dictionary(uniqueKeysWithValues: VMCBLayout.fields.map { ($0, self[$0]) })
    }

    public subscript(field: VMCBField) -> FieldValue {
        get {
            if field.isInteger { return .integer(integer(at: field.offset, width: field.width)) }
            return .bytes(Array(bytes[field.range]))
        }
        set {
            switch newValue {
            case let .integer(v):
                for i in 0..<min(field.width, 8) {
                    bytes[field.offset + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))
                }
            case let .bytes(b):
                for i in 0..<field.width { bytes[field.offset + i] = i < b.count ? b[i] : 0 }
            }
        }
    }

    /// The integer value of a field (`vmcb[integer: .exitInfo1]`); 0 for byte runs
    /// and reserved fields. Setting stores the value little-endian in the field's
    /// first `min(width, 8)` bytes.
    public subscript(integer field: VMCBField) -> UInt64 {
        get { field.isInteger ? integer(at: field.offset, width: field.width) : 0 }
        set { self[field] = .integer(newValue) }
    }

    private func integer(at offset: Int, width: Int) -> UInt64 {
        bytes.withUnsafeBytes { raw in
            switch width {
            case 1: return UInt64(raw[offset])
            case 2: return UInt64(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
            case 4: return UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            default: return UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            }
        }
    }

    /// EXITCODE, the 64-bit `control.exit_code`.
    public var exitCode: UInt64 { self[integer: .exitCode] }
}

/// "0x1f": lowercase, no leading zeros. Written in one piece (it runs for
/// every value of every stop's JSON and panes).
func hex(_ v: UInt64) -> String {
    let digits = max(1, (64 - v.leadingZeroBitCount + 3) / 4)
    return String(unsafeUninitializedCapacity: digits + 2) { buffer in
        buffer[0] = UInt8(ascii: "0")
        buffer[1] = UInt8(ascii: "x")
        for i in 0..<digits {
            let nibble = UInt8(truncatingIfNeeded: v >> (4 * UInt64(digits - 1 - i))) & 0xF
            buffer[2 + i] = nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
        }
        return digits + 2
    }
}
func byteHex(_ b: UInt8) -> String { b < 16 ? "0" + String(b, radix: 16) : String(b, radix: 16) }
