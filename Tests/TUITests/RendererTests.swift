import DebuggerEngine
import Foundation
import SVMModel
import Testing

@testable import TUI

/// Two stops of an IOIO exit, built from real VMCB pages (no KVM).
func sampleView(width: Int = 160, unknownRBX: Bool = true, unexpected: Bool = false, iopmBit: Bool? = nil)
    -> SessionView
{
    var before = VMCB()
    before[integer: .intercepts4] = 1
    before[integer: .asid] = 1
    if iopmBit != nil {
        before[integer: .intercepts3] = 1 << 27
        before[integer: .iopmBasePA] = 0x10_0000
    }
    before[integer: .saveRIP] = 0x14F0
    before[integer: .saveEFER] = 0x1500
    before[integer: .saveCR0] = 0x8000_0011
    var after = before
    after[integer: .exitCode] = 0x7B
    after[integer: .exitInfo1] = 0x0080_0090
    after[integer: .exitInfo2] = 0x14F6
    after[integer: .saveRIP] = 0x14F4
    if unexpected { after[integer: .asid] = 9 }
    let l1a: [Register: RegisterValue] = [
        .rax: .known(0x20000), .rbx: unknownRBX ? .unknown : .known(5), .rip: .known(0x12A8),
        .cr0: .known(0x8000_0011),
    ]
    let l1b = l1a
    let l2a: [Register: RegisterValue] = [
        .rax: .known(1), .rbx: .known(0x800), .rip: .known(0x14F0), .cr0: .known(0x8000_0011),
    ]
    var l2b = l2a
    l2b[.rip] = .known(0x14F4)
    let s0 = Stop.synthetic(index: 0, before: before, after: before, l1: l1a, l2: l2a)
    var s1 = Stop.synthetic(index: 1, before: before, after: after, l1: l1b, l2: l2b)
    if let iopmBit {
        // L1's IOPM byte for ports 0x80-0x87, with port 0x80's bit as asked.
        s1.why = ExitCause(code: after.exitCode, exitInfo1: after[integer: .exitInfo1], controls: before) {
            gpa, count in
            gpa == 0x10_0010 && count == 1 ? [iopmBit ? 1 : 0] : nil
        }
    }
    return SessionView(target: "demo", stops: [s0, s1])
}

@Suite("the front end's renderer (in-memory screen)")
struct RendererTests {
    func render(_ v: SessionView, _ w: Int, _ h: Int) -> ScreenBuffer {
        var s = ScreenBuffer(width: w, height: h)
        Renderer.render(v, into: &s)
        return s
    }

    @Test("L1 and L2 side by side, labelled, with the live level in the banner")
    func panes() throws {
        let s = render(sampleView(), 160, 50)
        let l1 = try #require(s.find("L1 (live)"))
        let l2 = try #require(s.find("┌─ L2"))
        #expect(l1.row == l2.row && l2.col >= 79, "side by side")
        #expect(s.line(0).contains("live: L1") && s.line(0).contains("exit IOIO"))
        #expect(
            s.style(
                row: 0,
                col: s.line(0).distance(from: s.line(0).startIndex, to: s.line(0).range(of: "live: L1")!.lowerBound))
                == .live)
    }

    @Test("a value that changed since the previous stop is highlighted; an unknowable one is shown as unknown")
    func changedAndUnknown() throws {
        let s = render(sampleView(), 160, 50)
        // L2 rip went 0x14f0 -> 0x14f4.
        let rip = try #require(s.find("00000000000014f4"))
        #expect(s.style(row: rip.row, col: rip.col) == .changed)
        let rax = try #require(s.find("0000000000000001"))
        #expect(s.style(row: rax.row, col: rax.col) == .value, "unchanged values are plain")
        let unknown = try #require(s.find("????????????????"))
        #expect(s.style(row: unknown.row, col: unknown.col) == .unknown)
        #expect(unknown.col < 80, "L1's RBX is the unknown one")
    }

    @Test("the sync pane shows the decoded exit and the diff; unexpected changes are marked loudly")
    func syncPane() throws {
        var s = render(sampleView(), 160, 50)
        #expect(s.find("IOIO: OUT 0x80, 1 byte") != nil)
        let rip = try #require(s.find("save.rip"))
        #expect(s.line(rip.row).contains("0x14f0 -> 0x14f4") && s.line(rip.row).contains("l2_state_synced"))
        #expect(s.find("UNEXPECTED") == nil)
        s = render(sampleView(unexpected: true), 160, 50)
        let bad = try #require(s.find("!! UNEXPECTED"))
        #expect(s.style(row: bad.row, col: bad.col) == .unexpected)
        #expect(s.line(bad.row).contains("control.asid"))
    }

    @Test("the sync pane says why the exit is L1's, under the exit; loudly when L1's controls did not ask for it")
    func why() throws {
        for (w, h) in [(100, 40), (200, 60)] {
            var s = render(sampleView(iopmBit: true), w, h)
            let exit = try #require(s.find("IOIO: OUT 0x80, 1 byte"))
            let why = try #require(s.find("why: L1's IOPM asks for the access: IOPM port 0x80"), "\(w)x\(h)")
            #expect(why.row == exit.row + 1 && s.style(row: why.row, col: why.col) == .label)
            #expect(s.text.contains("0x100010 bit 0 set"), "the bit is named (wrapped at \(w)x\(h) if need be)")
            s = render(sampleView(iopmBit: false), w, h)
            let alarm = try #require(s.find("why: !! NOT REQUESTED BY L1"), "\(w)x\(h)")
            #expect(s.style(row: alarm.row, col: alarm.col) == .unexpected)
            let history = try #require(s.find("#1 IOIO"))
            #expect(s.style(row: history.row, col: history.col) != .normal, "the history marks the stop")
        }
        #expect(render(sampleView(), 160, 50).find("why:") == nil, "no line without a cause")
    }

    @Test("the sync pane lists everything KVM wrote: the changed fields with their class, the rewritten ones by name")
    func kvmWrote() throws {
        let stop = try #require(sampleView().current)
        let rewritten = stop.kvmWrote.filter { $0.outcome == .rewritten }.count
        #expect(stop.kvmWrote.count - rewritten == 4, "exit_code, exit_info_1, exit_info_2, save.rip")
        for (w, h) in [(100, 40), (200, 60)] {
            let s = render(sampleView(iopmBit: true), w, h)
            let header = try #require(
                s.find("KVM wrote \(stop.kvmWrote.count) fields: 4 changed (below), \(rewritten) rewritten"),
                "\(w)x\(h)")
            let rip = try #require(s.find("save.rip"))
            #expect(rip.row > header.row && s.line(rip.row).contains("l2_state_synced"))
            let list = try #require(s.find("rewritten: "), "\(w)x\(h)")
            #expect(list.row > rip.row && list.col < w * 3 / 5)
            #expect(s.style(row: list.row, col: list.col) == .dim)
            // The names: segments as cs.*, the rest one by one; all of them fit at both sizes.
            let paneInner = w * 3 / 5 - 2
            let names = (list.row..<(h - 2)).map { " " + s.line($0).dropFirst(1).prefix(paneInner) }.joined() + " "
            for name in [
                "es.*", "cs.*", "ss.*", "ds.*", "gdtr.*", "idtr.*", "efer", "cr0", "cr3", "rflags", "int_state",
                "event_inj",
            ] {
                #expect(names.contains(" \(name) "), "\(name) at \(w)x\(h)")
            }
            #expect(
                !names.contains("cs.selector") && !names.contains("exit_code "),
                "changed fields are not listed as rewritten")
        }
    }

    @Test(
        "a tracepoint stop shows KVM's word: agreement with vmcb12, the exits KVM handled itself, a disagreement loudly"
    )
    func kvmEvidence() throws {
        var view = sampleView()
        var evidence = KVMEvidence()
        evidence.events = [.vmexitInject(KVMExitFields(code: 0x7B, info1: 0x0080_0090, info2: 0x14F6))]
        evidence.handledByL0 = [L0ExitCount(code: 0x72, count: 2), L0ExitCount(code: 0x400, count: 1)]
        view.stops[1].kvm = evidence
        for (w, h) in [(100, 40), (200, 60)] {
            var s = render(view, w, h)
            let line = try #require(s.find("KVM agrees with vmcb12; L0 handled: CPUID×2 NPF×1"), "\(w)x\(h)")
            #expect(s.style(row: line.row, col: line.col) == .dim)
            var disagreeing = view
            disagreeing.stops[1].kvmDisagreements = ["exit_info1: KVM's tracepoint says 0x1, vmcb12 holds 0x800090"]
            s = render(disagreeing, w, h)
            let alarm = try #require(s.find("!! KVM vs vmcb12: exit_info1"), "\(w)x\(h)")
            #expect(s.style(row: alarm.row, col: alarm.col) == .unexpected)
        }
        #expect(
            render(sampleView(), 160, 50).find("L0 handled") == nil,
            "nothing claimed without KVM's events (patch stops)")
        view.unicode = false
        #expect(render(view, 100, 40).find("L0 handled: CPUIDx2 NPFx1") != nil, "ASCII where the terminal is not UTF-8")
    }

    @Test("history lists the stops; selecting a past one shows its snapshot")
    func history() throws {
        var v = sampleView()
        var s = render(v, 160, 50)
        #expect(s.find("#1 IOIO") != nil && s.find("#0 ") != nil)
        v.selected = 0
        s = render(v, 160, 50)
        #expect(s.line(0).contains("stop #0"))
        let row = try #require(s.find("#0 READ_CR0"))
        #expect(s.style(row: row.row, col: row.col) == .selected)
    }

    @Test("narrow (80×24) and wide (200×60) terminals both lay out; below the minimum a clear message")
    func sizes() {
        for (w, h) in [(80, 24), (200, 60), (120, 40)] {
            let s = render(sampleView(), w, h)
            #expect(s.find("L1 (live)") != nil && s.find("L2") != nil && s.find("VMCB12 sync") != nil, "\(w)x\(h)")
            #expect(s.line(h - 1).contains("next exit") || s.line(h - 1).contains("nested"), "status line at \(w)x\(h)")
        }
        let small = render(sampleView(), 60, 20)
        #expect(small.text.contains("needs at least 80×24; this terminal is 60×20"))
        #expect(small.find("L1 (live)") == nil)
    }

    @Test("ASCII box drawing when the terminal is not UTF-8")
    func ascii() {
        var v = sampleView()
        v.unicode = false
        let s = render(v, 120, 40)
        #expect(s.find("+- L1") != nil && s.find("┌") == nil)
    }

    @Test("the full VMCB12 view lists fields with meanings and the check result")
    func fullVMCB() {
        var v = sampleView()
        v.fullVMCB = true
        let s = render(v, 160, 50)
        #expect(s.find("consistency check at VMRUN: passes") != nil)
        #expect(s.find("control.exit_code") != nil && s.find("SVM_EXIT_IOIO") != nil)
    }

    @Test("/ search narrows the full VMCB12 view to matching fields, zero ones included")
    func search() {
        var v = sampleView()
        v.fullVMCB = true
        v.search = "cr"
        let s = render(v, 160, 50)
        #expect(s.find("save.cr0") != nil && s.find("save.cr2") != nil, "zero fields shown when they match")
        #expect(s.find("control.exit_code") == nil, "non-matching fields hidden")
    }

    @Test("help lists the keys")
    func help() {
        var v = sampleView()
        v.showHelp = true
        let s = render(v, 120, 40)
        #expect(s.find("n  next nested #VMEXIT") != nil && s.find("q  quit") != nil)
    }
}

@Suite("themes")
struct ThemeTests {
    static let themesDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
        "../../Themes"
    ).standardized

    @Test("the shipped themes parse: default, light, mono (monochrome)", arguments: ["default", "light", "mono"])
    func shipped(name: String) throws {
        let path = Self.themesDir.appendingPathComponent("\(name).theme").path
        let theme = try Theme.parse(String(contentsOfFile: path, encoding: .utf8), source: path)
        #expect(theme.specs.count == Style.allCases.count, "every style is given")
        #expect(theme.usesColor == (name != "mono"))
        if name == "mono" { #expect(theme[.changed].bold && theme[.unexpected].reverse) }
    }

    @Test("a malformed theme gets one error naming the line")
    func malformed() {
        let cases: [(String, Int, String)] = [
            ("normal = default\nchanged yellow", 2, "expected"),
            ("normal = default\n\n# ok\nchanged = purple", 4, "unknown colour `purple`"),
            ("changed = yellow, blink", 1, "unknown attribute `blink`"),
            ("sparkles = red", 1, "unknown style `sparkles`"),
            ("changed = red on", 1, "expected `colour` or `colour on colour`"),
        ]
        for (text, line, message) in cases {
            do {
                _ = try Theme.parse(text, source: "t.theme")
                Issue.record("\(text) parsed")
            } catch let e as ThemeError {
                #expect(e.line == line && e.message.contains(message), "\(e)")
                #expect(e.description.hasPrefix("t.theme:\(line): "))
            } catch { Issue.record("\(error)") }
        }
    }

    @Test("theme load by path, and a missing theme is an error")
    func load() throws {
        let t = try Theme.load(Self.themesDir.appendingPathComponent("light.theme").path)
        #expect(t.name == "light")
        #expect(throws: ThemeError.self) { try Theme.load("/nonexistent/x.theme") }
        #expect(Theme.builtIn.monochrome.usesColor == false)
    }
}

@Suite("command-line completion")
struct CompletionTests {
    @Test("exit names and VMCB field names complete; ambiguous prefixes list the candidates")
    func complete() {
        #expect(Completion.complete("break exit np").line == "break exit npf ")
        #expect(Completion.complete("watch save.cr4").line == "watch save.cr4 ")
        let (line, candidates) = Completion.complete("watch save.cr")
        #expect(line == "watch save.cr" && candidates.contains("save.cr0") && candidates.contains("save.cr3"))
        #expect(Completion.complete("con").line == "continue ")
        #expect(Completion.complete("break exit zzz").line == "break exit zzz")
    }
}

@Suite("the :migrate report panel")
struct PanelTests {
    @Test("a panel is drawn boxed over the panes, lines cut to its width, and goes with the view's panel")
    func panel() throws {
        var view = SessionView(target: "demo")
        view.unicode = false
        view.panel = (
            title: "migrate: same (any key closes)",
            lines: ["exit 3 — saved at nested_exit", String(repeating: "x", count: 300)]
        )
        var screen = ScreenBuffer(width: 100, height: 30)
        Renderer.render(view, into: &screen)
        #expect(screen.find("migrate: same (any key closes)") != nil)
        let line = try #require(screen.find("exit 3 — saved at nested_exit"))
        // The long line is cut inside the box (96 wide on 100 columns, 2 of margin a side): its border still stands.
        let cut = screen.line(line.row + 1)
        #expect(cut.filter { $0 == "x" }.count == 92 && cut.contains("x |"), "\(cut)")
        view.panel = nil
        var plain = ScreenBuffer(width: 100, height: 30)
        Renderer.render(view, into: &plain)
        #expect(plain.find("migrate: same") == nil)
    }
}
