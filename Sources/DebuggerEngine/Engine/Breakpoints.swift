import SVMModel

/// What the user asked the engine to stop on: a predicate over stops.
public enum Breakpoint: Equatable, Sendable, CustomStringConvertible {
    /// A nested #VMEXIT with this exit code.
    case exit(UInt64)
    /// A nested #VMEXIT caused by the L2 instruction at this address (vmcb12 save.rip).
    case l2RIP(UInt64)
    /// A VMCB12 field whose value differs from the one at the previous stop that had vmcb12.
    case watch(VMCBField)
    /// An L1 instruction (needs a stop source that can patch L1's code).
    case l1RIP(UInt64)

    public var description: String {
        switch self {
        case let .exit(code): return "exit \(exitName(code))"
        case let .l2RIP(rip): return "l2 rip \(hex(rip))"
        case let .watch(field): return "watch \(field.name)"
        case let .l1RIP(rip): return "l1 rip \(hex(rip))"
        }
    }
}

/// The breakpoint list and the watch baselines, evaluated in one place for
/// every stop the engine records (`n`, `e`, `s` and `c` alike), so a watch's
/// baseline is always the previous stop's value.
public struct BreakpointTable: Sendable {
    public private(set) var list: [Breakpoint] = []
    private var baselines: [VMCBField: FieldValue] = [:]

    public init() {}

    public mutating func add(_ breakpoint: Breakpoint, baselineFrom stop: Stop?) {
        list.append(breakpoint)
        if case let .watch(field) = breakpoint, let vmcb = stop?.vmcb12 { baselines[field] = vmcb[field] }
    }

    /// Removes one (by index) or all; returns what was removed.
    public mutating func remove(at index: Int?) -> [Breakpoint] {
        guard let index else {
            defer { list.removeAll() }
            return list
        }
        guard list.indices.contains(index) else { return [] }
        return [list.remove(at: index)]
    }

    /// The first breakpoint this stop matches; moves every watch baseline.
    public mutating func evaluate(_ stop: Stop) -> Breakpoint? {
        var hit: Breakpoint?
        for breakpoint in list {
            if breakpoint.matches(stop, baselines: baselines) { hit = hit ?? breakpoint }
        }
        if let vmcb = stop.vmcb12 {
            for case let .watch(field) in list { baselines[field] = vmcb[field] }
        }
        return hit
    }
}

extension Breakpoint {
    func matches(_ stop: Stop, baselines: [VMCBField: FieldValue]) -> Bool {
        switch self {
        case let .l1RIP(rip):
            return stop.kind == .breakpoint && stop.l1[.rip] == rip
        case let .exit(code):
            guard stop.kind == .nestedExit, let exit = stop.exit else { return false }
            return exit.code == code || (SVMExit.isInvalid(code) && SVMExit.isInvalid(exit.code))
        case let .l2RIP(rip):
            return stop.kind == .nestedExit && stop.vmcb12?[integer: .saveRIP] == rip
        case let .watch(field):
            guard let vmcb = stop.vmcb12, let old = baselines[field] else { return false }
            return vmcb[field] != old
        }
    }
}
