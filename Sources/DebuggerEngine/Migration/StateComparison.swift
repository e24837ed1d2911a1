import KVMControl
import SVMModel

/// One way the clone differs from the original, said so a reader knows
/// what the field is and whose it is (L1's, L2's, KVM's).
public struct Difference: Equatable, Sendable, CustomStringConvertible {
    /// Where: "L2 registers (KVM_GET_REGS/SREGS2)", "nested state", "vmcb12 in memory", "MSRs"…
    public var part: String
    public var field: String
    public var original: String
    public var clone: String
    public var meaning: String
    /// Differs by nature (the TSC runs on between two reads): shown, never a divergence.
    public var expected = false

    public var description: String {
        "\(part): \(field) \(original) -> \(clone)" + (meaning.isEmpty ? "" : " (\(meaning))")
            + (expected ? " [expected]" : "")
    }
}

/// Meaning-aware comparison of two saved vCPUs, and of two stops.
public enum StateComparison {
    /// The original as saved against the clone as read back after the restore.
    /// `vmcb12GPA`: vmcb12's address, to compare that page field by field.
    public static func compare(_ a: VCPUState, _ b: VCPUState, vmcb12GPA: UInt64?) -> [Difference] {
        var out: [Difference] = []
        let level = a.inGuestMode ? "L2" : "L1"
        let whose = a.inGuestMode ? "L2's (the vCPU is in guest mode: KVM_GET_REGS/SREGS2 read vmcb02)" : "L1's"
        out += registers(
            RegisterSet.fromVCPU(a.regs, a.sregs, a.debugRegs, source: ""),
            RegisterSet.fromVCPU(b.regs, b.sregs, b.debugRegs, source: ""),
            part: "\(level) registers (KVM_GET_REGS/SREGS2/DEBUGREGS)", meaning: whose)
        let special: [(String, UInt64, UInt64, String)] =
            [
                ("cr8", a.sregs.cr8, b.sregs.cr8, "task priority"),
                ("apic_base", a.sregs.apicBase, b.sregs.apicBase, "APIC base MSR"),
            ] + (0..<4).map { ("db\($0)", a.debugRegs.db[$0], b.debugRegs.db[$0], "breakpoint address") }
        for (name, x, y, meaning) in special where x != y {
            out.append(
                Difference(part: "\(level) registers", field: name, original: hex(x), clone: hex(y), meaning: meaning))
        }
        if a.sregs.pdptrs != b.sregs.pdptrs {
            let show = { (p: [UInt64]?) in
                p.map { $0.map(hex).joined(separator: " ") } ?? "none (not PAE paging, or not read)"
            }
            out.append(
                Difference(
                    part: "\(level) registers (SREGS2)", field: "pdptrs", original: show(a.sregs.pdptrs),
                    clone: show(b.sregs.pdptrs),
                    meaning: "the PDPTEs the CPU loaded at the last CR3 load (PAE); guest memory may hold others since")
            )
        }
        out += nestedState(a.svmNested, b.svmNested)
        out += zip(a.events.fields, b.events.fields).compactMap { x, y in
            x.value == y.value
                ? nil
                : Difference(
                    part: "events (KVM_GET_VCPU_EVENTS)", field: x.name, original: hex(x.value),
                    clone: hex(y.value), meaning: "\(level)'s pending or injected event")
        }
        if a.mpState != b.mpState {
            out.append(
                Difference(
                    part: "MP state", field: "mp_state", original: a.mpState.description, clone: b.mpState.description,
                    meaning: "runnable, halted, waiting for INIT/SIPI"))
        }
        out += msrs(a, b)
        out += bytes(a.xsave, b.xsave, part: "XSAVE", meaning: xsaveRegion)
        if a.xcrs != b.xcrs {
            let show = { (x: [XCR]?) in
                x.map { $0.map { "XCR\($0.index)=\(hex($0.value))" }.joined(separator: " ") } ?? "none"
            }
            out.append(
                Difference(
                    part: "XCRs", field: "xcrs", original: show(a.xcrs), clone: show(b.xcrs),
                    meaning: "XCR0: enabled XSAVE features"))
        }
        switch (a.lapic, b.lapic) {
        case let (x?, y?):
            out += bytes(x, y, part: "LAPIC", meaning: { "APIC register at 0x\(String($0 & ~0xF, radix: 16))" })
        case (nil, nil): break
        default:
            out.append(
                Difference(
                    part: "LAPIC", field: "page", original: a.lapic == nil ? "none" : "1024 bytes",
                    clone: b.lapic == nil ? "none" : "1024 bytes", meaning: "in-kernel local APIC"))
        }
        if a.cpuid != b.cpuid {
            out.append(
                Difference(
                    part: "CPUID", field: "entries", original: "\(a.cpuid.count) entries",
                    clone: "\(b.cpuid.count) entries",
                    meaning: "the CPUID the vCPU was given (first difference at leaf "
                        + (zip(a.cpuid, b.cpuid).first { $0 != $1 }.map { hex(UInt64($0.0.function)) } ?? "count") + ")"
                ))
        }
        if a.tscKHz != b.tscKHz {
            out.append(
                Difference(
                    part: "TSC", field: "tsc_khz", original: a.tscKHz.map { "\($0)" } ?? "none",
                    clone: b.tscKHz.map { "\($0)" } ?? "none", meaning: "the guest's TSC rate"))
        }
        out += memory(a, b, vmcb12GPA: vmcb12GPA)
        return out
    }

    /// Two stops that should be the same stop of the same guest.
    public static func compare(_ a: Stop, _ b: Stop) -> [Difference] {
        var out: [Difference] = []
        func add(_ field: String, _ x: String, _ y: String, _ meaning: String) {
            if x != y { out.append(Difference(part: "stop", field: field, original: x, clone: y, meaning: meaning)) }
        }
        add("kind", a.kind.rawValue, b.kind.rawValue, "what stopped the vCPU")
        add("level", a.level.rawValue, b.level.rawValue, "which level the vCPU was running")
        add(
            "exit", a.exit.map { "\($0.name) (\($0.summary))" } ?? "none",
            b.exit.map { "\($0.name) (\($0.summary))" } ?? "none",
            "the nested #VMEXIT L1 sees")
        add("nested_flags", a.nestedFlags.description, b.nestedFlags.description, "KVM_STATE_NESTED_* at the stop")
        add(
            "exit_status", a.exitStatus.map { "\($0)" } ?? "none", b.exitStatus.map { "\($0)" } ?? "none",
            "the guest's exit status")
        if let x = a.vmcb12, let y = b.vmcb12 {
            out += vmcbFields(x, y)
        } else if (a.vmcb12 == nil) != (b.vmcb12 == nil) {
            add("vmcb12", a.vmcb12 == nil ? "none" : "read", b.vmcb12 == nil ? "none" : "read", "vmcb12 at the stop")
        }
        out += registers(a.l1, b.l1, part: "L1 registers", meaning: a.l1.source)
        if let x = a.l2, let y = b.l2 {
            out += registers(x, y, part: "L2 registers", meaning: x.source)
        }
        return out
    }

    /// vmcb12 field by field, each with what the field is (and what KVM is known to do to it).
    static func vmcbFields(_ x: VMCB, _ y: VMCB) -> [Difference] {
        x.differingFields(from: y).map { field in
            let known = KnownLoss.note(field.name, x[field].integer, y[field].integer)
            return Difference(
                part: "vmcb12 in memory", field: field.name, original: x.shown(field), clone: y.shown(field),
                meaning: field.summary + (known.map { "; \($0)" } ?? ""))
        }
    }

    static func registers(_ a: RegisterSet, _ b: RegisterSet, part: String, meaning: String) -> [Difference] {
        Register.allCases.compactMap { r in
            let x = a.entry(r)
            let y = b.entry(r)
            guard x != y else { return nil }
            let show = { (v: RegisterValue?) in v.map { $0.value.map(hex) ?? "unknown" } ?? "absent" }
            let known = KnownLoss.note(r.name, x?.value, y?.value)
            return Difference(
                part: part, field: r.name, original: show(x), clone: show(y),
                meaning: meaning + (known.map { "; \($0)" } ?? ""))
        }
    }

    static func nestedState(_ a: SVMNestedState?, _ b: SVMNestedState?) -> [Difference] {
        switch (a, b) {
        case let (x?, y?):
            return x.differences(from: y).map {
                Difference(
                    part: "nested state (KVM_GET_NESTED_STATE)", field: $0.field, original: $0.first, clone: $0.second,
                    meaning: $0.meaning + (KnownLoss.note($0.field, nil, nil).map { "; \($0)" } ?? ""))
            }
        case (nil, nil):
            return []
        default:
            return [
                Difference(
                    part: "nested state", field: "blob", original: a == nil ? "none" : "present",
                    clone: b == nil ? "none" : "present", meaning: "KVM_GET_NESTED_STATE")
            ]
        }
    }

    static func msrs(_ a: VCPUState, _ b: VCPUState) -> [Difference] {
        let mine = Dictionary(a.msrs.map { ($0.index, $0.value) }, uniquingKeysWith: { x, _ in x })
        let theirs = Dictionary(b.msrs.map { ($0.index, $0.value) }, uniquingKeysWith: { x, _ in x })
        return a.msrs.map(\.index).compactMap { index in
            let x = mine[index]
            let y = theirs[index]
            guard x != y else { return nil }
            let timeDependent = MSRNames.timeDependent.contains(index)
            return Difference(
                part: "MSRs (KVM_GET_MSRS)", field: MSRNames.name(of: index), original: x.map(hex) ?? "not read",
                clone: y.map(hex) ?? "not read",
                meaning: timeDependent
                    ? "a counter that runs on between the save and the read-back" : msrMeaning(index),
                expected: timeDependent)
        }
    }

    static func msrMeaning(_ index: UInt32) -> String {
        switch index {
        case MSRNames.vmHsavePA: return "where VMRUN saves L1's host state; KVM keeps it outside the nested state"
        case 0xC000_0081...0xC000_0084, 0x174...0x176, 0xC000_0102:
            return "VMLOAD/VMSAVE state, shared by L1 and L2 (whatever L1 loaded last)"
        default: return ""
        }
    }

    /// Where a byte of an XSAVE area lies.
    static func xsaveRegion(_ offset: Int) -> String {
        switch offset {
        case 0..<24: return "x87 control (FCW/FSW/FTW/FOP/FIP/FDP)"
        case 24..<32: return "MXCSR"
        case 32..<160: return "x87 ST0-7"
        case 160..<416: return "XMM registers"
        case 416..<512: return "legacy area, unused"
        case 512..<576: return "XSAVE header (XSTATE_BV, XCOMP_BV)"
        default: return "extended state component"
        }
    }

    static func bytes(_ a: [UInt8], _ b: [UInt8], part: String, meaning: (Int) -> String) -> [Difference] {
        guard a != b else { return [] }
        let differing = zip(a, b).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
        guard let first = differing.first else {
            return [
                Difference(
                    part: part, field: "size", original: "\(a.count) bytes", clone: "\(b.count) bytes", meaning: "")
            ]
        }
        let show = { (x: [UInt8]) in x[first..<min(first + 8, x.count)].map(twoDigitHex).joined(separator: " ") }
        return [
            Difference(
                part: part, field: "byte \(first) (\(differing.count) differ)", original: show(a), clone: show(b),
                meaning: meaning(first))
        ]
    }

    static func memory(_ a: VCPUState, _ b: VCPUState, vmcb12GPA: UInt64?) -> [Difference] {
        var out: [Difference] = []
        for (x, y) in zip(a.memory, b.memory) {
            guard x.bytes != y.bytes else { continue }
            let pages = stride(from: 0, to: min(x.bytes.count, y.bytes.count), by: 4096).filter {
                x.bytes[$0..<min($0 + 4096, x.bytes.count)] != y.bytes[$0..<min($0 + 4096, y.bytes.count)]
            }
            let list = pages.prefix(8).map { hex(x.guestPhysicalAddress + UInt64($0)) }.joined(separator: " ")
            out.append(
                Difference(
                    part: "guest memory", field: "\(pages.count) page\(pages.count == 1 ? "" : "s")",
                    original: "slot at \(hex(x.guestPhysicalAddress))", clone: list + (pages.count > 8 ? " …" : ""),
                    meaning: "pages that differ right after the restore"))
        }
        if let gpa = vmcb12GPA, let x = vmcbPage(a, gpa), let y = vmcbPage(b, gpa) {
            out += vmcbFields(x, y)
        }
        return out
    }

    static func vmcbPage(_ s: VCPUState, _ gpa: UInt64) -> VMCB? {
        guard
            let slot = s.memory.first(where: {
                gpa >= $0.guestPhysicalAddress && gpa + 4096 <= $0.guestPhysicalAddress + UInt64($0.bytes.count)
            })
        else { return nil }
        let start = Int(gpa - slot.guestPhysicalAddress)
        return try? VMCB(bytes: slot.bytes[start..<start + 4096])
    }
}

/// What KVM does to state on the way through its ioctls, found by this
/// check on the sandbox's kernels: a difference in `field` (with its values
/// where it has numbers) that matches gets the reason.
enum KnownLoss {
    static func note(_ field: String, _ original: UInt64?, _ clone: UInt64?) -> String? {
        if field.hasSuffix(".attrib"), let x = original, let y = clone, x ^ y == 0x800 {
            return "only G differs: KVM_GET_SREGS2 synthesizes G from the limit (svm_get_segment), so a restore"
                + " through KVM_SET_SREGS2 writes L2's segment with G set, and the next #VMEXIT syncs it into vmcb12"
        }
        switch field {
        case "save.g_pat":
            return "L1's PAT in vmcb01 matters only with nested paging: KVM leaves it 0 in the source's vmcb01"
                + " under kvm_amd npt=0, a fresh vCPU starts with the reset PAT"
        case "save.dr6", "save.dr7":
            return "SET_NESTED_STATE copies L1's parked state with svm_copy_vmrun_state, which leaves DR6/DR7 out"
        default:
            return nil
        }
    }
}

private func twoDigitHex(_ byte: UInt8) -> String { (byte < 16 ? "0" : "") + String(byte, radix: 16) }
