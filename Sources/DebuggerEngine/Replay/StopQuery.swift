import SVMModel

/// What `/` looks for in a recording, and what reverse-continue stops at
/// (a breakpoint): `exit NPF`, `save.cr4 changed`, `l2-rip 0x401000`,
/// `l1-rip ADDR`, `kind vmrun`, or any other text, found in the stop's reason.
public enum StopQuery: Equatable, Sendable, CustomStringConvertible {
    case breakpoint(Breakpoint)
    case kind(StopKind)
    case text(String)

    public init(_ text: String) {
        let words = text.split(separator: " ").map(String.init)
        let address = words.count == 2 ? UInt64(words[1].replacingOccurrences(of: "0x", with: ""), radix: 16) : nil
        switch (words.first, words.count) {
        case ("exit", 2) where SVMExit.code(named: words[1]) != nil:
            self = .breakpoint(.exit(SVMExit.code(named: words[1])!))
        case ("l2-rip", 2) where address != nil: self = .breakpoint(.l2RIP(address!))
        case ("l1-rip", 2) where address != nil: self = .breakpoint(.l1RIP(address!))
        case ("kind", 2) where StopKind(rawValue: words[1]) != nil: self = .kind(StopKind(rawValue: words[1])!)
        case (let name?, 2) where words[1] == "changed" && VMCBLayout.field(named: name) != nil:
            self = .breakpoint(.watch(VMCBLayout.field(named: name)!))
        default: self = .text(text)
        }
    }

    public var description: String {
        switch self {
        case let .breakpoint(.watch(field)): return "\(field.name) changed"
        case let .breakpoint(b): return b.description
        case let .kind(kind): return "kind \(kind.rawValue)"
        case let .text(text): return "\"\(text)\""
        }
    }

    /// Whether `stop` matches; `previousVMCB` is vmcb12 at the last stop before it that had one (for watches).
    public func matches(_ stop: Stop, previousVMCB: VMCB?) -> Bool {
        switch self {
        case let .breakpoint(b): return b.matches(stop, previousVMCB: previousVMCB)
        case let .kind(kind): return stop.kind == kind
        case let .text(text): return stop.reason.lowercased().contains(text.lowercased())
        }
    }
}

extension Breakpoint {
    /// The breakpoint over a recorded stop: a watch compares with vmcb12 at the previous stop that had one.
    public func matches(_ stop: Stop, previousVMCB: VMCB?) -> Bool {
        var baselines: [VMCBField: FieldValue] = [:]
        if case let .watch(field) = self, let previousVMCB { baselines[field] = previousVMCB[field] }
        return matches(stop, baselines: baselines)
    }
}
