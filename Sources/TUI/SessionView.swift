import DebuggerEngine
import SVMModel

/// Everything the screen shows, as plain values: the renderer turns this into
/// cells, the app keeps it up to date. No KVM in here.
public struct SessionView: Sendable {
    public enum Focus: String, CaseIterable, Sendable { case l1, l2, vmcb12, history }

    public var target: String
    /// "stopped", "running", "watching 10 Hz".
    public var runState: String
    /// The stops so far, oldest first (the engine's history).
    public var stops: [Stop]
    /// Which stop the panes show (an index into `stops`); nil: the latest.
    public var selected: Int?
    public var focus: Focus = .l1
    public var fullVMCB = false
    public var showHelp = false
    /// A report over the panes (`:migrate`), until the next key.
    public var panel: (title: String, lines: [String])?
    /// The command line while it is being edited.
    public var commandLine: String?
    public var message: String?
    public var messageIsError = false
    /// Live watch: exit name → (per second, total).
    public var rates: [(name: String, perSecond: Double, total: Int)] = []
    public var unicode = true
    /// The recording every stop goes into, if one is on (`R`, `--record`).
    public var recording: String?
    /// `/` search: the full VMCB12 view lists only fields whose name contains this.
    public var search: String?
    /// True while the search text is being typed.
    public var editingSearch = false

    public init(target: String, runState: String = "stopped", stops: [Stop] = []) {
        self.target = target
        self.runState = runState
        self.stops = stops
    }

    public var current: Stop? {
        guard !stops.isEmpty else { return nil }
        return stops[min(selected ?? stops.count - 1, stops.count - 1)]
    }

    /// The stop before the current one, for "changed since the previous stop".
    public var previous: Stop? {
        guard !stops.isEmpty else { return nil }
        let i = min(selected ?? stops.count - 1, stops.count - 1)
        return i > 0 ? stops[i - 1] : nil
    }
}

/// One row of a register pane.
public struct RegisterRow: Equatable, Sendable {
    public let register: Register
    /// nil: not knowable at this stop.
    public let value: UInt64?
    public let changed: Bool
    /// Bit names or decoded attributes, if any.
    public let note: String
    public var name: String { register.name }
}

public enum PaneModel {
    /// Segment registers as panes show them: a label and the four parts.
    static let segments: [(label: String, selector: Register, base: Register, limit: Register, attrib: Register)] = [
        ("cs", .csSelector, .csBase, .csLimit, .csAttrib), ("ss", .ssSelector, .ssBase, .ssLimit, .ssAttrib),
        ("ds", .dsSelector, .dsBase, .dsLimit, .dsAttrib), ("es", .esSelector, .esBase, .esLimit, .esAttrib),
        ("fs", .fsSelector, .fsBase, .fsLimit, .fsAttrib), ("gs", .gsSelector, .gsBase, .gsLimit, .gsAttrib),
        ("tr", .trSelector, .trBase, .trLimit, .trAttrib), ("ldtr", .ldtrSelector, .ldtrBase, .ldtrLimit, .ldtrAttrib),
    ]
    static let tables: [(label: String, base: Register, limit: Register)] = [
        ("gdtr", .gdtrBase, .gdtrLimit), ("idtr", .idtrBase, .idtrLimit),
    ]

    /// The rows of a register pane, in the pane's order; `previous` marks changes.
    public static func rows(_ set: RegisterSet, previous: RegisterSet?) -> [RegisterRow] {
        Register.allCases.compactMap { register in
            guard set.entry(register) != nil else { return nil }
            let v = set[register]
            let old = previous?[register]
            return RegisterRow(
                register: register, value: v, changed: v != nil && old != nil && v != old,
                note: v.map { note(register, $0) } ?? "")
        }
    }

    static func note(_ register: Register, _ value: UInt64) -> String {
        switch register {
        case .rflags: return Bits.names(value & ~0x3002, Bits.rflags)
        case .cr0: return Bits.names(value, Bits.cr0)
        case .cr4: return Bits.names(value, Bits.cr4)
        case .efer: return Bits.names(value, Bits.efer)
        case .dr6: return Bits.names(value & 0xE00F, Bits.dr6)
        case .csAttrib, .ssAttrib, .dsAttrib, .esAttrib, .fsAttrib, .gsAttrib, .trAttrib, .ldtrAttrib:
            return SegmentAttributes(UInt16(truncatingIfNeeded: value)).description
        default: return ""
        }
    }
}
