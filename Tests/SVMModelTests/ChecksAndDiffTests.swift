import SVMModel
import Testing

/// A vmcb12 a long-mode L1 would hand to VMRUN for a long-mode L2 with nested paging.
func validVMCB12() -> VMCB {
    var v = VMCB()
    v["control.intercepts[3]"] = 1 << 18 | 1 << 24 | 1 << 27 | 1 << 28   // CPUID HLT IOIO MSR
    v["control.intercepts[4]"] = 1 | 1 << 1                             // VMRUN VMMCALL
    v["control.iopm_base_pa"] = 0x10_0000
    v["control.msrpm_base_pa"] = 0x10_4000
    v["control.asid"] = 1
    v["control.nested_ctl"] = 1
    v["control.nested_cr3"] = 0x20_0000
    v["control.int_ctl"] = 1 << 24
    v["save.cs.selector"] = 0x8; v["save.cs.attrib"] = 0x29B; v["save.cs.limit"] = 0xFFFF_FFFF
    v["save.ss.selector"] = 0x10; v["save.ss.attrib"] = 0x093; v["save.ss.limit"] = 0xFFFF_FFFF
    v["save.efer"] = 1 << 8 | 1 << 10 | 1 << 12
    v["save.cr0"] = 0x8000_0011
    v["save.cr3"] = 0x30_0000
    v["save.cr4"] = 1 << 5
    v["save.dr6"] = 0xFFFF_0FF0
    v["save.dr7"] = 0x400
    v["save.rflags"] = 0x2
    v["save.rip"] = 0x40_0000
    v["save.rsp"] = 0x40_8000
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
        ("efer.svme", { $0["save.efer"] &= ~(1 << 12) }),
        ("cr0.cd_nw", { $0["save.cr0"] |= 1 << 29 }),
        ("cr0.high", { $0["save.cr0"] |= 1 << 40 }),
        ("cr3.mbz", { $0["save.cr3"] = 1 << 50 }),
        ("cr4.mbz", { $0["save.cr4"] |= 1 << 13 }),          // VMXE on an AMD guest
        ("dr6.high", { $0["save.dr6"] |= 1 << 32 }),
        ("dr7.high", { $0["save.dr7"] |= 1 << 33 }),
        ("efer.mbz", { $0["save.efer"] |= 1 << 3 }),
        ("long.pae", { $0["save.cr4"] = 0 }),
        ("long.pe", { $0["save.cr0"] = 0x8000_0010 }),
        ("long.cs_l_d", { $0["save.cs.attrib"] = 0x69B }),
        ("intercept.vmrun", { $0["control.intercepts[4]"] = 1 << 1 }),
        ("asid.zero", { $0["control.asid"] = 0 }),
        ("msrpm.range", { $0["control.msrpm_base_pa"] = (1 << 48) - 0x1000 }),
        ("iopm.range", { $0["control.iopm_base_pa"] = (1 << 48) - 0x2000 }),
        ("event_inj.type", { $0["control.event_inj"] = 1 << 31 | 5 << 8 | 0x20 }),
        ("tlb_ctl.value", { $0["control.tlb_ctl"] = 3 }),
        ("nested_cr3.legal", { $0["control.nested_cr3"] = 1 << 52 }),
        ("vnmi.intercept", { $0["control.int_ctl"] |= 1 << 26 }),
    ]

    @Test("each rule fails alone on a VMCB that breaks it", arguments: 0..<19)
    func eachRule(index: Int) {
        let (rule, mutate) = Self.breakers[index]
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
        v["control.msrpm_base_pa"] = 1 << 40
        #expect(ConsistencyChecks.check(v, environment: CheckEnvironment(physicalAddressBits: 48)) == [])
        #expect(ConsistencyChecks.check(v, environment: CheckEnvironment(physicalAddressBits: 40)).map(\.rule) == ["msrpm.range"])
    }
}

@Suite("the sync diff")
struct SyncDiffTests {
    /// vmcb12 after a nested #VMEXIT for an L2 `out 0x80, al` at 0x401000.
    func afterIOExit(_ before: VMCB) -> VMCB {
        var a = before
        a["control.exit_code"] = 0x7B
        a["control.exit_info_1"] = 0x0080_0090
        a["control.exit_info_2"] = 0x40_1002
        a["save.rip"] = 0x40_1000
        a["save.rax"] = 0x42
        a["save.rflags"] = 0x46
        a["save.cr2"] = 0x1234
        a["control.int_ctl"] |= 1 << 8             // V_IRQ written back
        a["control.int_state"] = 1
        return a
    }

    @Test("exit information, L2 state and control write-back are classed; nothing unexpected")
    func classes() {
        let before = validVMCB12()
        let changes = SyncDiff.changes(before: before, after: afterIOExit(before))
        let byName = Dictionary(uniqueKeysWithValues: changes.map { ($0.field.name, $0.sync) })
        #expect(byName == [
            "control.exit_code": .exitInformation, "control.exit_info_1": .exitInformation,
            "control.exit_info_2": .exitInformation, "save.rip": .l2StateSynced, "save.rax": .l2StateSynced,
            "save.rflags": .l2StateSynced, "save.cr2": .l2StateSynced, "control.int_ctl": .controlWriteBack,
            "control.int_state": .controlWriteBack,
        ])
        #expect(changes.map(\.field.offset) == changes.map(\.field.offset).sorted(), "layout order")
        let rip = changes.first { $0.field.name == "save.rip" }!
        #expect(rip.before == .integer(0x40_0000) && rip.after == .integer(0x40_1000))
    }

    @Test("fields KVM does not write are unexpected: intercepts, ASID, VMLOAD state")
    func unexpected() {
        let before = validVMCB12()
        var after = afterIOExit(before)
        after["control.asid"] = 7
        after["save.fs.base"] = 0xDEAD
        after["control.intercepts[2]"] = 1 << 14
        let unexpected = SyncDiff.changes(before: before, after: after).filter { $0.sync == .unexpected }.map(\.field.name)
        #expect(unexpected == ["control.intercepts[2]", "control.asid", "save.fs.base"])
    }

    @Test("int_ctl changing outside V_TPR/V_IRQ/V_GIF/V_NMI is unexpected")
    func intCtlMask() {
        let before = validVMCB12()
        var after = before
        after["control.int_ctl"] &= ~(1 << 24)   // V_INTR_MASKING cleared: KVM never does that
        let c = SyncDiff.changes(before: before, after: after)
        #expect(c.map(\.sync) == [.unexpected])
    }

    @Test("after a failed VMRUN only the exit fields may change")
    func vmrunFailure() {
        let before = validVMCB12()
        var after = before
        after["control.exit_code"] = 0xFFFF_FFFF
        after["save.rip"] = 0x1234
        let c = SyncDiff.changes(before: before, after: after)
        #expect(c.map(\.sync) == [.exitInformation, .unexpected])
        #expect(c.last?.note?.contains("VMRUN fails") == true)
    }

    @Test("LBR fields are synced only with LBR virtualization on")
    func lbr() {
        var before = validVMCB12()
        var after = afterIOExit(before)
        after["save.br_from"] = 0x40_0100
        #expect(SyncDiff.changes(before: before, after: after).first { $0.field.name == "save.br_from" }?.sync == .unexpected)
        before["control.virt_ext"] = 1
        after["control.virt_ext"] = 1
        #expect(SyncDiff.changes(before: before, after: after).first { $0.field.name == "save.br_from" }?.sync == .l2StateSynced)
    }

    @Test("identical pages have no changes")
    func identical() {
        #expect(SyncDiff.changes(before: validVMCB12(), after: validVMCB12()).isEmpty)
    }
}
