import DebuggerEngine
import SVMModel

/// Lays a SessionView out on a ScreenBuffer. Pure: no terminal, no KVM.
public enum Renderer {
    public static let minimumWidth = 80, minimumHeight = 24

    public static func render(_ v: SessionView, into s: inout ScreenBuffer) {
        s = ScreenBuffer(width: s.width, height: s.height)
        guard s.width >= minimumWidth, s.height >= minimumHeight else {
            let msg = "nestdbg needs at least \(minimumWidth)×\(minimumHeight); this terminal is \(s.width)×\(s.height)"
            s.put(msg, row: s.height / 2, col: max(0, (s.width - msg.count) / 2), style: .error)
            return
        }
        banner(v, &s)
        let paneHeight = max(10, (s.height - 3) * 11 / 20)
        let half = s.width / 2
        let stop = v.current
        let prev = v.previous
        registerPane(
            title: "L1" + (stop?.level == .l1 ? " (live)" : ""), set: stop?.l1, previous: prev?.l1,
            row: 1, col: 0, width: half, height: paneHeight, focused: v.focus == .l1, v: v, &s)
        registerPane(
            title: "L2" + (stop?.level == .l2 ? " (live)" : ""), set: stop?.l2, previous: prev?.l2,
            row: 1, col: half, width: s.width - half, height: paneHeight, focused: v.focus == .l2, v: v, &s)
        let lowerRow = 1 + paneHeight
        let lowerHeight = s.height - lowerRow - 1
        let syncWidth = s.width * 3 / 5
        if v.fullVMCB {
            fullVMCBPane(v, row: lowerRow, col: 0, width: syncWidth, height: lowerHeight, &s)
        } else {
            syncPane(v, row: lowerRow, col: 0, width: syncWidth, height: lowerHeight, &s)
        }
        if v.rates.isEmpty {
            historyPane(v, row: lowerRow, col: syncWidth, width: s.width - syncWidth, height: lowerHeight, &s)
        } else {
            ratePane(v, row: lowerRow, col: syncWidth, width: s.width - syncWidth, height: lowerHeight, &s)
        }
        statusLine(v, &s)
        if v.showHelp { help(v, &s) }
        if let panel = v.panel { self.panel(panel.title, panel.lines, v, &s) }
    }

    private static func hex16(_ x: UInt64) -> String {
        let h = String(x, radix: 16)
        return String(repeating: "0", count: max(0, 16 - h.count)) + h
    }

    static func banner(_ v: SessionView, _ s: inout ScreenBuffer) {
        s.put(String(repeating: " ", count: s.width), row: 0, col: 0, style: .banner)
        var col = 0
        func part(_ text: String, _ style: Style = .banner) {
            s.put(text, row: 0, col: col, style: style)
            col += text.count
        }
        part(" nestdbg | \(v.target) | \(v.runState)")
        if let recording = v.recording {
            part(" | REC \(recording.split(separator: "/").last.map(String.init) ?? recording)")
        }
        if let stop = v.current {
            part(": \(stop.kind.rawValue) | ")
            part(" live: \(stop.level.rawValue) ", .live)
            let f = stop.nestedFlags
            part(
                " GUEST_MODE\(f.contains(.guestMode) ? "+" : "-") RUN_PENDING\(f.contains(.runPending) ? "+" : "-") GIF\(f.contains(.gifSet) ? "+" : "-")"
            )
            part(" | stop #\(stop.index)")
            if let exit = stop.exit { part(" | exit \(exit.name)") }
        }
    }

    static func registerPane(
        title: String, set: RegisterSet?, previous: RegisterSet?, row: Int, col: Int, width: Int,
        height: Int, focused: Bool, v: SessionView, _ s: inout ScreenBuffer
    ) {
        s.box(
            row: row, col: col, width: width, height: height, title: title + (focused ? " *" : ""), unicode: v.unicode)
        let inner = width - 2
        guard let set else {
            s.put("not known at this stop", row: row + 1, col: col + 1, style: .unknown, maxWidth: inner)
            return
        }
        s.put(set.source, row: row + 1, col: col + 1, style: .dim, maxWidth: inner)
        let rows = PaneModel.rows(set, previous: previous)
        // GPRs in two columns when they fit, the rest one per line with notes.
        let gprs = rows.prefix(16)
        let rest = rows.dropFirst(16)
        var r = row + 2
        let cellWidth = 22
        let perLine = max(1, inner / cellWidth)
        var i = 0
        let gprArray = Array(gprs)
        while i < gprArray.count && r < row + height - 1 {
            for k in 0..<perLine where i + k < gprArray.count {
                cell(gprArray[i + k], row: r, col: col + 1 + k * cellWidth, width: cellWidth - 1, &s)
            }
            i += perLine
            r += 1
        }
        // Control registers one per line with their bits; segments one per line.
        let byRegister = Dictionary(uniqueKeysWithValues: rest.map { ($0.register, $0) })
        let controlRegisters: [Register] = [.rip, .rflags, .cr0, .cr2, .cr3, .cr4, .efer, .dr6, .dr7]
        for register in controlRegisters where r < row + height - 1 {
            guard let item = byRegister[register] else { continue }
            cell(item, row: r, col: col + 1, width: 24, labelWidth: 7, &s)
            if !item.note.isEmpty { s.put(item.note, row: r, col: col + 26, style: .dim, maxWidth: inner - 25) }
            r += 1
        }
        func hexOrUnknown(_ item: RegisterRow?, _ digits: Int) -> String {
            guard let v = item?.value else { return String(repeating: "?", count: digits) }
            let h = String(v, radix: 16)
            return String(repeating: "0", count: max(0, digits - h.count)) + h
        }
        for seg in PaneModel.segments where r < row + height - 1 {
            guard let sel = byRegister[seg.selector] else { continue }
            let parts = [seg.selector, seg.base, seg.limit, seg.attrib].compactMap { byRegister[$0] }
            let changed = parts.contains { $0.changed }
            s.put(seg.label.padding(toLength: 5, withPad: " ", startingAt: 0), row: r, col: col + 1, style: .label)
            let text =
                "\(hexOrUnknown(sel, 4)) base \(hexOrUnknown(byRegister[seg.base], 16))"
                + " lim \(hexOrUnknown(byRegister[seg.limit], 8)) \(byRegister[seg.attrib]?.note ?? "")"
            s.put(
                text, row: r, col: col + 6, style: sel.value == nil ? .unknown : (changed ? .changed : .value),
                maxWidth: inner - 5)
            r += 1
        }
        for table in PaneModel.tables where r < row + height - 1 {
            guard let base = byRegister[table.base] else { continue }
            let limit = byRegister[table.limit]
            s.put(table.label.padding(toLength: 5, withPad: " ", startingAt: 0), row: r, col: col + 1, style: .label)
            let text = base.value.map { "base \(hex16($0)) lim \(String(limit?.value ?? 0, radix: 16))" } ?? "unknown"
            s.put(
                text, row: r, col: col + 6,
                style: base.value == nil ? .unknown : (base.changed || limit?.changed == true ? .changed : .value),
                maxWidth: inner - 5)
            r += 1
        }
    }

    private static func cell(
        _ item: RegisterRow, row: Int, col: Int, width: Int, labelWidth: Int = 4, _ s: inout ScreenBuffer
    ) {
        let label = item.name.padding(toLength: max(labelWidth, item.name.count), withPad: " ", startingAt: 0)
        s.put(label, row: row, col: col, style: .label)
        let valueCol = col + label.count + 1
        if let v = item.value {
            s.put(
                hex16(v), row: row, col: valueCol, style: item.changed ? .changed : .value,
                maxWidth: width - (valueCol - col))
        } else {
            s.put("????????????????", row: row, col: valueCol, style: .unknown, maxWidth: width - (valueCol - col))
        }
    }

    static func syncPane(_ v: SessionView, row: Int, col: Int, width: Int, height: Int, _ s: inout ScreenBuffer) {
        s.box(
            row: row, col: col, width: width, height: height, title: "VMCB12 sync" + (v.focus == .vmcb12 ? " *" : ""),
            unicode: v.unicode)
        let inner = width - 2
        guard let stop = v.current else {
            s.put("no stop yet: n steps to the next nested exit", row: row + 1, col: col + 1, style: .dim)
            return
        }
        var r = row + 1
        if let exit = stop.exit {
            s.put("\(exit.name): \(exit.summary)", row: r, col: col + 1, style: .title, maxWidth: inner)
        } else {
            s.put(stop.reason, row: r, col: col + 1, style: .title, maxWidth: inner)
        }
        r += 1
        let last = row + height - 1
        if let why = stop.why {
            // Why the exit is L1's, wrapped to two lines at most; loud when L1 did not ask for it.
            for line in wrap("why: " + why.description, width: inner).prefix(2) where r < last {
                s.put(line, row: r, col: col + 1, style: why.isAlarming ? .unexpected : .label, maxWidth: inner)
                r += 1
            }
        }
        if let kvm = stop.kvm, stop.kind == .nestedExit {
            // KVM's own word on this exit (tracepoint stops): agreement with vmcb12, and the exits L1 never saw.
            let times = v.unicode ? "×" : "x"  // the sandbox's serial console is not UTF-8
            let l0 =
                kvm.handledByL0.map {
                    $0.isEmpty ? "none" : $0.map { "\($0.name)\(times)\($0.count)" }.joined(separator: " ")
                } ?? "unknown"
            let agreement =
                stop.kvmDisagreements.isEmpty ? (kvm.injectedExit == nil ? "" : "KVM agrees with vmcb12; ") : ""
            if r < last {
                s.put("\(agreement)L0 handled: \(l0)", row: r, col: col + 1, style: .dim, maxWidth: inner)
                r += 1
            }
            for line in stop.kvmDisagreements.map({ "!! KVM vs vmcb12: " + $0 }) + kvm.notes where r < last {
                s.put(line, row: r, col: col + 1, style: line.hasPrefix("!!") ? .unexpected : .dim, maxWidth: inner)
                r += 1
            }
        }
        if !stop.violations.isEmpty {
            for viol in stop.violations where r < row + height - 1 {
                s.put("!! \(viol)", row: r, col: col + 1, style: .unexpected, maxWidth: inner)
                r += 1
            }
        }
        if stop.kind != .nestedExit {
            s.put(
                stop.kind == .vmrun ? "vmcb12 as L1 prepared it; v shows every field" : "no nested exit at this stop",
                row: r, col: col + 1, style: .dim, maxWidth: inner)
            return
        }
        if stop.vmcb12AtVMRUN == nil {
            // Live watch ran over the VMRUN: there is no page as L1 prepared it to diff against.
            s.put(
                "VMRUN not seen (live watch): no before page to diff", row: r, col: col + 1, style: .dim,
                maxWidth: inner)
        } else if stop.synced.isEmpty {
            s.put("no vmcb12 field changed", row: r, col: col + 1, style: .dim)
        }
        let wrote = stop.kvmWrote
        let rewritten = wrote.filter { $0.outcome == .rewritten }
        if !wrote.isEmpty && r < last {
            s.put(
                "KVM wrote \(wrote.count) fields: \(wrote.count - rewritten.count) changed (below), \(rewritten.count) rewritten",
                row: r, col: col + 1, style: .dim, maxWidth: inner)
            r += 1
        }
        let nameWidth = 22
        let valueWidth = max(20, inner - nameWidth - 20)
        for c in stop.synced where r < row + height - 1 {
            let unexpected = c.sync == .unexpected
            s.put(c.field.name, row: r, col: col + 1, style: unexpected ? .unexpected : .label, maxWidth: nameWidth)
            s.put(
                "\(c.before) -> \(c.after)", row: r, col: col + 1 + nameWidth,
                style: unexpected ? .unexpected : .changed, maxWidth: valueWidth)
            s.put(
                unexpected ? "!! UNEXPECTED" : c.sync.rawValue, row: r, col: col + 1 + nameWidth + valueWidth + 1,
                style: unexpected ? .unexpected : .dim, maxWidth: inner - nameWidth - valueWidth - 1)
            r += 1
        }
        guard !rewritten.isEmpty, r < last else { return }
        // Written back with the same value: names only, a segment's four parts as `cs.*`.
        let lines = wrap("rewritten: " + compactNames(rewritten.map(\.field)).joined(separator: " "), width: inner)
        for (i, line) in lines.enumerated() where r < last {
            let more = i < lines.count - 1 && r == last - 1
            s.put(
                more ? String(line.prefix(inner - 1)) + (v.unicode ? "…" : "+") : line, row: r, col: col + 1,
                style: .dim, maxWidth: inner)
            r += 1
        }
    }

    /// Short field names (`cr0`, `int_ctl`), with `cs.*` where every part of a segment is present.
    static func compactNames(_ fields: [VMCBField]) -> [String] {
        let present = Set(fields)
        var out: [String] = []
        for field in fields {
            let name = field.shortName
            guard let dot = name.firstIndex(of: ".") else {
                out.append(name)
                continue
            }
            let group = String(name[..<dot])
            let parts = VMCBLayout.fields.filter { $0.area == field.area && $0.shortName.hasPrefix(group + ".") }
            if parts.allSatisfy(present.contains) {
                if !out.contains(group + ".*") { out.append(group + ".*") }
            } else {
                out.append(name)
            }
        }
        return out
    }

    /// Word-wraps `text` to lines of at most `width` characters.
    static func wrap(_ text: String, width: Int) -> [String] {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: true) {
            if line.isEmpty {
                line = String(word)
            } else if line.count + 1 + word.count <= width {
                line += " " + word
            } else {
                lines.append(line)
                line = String(word)
            }
        }
        if !line.isEmpty { lines.append(line) }
        return lines
    }

    static func fullVMCBPane(_ v: SessionView, row: Int, col: Int, width: Int, height: Int, _ s: inout ScreenBuffer) {
        s.box(
            row: row, col: col, width: width, height: height,
            title: "VMCB12 (full, v returns)" + (v.search.map { ", fields matching \"\($0)\"" } ?? ""),
            unicode: v.unicode)
        guard let stop = v.current, let vmcb = stop.vmcb12 else {
            s.put("no vmcb12 at this stop", row: row + 1, col: col + 1, style: .dim)
            return
        }
        let verdict =
            stop.violations.isEmpty
            ? "consistency check at VMRUN: passes" : "consistency check at VMRUN: \(stop.violations.count) violation(s)"
        s.put(
            verdict, row: row + 1, col: col + 1, style: stop.violations.isEmpty ? .dim : .unexpected,
            maxWidth: width - 2)
        let changed = Set(stop.synced.map(\.field.name))
        var r = row + 2
        for f in VMCBLayout.fields where r < row + height - 1 {
            let value = vmcb[f]
            if let q = v.search, !q.isEmpty {
                if !f.name.localizedCaseInsensitiveContains(q) { continue }
            } else if value.isZero {
                continue
            }
            s.put(f.name, row: r, col: col + 1, style: .label, maxWidth: 24)
            s.put(
                value.description, row: r, col: col + 26, style: changed.contains(f.name) ? .changed : .value,
                maxWidth: 18)
            s.put(f.meaning(of: value, in: vmcb), row: r, col: col + 45, style: .dim, maxWidth: width - 46)
            r += 1
        }
    }

    static func historyPane(_ v: SessionView, row: Int, col: Int, width: Int, height: Int, _ s: inout ScreenBuffer) {
        s.box(
            row: row, col: col, width: width, height: height, title: "exits" + (v.focus == .history ? " *" : ""),
            unicode: v.unicode)
        let visible = height - 2
        guard visible > 0, !v.stops.isEmpty else { return }
        let sel = min(v.selected ?? v.stops.count - 1, v.stops.count - 1)
        let first = max(0, min(sel - visible / 2, v.stops.count - visible))
        for (k, i) in (first..<min(v.stops.count, first + visible)).enumerated() {
            let st = v.stops[i]
            let name = st.exit?.name ?? st.kind.rawValue
            let l2rip = st.l2?[.rip].map { String($0, radix: 16) } ?? "-"
            let text =
                "#\(st.index) \(name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(l2rip.padding(toLength: 8, withPad: " ", startingAt: 0)) \(st.exit?.summary ?? st.reason)"
            s.put(
                text.padding(toLength: width - 2, withPad: " ", startingAt: 0), row: row + 1 + k, col: col + 1,
                style: i == sel
                    ? .selected
                    : (st.synced.contains { $0.sync == .unexpected } || st.why?.isAlarming == true
                        ? .unexpected : .normal), maxWidth: width - 2)
        }
    }

    static func ratePane(_ v: SessionView, row: Int, col: Int, width: Int, height: Int, _ s: inout ScreenBuffer) {
        s.box(row: row, col: col, width: width, height: height, title: "nested exits / s", unicode: v.unicode)
        for (k, r) in v.rates.prefix(height - 2).enumerated() {
            let line =
                "\(r.name.padding(toLength: 14, withPad: " ", startingAt: 0)) \(String(format: "%9.1f", r.perSecond)) \(String(format: "%9d", r.total))"
            s.put(line, row: row + 1 + k, col: col + 1, style: k == 0 ? .changed : .normal, maxWidth: width - 2)
        }
    }

    static func statusLine(_ v: SessionView, _ s: inout ScreenBuffer) {
        let row = s.height - 1
        if v.editingSearch {
            s.put("/" + (v.search ?? ""), row: row, col: 0, style: .normal)
        } else if let line = v.commandLine {
            s.put(":" + line, row: row, col: 0, style: .normal)
        } else if let message = v.message {
            s.put(message, row: row, col: 0, style: v.messageIsError ? .error : .normal)
        } else {
            var col = 0
            for (key, what) in [
                ("n", "next exit"), ("e", "VMRUN"), ("s", "step"), ("c", "continue"), ("p", "pause"), ("w", "watch"),
                ("[ ]", "history"), ("v", "VMCB12"), (":", "command"), ("?", "help"), ("q", "quit"),
            ] {
                s.put(key, row: row, col: col, style: .key)
                s.put(" " + what + "  ", row: row, col: col + key.count, style: .help)
                col += key.count + what.count + 3
            }
        }
    }

    public static let helpLines = [
        "n  next nested #VMEXIT        e  next VMRUN",
        "s  single-step (L1 only)      c  continue to a breakpoint",
        "p  pause a running guest      w  live watch on/off",
        "b  breakpoint prompt          :  command line",
        "[ ] or <- ->  through the exit history",
        "Tab  pane focus               v  full VMCB12 / sync",
        "o  the guest's serial output (COM1; --serial FILE saves it)",
        "/  search VMCB12 fields (a replay: the whole recording,",
        "   exit NPF | save.cr4 changed | l2-rip ADDR | kind K | text)",
        "replay: N prev exit  E prev VMRUN  S prev stop  C reverse-cont",
        "R  record every stop on/off (:record FILE | :record off)",
        "?  this help                  q  quit",
        "commands: step next vmrun continue pause watch [HZ]",
        "  break exit NAME | break l1-rip ADDR | break l2-rip ADDR",
        "  watch FIELD",
        "  delete [N] | goto N | theme NAME | help",
        "  migrate [order NAME] [omit PART] [exits N]: save, restore, compare",
    ]

    /// A boxed report over the panes, as wide as the screen allows; long lines are cut.
    static func panel(_ title: String, _ lines: [String], _ v: SessionView, _ s: inout ScreenBuffer) {
        let w = max(20, s.width - 4)
        let h = min(lines.count + 2, max(3, s.height - 2))
        let row = max(1, (s.height - h) / 2)
        let col = max(0, (s.width - w) / 2)
        for r in row..<(row + h) { s.put(String(repeating: " ", count: w), row: r, col: col) }
        s.box(row: row, col: col, width: w, height: h, title: title, unicode: v.unicode)
        for (i, line) in lines.prefix(h - 2).enumerated() {
            s.put(line, row: row + 1 + i, col: col + 2, style: .help, maxWidth: w - 4)
        }
    }

    static func help(_ v: SessionView, _ s: inout ScreenBuffer) {
        let w = 62
        let h = helpLines.count + 2
        let row = max(1, (s.height - h) / 2)
        let col = max(0, (s.width - w) / 2)
        for r in row..<(row + h) { s.put(String(repeating: " ", count: w), row: r, col: col) }
        s.box(row: row, col: col, width: w, height: h, title: "keys", unicode: v.unicode)
        for (i, line) in helpLines.enumerated() {
            s.put(line, row: row + 1 + i, col: col + 2, style: .help, maxWidth: w - 4)
        }
    }
}
