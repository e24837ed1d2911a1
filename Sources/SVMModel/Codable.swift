/// Values stored and read back (recordings) in the shapes the JSON output
/// already has, so a recording's SQL views read like `--json`.

extension FieldValue {
    /// Reads what `description` wrote: `0x…` for an integer field, hex bytes for a byte field.
    public init?(shown text: String) {
        if text.hasPrefix("0x") {
            guard let v = UInt64(text.dropFirst(2), radix: 16) else { return nil }
            self = .integer(v)
            return
        }
        guard text.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        var i = text.startIndex
        while i < text.endIndex {
            let next = text.index(i, offsetBy: 2)
            guard let b = UInt8(text[i..<next], radix: 16) else { return nil }
            bytes.append(b)
            i = next
        }
        self = .bytes(bytes)
    }
}

/// Why a stored value cannot be read back.
struct StoredValueError: Error, CustomStringConvertible {
    let description: String
}

extension FieldChange: Codable {
    enum CodingKeys: String, CodingKey {
        case field, before, after, note
        case sync = "class"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let name = try c.decode(String.self, forKey: .field)
        guard let field = VMCBLayout.field(named: name) else { throw StoredValueError(description: "no VMCB field \(name)") }
        let before = try c.decode(String.self, forKey: .before)
        let after = try c.decode(String.self, forKey: .after)
        guard let b = FieldValue(shown: before), let a = FieldValue(shown: after) else {
            throw StoredValueError(description: "\(name): \(before) -> \(after) are not field values")
        }
        let sync = try c.decode(String.self, forKey: .sync)
        guard let syncClass = SyncClass(rawValue: sync) else { throw StoredValueError(description: "no sync class \(sync)") }
        self.init(field: field, before: b, after: a, sync: syncClass, note: try c.decodeIfPresent(String.self, forKey: .note))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(field.name, forKey: .field)
        try c.encode(before.description, forKey: .before)
        try c.encode(after.description, forKey: .after)
        try c.encode(sync.rawValue, forKey: .sync)
        try c.encodeIfPresent(note, forKey: .note)
    }
}
