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
    /// The command line while it is being edited.
    public var commandLine: String?
    public var message: String?
    public var messageIsError = false
    /// Live watch: exit name → (per second, total).
    public var rates: [(name: String, perSecond: Double, total: Int)] = []
    public var unicode = true
    /// `/` search: the full VMCB12 view lists only fields whose name contains this.
    public var search: String?
    /// True while the search text is being typed.
    public var editingSearch = false

    public init(target: String, runState: String = "stopped", stops: [Stop] = []) {
        self.target = target; self.runState = runState; self.stops = stops
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
    public let name: String
    /// nil: not knowable at this stop.
    public let value: UInt64?
    public let changed: Bool
    /// Bit names or decoded attributes, if any.
    public let note: String
}

public enum PaneModel {
    static let gprs = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]

    /// The rows of a register pane; `previous` marks changes.
    public static func rows(_ set: RegisterSet, previous: RegisterSet?) -> [RegisterRow] {
        func row(_ name: String, note: (UInt64) -> String = { _ in "" }) -> RegisterRow {
            let v = set[name]
            let old = previous?[name]
            return RegisterRow(name: name, value: v, changed: v != nil && old != nil && v != old, note: v.map(note) ?? "")
        }
        var rows = gprs.map { row($0) }
        rows.append(row("rip"))
        rows.append(row("rflags") { Bits.names($0 & ~0x3002, Bits.rflags) })
        rows.append(row("cr0") { Bits.names($0, Bits.cr0) })
        rows.append(row("cr2"))
        rows.append(row("cr3"))
        rows.append(row("cr4") { Bits.names($0, Bits.cr4) })
        rows.append(row("efer") { Bits.names($0, Bits.efer) })
        for s in ["cs", "ss", "ds", "es", "fs", "gs", "tr", "ldtr"] {
            rows.append(row("\(s).selector"))
            rows.append(row("\(s).base"))
            rows.append(row("\(s).limit"))
            rows.append(row("\(s).attrib") { SegmentAttributes(UInt16(truncatingIfNeeded: $0)).description })
        }
        rows += ["gdtr.base", "gdtr.limit", "idtr.base", "idtr.limit"].map { row($0) }
        rows.append(row("dr6") { Bits.names($0 & 0xE00F, Bits.dr6) })
        rows.append(row("dr7"))
        return rows.filter { set.values.keys.contains($0.name) }
    }
}
