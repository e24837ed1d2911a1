#if canImport(Glibc)
    import Glibc
#endif

/// What the sync diff says about a changed VMCB12 field.
public enum SyncClass: String, Sendable, CaseIterable {
    /// L2 state KVM copies into the save area at a nested #VMEXIT (reference §4.3).
    case l2StateSynced = "l2_state_synced"
    /// EXITCODE, EXITINFO1/2, EXITINTINFO (§4.4).
    case exitInformation = "exit_information"
    /// Control fields KVM writes back (int_ctl V_TPR/V_IRQ, int_state, next_rip, event_inj…) (§4.4).
    case controlWriteBack = "control_write_back"
    /// KVM does not write this field at #VMEXIT, yet it changed: someone else did.
    case unexpected
}

/// One changed field: before → after, classed.
public struct FieldChange: Equatable, Sendable {
    public let field: VMCBField
    public let before: FieldValue
    public let after: FieldValue
    public let sync: SyncClass
    /// Why it got that class when the rule has a condition ("only with LBR virtualization").
    public let note: String?
}

/// KVM's #VMEXIT write rules as data: which fields it writes into vmcb12, and under what condition.
public struct SyncRule: Sendable {
    public enum Condition: Sendable {
        case always
        /// Not for VMRUN failures: KVM then writes only the exit fields.
        case unlessVMRUNFailed
        /// Only when vmcb12 enables LBR virtualization (misc_ctl2 bit 0) and KVM exposes LBRV.
        case lbrVirtualization
    }
    public let fields: [VMCBField]
    public let sync: SyncClass
    public let condition: Condition
    /// For partially written fields: the bits KVM may change (others changing are unexpected).
    public let writableBits: UInt64?
    public let note: String

    init(
        _ fields: [VMCBField], _ sync: SyncClass, _ condition: Condition = .always, bits: UInt64? = nil,
        _ note: String = ""
    ) {
        self.fields = fields
        self.sync = sync
        self.condition = condition
        self.writableBits = bits
        self.note = note
    }

    /// Reference §4.3 and §4.4 (KVM 6.1–6.x, with the older and latest variations KVM
    /// developers still meet noted).
    public static let kvm: [SyncRule] = [
        SyncRule([.exitCode, .exitInfo1, .exitInfo2], .exitInformation),
        SyncRule(
            [.exitIntInfo, .exitIntInfoErr], .exitInformation, .unlessVMRUNFailed,
            "synthesised from the event KVM was injecting into L2"),
        SyncRule(
            [
                .saveESSelector, .saveESAttrib, .saveESLimit, .saveESBase,
                .saveCSSelector, .saveCSAttrib, .saveCSLimit, .saveCSBase,
                .saveSSSelector, .saveSSAttrib, .saveSSLimit, .saveSSBase,
                .saveDSSelector, .saveDSAttrib, .saveDSLimit, .saveDSBase,
                .saveGDTRSelector, .saveGDTRAttrib, .saveGDTRLimit, .saveGDTRBase,
                .saveIDTRSelector, .saveIDTRAttrib, .saveIDTRLimit, .saveIDTRBase,
                .saveEFER, .saveCR0, .saveCR3, .saveCR2, .saveCR4, .saveRFLAGS, .saveRIP,
                .saveRSP, .saveRAX, .saveDR7, .saveDR6, .saveCPL,
            ],
            .l2StateSynced, .unlessVMRUNFailed),
        SyncRule(
            [.saveDbgctl, .saveBrFrom, .saveBrTo, .saveLastExcpFrom, .saveLastExcpTo],
            .l2StateSynced, .lbrVirtualization, "only with LBR virtualization enabled in vmcb12"),
        SyncRule([.intState], .controlWriteBack, .unlessVMRUNFailed),
        SyncRule(
            [.intCtl], .controlWriteBack, .unlessVMRUNFailed,
            bits: 0xF | 1 << 8 | 1 << 9 | 1 << 11 | 1 << 12,
            "V_TPR and V_IRQ; V_GIF with nested vGIF; V_NMI_* with nested vNMI"),
        SyncRule([.nextRIP], .controlWriteBack, .unlessVMRUNFailed, "only when NRIPS is exposed to L1"),
        SyncRule(
            [.eventInj, .eventInjErr], .controlWriteBack, .always,
            "an injection that did not complete (latest KVM writes 0)"),
        SyncRule([.tlbCtl], .controlWriteBack, .unlessVMRUNFailed, "written back by KVM up to 6.0"),
    ]
}

extension SyncRule {
    /// Whether KVM writes this rule's fields at a #VMEXIT: `vmrunFailed` when
    /// EXITCODE is VMEXIT_INVALID, `lbrVirtualization` when vmcb12 enabled LBR virtualization.
    public func applies(vmrunFailed: Bool, lbrVirtualization: Bool) -> Bool {
        switch condition {
        case .always: return true
        case .unlessVMRUNFailed: return !vmrunFailed
        case .lbrVirtualization: return !vmrunFailed && lbrVirtualization
        }
    }
}

/// One field KVM writes into vmcb12 at a nested #VMEXIT, as L1 prepared it and as KVM left it.
public struct FieldWrite: Equatable, Sendable {
    /// A write that changed the value, or one that wrote the same value back.
    public enum Outcome: String, Sendable {
        case changed, rewritten
    }

    public let field: VMCBField
    public let before: FieldValue
    public let after: FieldValue
    public let sync: SyncClass
    /// The rule's note ("only when NRIPS is exposed to L1").
    public let note: String?

    public var outcome: Outcome { before == after ? .rewritten : .changed }
}

public enum SyncDiff {
    private static let ruleByField: [VMCBField: SyncRule] = {
        var m: [VMCBField: SyncRule] = [:]
        for rule in SyncRule.kvm { for f in rule.fields { m[f] = rule } }
        return m
    }()

    /// Every field KVM writes into vmcb12 at this #VMEXIT by `rules` (their
    /// conditions judged from `after`'s EXITCODE and `before`'s LBR enable),
    /// changed or written back unchanged. In layout order.
    public static func written(before: VMCB, after: VMCB, rules: [SyncRule] = SyncRule.kvm) -> [FieldWrite] {
        let vmrunFailed = SVMExit.isInvalid(after.exitCode)
        let lbrv = before[integer: .miscCtl2] & 1 != 0
        // KVM's own rules are laid out once (this runs at every stop); other rule sets per call.
        let candidates = rules.count == SyncRule.kvm.count ? kvmRulesInLayoutOrder : rulesInLayoutOrder(rules)
        return candidates.compactMap { field, fieldRules in
            guard let rule = fieldRules.first(where: { $0.applies(vmrunFailed: vmrunFailed, lbrVirtualization: lbrv) })
            else { return nil }
            return FieldWrite(
                field: field, before: before[field], after: after[field], sync: rule.sync,
                note: rule.note.isEmpty ? nil : rule.note)
        }
    }

    private static let kvmRulesInLayoutOrder = rulesInLayoutOrder(SyncRule.kvm)

    /// Each field some rule covers, in layout order, with its rules in their order.
    private static func rulesInLayoutOrder(_ rules: [SyncRule]) -> [(VMCBField, [SyncRule])] {
        var byField: [VMCBField: [SyncRule]] = [:]
        for rule in rules {
            for field in rule.fields { byField[field, default: []].append(rule) }
        }
        return VMCBLayout.fields.compactMap { field in byField[field].map { (field, $0) } }
    }

    /// The fields that differ between vmcb12 as L1 prepared it (`before`, at
    /// VMRUN) and as KVM left it (`after`, at the nested #VMEXIT), classed by
    /// KVM's write rules. In layout order.
    public static func changes(before: VMCB, after: VMCB, rules: [SyncRule] = SyncRule.kvm) -> [FieldChange] {
        let lookup =
            rules.count == SyncRule.kvm.count
            ? ruleByField
            : Dictionary(rules.flatMap { r in r.fields.map { ($0, r) } }, uniquingKeysWith: { a, _ in a })
        let vmrunFailed = SVMExit.isInvalid(after.exitCode)
        let lbrv = before[integer: .miscCtl2] & 1 != 0
        var out: [FieldChange] = []
        // Compare 8-byte words first (a bitmap of 512 bits): most of the page is
        // unchanged, and this is the per-stop hot path.
        var changed = [UInt64](repeating: 0, count: VMCBLayout.size / 512)
        var any = false
        before.bytes.withUnsafeBytes { b in
            after.bytes.withUnsafeBytes { a in
                for block in 0..<(VMCBLayout.size / 64)
                where memcmp(b.baseAddress! + block * 64, a.baseAddress! + block * 64, 64) != 0 {
                    for w in (block * 8)..<(block * 8 + 8)
                    where b.load(fromByteOffset: w * 8, as: UInt64.self)
                        != a.load(fromByteOffset: w * 8, as: UInt64.self)
                    {
                        changed[w >> 6] |= 1 << UInt64(w & 63)
                        any = true
                    }
                }
            }
        }
        guard any else { return [] }
        for field in VMCBLayout.fields {
            var touched = false
            var w = field.firstWord
            while !touched && w <= field.lastWord {
                touched = changed[w >> 6] & (1 << UInt64(w & 63)) != 0
                w += 1
            }
            guard touched else { continue }
            let old = before[field]
            let new = after[field]
            guard old != new else { continue }
            var sync = SyncClass.unexpected
            var note: String? = nil
            if let rule = lookup[field] {
                let applies = rule.applies(vmrunFailed: vmrunFailed, lbrVirtualization: lbrv)
                if applies, let bits = rule.writableBits, let o = old.integer, let n = new.integer, (o ^ n) & ~bits != 0
                {
                    sync = .unexpected
                    note = "bits outside \(hex(bits)) changed"
                } else if applies {
                    sync = rule.sync
                    note = rule.note.isEmpty ? nil : rule.note
                } else {
                    note = vmrunFailed ? "KVM writes only the exit fields when VMRUN fails" : rule.note
                }
            }
            out.append(FieldChange(field: field, before: old, after: new, sync: sync, note: note))
        }
        return out
    }
}
