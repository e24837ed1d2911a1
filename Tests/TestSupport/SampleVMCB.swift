import SVMModel

/// vmcb12 pages as a long-mode L1 prepares them, for every test target that needs one.
public enum SampleVMCB {
    /// Intercepts CPUID, IOIO and VMRUN; IOPM at 1 MiB, MSRPM after it; ASID `asid` (0 is refused by VMRUN);
    /// a 64-bit L2 with paging at `rip`.
    public static func prepared(asid: UInt64 = 1, rip: UInt64 = 0x40_0000) -> VMCB {
        var v = VMCB()
        v[integer: .intercepts3] = 1 << 18 | 1 << 27  // CPUID, IOIO_PROT
        v[integer: .intercepts4] = 1  // VMRUN
        v[integer: .iopmBasePA] = 0x10_0000
        v[integer: .msrpmBasePA] = 0x10_4000
        v[integer: .asid] = asid
        v[integer: .saveEFER] = 0x1500
        v[integer: .saveCR0] = 0x8000_0011
        v[integer: .saveCR4] = 0x20
        v[integer: .saveCSAttrib] = 0x29B
        v[integer: .saveRIP] = rip
        return v
    }

    /// `prepared()` as KVM leaves it after L2's `OUT 0x80, al` at 0x40_1000 (an IOIO #VMEXIT).
    public static func afterIOIO() -> VMCB {
        var a = prepared()
        a[integer: .exitCode] = 0x7B
        a[integer: .exitInfo1] = 0x0080_0090
        a[integer: .exitInfo2] = 0x40_1002
        a[integer: .saveRIP] = 0x40_1000
        return a
    }
}
