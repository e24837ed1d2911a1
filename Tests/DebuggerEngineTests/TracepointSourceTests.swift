import DebuggerEngine
import Foundation
import KVMControl
import SVMModel
import Testing

/// An engine on the built-in demo, stopped by KVM's own tracepoints.
func tracepointDemoEngine() throws -> (Engine, OwnVMTarget) {
    let target = try OwnVMTarget.demo(kvm: KVM())
    return (try Engine(ownVM: target, stops: .tracepoint), target)
}

@Suite(
    "stops from KVM's tracepoints on the demo (real nested KVM)", .serialized,
    .enabled(if: NestedSVM.available, NestedSVM.reason))
struct TracepointSourceTests {
    let demo = DemoImage()

    @Test(
        "every exit of L2's program, one stop each: VMRUN stops in L2 with RUN_PENDING, #VMEXIT stops where KVM and vmcb12 agree"
    )
    func exactStops() throws {
        let (engine, target) = try tracepointDemoEngine()
        let program = DemoImage.l2Program(nestedPaging: try nestedPagingOffered())
        var stops: [Stop] = []
        for round in 0..<3 {
            for (i, (symbol, code)) in program.enumerated() {
                // After the OUT to 0xE9 L2 goes straight on to CPUID: that exit has no VMRUN of its own.
                if round == 0 || i > 0 {
                    let vmrun = try engine.step()
                    #expect(vmrun.kind == .vmrun && vmrun.level == .l2, "round \(round) \(symbol): \(vmrun.reason)")
                    #expect(vmrun.nestedFlags.contains(.guestMode) && vmrun.nestedFlags.contains(.runPending))
                    #expect(
                        vmrun.l2?[.rip] == vmrun.vmcb12?[integer: .saveRIP], "at VMRUN L2's RIP is vmcb12's save.rip")
                    #expect(vmrun.l1[.rip] == demo.address("vmrun") + 3, "L1 parked after its VMRUN")
                    stops.append(vmrun)
                }
                let exit = try engine.step()
                #expect(exit.kind == .nestedExit, "round \(round) \(symbol): \(exit.reason)")
                #expect(
                    exit.exit?.code == code,
                    "round \(round): expected \(SVMExit.name(of: code) ?? "?") at \(symbol), got \(exit.reason)")
                #expect(exit.l2?[.rip] == demo.address(symbol))
                #expect(exit.l1[.rip] == demo.address("vmrun") + 3, "L1 resumes right after VMRUN")
                #expect(exit.kvm?.injectedExit?.code == code, "KVM's tracepoint names the same exit")
                #expect(exit.kvmDisagreements.isEmpty, "\(exit.kvmDisagreements)")
                #expect(exit.kvm?.problems.isEmpty == true)
                stops.append(exit)
            }
            // L2's OUT to 0xE9 (not intercepted by L1) reaches the VMM while L2 runs.
            let vmrun = try engine.step()
            #expect(vmrun.kind == .vmrun)
            let out = try engine.step()
            #expect(out.kind == .l2UserspaceExit, "\(out.reason)")
            stops += [vmrun, out]
        }
        #expect(stops.filter { $0.kind == .fault }.isEmpty)
        _ = target
    }

    @Test("KVM handled L2's OUT to 0xE9 itself: the next #VMEXIT counts it under handled_by_l0")
    func handledByL0() throws {
        let (engine, _) = try tracepointDemoEngine()
        var stop = try engine.next()
        while stop.kind != .l2UserspaceExit { stop = try engine.next() }
        let following = try engine.next()
        #expect(following.kind == .nestedExit && following.exit?.code == 0x72, "\(following.reason)")
        let io = following.kvm?.handledByL0?.first { $0.code == 0x7B }
        #expect(
            io?.count == 1,
            "exactly the one OUT to 0xE9 was an IOIO exit L1 never saw: \(String(describing: following.kvm?.handledByL0))"
        )
        // The JSON carries the same counts.
        let json = following.json.serialized()
        #expect(json.contains("\"handled_by_l0\":[") && json.contains("\"reason\":\"IOIO\""))
    }

    @Test("nothing in guest memory changes: L1's code is byte for byte what was loaded")
    func guestUntouched() throws {
        let (engine, target) = try tracepointDemoEngine()
        for _ in 0..<25 { _ = try engine.step() }
        let loaded = try target.vm.read(at: DemoImage.loadAddress, count: demo.bytes.count)
        #expect(loaded == demo.bytes)
    }

    @Test("through the session: the events follow the engine's thread, not the one that made the source")
    func session() throws {
        let (engine, _) = try tracepointDemoEngine()
        let session = EngineSession(engine: engine)
        defer { session.shutdown() }
        _ = nextStop(session)
        for _ in 0..<5 {
            try session.send(.next)
            let stop = try #require(nextStop(session))
            #expect(stop.kind == .nestedExit || stop.kind == .l2UserspaceExit, "\(stop.reason)")
            #expect(stop.kind != .nestedExit || stop.kvm?.injectedExit != nil)
        }
    }
}

@Suite("the tracepoint stop source on the host's KVM (plain guest, no SVM)", .serialized)
struct TracepointHostTests {
    func plainGuest(_ code: [UInt8]) throws -> OwnVMTarget? {
        try requireKVM()
        guard geteuid() == 0 else {
            try Test.cancel("the tracepoint stop source needs root (perf on kvm tracepoints, tracefs)")
        }
        let image = try GuestImage.flat(code, loadAddress: 0x10_0000, entry: nil)
        return try OwnVMTarget.image(kvm: KVM(), image: image, name: "plain")
    }

    @Test(
        "without nested events the source stops where the VMM must: the guest's exit, a pause; no KVM events invented")
    func vmmStops() throws {
        // cpuid; mov al, 7; out 0xf4, al
        guard let target = try plainGuest([0x0F, 0xA2, 0xB0, 0x07, 0xE6, 0xF4]) else { return }
        let engine = try Engine(ownVM: target, stops: .tracepoint)
        let stop = try engine.step()
        #expect(stop.kind == .exited && stop.exitStatus == 7, "\(stop.reason)")
        #expect(stop.kvm?.events.isEmpty == true)
    }

    @Test("p pauses a guest that never exits (a kick with no KVM event is a pause)")
    func pause() throws {
        guard let target = try plainGuest([0xEB, 0xFE]) else { return }
        let session = EngineSession(engine: try Engine(ownVM: target, stops: .tracepoint))
        defer { session.shutdown() }
        _ = nextStop(session)
        try session.send(.next)
        Thread.sleep(forTimeInterval: 0.2)
        try session.send(.pause)
        let paused = try #require(nextStop(session))
        #expect(paused.kind == .paused && paused.l1[.rip] == 0x10_0000)
    }
}

@Suite(
    "the self-checking L1 stepped by KVM's tracepoints (real nested KVM)", .serialized,
    .enabled(if: NestedSVM.available, NestedSVM.reason))
struct TracepointSelfCheckTests {
    /// Whether the exit's "why" names the control the image's setup says sent it to L1.
    func matches(_ why: ExitCause?, _ intercept: SelfCheckImage.Intercept) -> Bool {
        switch (why, intercept) {
        case let (.intercept(bit)?, .instruction(word, index)): return bit.field == word && bit.bit == index
        case let (.ioPermission(check)?, .ioPort(port, _)): return check.port == port && check.anySet
        case let (.msrPermission(check)?, .msr(msr, isWrite)):
            return check.msr == msr && check.isWrite == isWrite && check.bit.isSet
        case let (.exceptionIntercept(vector)?, .exception(expected)): return vector == expected
        default: return false
        }
    }

    @Test(
        "every exit, one stop each, KVM and vmcb12 agree, the why and the L0-handled counts match the setup, the checksum never changes"
    )
    func stepsExactly() throws {
        let target = try OwnVMTarget.selfCheck(kvm: KVM())
        let engine = try Engine(ownVM: target, stops: .tracepoint)
        let program = SelfCheckImage.l2Program
        func qword(_ address: UInt64) throws -> UInt64 { try target.vm.readInteger(UInt64.self, at: address) }
        var exits = 0
        var passthroughs = 0
        var end: Stop?
        while end == nil {
            let stop = try engine.next()
            switch stop.kind {
            case .nestedExit:
                let expected = program[exits % program.count]
                #expect(
                    stop.exit?.code == expected.exitCode, "exit \(exits): \(stop.reason), expected \(expected.symbol)")
                #expect(stop.kvm?.injectedExit?.code == expected.exitCode)
                #expect(stop.kvmDisagreements.isEmpty, "\(stop.kvmDisagreements)")
                #expect(
                    matches(stop.why, expected.intercept),
                    "exit \(exits): why \(String(describing: stop.why)), expected \(expected.intercept)")
                // KVM's own exits: exactly the image's CPUIDs and passthrough OUT; NPF/#PF/INTR of L0's own may come too.
                let handled = try #require(stop.kvm?.handledByL0, "exit \(exits): no L0-handled counts")
                for code: UInt64 in [0x72, 0x7B] {
                    let want = expected.l0HandledBefore.filter { $0.exitCode == code }.count
                    let got = handled.first { $0.code == code }?.count ?? 0
                    #expect(
                        got == want,
                        "exit \(exits) (\(expected.symbol)): \(got) L0-handled \(SVMExit.name(of: code) ?? "?"), expected \(want)"
                    )
                }
                #expect(
                    try qword(SelfCheckImage.lastChecksum) == qword(SelfCheckImage.referenceChecksum),
                    "L1's checksum of its code changed at exit \(exits)")
                exits += 1
            case .l2UserspaceExit:
                passthroughs += 1
            case .vmrun:
                Issue.record("next() returned a VMRUN stop")
            default:
                end = stop
            }
        }
        #expect(end?.kind == .exited && end?.exitStatus == SelfCheckImage.passedStatus, "\(end?.reason ?? "")")
        #expect(exits == SelfCheckImage.nestedExitsPerRun)
        #expect(passthroughs == SelfCheckImage.iterations)
        #expect(try qword(SelfCheckImage.exitCounter) == UInt64(SelfCheckImage.nestedExitsPerRun))
        #expect(try qword(SelfCheckImage.checkCounter) == UInt64(SelfCheckImage.checksPerRun))
    }
}
