import CKVM
import KVMControl
import Testing

/// The C compiler reads <linux/kvm.h>; these compare what Swift imported
/// with it and with the reference's numbers (ckvm.c asserts the rest at build time).
@Suite("uapi struct layout")
struct LayoutTests {
    @Test("Swift sees the uapi structs at the sizes and offsets the C compiler computes")
    func layouts() {
        #expect(MemoryLayout<kvm_regs>.size == 144)
        #expect(MemoryLayout<kvm_sregs>.size == 312)
        #expect(MemoryLayout<kvm_sregs2>.size == 320)
        #expect(MemoryLayout<kvm_sregs2>.offset(of: \.pdptrs) == ckvm_offsetof_sregs2_pdptrs())
        #expect(MemoryLayout<kvm_debugregs>.size == 128)
        #expect(MemoryLayout<kvm_vcpu_events>.size == 64)
        #expect(MemoryLayout<kvm_guest_debug>.size == 72)
        #expect(MemoryLayout<kvm_cpuid_entry2>.stride == 40)
        #expect(MemoryLayout<kvm_nested_state>.size == NestedState.headerSize)
        #expect(ckvm_offsetof_nested_state_vmcb_pa() == 8)
        #expect(ckvm_offsetof_nested_state_data() == NestedState.headerSize)
        #expect(MemoryLayout<kvm_run>.offset(of: \.flags) == ckvm_offsetof_run_flags())
        #expect(ckvm_offsetof_run_exit_union() == 32)
        #expect(ckvm_offsetof_run_io_port() == 34)
        #expect(ckvm_offsetof_run_debug_pc() == 40)
    }

    @Test("kvm_run's exit_reason offset and the exit code handed to QEMU come from the header")
    func kvmRunLayout() {
        #expect(KVMRunLayout.exitReasonOffset == 8, "8 bytes of request/flags, then exit_reason")
        #expect(KVMRunLayout.irqWindowOpenExitReason == [7, 0, 0, 0], "KVM_EXIT_IRQ_WINDOW_OPEN is 7")
    }

    @Test("ioctl numbers match the reference's encodings")
    func ioctlNumbers() {
        #expect(CKVM_RUN == 0xAE80)
        #expect(CKVM_GET_REGS == 0x8090_AE81)
        #expect(CKVM_GET_SREGS2 == 0x8140_AECC)
        #expect(CKVM_GET_NESTED_STATE == 0xC080_AEBE)
        #expect(CKVM_SET_NESTED_STATE == 0x4080_AEBF)
        #expect(CKVM_SET_GUEST_DEBUG == 0x4048_AE9B)
        #expect(CKVM_GET_VCPU_EVENTS == 0x8040_AE9F)
    }
}
