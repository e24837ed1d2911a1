/// A JSON value with ordered objects: nestdbg's one JSON schema (README,
/// "JSON") is built from these, for `vmcb` commands now and stops and
/// recordings later. Field values are hex strings, counters integers.
public enum JSON: Equatable, Sendable {
    case string(String)
    /// A field value, written as the hex string "0x1f" (kept as a number until written: most of a stop's values).
    case hex(UInt64)
    case int(Int)
    case bool(Bool)
    case null
    case array([JSON])
    case object([(String, JSON)])

    public static func == (a: JSON, b: JSON) -> Bool { a.serialized() == b.serialized() }

    /// Compact, one line (for JSON Lines output).
    public func serialized() -> String { String(decoding: serializedBytes(), as: UTF8.self) }

    /// The same as UTF-8 bytes, ready to write out.
    public func serializedBytes() -> [UInt8] {
        var out = JSONOutput(capacity: 8192)
        write(into: &out)
        return out.bytes()
    }

    private func write(into out: inout JSONOutput) {
        switch self {
        case let .string(s): JSON.quote(s, into: &out)
        case let .hex(v):
            out.append("\"0x")
            var shift = UInt64(max(1, (64 - v.leadingZeroBitCount + 3) / 4) * 4)
            while shift > 0 {
                shift -= 4
                let nibble = UInt8(truncatingIfNeeded: v >> shift) & 0xF
                out.append(nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10)
            }
            out.append(UInt8(ascii: "\""))
        case let .int(i): JSON.raw(String(i), into: &out)
        case let .bool(b): out.append(b ? "true" : "false")
        case .null: out.append("null")
        case let .array(a):
            out.append(UInt8(ascii: "["))
            for (i, v) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                v.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case let .object(o):
            out.append(UInt8(ascii: "{"))
            for (i, (k, v)) in o.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSON.quote(k, into: &out)
                out.append(UInt8(ascii: ":"))
                v.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static func raw(_ s: String, into out: inout JSONOutput) {
        var text = s
        text.withUTF8 { out.append($0) }
    }

    private static func quote(_ s: String, into out: inout JSONOutput) {
        out.append(UInt8(ascii: "\""))
        var text = s
        text.withUTF8 { bytes in
            // Most strings (names, hex values) need no escaping: copy them whole.
            if !bytes.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
                out.append(bytes)
            } else {
                escape(bytes, into: &out)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    private static func escape(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout JSONOutput) {
        let digits: StaticString = "0123456789abcdef"
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""): out.append("\\\"")
            case UInt8(ascii: "\\"): out.append("\\\\")
            case UInt8(ascii: "\n"): out.append("\\n")
            case UInt8(ascii: "\t"): out.append("\\t")
            case UInt8(ascii: "\r"): out.append("\\r")
            case 0..<0x20:
                // \u00XX; multi-byte UTF-8 (>= 0x80) passes through as it is.
                out.append("\\u00")
                out.append(digits.utf8Start[Int(byte >> 4)])
                out.append(digits.utf8Start[Int(byte & 0xF)])
            default: out.append(byte)
            }
        }
    }
}

/// The serializer's output: a growing byte buffer, appended to without the
/// uniqueness and bounds checks of an array append (a stop's line is some
/// thousand appends, at every stop of `--json`).
private struct JSONOutput: ~Copyable {
    private var base: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private var count = 0

    init(capacity: Int) {
        base = .allocate(capacity: capacity)
        self.capacity = capacity
    }

    deinit { base.deallocate() }

    private mutating func reserve(_ n: Int) {
        guard count + n > capacity else { return }
        let grown = max(capacity * 2, count + n)
        let larger = UnsafeMutablePointer<UInt8>.allocate(capacity: grown)
        larger.initialize(from: base, count: count)
        base.deallocate()
        base = larger
        capacity = grown
    }

    mutating func append(_ byte: UInt8) {
        reserve(1)
        base[count] = byte
        count += 1
    }

    mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let start = bytes.baseAddress, !bytes.isEmpty else { return }
        reserve(bytes.count)
        (base + count).initialize(from: start, count: bytes.count)
        count += bytes.count
    }

    mutating func append(_ text: StaticString) {
        append(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    func bytes() -> [UInt8] { Array(UnsafeBufferPointer(start: base, count: count)) }
}

extension FieldValue {
    public var json: JSON {
        switch self {
        case let .integer(v): return .hex(v)
        case .bytes: return .string(description)
        }
    }
}

extension VMCB {
    static let controlFields = VMCBLayout.fields.filter { $0.area == .control }
    static let saveFields = VMCBLayout.fields.filter { $0.area == .save }

    /// `{"control": {"exit_code": "0x7b", ...}, "save": {"cs.attrib": "0x29b", ...}}`.
    /// Reserved fields appear only when non-zero; with `onlyNonZero`, zero fields are left out.
    public func json(onlyNonZero: Bool = false) -> JSON {
        func area(_ a: VMCBArea) -> JSON {
            .object(
                (a == .control ? VMCB.controlFields : VMCB.saveFields).compactMap { f in
                    let v = self[f]
                    if (f.isReserved || onlyNonZero) && v.isZero { return nil }
                    return (f.shortName, v.json)
                })
        }
        return .object([("control", area(.control)), ("save", area(.save))])
    }
}

extension DecodedExit {
    public var json: JSON {
        .object([
            ("code", .hex(code)), ("name", .string(name)), ("summary", .string(summary)),
            ("details", .object(details.map { ($0.label, .string($0.value)) })),
        ])
    }
}

extension FieldChange {
    public var json: JSON {
        var o: [(String, JSON)] = [
            ("field", .string(field.name)), ("before", before.json), ("after", after.json),
            ("class", .string(sync.rawValue)),
        ]
        if let note { o.append(("note", .string(note))) }
        return .object(o)
    }
}

extension FieldWrite {
    /// Every field KVM wrote at one #VMEXIT, compactly: `{"changed": [FIELD…],
    /// "rewritten": {FIELD: VALUE…}}`. A changed field's before, after, class
    /// and note are its sync-diff entry ("synced"); a rewritten one's value is
    /// the same before and after, and its class is the rules table's.
    public static func json(_ writes: [FieldWrite]) -> JSON {
        var changed: [JSON] = []
        var rewritten: [(String, JSON)] = []
        for write in writes {
            switch write.outcome {
            case .changed: changed.append(.string(write.field.name))
            case .rewritten: rewritten.append((write.field.name, write.after.json))
            }
        }
        return .object([("changed", .array(changed)), ("rewritten", .object(rewritten))])
    }
}

extension ExitCause {
    /// `{"kind", "control": TEXT | null, "detail", "alarm": BOOL}`.
    public var json: JSON {
        .object([
            ("kind", .string(kind)), ("control", control.map(JSON.string) ?? .null),
            ("detail", .string(description)), ("alarm", .bool(isAlarming)),
        ])
    }
}

extension Violation {
    public var json: JSON {
        .object([
            ("rule", .string(rule)), ("field", .string(field)), ("message", .string(message)),
            ("enforced_by", .string(enforcedBy)),
        ])
    }
}

extension SVMNestedState {
    public var json: JSON {
        var o: [(String, JSON)] = [
            ("flags", .hex(UInt64(flags.rawValue))), ("flag_names", .string(flags.description)),
            ("format", .int(Int(SVMNestedState.formatSVM))), ("size", .int(bytes.count)), ("vmcb_pa", .hex(vmcbPA)),
        ]
        if let data {
            let halves = data.json()
            if case let .object(parts) = halves {
                o.append(("control", parts[0].1))
                o.append(("save", parts[1].1))
            }
        }
        return .object(o)
    }
}
