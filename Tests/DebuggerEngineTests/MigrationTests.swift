import DebuggerEngine
import Foundation
import KVMControl
import SVMModel
import Testing

/// The orders and omissions a user names on the command line (pure, runs everywhere).
@Suite("restore orders and omissions")
struct RestoreOrderTests {
    @Test("QEMU's order: SREGS2 before NESTED_STATE, MP_STATE after VCPU_EVENTS, DEBUGREGS last")
    func qemuOrder() {
        let steps = RestoreOrder.qemu.steps
        #expect(
            steps == [
                .lapic, .sregs, .nestedState, .tscKHz, .regs, .xsave, .xcrs, .msrs, .events, .mpState, .debugRegs,
            ])
        for variant in RestoreOrder.variants {
            #expect(Set(variant.steps) == Set(steps), "\(variant.name) has every part once")
            #expect(variant.steps.count == steps.count)
        }
        #expect(Set(RestoreOrder.variants.map(\.name)).count == RestoreOrder.variants.count)
    }

    @Test("a named variant moves one part; a list puts its parts first")
    func parsing() throws {
        let first = try RestoreOrder.parse("nested-state-first")
        #expect(first.steps.firstIndex(of: .nestedState)! < first.steps.firstIndex(of: .sregs)!)
        let after = try RestoreOrder.parse("events-after-mp-state")
        #expect(after.steps.firstIndex(of: .mpState)! < after.steps.firstIndex(of: .events)!)
        let listed = try RestoreOrder.parse("nested-state, sregs")
        #expect(Array(listed.steps.prefix(3)) == [.nestedState, .sregs, .lapic])
        #expect(throws: RestoreOrder.OrderError.unknownPart("memory")) { try RestoreOrder.parse("memory") }
        #expect(throws: RestoreOrder.OrderError.repeated("regs")) { try RestoreOrder.parse("regs,regs") }
    }

    @Test("omissions: parts, the PDPTRs alone, one MSR by index or name")
    func omissions() {
        #expect(Omission("nested-state") == .part(.nestedState))
        #expect(Omission("pdptrs") == .pdptrs)
        #expect(Omission("msr:0xc0010117") == .msr(0xC001_0117))
        #expect(Omission("msr:VM_HSAVE_PA") == .msr(0xC001_0117))
        #expect(Omission("memory") == nil, "memory is the VM itself, not a restore step")
        #expect(Omission("msr:zz") == nil)
        #expect(Omission.msr(0xC001_0117).description == "msr:VM_HSAVE_PA")
    }
}

/// Saves a real nested vCPU, restores it into a fresh VM and runs both (the sandbox).
@Suite("the migration check on real nested KVM", .serialized, .enabled(if: NestedSVM.available, NestedSVM.reason))
struct MigrationCheckTests {
    func session(_ target: OwnVMTarget) throws -> EngineSession {
        let session = EngineSession(engine: try Engine(ownVM: target, stops: .tracepoint))
        #expect(session.startFailure(waitingUpTo: .seconds(10)) == nil)
        _ = session.takeEvents()
        return session
    }

    @Test("at a nested #VMEXIT, QEMU's order: read back equal but for counters, 30 exits alike")
    func l1StopRoundTrips() throws {
        let original = try session(OwnVMTarget.demo(kvm: KVM()))
        defer { original.shutdown() }
        let at = try MigrationCheck.run(original, to: .nestedExit(4), timeout: 20)
        #expect(at.kind == .nestedExit && at.exit?.name == "MSR", "\(at.reason)")
        let report = try MigrationCheck.check(original, at: .nestedExit(4), plan: MigrationPlan(exits: 30))
        #expect(report.failedStep == nil, "\(report.restore)")
        #expect(report.unexpectedReadBack.isEmpty, "\(report.unexpectedReadBack)")
        #expect(report.readBack.contains { $0.field == "TSC" && $0.expected }, "the TSC runs on: \(report.readBack)")
        #expect(report.divergence == nil, "\(report.divergence?.differences ?? [])")
        #expect(report.comparedExits == 30)
        #expect(report.verdict == .same)
        #expect(report.restore.map(\.part) == [.cpuid, .memory] + RestoreOrder.qemu.steps)
    }

    @Test("without NESTED_STATE, a vCPU saved in L2 comes back as L1 running L2's registers")
    func omittedNestedStateIsCaught() throws {
        let original = try session(OwnVMTarget.demo(kvm: KVM()))
        defer { original.shutdown() }
        let at = try MigrationCheck.run(original, to: .window(.inL2, occurrence: 1), timeout: 20)
        #expect(at.level == .l2 && at.nestedFlags.contains(.guestMode))
        let report = try MigrationCheck.check(
            original, at: .window(.inL2, occurrence: 1),
            plan: MigrationPlan(omitting: [.part(.nestedState)], exits: 10))
        #expect(report.restore.first { $0.part == .nestedState }?.outcome == .omitted)
        #expect(
            report.readBack.contains {
                $0.field == "flags" && $0.original.contains("GUEST_MODE") && !$0.clone.contains("GUEST_MODE")
            })
        let d = try #require(report.divergence)
        #expect(d.stopNumber == 1)
        #expect(
            d.original.level == .l1 && d.clone.level == .l1 && d.clone.kind == .l1UserspaceExit,
            "the clone runs L2's code as L1: \(d.clone.reason)")
        #expect(report.verdict == .diverged)
    }

    @Test(
        "an exception being injected at VMRUN (RUN_PENDING) survives QEMU's order; the injection is lost without NESTED_STATE"
    )
    func eventInjection() throws {
        for omitting in [Set<Omission>(), [.part(.nestedState)]] {
            let original = try session(OwnVMTarget.eventsScenario(kvm: KVM()))
            defer { original.shutdown() }
            let at = try MigrationCheck.run(original, to: .window(.eventInjection, occurrence: 1), timeout: 20)
            #expect(at.nestedFlags.contains(.runPending))
            #expect(at.cachedControls.map { $0[integer: .eventInj] } == 0x8000_0306, "EVENTINJ: valid exception #UD")
            let report = try MigrationCheck.check(
                original, at: .window(.eventInjection, occurrence: 1),
                plan: MigrationPlan(omitting: omitting, exits: 12))
            if omitting.isEmpty {
                #expect(report.divergence == nil, "\(report.divergence?.differences ?? [])")
                #expect(report.comparedExits == 12)
                // What KVM does lose here: L1's DR6 in vmcb01 (svm_copy_vmrun_state leaves it out).
                #expect(
                    report.unexpectedReadBack.allSatisfy { $0.field == "save.dr6" || $0.field == "save.g_pat" },
                    "\(report.unexpectedReadBack)")
                #expect(report.unexpectedReadBack.contains { $0.field == "save.dr6" })
            } else {
                let d = try #require(report.divergence)
                #expect(d.original.exit?.name == "VMMCALL", "L2 ran its #UD handler: \(d.original.reason)")
                #expect(d.clone.exit?.name != "VMMCALL", "\(d.clone.reason)")
            }
        }
    }

    @Test("NESTED_STATE before SREGS2 is refused: EFER.SVME is not set yet")
    func nestedStateFirst() throws {
        let original = try session(OwnVMTarget.demo(kvm: KVM()))
        defer { original.shutdown() }
        _ = try MigrationCheck.run(original, to: .nestedExit(2), timeout: 20)
        let report = try MigrationCheck.check(
            original, at: .nestedExit(2),
            plan: MigrationPlan(order: try RestoreOrder.parse("nested-state-first"), exits: 5))
        let failed = try #require(report.failedStep)
        #expect(failed.ioctl == "KVM_SET_NESTED_STATE")
        #expect(failed.outcome == .failed("KVM_SET_NESTED_STATE: EINVAL (Invalid argument)"))
        #expect(report.verdict == .restoreFailed)
    }
}
