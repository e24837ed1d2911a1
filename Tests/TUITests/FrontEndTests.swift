import DebuggerEngine
import Foundation
import SVMModel
import TUI
import TestSupport
import Testing

/// The front end's keys and commands, driven by an in-memory terminal over a
/// session on the embedded target: no tty, no /dev/kvm. tmux (scripts/tui-e2e)
/// covers the same front end on ncurses and real KVM.
@Suite("the front end on an in-memory terminal and the embedded target")
struct FrontEndTests {
    static let vmcb12: UInt64 = 0x2_0000

    static func session(_ script: [ScriptedEvent]) throws -> (EngineSession, EmbeddedTarget) {
        let target = EmbeddedTarget(name: "embedded L1")
        let v = SampleVMCB.prepared()
        target.withState { s in
            s.memory.replaceSubrange(Int(vmcb12)..<Int(vmcb12) + VMCBLayout.size, with: v.bytes)
            s.registers.rip = 0x1_0040
            s.special.efer = 0x1D00
            s.special.cr0 = 0x8000_0011
            s.nestedFlags = [.gifSet]
        }
        let source = ScriptedStopSource(target: target, script: script)
        return (EngineSession(engine: Engine(target: target, source: source, timings: StopTimings())), target)
    }

    static let round: [ScriptedEvent] = [.vmrun(vmcb12: vmcb12), .nestedExit(code: 0x72, l2RIP: 0x40_0010)]
    static let ioio: [ScriptedEvent] = [
        .vmrun(vmcb12: vmcb12), .nestedExit(code: 0x7B, info1: 0x0080_0090, info2: 0x40_1002, l2RIP: 0x40_1000),
    ]

    static func play(
        _ session: any DebugSession, _ script: [EmbeddedTerminal.Input], width: Int = 160, height: Int = 50
    ) throws -> EmbeddedTerminal {
        let terminal = EmbeddedTerminal(width: width, height: height, script: script)
        let theme = try Theme.parse("", source: "empty.theme")
        App(session: session, theme: theme, terminal: terminal).run(quit: terminal.quit)
        return terminal
    }

    @Test(
        "n steps to the next nested #VMEXIT with both panes and the sync; :break and c run to the breakpoint; s steps L1"
    )
    func stepBreakContinue() throws {
        let (session, _) = try Self.session(Self.round + Self.round + Self.ioio)
        let terminal = try Self.play(
            session,
            [
                .waitFor("VMCB12 sync"), .type("n"), .waitFor("exit CPUID"), .waitFor("L1 (live)"),
                .type(":break exit IOIO\n"), .waitFor("breakpoints: 0: exit IOIO"), .type("c"),
                .waitFor("exit IOIO"), .waitFor("OUT 0x80, 1 byte"), .waitFor("control.exit_info_1"),
                .type("s"), .waitFor("single-step in L1"), .type("q"),
            ])
        #expect(terminal.failure == nil, "\(terminal.failure ?? "")")
        #expect(terminal.stopped, "the terminal was given back")
        #expect(session.state == .ended, "q shut the engine's thread down")
    }

    @Test("p pauses a guest that runs and never exits; a command the session refuses is said on the status line")
    func pauseAndRefusal() throws {
        let (session, _) = try Self.session(Self.round + [.runsForever])
        let terminal = try Self.play(
            session,
            [
                .waitFor("VMCB12 sync"), .type("c"), .waitFor("running"), .type("N"),
                .waitFor("a live vCPU does not run backwards"), .type("p"), .waitFor("paused"),
                .type(":migrate\n"), .waitFor("migrate needs a live vCPU nestdbg can save"),
                .type(":nonsense\n"), .waitFor("unknown command nonsense"), .type(":quit\n"),
            ])
        #expect(terminal.failure == nil, "\(terminal.failure ?? "")")
        #expect(session.state == .ended)
    }

    @Test("a too-small terminal says so, and a larger one lays the panes out again")
    func resize() throws {
        let (session, _) = try Self.session(Self.round)
        let terminal = try Self.play(
            session,
            [
                .waitFor("needs at least 80×24; this terminal is 70×20"), .resize(width: 120, height: 40),
                .waitFor("VMCB12 sync"), .waitFor("L1 (live)"), .type("q"),
            ], width: 70, height: 20)
        #expect(terminal.failure == nil, "\(terminal.failure ?? "")")
        #expect(terminal.screen.width == 120 && terminal.screen.height == 40)
    }

    @Test("over a replay: N and E go back, goto jumps, / searches")
    func replayKeys() throws {
        let (session, _) = try Self.session(Self.round + Self.ioio + Self.round)
        var stops: [Stop] = []
        try session.send(.continueRunning)
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline, stops.last?.kind != .exited {
            for case let .stopped(_, history) in session.takeEvents(waitingUpTo: .milliseconds(100)) {
                stops = Array(history)
            }
        }
        session.shutdown()
        #expect(stops.count == 8, "start, 3 VMRUNs, 3 exits, the end: \(stops.map(\.kind))")
        let replay = try ReplaySession(stops: stops, name: "embedded recording")
        let terminal = try Self.play(
            replay,
            [
                .waitFor("replay #0"), .type(":goto 6\n"), .waitFor("replay #6,"), .type("N"), .waitFor("replay #4,"),
                .waitFor("exit IOIO"), .type("E"), .waitFor("replay #3,"), .type("/exit CPUID\n"),
                .waitFor("search exit CPUID: stop #6"), .type("q"),
            ])
        #expect(terminal.failure == nil, "\(terminal.failure ?? "")")
    }
}
