import DebuggerEngine
import Foundation
import KVMControl
import SVMModel
import TestSupport
import Testing

/// The engine, the session thread, breakpoints and the stop assembler's
/// checks on the embedded target and a scripted stop source: no /dev/kvm,
/// any Linux machine. What nested KVM really does is tested in the sandbox.
enum EmbeddedScene {
    static let vmcb12: UInt64 = 0x2_0000
    static let vmrunRIP: UInt64 = 0x1_0040

    /// A 64-bit L1 at its VMRUN with a vmcb12 that VMRUN accepts (or, `asid` 0, one it refuses).
    static func target(asid: UInt64 = 1) throws -> EmbeddedTarget {
        let target = EmbeddedTarget(name: "embedded L1")
        let v = SampleVMCB.prepared(asid: asid)
        try target.withState { s in
            s.memory.replaceSubrange(Int(vmcb12)..<Int(vmcb12) + VMCBLayout.size, with: v.bytes)
            s.registers.rip = vmrunRIP
            s.registers.rbx = 0xB0B
            s.special.efer = 0x1D00
            s.special.cr0 = 0x8000_0011
            s.nestedFlags = [.gifSet]
            _ = try SVMNestedState(bytes: SVMNestedState.make(flags: s.nestedFlags, vmcbPA: 0, data: nil))
        }
        return target
    }

    static let cpuid: ScriptedEvent = .nestedExit(code: 0x72, l2RIP: 0x40_0010)
    static let ioio: ScriptedEvent = .nestedExit(code: 0x7B, info1: 0x0080_0090, info2: 0x40_1002, l2RIP: 0x40_1000)

    static func engine(_ target: EmbeddedTarget, _ script: [ScriptedEvent]) -> (Engine, ScriptedStopSource) {
        let source = ScriptedStopSource(target: target, script: script)
        return (Engine(target: target, source: source, timings: StopTimings()), source)
    }
}

@Suite("the engine on the embedded target (no KVM)")
struct EmbeddedEngineTests {
    @Test("n goes from nested #VMEXIT to nested #VMEXIT; each is decoded and its vmcb12 sync classed")
    func nextStopsAtNestedExits() throws {
        let target = try EmbeddedScene.target()
        let (engine, _) = EmbeddedScene.engine(
            target,
            [
                .vmrun(vmcb12: EmbeddedScene.vmcb12), EmbeddedScene.cpuid, .vmrun(vmcb12: EmbeddedScene.vmcb12),
                EmbeddedScene.ioio,
            ])
        try engine.recordStart()
        let first = try engine.next()
        #expect(first.kind == .nestedExit && first.exit?.name == "CPUID", "\(first.kind) \(first.reason)")
        #expect(first.l1.values[.rip]?.value == EmbeddedScene.vmrunRIP + 3, "L1 resumes after its VMRUN")
        #expect(
            first.l1[.rbx] == 0xB0B && first.l2?[.rbx] == 0xB0B, "the live L1 pane has the vCPU's RBX (not switched)")
        #expect(first.l1.source.contains("not switched by VMRUN"), "\(first.l1.source)")
        let second = try engine.next()
        #expect(second.exit?.name == "IOIO" && second.reason.contains("OUT 0x80, 1 byte"), "\(second.reason)")
        let classes = Dictionary(second.synced.map { ($0.field.name, $0.sync) }, uniquingKeysWith: { a, _ in a })
        #expect(classes["control.exit_code"] == .exitInformation && classes["control.exit_info_1"] == .exitInformation)
        #expect(classes["save.rip"] == .l2StateSynced, "\(classes)")
        #expect(!second.synced.contains { $0.sync == .unexpected })
        #expect(engine.nestedExitCount == 2 && engine.stopCount == 5, "start, two VMRUNs, two exits")
        let end = try engine.next()
        #expect(end.kind == .exited && end.endsRun, "the script's end is the guest's")
    }

    @Test("a vmcb12 write that is not KVM's shows as unexpected in the sync diff")
    func foreignWriteIsUnexpected() throws {
        let target = try EmbeddedScene.target()
        let (engine, _) = EmbeddedScene.engine(
            target, [.vmrun(vmcb12: EmbeddedScene.vmcb12), .foreignWrite(.asid, 7), EmbeddedScene.cpuid])
        let exit = try engine.next()
        let asid = exit.synced.first { $0.field.name == "control.asid" }
        #expect(asid?.sync == .unexpected, "\(exit.synced.map { "\($0.field.name) \($0.sync)" })")
    }

    @Test("VMRUN's consistency checks run at the VMRUN stop: ASID 0 is a violation")
    func vmrunChecks() throws {
        let (good, _) = EmbeddedScene.engine(try EmbeddedScene.target(), [.vmrun(vmcb12: EmbeddedScene.vmcb12)])
        let accepted = try good.nextVMRUN()
        #expect(accepted.kind == .vmrun && accepted.violations.isEmpty, "\(accepted.violations)")
        let (bad, _) = EmbeddedScene.engine(try EmbeddedScene.target(asid: 0), [.vmrun(vmcb12: EmbeddedScene.vmcb12)])
        let refused = try bad.nextVMRUN()
        #expect(refused.violations.contains { $0.rule == "asid.zero" }, "\(refused.violations)")
        #expect(refused.reason.contains("VMRUN will fail"), "\(refused.reason)")
    }

    @Test("c runs through stops until a breakpoint matches: exit code, then L2 RIP")
    func breakpoints() throws {
        let target = try EmbeddedScene.target()
        let round: [ScriptedEvent] = [.vmrun(vmcb12: EmbeddedScene.vmcb12), EmbeddedScene.cpuid]
        let (engine, source) = EmbeddedScene.engine(
            target, round + round + [.vmrun(vmcb12: EmbeddedScene.vmcb12), EmbeddedScene.ioio] + round)
        try engine.addBreakpoint(.exit(0x7B))
        let hit = try engine.continueRunning()
        #expect(hit.hit == .exit(0x7B) && hit.exit?.name == "IOIO", "\(hit.reason)")
        #expect(source.played == 6, "two CPUID rounds ran through before the IOIO")
        try engine.deleteBreakpoints()
        try engine.addBreakpoint(.l2RIP(0x40_0010))
        let rip = try engine.continueRunning()
        #expect(rip.hit == .l2RIP(0x40_0010) && rip.exit?.name == "CPUID")
        try engine.deleteBreakpoints()
        #expect(try engine.continueRunning().kind == .exited, "no breakpoint: to the guest's end")
    }

    @Test("an L1 breakpoint is refused by a source that cannot patch, with the reason")
    func refusedBreakpoint() throws {
        let (engine, _) = EmbeddedScene.engine(try EmbeddedScene.target(), [])
        #expect(throws: EngineError.sourceCannot(.stopOnL1Instructions)) {
            try engine.addBreakpoint(.l1RIP(0x1000))
        }
        #expect(EngineError.sourceCannot(.stopOnL1Instructions).description.contains("cannot stop on L1 instructions"))
    }
}

@Suite("the session thread on the embedded target (no KVM)")
struct EmbeddedSessionTests {
    /// Waits for the next `.stopped` event (at most 10 s).
    static func nextStop(_ session: EngineSession) -> Stop? {
        guard case let .stopped(stop, _) = session.awaitOutcome(timeout: .seconds(10)) else { return nil }
        return stop
    }

    /// The start stop, which the engine's thread posts before any command.
    static func startStop(_ session: EngineSession) -> Stop? {
        session.takeEvents(waitingUpTo: .seconds(10)).compactMap { event -> Stop? in
            if case let .stopped(stop, _) = event, stop.kind == .start { return stop }
            return nil
        }.first
    }

    @Test(
        "one thread owns the vCPU: commands are typed messages, a busy session refuses, p pauses a guest that never exits"
    )
    func ownershipAndPause() throws {
        let target = try EmbeddedScene.target()
        let (engine, _) = EmbeddedScene.engine(
            target, [.vmrun(vmcb12: EmbeddedScene.vmcb12), EmbeddedScene.cpuid, .runsForever])
        let session = EngineSession(engine: engine)
        defer { session.shutdown() }
        #expect(session.startFailure(waitingUpTo: .seconds(10)) == nil)
        #expect(Self.startStop(session)?.kind == .start)
        // The engine's thread claimed the vCPU: this thread's reads are refused, as KVM's ioctls would be.
        #expect(throws: TargetError.self) { try target.generalRegisters() }
        try session.send(.next)
        #expect(Self.nextStop(session)?.exit?.name == "CPUID")
        try session.send(.continueRunning)
        #expect(throws: CommandRefusal.self) { try session.send(.next) }
        try session.send(.pause)
        let paused = Self.nextStop(session)
        #expect(paused?.kind == .paused, "\(String(describing: paused?.reason))")
        #expect(session.state == .stopped)
        #expect(session.shutdown(timeout: .seconds(5)), "the engine's thread ends")
        #expect(session.state == .ended && session.endFailure == nil)
    }

    @Test("a command that fails is a typed failure naming the command; the session is stopped again")
    func typedFailure() throws {
        let target = try EmbeddedScene.target()
        let (engine, _) = EmbeddedScene.engine(target, [])
        let session = EngineSession(engine: engine)
        defer { session.shutdown() }
        #expect(Self.startStop(session)?.kind == .start)
        target.withState { s in  // L2 runs now (L1 parked in the nested state): single-step is refused
            s.nestedFlags = [.guestMode, .gifSet]
            s.nestedData = VMCB()
        }
        try session.send(.stepInstruction)
        let outcome = session.awaitOutcome(timeout: .seconds(10))
        guard case let .failed(failure) = outcome else {
            Issue.record("expected a failure, got \(outcome)")
            return
        }
        #expect(failure == .command(.stepInstruction, EngineError.cannotStepL2.description), "\(failure)")
        #expect(session.state == .stopped)
    }

    @Test("a replay of what the embedded session recorded steps backwards to the same stops")
    func replayOfEmbeddedHistory() throws {
        let target = try EmbeddedScene.target()
        let round: [ScriptedEvent] = [.vmrun(vmcb12: EmbeddedScene.vmcb12), EmbeddedScene.cpuid]
        let (engine, _) = EmbeddedScene.engine(
            target, round + [.vmrun(vmcb12: EmbeddedScene.vmcb12), EmbeddedScene.ioio])
        try engine.recordStart()
        _ = try engine.next()
        _ = try engine.next()
        let replay = try ReplaySession(stops: engine.history, name: "embedded")
        _ = replay.takeEvents()
        try replay.send(.goto(engine.history.count - 1))
        try replay.send(.previous)
        let events = replay.takeEvents()
        let stops = events.compactMap { event -> Stop? in
            if case let .stopped(stop, _) = event { return stop }
            return nil
        }
        #expect(stops.last?.exit?.name == "CPUID", "\(stops.map(\.index))")
        #expect(replay.capabilities.contains(.replaysRecording) && replay.stopSourceKind == nil)
    }
}
