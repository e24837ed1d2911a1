/// A JSON value with ordered objects: nestdbg's one JSON schema (README,
/// "JSON") is built from these, for `vmcb` commands now and stops and
/// recordings later. Field values are hex strings, counters integers.
public indirect enum JSON: Equatable, Sendable {
    case string(String)
    case int(Int)
    case bool(Bool)
    case null
    case array([JSON])
    case object([(String, JSON)])

    public static func == (a: JSON, b: JSON) -> Bool { a.serialized() == b.serialized() }

    public static func hex(_ v: UInt64) -> JSON { .string(SVMModel.hex(v)) }

    /// Compact, one line (for JSON Lines output).
    public func serialized() -> String {
        var out = ""
        write(into: &out)
        return out
    }

    private func write(into out: inout String) {
        switch self {
        case let .string(s): JSON.quote(s, into: &out)
        case let .int(i): out += String(i)
        case let .bool(b): out += b ? "true" : "false"
        case .null: out += "null"
        case let .array(a):
            out += "["
            for (i, v) in a.enumerated() { if i > 0 { out += "," }; v.write(into: &out) }
            out += "]"
        case let .object(o):
            out += "{"
            for (i, (k, v)) in o.enumerated() {
                if i > 0 { out += "," }
                JSON.quote(k, into: &out)
                out += ":"
                v.write(into: &out)
            }
            out += "}"
        }
    }

    private static func quote(_ s: String, into out: inout String) {
        out += "\""
        // Most strings (names, hex values) need no escaping: append them whole.
        if s.utf8.allSatisfy({ $0 >= 0x20 && $0 != 0x22 && $0 != 0x5C }) {
            out += s
            out += "\""
            return
        }
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case _ where u.value < 0x20: out += "\\u" + String(repeating: "0", count: 4 - String(u.value, radix: 16).count) + String(u.value, radix: 16)
            default: out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }
}

extension FieldValue {
    public var json: JSON { .string(description) }
}

extension VMCB {
    /// `{"control": {"exit_code": "0x7b", ...}, "save": {"cs.attrib": "0x29b", ...}}`.
    /// Reserved fields appear only when non-zero; with `onlyNonZero`, zero fields are left out.
    public func json(onlyNonZero: Bool = false) -> JSON {
        func area(_ a: VMCBArea) -> JSON {
            .object(VMCBLayout.fields.filter { $0.area == a }.compactMap { f in
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
        .object([("code", .hex(code)), ("name", .string(name)), ("summary", .string(summary)),
                 ("details", .object(details.map { ($0.label, .string($0.value)) }))])
    }
}

extension FieldChange {
    public var json: JSON {
        var o: [(String, JSON)] = [("field", .string(field.name)), ("before", before.json), ("after", after.json),
                                   ("class", .string(sync.rawValue))]
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
        .object([("kind", .string(kind)), ("control", control.map(JSON.string) ?? .null),
                 ("detail", .string(description)), ("alarm", .bool(isAlarming))])
    }
}

extension Violation {
    public var json: JSON {
        .object([("rule", .string(rule)), ("field", .string(field)), ("message", .string(message)),
                 ("enforced_by", .string(enforcedBy))])
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
