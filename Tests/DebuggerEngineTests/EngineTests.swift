import DebuggerEngine
import Foundation
import KVMControl
import SVMModel
import TestSupport
import Testing

/// Whether this KVM can run an L1 hypervisor. Where nested SVM is required
/// (NESTDBG_REQUIRE_NESTED, set in the sandbox) the tests run regardless and
/// fail loudly if it is missing; elsewhere they are reported as skipped.
enum NestedSVM {
    static let required = ProcessInfo.processInfo.environment["NESTDBG_REQUIRE_NESTED"] != nil
    static let available: Bool = {
        if required { return true }
        guard access("/dev/kvm", R_OK | W_OK) == 0, let kvm = try? KVM() else { return false }
        return (try? OwnVMTarget.nestedCPUIDForTests(kvm)) != nil
    }()
    static let reason: Comment =
        "needs a KVM that offers nested SVM (SVM in CPUID, KVM_CAP_NESTED_STATE): runs in the sandbox (scripts/e2e)"
}

/// Makes sure /dev/kvm can be used: in CI its absence fails the test,
/// elsewhere the test is reported as skipped with the reason.
func requireKVM(sourceLocation: SourceLocation = #_sourceLocation) throws {
    try Requirement.kvm(sourceLocation: sourceLocation)
}

/// An engine on the built-in demo, and its target.
func demoEngine() throws -> (Engine, OwnVMTarget) {
    let target = try OwnVMTarget.demo(kvm: KVM())
    return (try Engine(ownVM: target), target)
}

/// Does KVM offer nested paging to L1 (CPUID 8000_000A EDX[0])? kvm_amd npt=0 does not.
func nestedPagingOffered() throws -> Bool {
    try KVM().supportedCPUID().first { $0.function == 0x8000_000A }.map { $0.edx & 1 != 0 } ?? false
}

@Suite(
    "the nested stepping engine on the demo (real nested KVM)", .serialized,
    .enabled(if: NestedSVM.available, NestedSVM.reason))
struct EngineTests {
    let demo = DemoImage()

    @Test("exits follow L2's program; vmcb12, EXITINFO, sync diff and both panes are right at every stop")
    func stepsThroughTheDemo() throws {
        let (engine, target) = try demoEngine()
        let vmcb12 = DemoImage.vmcb12
        let np = try nestedPagingOffered()
        print("demo: L2 page faults are \(np ? "nested (NPF)" : "L2's own (#PF)")")
        for round in 0..<3 {
            for (symbol, code) in DemoImage.l2Program(nestedPaging: np) {
                // L2 loops from its passthrough OUT straight into CPUID: that exit's VMRUN came before the OUT.
                if round == 0 || symbol != "l2_cpuid" {
                    let vmrun = try engine.step()
                    #expect(vmrun.kind == .vmrun, "round \(round) \(symbol): VMRUN stop first")
                    #expect(vmrun.l1[.rip] == demo.address("vmrun"))
                    #expect(vmrun.violations.isEmpty, "the demo's vmcb12 passes the checks")
                }

                let s = try engine.step()
                // A fault (L1's panic port, a triple fault) leaves L1 spinning: stop here rather than wait forever.
                guard s.kind != .fault else {
                    Issue.record("round \(round) \(symbol): \(s.reason)")
                    return
                }
                #expect(s.kind == .nestedExit, "round \(round) \(symbol): \(s.reason)")
                #expect(
                    s.exit?.code == code,
                    "round \(round): \(symbol) exits with 0x\(String(code, radix: 16)), got \(s.reason)")
                #expect(
                    s.vmcb12?[integer: .saveRIP] == demo.address(symbol), "save.rip is the L2 instruction \(symbol)")
                #expect(s.l2?[.rip] == demo.address(symbol))
                #expect(s.l1[.rip] == demo.address("after_vmrun"), "L1 resumes after VMRUN")
                #expect(s.l1[.rax] == vmcb12, "RAX holds the vmcb12 address")
                #expect(
                    s.l1[.rbx] != nil && s.l1[.rbx] == s.l2?[.rbx], "L1 runs with the vCPU's RBX, L2's (not switched)")
                #expect(s.l2?.isKnown(.rbx) == true, "L2's RBX is the vCPU's")
                #expect(!s.nestedFlags.contains(.guestMode))
                let unexpected = s.synced.filter { $0.sync == .unexpected }.map(\.field.name)
                #expect(unexpected.isEmpty, "\(symbol): KVM wrote fields it should not: \(unexpected)")
                #expect(s.synced.contains { $0.field.name == "control.exit_code" } || round > 0 || symbol != "l2_cpuid")
                // Every exit is one the demo's L1 asked for, and KVM wrote at least the exit fields.
                #expect(s.why?.isAlarming == false, "\(symbol): \(s.why?.description ?? "no cause")")
                #expect(s.kvmWrote.contains { $0.field == .exitCode })
                let expectedKind = [
                    "l2_in": "iopm", "l2_out": "iopm", "l2_rdmsr": "msrpm", "l2_wrmsr": "msrpm",
                    "l2_ud": "exception_intercept", "l2_cpuid": "intercept",
                ][symbol]
                #expect(
                    expectedKind == nil || s.why?.kind == expectedKind, "\(symbol): \(s.why?.description ?? "no cause")"
                )
                let summary = s.exit?.summary ?? ""
                switch symbol {
                case "l2_in": #expect(summary == "IN 0x60, 1 byte")
                case "l2_out": #expect(summary == "OUT 0x80, 1 byte")
                case "l2_rdmsr": #expect(summary == "RDMSR 0xc0000081")
                case "l2_wrmsr": #expect(summary == "WRMSR 0xc0000081 = 0x5566778811223344")
                case "l2_npf":
                    #expect(
                        summary.hasPrefix(np ? "NPF read at GPA 0x60000, not present" : "#PF error code 0x0"),
                        "\(summary)")
                    #expect(s.vmcb12?[integer: .exitInfo2] == DemoImage.npfPage)
                case "l2_ud": #expect(summary == "#UD")
                case "l2_cpuid":
                    // L2's RAX (1: the leaf) reached vmcb12 through KVM's sync.
                    #expect(s.vmcb12?[integer: .saveRAX] == 1 || round > 0)
                default: break
                }
            }
            // The OUT to 0xE9 is not intercepted by L1: the VMM sees it with the vCPU in L2.
            #expect(try engine.step().kind == .vmrun)
            let p = try engine.step()
            #expect(p.kind == .l2UserspaceExit && p.level == .l2, "\(p.reason)")
            let rip = p.l2?[.rip] ?? 0
            #expect(rip == demo.address("l2_passthrough") || rip == demo.address("l2_passthrough") + 2)
            #expect(p.l2?[.rax].map { $0 & 0xFFFF } == 0x4C32, "L2's registers as L2 set them")
            #expect(p.l1[.rip] == demo.address("after_vmrun"), "nested state: L1 parked after VMRUN")
            #expect(p.l1[.rax] == vmcb12)
            #expect(!p.l1.isKnown(.rbx))
            #expect(p.nestedFlags.contains(.guestMode) && p.vmcb12GPA == vmcb12)
        }
    }

    @Test("500 consecutive nested exits: exactly one stop per exit, none missing, the guest never sees the patches")
    func fiveHundredExits() throws {
        let (engine, target) = try demoEngine()
        var codes: [UInt64] = []
        while engine.nestedExitCount < 500 {
            let s = try engine.next()
            #expect(s.kind == .nestedExit || s.kind == .l2UserspaceExit, "\(s.reason)")
            if s.kind == .fault { return }  // L1 spins after a fault: waiting would hang
            if let code = s.exit?.code, s.kind == .nestedExit { codes.append(code) }
        }
        // L1 counts the exits it handled. The engine stops before L1's first
        // instruction after VMRUN, so L1 has counted all but the current one.
        let l1Count = try target.vm.readInteger(UInt64.self, at: DemoImage.exitCounter)
        #expect(l1Count == 499, "L1 handled \(l1Count) exits before the 500th stop")
        let np = try nestedPagingOffered()
        let expected = (0..<50).flatMap { _ in DemoImage.l2Program(nestedPaging: np).map(\.exitCode) }
        #expect(codes == expected)
        // Stopped: the patch bytes are not in guest memory.
        let vmrunGPA = demo.address("vmrun")
        let after = demo.address("after_vmrun")
        #expect(try target.vm.read(at: after, count: 1) != [0xF4], "the post-VMRUN byte is the guest's while stopped")
        try engine.detach()
        #expect(try target.vm.read(at: vmrunGPA, count: 3) == [0x0F, 0x01, 0xD8])
    }

    @Test("breakpoints: on an exit code, on an L2 RIP, on a VMCB12 field changing")
    func breakpoints() throws {
        let (engine, _) = try demoEngine()
        try engine.addBreakpoint(.exit(0x46))
        var s = try engine.continueRunning(limit: 200)
        #expect(s.hit == .exit(0x46) && s.exit?.name == "EXCP_UD")
        try engine.deleteBreakpoints()
        try engine.addBreakpoint(.l2RIP(demo.address("l2_hlt")))
        s = try engine.continueRunning(limit: 200)
        #expect(s.hit == .l2RIP(demo.address("l2_hlt")) && s.exit?.name == "HLT")
        try engine.deleteBreakpoints()
        try engine.addBreakpoint(.watch(.exitCode))
        s = try engine.continueRunning(limit: 5)
        #expect(s.hit == .watch(.exitCode) && s.kind == .nestedExit, "\(s.reason)")
    }

    @Test("a watch set after stepping hits at the very next change: its baseline moves at every stop, n included")
    func watchBaselineMovesWithSteps() throws {
        let (engine, _) = try demoEngine()
        #expect(try engine.next().exit?.code == 0x72)  // CPUID
        try engine.addBreakpoint(.watch(.exitCode))
        // n reports the change it stepped over, and moves the baseline.
        let stepped = try engine.next()
        #expect(stepped.exit?.code == 0x7B && stepped.hit == .watch(.exitCode), "IN: \(stepped.reason)")
        // OUT is IOIO too (no change); the first change after it is RDMSR.
        let s = try engine.continueRunning(limit: 10)
        #expect(s.hit == .watch(.exitCode) && s.exit?.code == 0x7C, "\(s.reason)")
        #expect(engine.nestedExitCount == 4, "continue stopped at the first change after stepping")
    }

    @Test(
        "an L1 breakpoint stops before L1's CPUID handler, once per CPUID exit, unseen by the guest; deleted, it never stops again"
    )
    func l1Breakpoint() throws {
        let (engine, target) = try demoEngine()
        let handler = demo.address("l1_h_cpuid")
        #expect(throws: StopSourceError.breakpointOnVMRUNSite) {
            try engine.addBreakpoint(.l1RIP(demo.address("vmrun")))
        }
        try engine.addBreakpoint(.l1RIP(handler))
        for round in 0..<3 {
            let s = try engine.continueRunning(limit: 100)
            #expect(s.hit == .l1RIP(handler) && s.kind == .breakpoint, "round \(round): \(s.reason)")
            #expect(s.l1[.rip] == handler)
            #expect(try target.vm.read(at: handler, count: 1) != [0xF4], "the patch is out while stopped")
        }
        // 3 CPUID exits were handled among 21 nested exits (10 per round, plus the first).
        #expect(engine.nestedExitCount == 21)
        try engine.deleteBreakpoints()
        #expect(try target.vm.read(at: handler, count: 1) != [0xF4])
        // Two more full rounds of L2's program, CPUID twice among them: no breakpoint stop.
        var kinds: [StopKind] = []
        while engine.nestedExitCount < 41 { kinds.append(try engine.step().kind) }
        #expect(!kinds.contains(.breakpoint), "a deleted L1 breakpoint stopped the guest")
        #expect(kinds.filter { $0 == .nestedExit }.count == 20)
    }

    @Test("single-step in L1 after an exit, refused in L2 and at VMRUN")
    func singleStep() throws {
        let (engine, target) = try demoEngine()
        let vmrun = try engine.step()
        #expect(vmrun.kind == .vmrun)
        #expect(throws: StopSourceError.cannotStepVMRUN) { try engine.stepInstruction() }
        let exit = try engine.step()
        #expect(exit.kind == .nestedExit)
        let stepped = try engine.stepInstruction()
        #expect(stepped.kind == .singleStep && stepped.level == .l1)
        #expect(stepped.l1[.rip]! > demo.address("after_vmrun"), "one instruction past the post-VMRUN site")
        // Run to the guest-mode OUT and try to step L2.
        while try engine.next().kind != .l2UserspaceExit {}
        #expect(throws: EngineError.cannotStepL2) { try engine.stepInstruction() }
        // The run goes on correctly afterwards.
        #expect(try engine.next().exit?.name == "CPUID")
    }

    @Test("pause from another thread stops a running engine")
    func pause() throws {
        let (engine, _) = try demoEngine()
        try engine.addBreakpoint(.exit(0x1234))  // never hit: continue runs until paused
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: Stop?
        // Handed to that thread for the run; this one only calls interrupt(), the one call any thread may make.
        nonisolated(unsafe) let running = engine
        Thread {
            result = try? running.continueRunning()
            done.signal()
        }.start()
        Thread.sleep(forTimeInterval: 0.3)
        engine.interrupt()
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(result?.kind == .paused)
        #expect(try engine.next().kind != .fault, "the guest continues after a pause")
    }
}

@Suite(
    "L1 reporting an exit it cannot handle is a fault in every scenario, never a hang (real nested KVM)", .serialized,
    .enabled(if: NestedSVM.available, NestedSVM.reason))
struct PanicPortTests {
    /// At L1's first VMRUN, makes L2's next instruction an RDTSC that vmcb12
    /// intercepts: neither L1 has a handler for it, so L1 reports it on its panic port.
    func provokePanic(_ engine: Engine, _ target: OwnVMTarget) throws -> Stop {
        let vmrun = try engine.step()
        #expect(vmrun.kind == .vmrun, "\(vmrun.reason)")
        guard let gpa = vmrun.vmcb12GPA, var vmcb = vmrun.vmcb12 else {
            throw TargetError.notSupported(operation: "no vmcb12", target: "test")
        }
        try target.vm.write([0x0F, 0x31], at: vmcb[integer: .saveRIP])  // L2's code is identity-mapped
        vmcb[integer: .intercepts3] |= 1 << 14  // RDTSC
        try target.vm.write(vmcb.bytes, at: gpa)
        // A hung engine would hang the test: pause it from outside after 20 s.
        let watchdog = DispatchWorkItem { engine.interrupt() }
        DispatchQueue.global().asyncAfter(deadline: .now() + 20, execute: watchdog)
        defer { watchdog.cancel() }
        let exit = try engine.next()
        #expect(exit.kind == .nestedExit && exit.exit?.name == "RDTSC", "\(exit.reason)")
        return try engine.next()
    }

    @Test("the 32-bit scenario (PSE paging)")
    func scenario32() throws {
        let target = try OwnVMTarget.legacyPagingScenario(kvm: KVM(), paging: .pse)
        let engine = try Engine(ownVM: target)
        let fault = try provokePanic(engine, target)
        #expect(
            fault.kind == .fault && fault.reason.contains("L1 reported an exit it does not handle: RDTSC"),
            "\(fault.reason)")
    }

    @Test("the 64-bit demo")
    func demo64() throws {
        let (engine, target) = try demoEngine()
        let fault = try provokePanic(engine, target)
        #expect(
            fault.kind == .fault && fault.reason.contains("L1 reported an exit it does not handle: RDTSC"),
            "\(fault.reason)")
    }
}
