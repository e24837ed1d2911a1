import Foundation
import SVMModel

/// How stop parts are stored (recordings) and read back: in the shapes of
/// the stop JSON, so a recording's SQL views read like `--json`.

/// A stored value that does not read back as one.
public struct StoredStopError: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

extension KVMNestedEvent: Codable {
    enum CodingKeys: String, CodingKey {
        case tracepoint, check, name
        case l1RIP = "l1_rip", vmcb12, l2RIP = "l2_rip", intCtl = "int_ctl", eventInj = "event_inj", nestedPaging = "nested_paging"
        case code = "exit_code", info1 = "exit_info_1", info2 = "exit_info_2", intInfo = "exit_int_info",
             intInfoError = "exit_int_info_err"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let tracepoint = try c.decode(String.self, forKey: .tracepoint)
        func exit() throws -> KVMExitFields {
            KVMExitFields(code: try c.decode(UInt64.self, forKey: .code), info1: try c.decode(UInt64.self, forKey: .info1),
                          info2: try c.decode(UInt64.self, forKey: .info2), intInfo: try c.decode(UInt64.self, forKey: .intInfo),
                          intInfoError: try c.decode(UInt64.self, forKey: .intInfoError))
        }
        switch tracepoint {
        case KVMNestedEvent.vmenterName:
            self = .vmenter(l1RIP: try c.decode(UInt64.self, forKey: .l1RIP), vmcb12: try c.decode(UInt64.self, forKey: .vmcb12),
                            l2RIP: try c.decode(UInt64.self, forKey: .l2RIP), intCtl: try c.decode(UInt64.self, forKey: .intCtl),
                            eventInj: try c.decode(UInt64.self, forKey: .eventInj),
                            nestedPaging: try c.decode(Bool.self, forKey: .nestedPaging))
        case KVMNestedEvent.vmexitInjectName: self = .vmexitInject(try exit())
        case KVMNestedEvent.l2ExitName: self = .l2Exit(try exit())
        case KVMNestedEvent.vmenterFailedName: self = .vmenterFailed(check: try c.decode(String.self, forKey: .check))
        default: throw StoredStopError(description: "unknown tracepoint \(tracepoint)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(tracepoint, forKey: .tracepoint)
        switch self {
        case let .vmenter(rip, vmcb, l2RIP, intCtl, eventInj, npt):
            try c.encode(rip, forKey: .l1RIP)
            try c.encode(vmcb, forKey: .vmcb12)
            try c.encode(l2RIP, forKey: .l2RIP)
            try c.encode(intCtl, forKey: .intCtl)
            try c.encode(eventInj, forKey: .eventInj)
            try c.encode(npt, forKey: .nestedPaging)
        case let .vmexitInject(f), let .l2Exit(f):
            try c.encode(f.code, forKey: .code)
            try c.encode(exitName(f.code), forKey: .name)
            try c.encode(f.info1, forKey: .info1)
            try c.encode(f.info2, forKey: .info2)
            try c.encode(f.intInfo, forKey: .intInfo)
            try c.encode(f.intInfoError, forKey: .intInfoError)
        case let .vmenterFailed(check):
            try c.encode(check, forKey: .check)
        }
    }
}

extension Breakpoint: Codable {
    /// One key naming the kind: `{"exit": CODE}`, `{"l2_rip": ADDR}`, `{"watch": "save.cr4"}`, `{"l1_rip": ADDR}`.
    enum CodingKeys: String, CodingKey {
        case exit, watch
        case l2RIP = "l2_rip", l1RIP = "l1_rip"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let code = try c.decodeIfPresent(UInt64.self, forKey: .exit) {
            self = .exit(code)
        } else if let rip = try c.decodeIfPresent(UInt64.self, forKey: .l2RIP) {
            self = .l2RIP(rip)
        } else if let rip = try c.decodeIfPresent(UInt64.self, forKey: .l1RIP) {
            self = .l1RIP(rip)
        } else if let name = try c.decodeIfPresent(String.self, forKey: .watch), let field = VMCBLayout.field(named: name) {
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
        .object(Register.allCases.compactMap { register in
            entry(register).map { (register.name, $0.value.map { JSON.hex($0) } ?? .null) }
        })
    }

    /// Reads `valuesJSON` back.
    public init(source: String, valuesJSON text: String) throws {
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw StoredStopError(description: "registers are not a JSON object")
        }
        var values: [Register: RegisterValue] = [:]
        for (name, stored) in object {
            guard let register = Register(name: name) else { throw StoredStopError(description: "no register \(name)") }
            if stored is NSNull {
                values[register] = .unknown
                continue
            }
            guard let text = stored as? String, text.hasPrefix("0x"), let v = UInt64(text.dropFirst(2), radix: 16) else {
                throw StoredStopError(description: "\(name): \(stored) is not a value")
            }
            values[register] = .known(v)
        }
        self.init(source: source, values: values)
    }
}
