import CKVM

/// What `KVM_SET_GUEST_DEBUG` asks of KVM: single-step, software breakpoints
/// (int3 exits to userspace) and up to four hardware execute breakpoints.
public struct GuestDebug: Equatable, Sendable {
    public var singleStep = false
    public var softwareBreakpoints = false
    /// Linear addresses of hardware execute breakpoints (DR0–DR3), at most four.
    public var hardwareBreakpoints: [UInt64] = []
    /// Keep KVM from injecting interrupts while single-stepping (5.16+).
    public var blockInterrupts = false

    public init(
        singleStep: Bool = false, softwareBreakpoints: Bool = false,
        hardwareBreakpoints: [UInt64] = [], blockInterrupts: Bool = false
    ) {
        self.singleStep = singleStep
        self.softwareBreakpoints = softwareBreakpoints
        self.hardwareBreakpoints = hardwareBreakpoints
        self.blockInterrupts = blockInterrupts
    }

    public var isEnabled: Bool { singleStep || softwareBreakpoints || !hardwareBreakpoints.isEmpty }

    func cValue() throws -> kvm_guest_debug {
        guard hardwareBreakpoints.count <= 4 else {
            throw KVMError.invalidArgument(
                operation: "KVM_SET_GUEST_DEBUG",
                reason: "\(hardwareBreakpoints.count) hardware breakpoints asked, x86 has 4")
        }
        var c = kvm_guest_debug()
        guard isEnabled else { return c }
        var control = UInt32(KVM_GUESTDBG_ENABLE)
        if singleStep { control |= UInt32(KVM_GUESTDBG_SINGLESTEP) }
        if softwareBreakpoints { control |= UInt32(KVM_GUESTDBG_USE_SW_BP) }
        if blockInterrupts { control |= UInt32(KVM_GUESTDBG_BLOCKIRQ) }
        var dr = [UInt64](repeating: 0, count: 8)
        if !hardwareBreakpoints.isEmpty {
            control |= UInt32(KVM_GUESTDBG_USE_HW_BP)
            var dr7: UInt64 = 0x400
            for (i, address) in hardwareBreakpoints.enumerated() {
                dr[i] = address
                dr7 |= 1 << (UInt64(i) * 2)  // Ln enable; R/W=00 (execute), LEN=00
            }
            dr[7] = dr7
        }
        c.control = control
        c.arch.debugreg = (dr[0], dr[1], dr[2], dr[3], dr[4], dr[5], dr[6], dr[7])
        return c
    }
}
