import SVMModel

/// How stop parts are stored (recordings) and read back.

/// A stored value that does not read back as one.
public struct StoredStopError: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

extension Breakpoint: Codable {
    /// One key naming the kind: `{"exit": CODE}`, `{"l2_rip": ADDR}`, `{"watch": "save.cr4"}`, `{"l1_rip": ADDR}`.
    enum CodingKeys: String, CodingKey {
        case exit, watch
        case l2RIP = "l2_rip"
        case l1RIP = "l1_rip"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let code = try c.decodeIfPresent(UInt64.self, forKey: .exit) {
            self = .exit(code)
        } else if let rip = try c.decodeIfPresent(UInt64.self, forKey: .l2RIP) {
            self = .l2RIP(rip)
        } else if let rip = try c.decodeIfPresent(UInt64.self, forKey: .l1RIP) {
            self = .l1RIP(rip)
        } else if let name = try c.decodeIfPresent(String.self, forKey: .watch),
            let field = VMCBLayout.field(named: name)
        {
            self = .watch(field)
        } else {
            throw StoredStopError(description: "not a breakpoint: \(c.allKeys.map(\.stringValue))")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case let .exit(code): try c.encode(code, forKey: .exit)
        case let .l2RIP(rip): try c.encode(rip, forKey: .l2RIP)
        case let .l1RIP(rip): try c.encode(rip, forKey: .l1RIP)
        case let .watch(field): try c.encode(field.name, forKey: .watch)
        }
    }
}

extension RegisterSet {
    /// The pane's registers by name in pane order, hex strings, `null` for a
    /// value not knowable at the stop (registers not in the pane are absent):
    /// the stop JSON's `l1`/`l2` without `source`.
    public var valuesJSON: JSON {
        .object(
            Register.allCases.compactMap { register in
                entry(register).map { (register.name, $0.value.map { JSON.hex($0) } ?? .null) }
            })
    }

    /// The pane packed for storage: 9 bytes a register in `Register` order,
    /// a state (0 not in the pane, 1 unknown, 2 known) and the value big-endian,
    /// so SQL can read it with substr and hex.
    public var packed: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Register.allCases.count * 9)
        for register in Register.allCases {
            switch entry(register) {
            case nil: out += [0, 0, 0, 0, 0, 0, 0, 0, 0]
            case .unknown?: out += [1, 0, 0, 0, 0, 0, 0, 0, 0]
            case let .known(v)?:
                out.append(2)
                for shift in stride(from: 56, through: 0, by: -8) {
                    out.append(UInt8(truncatingIfNeeded: v >> UInt64(shift)))
                }
            }
        }
        return out
    }

    /// Reads `packed` back.
    public init(source: String, packed: [UInt8]) throws {
        guard packed.count == Register.allCases.count * 9 else {
            throw StoredStopError(
                description: "a register set is \(Register.allCases.count * 9) bytes, this is \(packed.count)")
        }
        var values: [Register: RegisterValue] = [:]
        for (i, register) in Register.allCases.enumerated() {
            let at = i * 9
            switch packed[at] {
            case 0: continue
            case 1: values[register] = .unknown
            case 2: values[register] = .known(packed[at + 1...at + 8].reduce(0) { $0 << 8 | UInt64($1) })
            default: throw StoredStopError(description: "\(register.name): state \(packed[at])")
            }
        }
        self.init(source: source, values: values)
    }
}
