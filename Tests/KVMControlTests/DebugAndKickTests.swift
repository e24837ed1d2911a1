import Foundation
import KVMControl
import Synchronization
import Testing

@Suite("Guest debug, kick and nested state on the real /dev/kvm", .serialized)
struct DebugAndKickTests {
    /// Five one-byte NOPs, then OUT and HLT.
    static let nops: [UInt8] = [0x90, 0x90, 0x90, 0x90, 0x90, 0xE6, 0x42, 0xF4]  // nop×5; out 0x42, al; hlt

    @Test("single-step stops after every instruction, exactly once each")
    func singleStepCountsInstructions() throws {
        guard let kvm = try openKVM() else { return }
        let g = try TestGuest.realMode(kvm, code: Self.nops)
        try g.vcpu.setGuestDebug(GuestDebug(singleStep: true))
        var pcs: [UInt64] = []
        // Step until the OUT reaches userspace: one #DB after each NOP, at the next instruction.
        loop: for _ in 0..<20 {
            switch try g.vcpu.run() {
            case let .debug(exception, pc, dr6, _):
                #expect(exception == 1, "single-step reports #DB")
                #expect(dr6 & (1 << 14) != 0, "DR6.BS marks a single-step trap")
                pcs.append(pc)
            case .io(0x42, .out, 1, 1, _): break loop
            case let other:
                Issue.record("unexpected exit \(other)")
                return
            }
        }
        #expect(pcs == [0x1001, 0x1002, 0x1003, 0x1004, 0x1005])
        // Where RIP stands at the OUT exit is KVM's choice: past it with fast PIO
        // (here), on it when KVM emulates the OUT (the sandbox's SVM KVM, no NRIPS).
        let rip = try g.vcpu.registers().rip
        print("RIP at the OUT exit: 0x\(String(rip, radix: 16))")
        #expect(rip == 0x1005 || rip == 0x1007)
        try g.vcpu.setGuestDebug(GuestDebug())
        #expect(try g.vcpu.run() == .hlt, "with single-step off the guest runs to HLT")
    }

    @Test("a hardware execute breakpoint stops at its address (probed: reported either way)")
    func hardwareBreakpoint() throws {
        guard let kvm = try openKVM() else { return }
        let slots = try kvm.checkExtension(.guestDebugHardwareBreakpoints)
        let g = try TestGuest.realMode(kvm, code: Self.nops)
        try g.vcpu.setGuestDebug(GuestDebug(hardwareBreakpoints: [0x1003]))
        let exit = try g.vcpu.run()
        switch exit {
        case let .debug(1, pc, dr6, _):
            print(
                "probe: hardware breakpoints honoured by this KVM (\(slots) slots), stop at 0x\(String(pc, radix: 16))")
            #expect(pc == 0x1003)
            #expect(dr6 & 1 == 1, "DR6.B0 names breakpoint 0")
            #expect(try g.vcpu.registers().rip == 0x1003, "the instruction has not executed yet")
        case .io(0x42, .out, _, _, _):
            print(
                "probe: hardware breakpoints NOT honoured by this KVM (KVM_CAP_GUEST_DEBUG_HW_BPS = \(slots)); the guest ran past 0x1003"
            )
        default:
            Issue.record("unexpected exit \(exit) with a hardware breakpoint set")
        }
        #expect(throws: KVMError.self) {
            try g.vcpu.setGuestDebug(GuestDebug(hardwareBreakpoints: [1, 2, 3, 4, 5]))
        }
    }

    @Test("a vCPU spinning in a loop is kicked from another thread and returns within 100 ms")
    func kickInterruptsSpinningGuest() throws {
        guard let kvm = try openKVM() else { return }
        let g = try TestGuest.realMode(kvm, code: [0xEB, 0xFE])  // jmp $
        let vcpu = g.vcpu
        for round in 0..<3 {
            let result = Mutex<(VCPUExit?, ContinuousClock.Instant?)>((nil, nil))
            let started = DispatchSemaphore(value: 0)
            let done = DispatchSemaphore(value: 0)
            Thread {
                started.signal()
                let exit = try? vcpu.run()
                result.withLock { $0 = (exit, ContinuousClock.now) }
                done.signal()
            }.start()
            started.wait()
            Thread.sleep(forTimeInterval: 0.05)  // let the guest spin inside KVM_RUN
            #expect(result.withLock { $0.0 } == nil, "round \(round): the guest was still running before the kick")
            let kickedAt = ContinuousClock.now
            vcpu.kick()
            #expect(done.wait(timeout: .now() + 2) == .success, "round \(round): run() returned after the kick")
            let (exit, returnedAt) = result.withLock { $0 }
            #expect(exit == .interrupted)
            if let returnedAt {
                let latency = returnedAt - kickedAt
                print("kick latency round \(round): \(latency)")
                #expect(latency < .milliseconds(100))
            }
        }
        // A kick while nothing runs makes the next run() return at once, and only that one.
        vcpu.kick()
        #expect(try vcpu.run() == .interrupted)
        #expect(try vcpu.registers().rip == 0x1000, "still spinning on jmp $")
    }

    @Test("KVM_CAP_NESTED_STATE is reported, and nested state is refused clearly without it")
    func nestedStateCapability() throws {
        guard let kvm = try openKVM() else { return }
        let cap = try kvm.checkExtension(.nestedState)
        let svm = CPUIDEntry.hasSVM(try kvm.supportedCPUID())
        print("KVM_CAP_NESTED_STATE = \(cap), SVM in supported CPUID: \(svm)")
        let g = try TestGuest.realMode(kvm, code: [0xF4])
        #expect(g.vcpu.nestedStateMaxSize == cap)
        if cap == 0 {
            do {
                _ = try g.vcpu.nestedState()
                Issue.record("KVM_GET_NESTED_STATE succeeded although KVM_CAP_NESTED_STATE is 0")
            } catch let error as KVMError {
                #expect(error.description.contains("KVM_GET_NESTED_STATE"))
                #expect(error.description.contains("KVM_CAP_NESTED_STATE is 0"))
            }
        } else {
            // Nested-capable KVM (the sandbox): a vCPU outside guest mode answers with a bare header.
            let state = try g.vcpu.nestedState()
            #expect(Int(state.size) <= cap)
            #expect(state.rawFlags & 1 == 0, "KVM_STATE_NESTED_GUEST_MODE is clear")
            #expect(state.format == (svm ? 1 : 0), "format: 1 SVM, 0 VMX")
            try g.vcpu.setNestedState(state)
        }
    }
}
