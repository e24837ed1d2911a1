import Foundation

/// A tracepoint's id and field layout as tracefs describes it
/// (`events/SYSTEM/NAME/format`). Offsets differ between kernels, so they
/// are always read at run time, never assumed.
public struct TracepointFormat: Sendable, Equatable {
    public struct Field: Sendable, Equatable {
        public let name: String
        /// The C declaration without the name ("unsigned int", "__data_loc char[]").
        public let type: String
        public let offset: Int
        public let size: Int
        public let isSigned: Bool
        public init(name: String, type: String, offset: Int, size: Int, isSigned: Bool) {
            self.name = name
            self.type = type
            self.offset = offset
            self.size = size
            self.isSigned = isSigned
        }

        /// A `__data_loc` field: a u32 of (length << 16 | offset) pointing into the record.
        public var isDataLocation: Bool { type.hasPrefix("__data_loc") }

        /// This field of a raw record as an integer (1, 2, 4 or 8 bytes,
        /// little-endian; booleans too), sign-extended when signed. Nil when
        /// it is no integer or the record is too short. Resolve the field
        /// once and read many records with it.
        public func integer(in bytes: [UInt8]) -> UInt64? {
            guard !isDataLocation, [1, 2, 4, 8].contains(size), offset + size <= bytes.count else { return nil }
            var value: UInt64 = 0
            for i in 0..<size { value |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
            if isSigned, size < 8, value & (1 << (UInt64(size) * 8 - 1)) != 0 {
                value |= ~UInt64(0) << (UInt64(size) * 8)
            }
            return value
        }

        /// This field as a string: `__data_loc char[]` or a fixed `char[N]`, up to its NUL.
        public func string(in bytes: [UInt8]) -> String? {
            guard offset + size <= bytes.count else { return nil }
            var start = offset
            var length = size
            if isDataLocation {
                guard offset + 4 <= bytes.count else { return nil }
                let loc = (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + $1]) << (8 * UInt32($1)) }
                start = Int(loc & 0xFFFF)
                length = Int(loc >> 16)
            }
            guard start >= 0, length >= 0, start + length <= bytes.count else { return nil }
            return String(decoding: bytes[start..<(start + length)].prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    public let event: String
    public let id: UInt64
    public let fields: [Field]

    public func field(_ name: String) -> Field? { fields.first { $0.name == name } }

    /// Parses a format file's text; `event` names it in errors.
    public static func parse(_ text: String, event: String) throws -> TracepointFormat {
        var id: UInt64?
        var fields: [Field] = []
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("ID:") {
                id = UInt64(line.dropFirst(3).trimmingCharacters(in: .whitespaces))
                continue
            }
            guard line.hasPrefix("field:") else { continue }
            fields.append(try parseField(line, event: event))
        }
        guard let id else { throw TraceError.malformedFormat(event: event, detail: "no ID line") }
        guard !fields.isEmpty else { throw TraceError.malformedFormat(event: event, detail: "no fields") }
        return TracepointFormat(event: event, id: id, fields: fields)
    }

    /// "field:unsigned int exit_code;\toffset:8;\tsize:4;\tsigned:0;"
    private static func parseField(_ line: String, event: String) throws -> Field {
        var declaration: String?
        var numbers: [String: Int] = [:]
        for part in line.split(separator: ";") {
            let item = part.trimmingCharacters(in: .whitespaces)
            guard let colon = item.firstIndex(of: ":") else { continue }
            let key = String(item[..<colon])
            let value = String(item[item.index(after: colon)...])
            if key == "field" { declaration = value } else { numbers[key] = Int(value) }
        }
        guard let declaration, let offset = numbers["offset"], let size = numbers["size"] else {
            throw TraceError.malformedFormat(event: event, detail: "cannot read \"\(line)\"")
        }
        // The name is the declaration's last word, without an array suffix.
        var words = declaration.split(separator: " ").map(String.init)
        guard var name = words.popLast() else {
            throw TraceError.malformedFormat(event: event, detail: "empty field in \"\(line)\"")
        }
        var type = words.joined(separator: " ")
        if let bracket = name.firstIndex(of: "[") {
            type += String(name[bracket...])
            name = String(name[..<bracket])
        }
        return Field(name: name, type: type, offset: offset, size: size, isSigned: numbers["signed"] == 1)
    }
}

/// One sample's raw tracepoint data, read through its format.
public struct TraceRecord: Sendable {
    public let format: TracepointFormat
    public let bytes: [UInt8]

    public init(format: TracepointFormat, bytes: [UInt8]) {
        self.format = format
        self.bytes = bytes
    }

    /// An integer field (1, 2, 4 or 8 bytes, little-endian; booleans too),
    /// sign-extended when the format says signed. Nil when the field is
    /// absent or the record too short.
    public func integer(_ name: String) -> UInt64? { format.field(name)?.integer(in: bytes) }

    /// A string field: `__data_loc char[]` or a fixed `char[N]`, up to its NUL.
    public func string(_ name: String) -> String? { format.field(name)?.string(in: bytes) }

    /// The tracepoint id every record starts with (`common_type`).
    public static func commonType(of bytes: [UInt8]) -> UInt64? {
        guard bytes.count >= 2 else { return nil }
        return UInt64(bytes[0]) | UInt64(bytes[1]) << 8
    }
}
