extension FieldValue {
    /// Reads what `description` wrote: `0x…` for an integer field, hex bytes
    /// for a byte field (a recording's `synced` rows are stored so).
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

extension FieldChange {
    /// A change read back from where it was stored (a recording's `synced` rows).
    public init(field: VMCBField, before: FieldValue, after: FieldValue, sync: SyncClass, storedNote note: String?) {
        self.init(field: field, before: before, after: after, sync: sync, note: note)
    }
}
