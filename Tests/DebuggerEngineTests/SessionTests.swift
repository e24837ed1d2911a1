import DebuggerEngine
import Foundation
import KVMControl
import SVMModel
import Testing

/// Waits for the session's next stop (nil: none within `seconds`).
func nextStop(_ session: EngineSession, within seconds: Int64 = 5) -> Stop? {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        for case let .stopped(stop, _) in session.takeEvents(waitingUpTo: .milliseconds(100)) { return stop }
    }
    return nil
}

@Suite(
    "one thread owns the engine and its vCPU; commands that do not fit are refused (real /dev/kvm, a plain guest)",
    .serialized)
struct SessionTests {
    /// A guest that spins forever without an exit: `jmp $` at 1 MiB.
    func spinningGuest() throws -> (EngineSession, OwnVMTarget) {
        try requireKVM()
        let image = try GuestImage.flat([0xEB, 0xFE], loadAddress: 0x10_0000, entry: nil)
        let target = try OwnVMTarget.image(kvm: KVM(), image: image, name: "spin")
        return (EngineSession(engine: try Engine(ownVM: target)), target)
    }

    @Test("the first stop is the vCPU as loaded, before it ran: L1's registers are known")
    func startStop() throws {
        let (session, _) = try spinningGuest()
        defer { session.shutdown() }
        let start = try #require(nextStop(session))
        #expect(start.kind == .start && start.level == .l1 && start.index == 0)
        #expect(start.l1[.rip] == 0x10_0000)
        #expect(
            Register.gprs.allSatisfy { start.l1.isKnown($0) }, "every L1 register is known before the first instruction"
        )
    }

    @Test("w or watch FIELD during continue is refused, the vCPU refuses other threads, p pauses")
    func oneDriver() throws {
        let (session, target) = try spinningGuest()
        defer { session.shutdown() }
        _ = nextStop(session)
        try session.send(.continueRunning)
        #expect(session.state == .running(.continueRunning))
        #expect(throws: CommandRefusal.self, "a second driver (live watch) while continue runs") {
            try session.send(.watch(freeRunning: true))
        }
        #expect(throws: CommandRefusal.self, "the breakpoint list changing under the running engine") {
            try session.send(.addBreakpoint(.watch(.exitCode)))
        }
        #expect(throws: CommandRefusal.self) { try session.send(.next) }
        // The vCPU belongs to the engine's thread: an ioctl from here is refused, not raced.
        #expect(throws: TargetError.self) { _ = try target.generalRegisters() }
        try session.send(.pause)
        let paused = try #require(nextStop(session), "pause did not stop the engine within 5 s")
        #expect(paused.kind == .paused && paused.l1[.rip] == 0x10_0000)
        #expect(session.state == .stopped)
        #expect(throws: CommandRefusal.self, "nothing to pause once stopped") { try session.send(.pause) }
    }

    @Test("n on a guest that never exits leaves the caller free, and p pauses it")
    func nextNeverHangsTheCaller() throws {
        let (session, _) = try spinningGuest()
        defer { session.shutdown() }
        _ = nextStop(session)
        let sent = ContinuousClock.now
        try session.send(.next)
        #expect(ContinuousClock.now - sent < .milliseconds(100), "send returns at once")
        #expect(nextStop(session, within: 1) == nil, "the guest produces no stop")
        try session.send(.pause)
        #expect(nextStop(session)?.kind == .paused)
    }

    @Test("live watch samples a running guest; ending it records where the guest is")
    func watchEndsWithWhereTheGuestIs() throws {
        let (session, _) = try spinningGuest()
        defer { session.shutdown() }
        _ = nextStop(session)
        try session.send(.watch(freeRunning: true))
        #expect(throws: CommandRefusal.self) { try session.send(.stepInstruction) }
        var sampled: Stop?
        let deadline = ContinuousClock.now + .seconds(5)
        while sampled == nil, ContinuousClock.now < deadline {
            session.requestSample()
            for case let .sample(stop, _) in session.takeEvents(waitingUpTo: .milliseconds(100)) { sampled = stop }
        }
        #expect(sampled?.l1[.rip] == 0x10_0000, "a live sample of L1")
        try session.send(.stopWatch)
        let end = try #require(nextStop(session))
        #expect(
            end.kind == .paused && end.reason == "live watch ended here" && end.index == 1,
            "the history's last stop is where watch left the guest: \(end.reason)")
    }

    @Test("shutdown ends the engine's thread while the guest runs, and the session refuses commands afterwards")
    func shutdown() throws {
        let (session, _) = try spinningGuest()
        _ = nextStop(session)
        try session.send(.continueRunning)
        #expect(session.shutdown(timeout: .seconds(5)))
        #expect(session.state == .ended)
        #expect(throws: CommandRefusal.self) { try session.send(.next) }
    }
}

@Suite("breakpoints are predicates over stops, evaluated in one place")
struct BreakpointTableTests {
    func stop(exitCode: UInt64, rip: UInt64) -> Stop {
        var before = VMCB()
        before[integer: .saveRIP] = rip
        var after = before
        after[integer: .exitCode] = exitCode
        return Stop.synthetic(index: 0, before: before, after: after, l1: [:], l2: [:])
    }

    @Test("a watch compares with the previous stop that had vmcb12, whichever command took it")
    func watchBaseline() {
        var table = BreakpointTable()
        let first = stop(exitCode: 0x72, rip: 0x10)
        table.add(.watch(.exitCode), baselineFrom: first)
        #expect(table.evaluate(stop(exitCode: 0x72, rip: 0x12)) == nil, "no change")
        #expect(table.evaluate(stop(exitCode: 0x7B, rip: 0x14)) == .watch(.exitCode))
        #expect(table.evaluate(stop(exitCode: 0x7B, rip: 0x16)) == nil, "the baseline moved to 0x7b")
    }

    @Test("exit and L2-RIP breakpoints match nested exits only; delete removes one or all")
    func exitAndRIP() {
        var table = BreakpointTable()
        table.add(.exit(0x7B), baselineFrom: nil)
        table.add(.l2RIP(0x20), baselineFrom: nil)
        #expect(table.evaluate(stop(exitCode: 0x7B, rip: 0x10)) == .exit(0x7B))
        #expect(table.evaluate(stop(exitCode: 0x72, rip: 0x20)) == .l2RIP(0x20))
        var vmrun = stop(exitCode: 0x7B, rip: 0x20)
        vmrun.kind = .vmrun
        #expect(table.evaluate(vmrun) == nil, "a VMRUN stop is not a nested exit")
        #expect(table.remove(at: 0) == [.exit(0x7B)])
        #expect(table.remove(at: nil) == [.l2RIP(0x20)] && table.list.isEmpty)
    }
}
