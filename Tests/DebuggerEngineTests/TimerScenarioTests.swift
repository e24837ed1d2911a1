import DebuggerEngine
import Foundation
import KVMControl
import SVMModel
import Testing

/// The timer scenario: L1's APIC timer (the in-kernel LAPIC) interrupts its L2 through INTR #VMEXITs.
@Suite(
    "the timer scenario: an L2 interrupted by L1's APIC timer (real nested KVM)", .serialized,
    .enabled(if: NestedSVM.available, NestedSVM.reason))
struct TimerScenarioTests {
    let demo = DemoImage()

    @Test("every tick is an INTR #VMEXIT from L2's loop, L1 takes it through its IDT, and ends with status 0 after 5")
    func ticksThroughL1() throws {
        let target = try OwnVMTarget.timerScenario(kvm: KVM())
        #expect(target.vm.hasIRQChip)
        let engine = try Engine(ownVM: target, stops: .tracepoint)
        var exits: [Stop] = []
        var last: Stop?
        for _ in 0..<200 {
            let stop = try engine.step()
            last = stop
            if stop.kind == .nestedExit { exits.append(stop) }
            if stop.endsRun { break }
        }
        #expect(exits.count == DemoImage.timerRounds, "\(exits.map(\.reason))")
        for exit in exits {
            #expect(exit.exit?.code == 0x60, "an INTR #VMEXIT, got \(exit.reason)")
            let rip = exit.l2?[.rip] ?? 0
            #expect(
                rip >= demo.address("timer_l2") && rip < demo.address("timer_l2") + 4,
                "L2 was in its loop: 0x\(String(rip, radix: 16))")
            #expect(exit.l1[.rip] == demo.address("timer_vmrun") + 3)
        }
        #expect(last?.kind == .exited && last?.exitStatus == 0, "\(last?.reason ?? "no stop")")
        #expect(
            String(decoding: target.serialOutput ?? [], as: UTF8.self)
                == "timer: 5 INTR #VMEXITs from L2, each tick taken by L1\n")
        let ticks = try target.vm.readInteger(UInt64.self, at: DemoImage.timerTicks)
        #expect(ticks >= UInt64(DemoImage.timerRounds), "L1 took every tick through its IDT: \(ticks)")
    }

    @Test("the patch source refuses it in one sentence: KVM handles HLT itself with the irqchip")
    func patchRefused() throws {
        #expect(throws: StopSourceError.patchNeedsHLTExits(target: "scenario-timer")) {
            _ = try Engine(ownVM: try OwnVMTarget.timerScenario(kvm: KVM()), stops: .patch)
        }
    }
}
