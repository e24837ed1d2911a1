import SVMModel
import Testing

@testable import DebuggerEngine

/// How a divergence is judged, on stops as the sandbox gave them (events scenario, 6.1, under load):
/// the VINTR exit one instruction early in the run where L0 took a host interrupt.
@Suite("migration check verdicts (no KVM)")
struct MigrationVerdictTests {
    static func vintr(rip: UInt64, l0: [L0ExitCount]) -> Stop {
        var vmcb = VMCB()
        vmcb[integer: .exitCode] = 0x64
        vmcb[integer: .saveRIP] = rip
        var stop = Stop(
            kind: .nestedExit, level: .l1, reason: "nested #VMEXIT VINTR: VINTR", exit: DecodedExit(vmcb: vmcb),
            l1: RegisterSet(source: "test", values: [:]), vmcb12: vmcb, kvmExit: "KVM_RUN EINTR")
        var evidence = KVMEvidence()
        evidence.handledByL0 = l0
        stop.kvm = evidence
        return stop
    }

    static let intr = L0ExitCount(code: 0x60, count: 1)
    static let ioio = L0ExitCount(code: 0x7B, count: 1)

    @Test("an STI shadow lost across L0's interrupt exit: the early VINTR is the side that took the interrupt")
    func lostShadow() {
        let d = MigrationReport.Divergence(
            stopNumber: 57, original: Self.vintr(rip: 0x176F, l0: [Self.intr, Self.ioio]),
            clone: Self.vintr(rip: 0x1770, l0: [Self.ioio]), differences: [])
        #expect(d.lostInterruptShadow && d.l0InterruptsDiffer)
        let reversed = MigrationReport.Divergence(
            stopNumber: 57, original: Self.vintr(rip: 0x1770, l0: [Self.intr, Self.ioio]),
            clone: Self.vintr(rip: 0x176F, l0: [Self.ioio]), differences: [])
        #expect(!reversed.lostInterruptShadow, "the late side took the interrupt: not the shadow's signature")
    }

    @Test("the same L0 exits on both sides explain nothing: a divergence stays a divergence")
    func sameL0() {
        let d = MigrationReport.Divergence(
            stopNumber: 8, original: Self.vintr(rip: 0x176F, l0: [Self.ioio]),
            clone: Self.vintr(rip: 0x1770, l0: [Self.ioio]), differences: [])
        #expect(!d.lostInterruptShadow && !d.l0InterruptsDiffer)
        // L0's page faults differ between a fresh clone and the original anyway: they are not timing.
        let npf = MigrationReport.Divergence(
            stopNumber: 1, original: Self.vintr(rip: 0x176F, l0: []),
            clone: Self.vintr(rip: 0x1770, l0: [L0ExitCount(code: 0x400, count: 5)]), differences: [])
        #expect(!npf.l0InterruptsDiffer)
    }
}
