import SVMModel
import Testing

/// A vmcb12 a long-mode L1 would hand to VMRUN for a long-mode L2 with nested paging.
func validVMCB12() -> VMCB {
    var v = VMCB()
    v[integer: .intercepts3] = 1 << 18 | 1 << 24 | 1 << 27 | 1 << 28  // CPUID HLT IOIO MSR
    v[integer: .intercepts4] = 1 | 1 << 1  // VMRUN VMMCALL
    v[integer: .iopmBasePA] = 0x10_0000
    v[integer: .msrpmBasePA] = 0x10_4000
    v[integer: .asid] = 1
    v[integer: .miscCtl] = 1
    v[integer: .nestedCR3] = 0x20_0000
    v[integer: .intCtl] = 1 << 24
    v[integer: .saveCSSelector] = 0x8
    v[integer: .saveCSAttrib] = 0x29B
    v[integer: .saveCSLimit] = 0xFFFF_FFFF
    v[integer: .saveSSSelector] = 0x10
    v[integer: .saveSSAttrib] = 0x093
    v[integer: .saveSSLimit] = 0xFFFF_FFFF
    v[integer: .saveEFER] = 1 << 8 | 1 << 10 | 1 << 12
    v[integer: .saveCR0] = 0x8000_0011
    v[integer: .saveCR3] = 0x30_0000
    v[integer: .saveCR4] = 1 << 5
    v[integer: .saveDR6] = 0xFFFF_0FF0
    v[integer: .saveDR7] = 0x400
    v[integer: .saveRFLAGS] = 0x2
    v[integer: .saveRIP] = 0x40_0000
    v[integer: .saveRSP] = 0x40_8000
    return v
}

@Suite("VMRUN consistency checks")
struct ConsistencyCheckTests {
    @Test("a well-formed vmcb12 passes every rule")
    func passes() {
        #expect(ConsistencyChecks.check(validVMCB12()) == [])
    }

    /// For each rule: a mutation of the valid VMCB that breaks exactly that rule.
    static let breakers: [(String, @Sendable (inout VMCB) -> Void)] = [
        ("efer.svme", { $0[integer: .saveEFER] &= ~(1 << 12) }),
        ("cr0.cd_nw", { $0[integer: .saveCR0] |= 1 << 29 }),
        ("cr0.high", { $0[integer: .saveCR0] |= 1 << 40 }),
        ("cr3.mbz", { $0[integer: .saveCR3] = 1 << 50 }),
        ("cr4.mbz", { $0[integer: .saveCR4] |= 1 << 13 }),  // VMXE on an AMD guest
        ("dr6.high", { $0[integer: .saveDR6] |= 1 << 32 }),
        ("dr7.high", { $0[integer: .saveDR7] |= 1 << 33 }),
        ("efer.mbz", { $0[integer: .saveEFER] |= 1 << 3 }),
        ("long.pae", { $0[integer: .saveCR4] = 0 }),
        ("long.pe", { $0[integer: .saveCR0] = 0x8000_0010 }),
        ("long.cs_l_d", { $0[integer: .saveCSAttrib] = 0x69B }),
        ("intercept.vmrun", { $0[integer: .intercepts4] = 1 << 1 }),
        ("asid.zero", { $0[integer: .asid] = 0 }),
        ("msrpm.range", { $0[integer: .msrpmBasePA] = (1 << 48) - 0x1000 }),
        ("iopm.range", { $0[integer: .iopmBasePA] = (1 << 48) - 0x2000 }),
        ("event_inj.type", { $0[integer: .eventInj] = 1 << 31 | 5 << 8 | 0x20 }),
        ("tlb_ctl.value", { $0[integer: .tlbCtl] = 3 }),
        ("nested_cr3.legal", { $0[integer: .nestedCR3] = 1 << 52 }),
        ("vnmi.intercept", { $0[integer: .intCtl] |= 1 << 26 }),
    ]

    /// Iterates over the rules the checker has, so a new rule without a breaking case fails here.
    @Test("each rule fails alone on a VMCB that breaks it", arguments: ConsistencyChecks.ruleIDs)
    func eachRule(rule: String) throws {
        let mutate = try #require(Self.breakers.first { $0.0 == rule }?.1, "rule \(rule) has no breaking case")
        var v = validVMCB12()
        mutate(&v)
        let violations = ConsistencyChecks.check(v)
        #expect(violations.map(\.rule) == [rule])
        #expect(violations.first.map { VMCBLayout.field(named: $0.field) != nil } == true, "names a real field")
    }

    @Test("every rule has a breaking case")
    func allRulesCovered() {
        #expect(Set(Self.breakers.map(\.0)) == Set(ConsistencyChecks.ruleIDs))
    }

    @Test("MAXPHYADDR is taken from the environment")
    func physBits() {
        var v = validVMCB12()
        v[integer: .msrpmBasePA] = 1 << 40
        #expect(ConsistencyChecks.check(v, environment: CheckEnvironment(physicalAddressBits: 48)) == [])
        #expect(
            ConsistencyChecks.check(v, environment: CheckEnvironment(physicalAddressBits: 40)).map(\.rule) == [
                "msrpm.range"
            ])
    }
}

@Suite("the sync diff")
struct SyncDiffTests {
    /// vmcb12 after a nested #VMEXIT for an L2 `out 0x80, al` at 0x401000.
    func afterIOExit(_ before: VMCB) -> VMCB {
        var a = before
        a[integer: .exitCode] = 0x7B
        a[integer: .exitInfo1] = 0x0080_0090
        a[integer: .exitInfo2] = 0x40_1002
        a[integer: .saveRIP] = 0x40_1000
        a[integer: .saveRAX] = 0x42
        a[integer: .saveRFLAGS] = 0x46
        a[integer: .saveCR2] = 0x1234
        a[integer: .intCtl] |= 1 << 8  // V_IRQ written back
        a[integer: .intState] = 1
        return a
    }

    @Test("exit information, L2 state and control write-back are classed; nothing unexpected")
    func classes() {
        let before = validVMCB12()
        let changes = SyncDiff.changes(before: before, after: afterIOExit(before))
        let byField = Dictionary(uniqueKeysWithValues: changes.map { ($0.field, $0.sync) })
        #expect(
            byField == [
                .exitCode: .exitInformation, .exitInfo1: .exitInformation,
                .exitInfo2: .exitInformation, .saveRIP: .l2StateSynced, .saveRAX: .l2StateSynced,
                .saveRFLAGS: .l2StateSynced, .saveCR2: .l2StateSynced, .intCtl: .controlWriteBack,
                .intState: .controlWriteBack,
            ])
        #expect(changes.map(\.field.offset) == changes.map(\.field.offset).sorted(), "layout order")
        let rip = changes.first { $0.field == .saveRIP }!
        #expect(rip.before == .integer(0x40_0000) && rip.after == .integer(0x40_1000))
    }

    @Test("fields KVM does not write are unexpected: intercepts, ASID, VMLOAD state")
    func unexpected() {
        let before = validVMCB12()
        var after = afterIOExit(before)
        after[integer: .asid] = 7
        after[integer: .saveFSBase] = 0xDEAD
        after[integer: .intercepts2] = 1 << 14
        let unexpected = SyncDiff.changes(before: before, after: after).filter { $0.sync == .unexpected }.map(\.field)
        #expect(unexpected == [.intercepts2, .asid, .saveFSBase])
    }

    @Test("int_ctl changing outside V_TPR/V_IRQ/V_GIF/V_NMI is unexpected")
    func intCtlMask() {
        let before = validVMCB12()
        var after = before
        after[integer: .intCtl] &= ~(1 << 24)  // V_INTR_MASKING cleared: KVM never does that
        let c = SyncDiff.changes(before: before, after: after)
        #expect(c.map(\.sync) == [.unexpected])
    }

    @Test(
        "after a failed VMRUN only the exit fields may change (64-bit -1, and the older low-half form)",
        arguments: [SVMExit.vmexitInvalid, 0xFFFF_FFFF])
    func vmrunFailure(code: UInt64) {
        let before = validVMCB12()
        var after = before
        after[integer: .exitCode] = code
        after[integer: .saveRIP] = 0x1234
        #expect(after.exitCode == code)
        let c = SyncDiff.changes(before: before, after: after)
        #expect(c.map(\.field) == [.exitCode, .saveRIP])
        #expect(c.map(\.sync) == [.exitInformation, .unexpected])
        #expect(c.last?.note?.contains("VMRUN fails") == true)
    }

    @Test("LBR fields are synced only with LBR virtualization on")
    func lbr() {
        var before = validVMCB12()
        var after = afterIOExit(before)
        after[integer: .saveBrFrom] = 0x40_0100
        #expect(SyncDiff.changes(before: before, after: after).first { $0.field == .saveBrFrom }?.sync == .unexpected)
        before[integer: .miscCtl2] = 1
        after[integer: .miscCtl2] = 1
        #expect(
            SyncDiff.changes(before: before, after: after).first { $0.field == .saveBrFrom }?.sync == .l2StateSynced)
    }

    @Test("identical pages have no changes")
    func identical() {
        #expect(SyncDiff.changes(before: validVMCB12(), after: validVMCB12()).isEmpty)
    }
}
