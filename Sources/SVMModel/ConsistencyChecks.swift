/// One VMRUN consistency rule broken by a VMCB.
public struct Violation: Equatable, Sendable, CustomStringConvertible {
    /// Stable id (`efer.svme`, `asid.zero`) for tests and JSON.
    public let rule: String
    /// The field at fault.
    public let field: String
    public let message: String
    /// Who enforces it: "APM", "KVM 6.x", "KVM latest".
    public let enforcedBy: String
    public var description: String { "\(field): \(message) [\(rule), \(enforcedBy)]" }
}

/// What the checks need to know beyond the VMCB.
public struct CheckEnvironment: Sendable {
    /// L1's MAXPHYADDR; GPAs at or above 2^bits are illegal.
    public var physicalAddressBits: Int
    public init(physicalAddressBits: Int = 48) { self.physicalAddressBits = physicalAddressBits }
}

/// The checks VMRUN performs on vmcb12 before entering L2: the APM's
/// "Canonicalization and Consistency Checks" plus KVM's own (reference §3.3),
/// each as a named rule.
public enum ConsistencyChecks {
    private struct Rule: Sendable {
        let id: String, field: String, enforcedBy: String
        let test: @Sendable (Inputs, CheckEnvironment) -> String?   // a message when violated
    }

    /// The fields the rules read, read once per check (the checks run at every VMRUN stop).
    private struct Inputs {
        let efer: UInt64
        let cr0: UInt64
        let cr3: UInt64
        let cr4: UInt64
        let dr6: UInt64
        let dr7: UInt64
        let csAttrib: UInt64
        let intercepts3: UInt64
        let intercepts4: UInt64
        let asid: UInt64
        let msrpm: UInt64
        let iopm: UInt64
        let eventInj: UInt64
        let tlbCtl: UInt64
        let nestedCtl: UInt64
        let nestedCR3: UInt64
        let intCtl: UInt64
        private static let f0 = VMCBLayout.named("save.efer")
        private static let f1 = VMCBLayout.named("save.cr0")
        private static let f2 = VMCBLayout.named("save.cr3")
        private static let f3 = VMCBLayout.named("save.cr4")
        private static let f4 = VMCBLayout.named("save.dr6")
        private static let f5 = VMCBLayout.named("save.dr7")
        private static let f6 = VMCBLayout.named("save.cs.attrib")
        private static let f7 = VMCBLayout.named("control.intercepts[3]")
        private static let f8 = VMCBLayout.named("control.intercepts[4]")
        private static let f9 = VMCBLayout.named("control.asid")
        private static let f10 = VMCBLayout.named("control.msrpm_base_pa")
        private static let f11 = VMCBLayout.named("control.iopm_base_pa")
        private static let f12 = VMCBLayout.named("control.event_inj")
        private static let f13 = VMCBLayout.named("control.tlb_ctl")
        private static let f14 = VMCBLayout.named("control.nested_ctl")
        private static let f15 = VMCBLayout.named("control.nested_cr3")
        private static let f16 = VMCBLayout.named("control.int_ctl")
        init(_ vmcb: VMCB) {
            efer = vmcb[Inputs.f0].integer ?? 0
            cr0 = vmcb[Inputs.f1].integer ?? 0
            cr3 = vmcb[Inputs.f2].integer ?? 0
            cr4 = vmcb[Inputs.f3].integer ?? 0
            dr6 = vmcb[Inputs.f4].integer ?? 0
            dr7 = vmcb[Inputs.f5].integer ?? 0
            csAttrib = vmcb[Inputs.f6].integer ?? 0
            intercepts3 = vmcb[Inputs.f7].integer ?? 0
            intercepts4 = vmcb[Inputs.f8].integer ?? 0
            asid = vmcb[Inputs.f9].integer ?? 0
            msrpm = vmcb[Inputs.f10].integer ?? 0
            iopm = vmcb[Inputs.f11].integer ?? 0
            eventInj = vmcb[Inputs.f12].integer ?? 0
            tlbCtl = vmcb[Inputs.f13].integer ?? 0
            nestedCtl = vmcb[Inputs.f14].integer ?? 0
            nestedCR3 = vmcb[Inputs.f15].integer ?? 0
            intCtl = vmcb[Inputs.f16].integer ?? 0
        }
    }

    // Bits KVM knows in CR4 and EFER; any other set bit is reserved (MBZ).
    private static let knownCR4: UInt64 = Bits.cr4.reduce(0) { $0 | $1.mask } & ~(1 << 13 | 1 << 14 | 1 << 19 | 1 << 25)
    private static let knownEFER: UInt64 = 1 << 0 | 1 << 8 | 1 << 10 | 1 << 11 | 1 << 12 | 1 << 14 | 1 << 15 | 1 << 21

    private static func legalGPA(_ a: UInt64, _ env: CheckEnvironment) -> Bool {
        env.physicalAddressBits >= 64 || a >> UInt64(env.physicalAddressBits) == 0
    }

    private static let rules: [Rule] = [
        Rule(id: "efer.svme", field: "save.efer", enforcedBy: "APM") { v, _ in
            v.efer & (1 << 12) == 0 ? "EFER.SVME is clear" : nil
        },
        Rule(id: "cr0.cd_nw", field: "save.cr0", enforcedBy: "APM") { v, _ in
            let cr0 = v.cr0
            return cr0 & (1 << 30) == 0 && cr0 & (1 << 29) != 0 ? "CR0.NW set with CR0.CD clear" : nil
        },
        Rule(id: "cr0.high", field: "save.cr0", enforcedBy: "APM") { v, _ in
            v.cr0 >> 32 != 0 ? "CR0[63:32] is not zero" : nil
        },
        Rule(id: "cr3.mbz", field: "save.cr3", enforcedBy: "APM, KVM (long mode)") { v, env in
            let longMode = v.efer & (1 << 8) != 0 && v.cr0 & (1 << 31) != 0
            return longMode && !legalGPA(v.cr3 & ~0xFFF, env)
                ? "CR3 \(hex(v.cr3)) sets bits at or above MAXPHYADDR (\(env.physicalAddressBits))" : nil
        },
        Rule(id: "cr4.mbz", field: "save.cr4", enforcedBy: "APM, KVM") { v, _ in
            let bad = v.cr4 & ~knownCR4
            return bad != 0 ? "CR4 sets reserved or unsupported bits \(hex(bad)) (\(Bits.names(bad, Bits.cr4)))" : nil
        },
        Rule(id: "dr6.high", field: "save.dr6", enforcedBy: "APM") { v, _ in
            v.dr6 >> 32 != 0 ? "DR6[63:32] is not zero" : nil
        },
        Rule(id: "dr7.high", field: "save.dr7", enforcedBy: "APM") { v, _ in
            v.dr7 >> 32 != 0 ? "DR7[63:32] is not zero" : nil
        },
        Rule(id: "efer.mbz", field: "save.efer", enforcedBy: "APM, KVM") { v, _ in
            let bad = v.efer & ~knownEFER
            return bad != 0 ? "EFER sets reserved bits \(hex(bad))" : nil
        },
        Rule(id: "long.pae", field: "save.cr4", enforcedBy: "APM") { v, _ in
            v.efer & (1 << 8) != 0 && v.cr0 & (1 << 31) != 0 && v.cr4 & (1 << 5) == 0
                ? "EFER.LME and CR0.PG set but CR4.PAE clear" : nil
        },
        Rule(id: "long.pe", field: "save.cr0", enforcedBy: "APM") { v, _ in
            v.efer & (1 << 8) != 0 && v.cr0 & (1 << 31) != 0 && v.cr0 & 1 == 0
                ? "EFER.LME and CR0.PG set but CR0.PE clear" : nil
        },
        Rule(id: "long.cs_l_d", field: "save.cs.attrib", enforcedBy: "APM, KVM latest") { v, _ in
            let a = SegmentAttributes(UInt16(truncatingIfNeeded: v.csAttrib))
            return v.efer & (1 << 8) != 0 && v.cr0 & (1 << 31) != 0 && v.cr4 & (1 << 5) != 0
                && a.l && a.db ? "long mode with both CS.L and CS.D set" : nil
        },
        Rule(id: "intercept.vmrun", field: "control.intercepts[4]", enforcedBy: "APM") { v, _ in
            v.intercepts4 & 1 == 0 ? "the VMRUN intercept is clear" : nil
        },
        Rule(id: "asid.zero", field: "control.asid", enforcedBy: "APM") { v, _ in
            v.asid == 0 ? "ASID is 0" : nil
        },
        Rule(id: "msrpm.range", field: "control.msrpm_base_pa", enforcedBy: "APM, KVM 6.0+") { v, env in
            let base = v.msrpm & ~0xFFF
            return legalGPA(base + 0x2000 - 1, env) ? nil : "the 8 KiB MSR permission map at \(hex(base)) extends beyond MAXPHYADDR"
        },
        Rule(id: "iopm.range", field: "control.iopm_base_pa", enforcedBy: "APM, KVM 6.0+") { v, env in
            let base = v.iopm & ~0xFFF
            return legalGPA(base + 0x3000 - 1, env) ? nil : "the 12 KiB I/O permission map at \(hex(base)) extends beyond MAXPHYADDR"
        },
        Rule(id: "event_inj.type", field: "control.event_inj", enforcedBy: "APM, KVM latest") { v, _ in
            let e = EventInjection(v.eventInj)
            guard e.valid else { return nil }
            if [1, 5, 6, 7].contains(e.type) { return "EVENTINJ type \(e.type) is invalid" }
            if e.type == 3, Bits.exceptionNames[e.vector] == nil || e.vector == 2 {
                return "EVENTINJ injects exception vector \(e.vector), which is not an exception"
            }
            return nil
        },
        Rule(id: "tlb_ctl.value", field: "control.tlb_ctl", enforcedBy: "KVM 6.0–6.x") { v, _ in
            v.tlbCtl > 1 ? "TLB_CONTROL \(v.tlbCtl) (\(Bits.tlbControl[v.tlbCtl] ?? "invalid")): nested KVM accepts only 0 and 1" : nil
        },
        Rule(id: "nested_cr3.legal", field: "control.nested_cr3", enforcedBy: "KVM latest") { v, env in
            v.nestedCtl & 1 != 0 && !legalGPA(v.nestedCR3 & ~0xFFF, env)
                ? "nested paging enabled with nCR3 \(hex(v.nestedCR3)) beyond MAXPHYADDR" : nil
        },
        Rule(id: "vnmi.intercept", field: "control.int_ctl", enforcedBy: "KVM 6.4+") { v, _ in
            v.intCtl & (1 << 26) != 0 && v.intercepts3 & (1 << 1) == 0
                ? "V_NMI_ENABLE without the NMI intercept" : nil
        },
    ]

    /// Every rule id, in the order they are checked.
    public static var ruleIDs: [String] { rules.map(\.id) }

    /// The violations of `vmcb`; empty when VMRUN would accept it.
    public static func check(_ vmcb: VMCB, environment: CheckEnvironment = CheckEnvironment()) -> [Violation] {
        let inputs = Inputs(vmcb)
        return rules.compactMap { r in
            r.test(inputs, environment).map { Violation(rule: r.id, field: r.field, message: $0, enforcedBy: r.enforcedBy) }
        }
    }
}
