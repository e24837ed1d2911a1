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

    public init(rule: String, field: String, message: String, enforcedBy: String) {
        self.rule = rule
        self.field = field
        self.message = message
        self.enforcedBy = enforcedBy
    }
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
        let id: String, field: VMCBField, enforcedBy: String
        let test: @Sendable (Inputs, CheckEnvironment) -> String?  // a message when violated
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
        let miscCtl: UInt64
        let nestedCR3: UInt64
        let intCtl: UInt64
        init(_ vmcb: VMCB) {
            efer = vmcb[integer: .saveEFER]
            cr0 = vmcb[integer: .saveCR0]
            cr3 = vmcb[integer: .saveCR3]
            cr4 = vmcb[integer: .saveCR4]
            dr6 = vmcb[integer: .saveDR6]
            dr7 = vmcb[integer: .saveDR7]
            csAttrib = vmcb[integer: .saveCSAttrib]
            intercepts3 = vmcb[integer: .intercepts3]
            intercepts4 = vmcb[integer: .intercepts4]
            asid = vmcb[integer: .asid]
            msrpm = vmcb[integer: .msrpmBasePA]
            iopm = vmcb[integer: .iopmBasePA]
            eventInj = vmcb[integer: .eventInj]
            tlbCtl = vmcb[integer: .tlbCtl]
            miscCtl = vmcb[integer: .miscCtl]
            nestedCR3 = vmcb[integer: .nestedCR3]
            intCtl = vmcb[integer: .intCtl]
        }
    }

    // Bits KVM knows in CR4 and EFER; any other set bit is reserved (MBZ).
    private static let knownCR4: UInt64 = Bits.cr4.reduce(0) { $0 | $1.mask } & ~(1 << 13 | 1 << 14 | 1 << 19 | 1 << 25)
    private static let knownEFER: UInt64 = 1 << 0 | 1 << 8 | 1 << 10 | 1 << 11 | 1 << 12 | 1 << 14 | 1 << 15 | 1 << 21

    private static func legalGPA(_ a: UInt64, _ env: CheckEnvironment) -> Bool {
        env.physicalAddressBits >= 64 || a >> UInt64(env.physicalAddressBits) == 0
    }

    private static let rules: [Rule] = [
        Rule(id: "efer.svme", field: .saveEFER, enforcedBy: "APM") { v, _ in
            v.efer & (1 << 12) == 0 ? "EFER.SVME is clear" : nil
        },
        Rule(id: "cr0.cd_nw", field: .saveCR0, enforcedBy: "APM") { v, _ in
            let cr0 = v.cr0
            return cr0 & (1 << 30) == 0 && cr0 & (1 << 29) != 0 ? "CR0.NW set with CR0.CD clear" : nil
        },
        Rule(id: "cr0.high", field: .saveCR0, enforcedBy: "APM") { v, _ in
            v.cr0 >> 32 != 0 ? "CR0[63:32] is not zero" : nil
        },
        Rule(id: "cr3.mbz", field: .saveCR3, enforcedBy: "APM, KVM (long mode)") { v, env in
            let longMode = v.efer & (1 << 8) != 0 && v.cr0 & (1 << 31) != 0
            return longMode && !legalGPA(v.cr3 & ~0xFFF, env)
                ? "CR3 \(hex(v.cr3)) sets bits at or above MAXPHYADDR (\(env.physicalAddressBits))" : nil
        },
        Rule(id: "cr4.mbz", field: .saveCR4, enforcedBy: "APM, KVM") { v, _ in
            let bad = v.cr4 & ~knownCR4
            return bad != 0 ? "CR4 sets reserved or unsupported bits \(hex(bad)) (\(Bits.names(bad, Bits.cr4)))" : nil
        },
        Rule(id: "dr6.high", field: .saveDR6, enforcedBy: "APM") { v, _ in
            v.dr6 >> 32 != 0 ? "DR6[63:32] is not zero" : nil
        },
        Rule(id: "dr7.high", field: .saveDR7, enforcedBy: "APM") { v, _ in
            v.dr7 >> 32 != 0 ? "DR7[63:32] is not zero" : nil
        },
        Rule(id: "efer.mbz", field: .saveEFER, enforcedBy: "APM, KVM") { v, _ in
            let bad = v.efer & ~knownEFER
            return bad != 0 ? "EFER sets reserved bits \(hex(bad))" : nil
        },
        Rule(id: "long.pae", field: .saveCR4, enforcedBy: "APM") { v, _ in
            v.efer & (1 << 8) != 0 && v.cr0 & (1 << 31) != 0 && v.cr4 & (1 << 5) == 0
                ? "EFER.LME and CR0.PG set but CR4.PAE clear" : nil
        },
        Rule(id: "long.pe", field: .saveCR0, enforcedBy: "APM") { v, _ in
            v.efer & (1 << 8) != 0 && v.cr0 & (1 << 31) != 0 && v.cr0 & 1 == 0
                ? "EFER.LME and CR0.PG set but CR0.PE clear" : nil
        },
        Rule(id: "long.cs_l_d", field: .saveCSAttrib, enforcedBy: "APM, KVM latest") { v, _ in
            let a = SegmentAttributes(UInt16(truncatingIfNeeded: v.csAttrib))
            return v.efer & (1 << 8) != 0 && v.cr0 & (1 << 31) != 0 && v.cr4 & (1 << 5) != 0
                && a.l && a.db ? "long mode with both CS.L and CS.D set" : nil
        },
        Rule(id: "intercept.vmrun", field: .intercepts4, enforcedBy: "APM") { v, _ in
            v.intercepts4 & 1 == 0 ? "the VMRUN intercept is clear" : nil
        },
        Rule(id: "asid.zero", field: .asid, enforcedBy: "APM") { v, _ in
            v.asid == 0 ? "ASID is 0" : nil
        },
        Rule(id: "msrpm.range", field: .msrpmBasePA, enforcedBy: "APM, KVM 6.0+") { v, env in
            let base = v.msrpm & ~0xFFF
            return legalGPA(base + 0x2000 - 1, env)
                ? nil : "the 8 KiB MSR permission map at \(hex(base)) extends beyond MAXPHYADDR"
        },
        Rule(id: "iopm.range", field: .iopmBasePA, enforcedBy: "APM, KVM 6.0+") { v, env in
            let base = v.iopm & ~0xFFF
            return legalGPA(base + 0x3000 - 1, env)
                ? nil : "the 12 KiB I/O permission map at \(hex(base)) extends beyond MAXPHYADDR"
        },
        Rule(id: "event_inj.type", field: .eventInj, enforcedBy: "APM, KVM latest") { v, _ in
            let e = EventInjection(v.eventInj)
            guard e.valid else { return nil }
            if [1, 5, 6, 7].contains(e.type) { return "EVENTINJ type \(e.type) is invalid" }
            if e.type == 3, Bits.exceptionNames[e.vector] == nil || e.vector == 2 {
                return "EVENTINJ injects exception vector \(e.vector), which is not an exception"
            }
            return nil
        },
        Rule(id: "tlb_ctl.value", field: .tlbCtl, enforcedBy: "KVM 6.0–6.x") { v, _ in
            v.tlbCtl > 1
                ? "TLB_CONTROL \(v.tlbCtl) (\(Bits.tlbControl[v.tlbCtl] ?? "invalid")): nested KVM accepts only 0 and 1"
                : nil
        },
        Rule(id: "nested_cr3.legal", field: .nestedCR3, enforcedBy: "KVM latest") { v, env in
            v.miscCtl & 1 != 0 && !legalGPA(v.nestedCR3 & ~0xFFF, env)
                ? "nested paging enabled with nCR3 \(hex(v.nestedCR3)) beyond MAXPHYADDR" : nil
        },
        Rule(id: "vnmi.intercept", field: .intCtl, enforcedBy: "KVM 6.4+") { v, _ in
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
            r.test(inputs, environment).map {
                Violation(rule: r.id, field: r.field.name, message: $0, enforcedBy: r.enforcedBy)
            }
        }
    }
}
