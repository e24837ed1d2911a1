/// The VMCB layout, declared once. Every decoder, encoder, diff, JSON object
/// and pane in nestdbg walks this table; nothing else knows an offset.
///
/// Source: AMD APM vol. 2 appendix B and KVM's `struct vmcb_control_area` /
/// `struct vmcb_save_area` (6.x layout, save area at 0x400), as recorded in
/// the project's reference (kvm-nested-svm.md §1). The table covers all 4096
/// bytes, reserved ranges included, so decoding and encoding round-trip.

/// Which half of the VMCB a field lives in.
public enum VMCBArea: String, Sendable, CaseIterable {
    case control, save
}

/// How a field's value is read and what it means.
public enum FieldMeaning: Sendable, Equatable {
    case plain                 // a number with no further structure
    case address               // a physical or linear address
    case interceptCR, interceptDR, interceptExceptions
    case interceptMisc(word: Int)   // intercepts[3], [4], [5]
    case tlbControl, intControl, intVector, intState
    case exitCode, exitInfo1, exitInfo2
    case eventInjection        // EVENTINJ / EXITINTINFO low half
    case nestedControl, virtExt, cleanBits
    case cr0, cr3, cr4, efer, rflags, dr6, dr7
    case segmentSelector, segmentAttributes
    case bytes                 // an opaque byte run (instruction bytes)
    case reserved              // must be zero / unused by this layout
}

/// One VMCB field: KVM's name, where it lives, how wide it is, what it means.
public struct VMCBField: Sendable, Hashable {
    init(name: String, offset: Int, width: Int, area: VMCBArea, meaning: FieldMeaning, summary: String) {
        self.name = name; self.offset = offset; self.width = width; self.area = area; self.meaning = meaning
        self.summary = summary
        isInteger = [1, 2, 4, 8].contains(width) && meaning != .bytes && meaning != .reserved
        firstWord = offset / 8
        lastWord = (offset + width - 1) / 8
    }

    /// `control.exit_info_1`, `save.cs.attrib`, ...
    public let name: String
    /// Offset from the start of the 4 KiB page.
    public let offset: Int
    /// Width in bytes. Fields of 1, 2, 4 or 8 bytes are little-endian integers.
    public let width: Int
    public let area: VMCBArea
    public let meaning: FieldMeaning
    /// One line a pane can show as help.
    public let summary: String

    /// Fields of 1, 2, 4 or 8 bytes that are numbers (not opaque or reserved bytes).
    public let isInteger: Bool
    /// The 8-byte words of the page the field touches (for the diff's fast path).
    let firstWord: Int, lastWord: Int
    public var isReserved: Bool { meaning == .reserved }
    /// The name inside its area (`exit_info_1`, `cs.attrib`).
    public var shortName: String { String(name.dropFirst(area.rawValue.count + 1)) }
    public var range: Range<Int> { offset..<(offset + width) }

    public static func == (a: VMCBField, b: VMCBField) -> Bool { a.name == b.name }
    public func hash(into h: inout Hasher) { h.combine(name) }
}

public enum VMCBLayout {
    public static let size = 4096
    public static let saveAreaOffset = 0x400

    private static func c(_ offset: Int, _ width: Int, _ name: String, _ meaning: FieldMeaning, _ summary: String) -> VMCBField {
        VMCBField(name: "control." + name, offset: offset, width: width, area: .control, meaning: meaning, summary: summary)
    }

    private static func s(_ rel: Int, _ width: Int, _ name: String, _ meaning: FieldMeaning, _ summary: String) -> VMCBField {
        VMCBField(name: "save." + name, offset: saveAreaOffset + rel, width: width, area: .save, meaning: meaning, summary: summary)
    }

    /// A `struct vmcb_seg` (16 bytes) as its four fields.
    private static func segment(_ rel: Int, _ name: String, _ loadedBy: String) -> [VMCBField] {
        [s(rel, 2, name + ".selector", .segmentSelector, "\(name.uppercased()) selector (\(loadedBy))"),
         s(rel + 2, 2, name + ".attrib", .segmentAttributes, "\(name.uppercased()) attributes: type S DPL P AVL L D/B G"),
         s(rel + 4, 4, name + ".limit", .plain, "\(name.uppercased()) limit"),
         s(rel + 8, 8, name + ".base", .address, "\(name.uppercased()) base")]
    }

    /// Every field, in offset order.
    public static let fields: [VMCBField] = {
        var f: [VMCBField] = [
            c(0x000, 4, "intercepts[0]", .interceptCR, "CR read (bits 0-15) / write (16-31) intercepts"),
            c(0x004, 4, "intercepts[1]", .interceptDR, "DR read (bits 0-15) / write (16-31) intercepts"),
            c(0x008, 4, "intercepts[2]", .interceptExceptions, "exception intercepts, bit n = vector n"),
            c(0x00C, 4, "intercepts[3]", .interceptMisc(word: 3), "instruction/event intercepts (INTR..SHUTDOWN)"),
            c(0x010, 4, "intercepts[4]", .interceptMisc(word: 4), "instruction intercepts (VMRUN..CR write traps)"),
            c(0x014, 4, "intercepts[5]", .interceptMisc(word: 5), "instruction intercepts (INVLPGB..IDLE_HLT)"),
            c(0x018, 36, "reserved_1", .reserved, "reserved"),
            c(0x03C, 2, "pause_filter_thresh", .plain, "PAUSE filter threshold"),
            c(0x03E, 2, "pause_filter_count", .plain, "PAUSE filter count"),
            c(0x040, 8, "iopm_base_pa", .address, "I/O permission map (12 KiB)"),
            c(0x048, 8, "msrpm_base_pa", .address, "MSR permission map (8 KiB)"),
            c(0x050, 8, "tsc_offset", .plain, "TSC offset while the guest runs"),
            c(0x058, 4, "asid", .plain, "guest ASID (0 is illegal)"),
            c(0x05C, 1, "tlb_ctl", .tlbControl, "TLB control"),
            c(0x05D, 3, "reserved_2", .reserved, "reserved"),
            c(0x060, 4, "int_ctl", .intControl, "virtual interrupt control"),
            c(0x064, 4, "int_vector", .intVector, "virtual interrupt vector (bits 7:0)"),
            c(0x068, 4, "int_state", .intState, "interrupt shadow, guest interrupt mask"),
            c(0x06C, 4, "reserved_3", .reserved, "reserved"),
            c(0x070, 4, "exit_code", .exitCode, "EXITCODE (low half)"),
            c(0x074, 4, "exit_code_hi", .plain, "EXITCODE (high half)"),
            c(0x078, 8, "exit_info_1", .exitInfo1, "EXITINFO1"),
            c(0x080, 8, "exit_info_2", .exitInfo2, "EXITINFO2"),
            c(0x088, 4, "exit_int_info", .eventInjection, "EXITINTINFO: event being delivered at the exit"),
            c(0x08C, 4, "exit_int_info_err", .plain, "EXITINTINFO error code"),
            c(0x090, 8, "nested_ctl", .nestedControl, "NP_ENABLE, SEV, SEV-ES, GMET"),
            c(0x098, 8, "avic_vapic_bar", .address, "AVIC APIC BAR"),
            c(0x0A0, 8, "ghcb_gpa", .address, "SEV-ES GHCB"),
            c(0x0A8, 4, "event_inj", .eventInjection, "EVENTINJ: event to inject at VMRUN"),
            c(0x0AC, 4, "event_inj_err", .plain, "EVENTINJ error code"),
            c(0x0B0, 8, "nested_cr3", .address, "nested page table root (nCR3)"),
            c(0x0B8, 8, "virt_ext", .virtExt, "LBR virtualization, virtual VMLOAD/VMSAVE"),
            c(0x0C0, 4, "clean", .cleanBits, "VMCB clean bits"),
            c(0x0C4, 4, "reserved_5", .reserved, "reserved"),
            c(0x0C8, 8, "next_rip", .address, "nRIP: next sequential instruction"),
            c(0x0D0, 1, "insn_len", .plain, "instruction bytes fetched (decode assists)"),
            c(0x0D1, 15, "insn_bytes", .bytes, "instruction bytes (decode assists)"),
            c(0x0E0, 8, "avic_backing_page", .address, "AVIC backing page"),
            c(0x0E8, 8, "reserved_6", .reserved, "reserved"),
            c(0x0F0, 8, "avic_logical_id", .address, "AVIC logical APIC ID table"),
            c(0x0F8, 8, "avic_physical_id", .address, "AVIC physical APIC ID table"),
            c(0x100, 8, "reserved_7", .reserved, "reserved"),
            c(0x108, 8, "vmsa_pa", .address, "SEV-ES VMSA"),
            c(0x110, 0x3E0 - 0x110, "reserved_8", .reserved, "reserved"),
            c(0x3E0, 32, "reserved_sw", .reserved, "reserved for hypervisor software (Hyper-V enlightenments)"),
        ]
        f += segment(0x000, "es", "VMRUN") + segment(0x010, "cs", "VMRUN") + segment(0x020, "ss", "VMRUN")
            + segment(0x030, "ds", "VMRUN") + segment(0x040, "fs", "VMLOAD") + segment(0x050, "gs", "VMLOAD")
            + segment(0x060, "gdtr", "VMRUN") + segment(0x070, "ldtr", "VMLOAD") + segment(0x080, "idtr", "VMRUN")
            + segment(0x090, "tr", "VMLOAD")
        f += [
            s(0x0A0, 42, "reserved_1", .reserved, "reserved"),
            s(0x0CA, 1, "vmpl", .plain, "VMPL (SEV-SNP)"),
            s(0x0CB, 1, "cpl", .plain, "current privilege level"),
            s(0x0CC, 4, "reserved_2", .reserved, "reserved"),
            s(0x0D0, 8, "efer", .efer, "EFER"),
            s(0x0D8, 112, "reserved_3", .reserved, "reserved"),
            s(0x148, 8, "cr4", .cr4, "CR4"),
            s(0x150, 8, "cr3", .cr3, "CR3"),
            s(0x158, 8, "cr0", .cr0, "CR0"),
            s(0x160, 8, "dr7", .dr7, "DR7"),
            s(0x168, 8, "dr6", .dr6, "DR6"),
            s(0x170, 8, "rflags", .rflags, "RFLAGS"),
            s(0x178, 8, "rip", .address, "RIP"),
            s(0x180, 88, "reserved_4", .reserved, "reserved"),
            s(0x1D8, 8, "rsp", .address, "RSP"),
            s(0x1E0, 8, "s_cet", .plain, "S_CET (CET)"),
            s(0x1E8, 8, "ssp", .address, "shadow stack pointer (CET)"),
            s(0x1F0, 8, "isst_addr", .address, "interrupt SSP table (CET)"),
            s(0x1F8, 8, "rax", .plain, "RAX"),
            s(0x200, 8, "star", .plain, "STAR (VMLOAD/VMSAVE)"),
            s(0x208, 8, "lstar", .address, "LSTAR (VMLOAD/VMSAVE)"),
            s(0x210, 8, "cstar", .address, "CSTAR (VMLOAD/VMSAVE)"),
            s(0x218, 8, "sfmask", .plain, "SFMASK (VMLOAD/VMSAVE)"),
            s(0x220, 8, "kernel_gs_base", .address, "KernelGSBase (VMLOAD/VMSAVE)"),
            s(0x228, 8, "sysenter_cs", .plain, "SYSENTER_CS (VMLOAD/VMSAVE)"),
            s(0x230, 8, "sysenter_esp", .address, "SYSENTER_ESP (VMLOAD/VMSAVE)"),
            s(0x238, 8, "sysenter_eip", .address, "SYSENTER_EIP (VMLOAD/VMSAVE)"),
            s(0x240, 8, "cr2", .address, "CR2"),
            s(0x248, 32, "reserved_5", .reserved, "reserved"),
            s(0x268, 8, "g_pat", .plain, "guest PAT (nested paging)"),
            s(0x270, 8, "dbgctl", .plain, "DEBUGCTL (LBR virtualization)"),
            s(0x278, 8, "br_from", .address, "last branch from (LBR)"),
            s(0x280, 8, "br_to", .address, "last branch to (LBR)"),
            s(0x288, 8, "last_excp_from", .address, "last exception from (LBR)"),
            s(0x290, 8, "last_excp_to", .address, "last exception to (LBR)"),
            s(0x298, 72, "reserved_6", .reserved, "reserved"),
            s(0x2E0, 4, "spec_ctrl", .plain, "SPEC_CTRL (V_SPEC_CTRL)"),
            s(0x2E4, size - saveAreaOffset - 0x2E4, "reserved_tail", .reserved, "beyond the 6.x save area"),
        ]
        return f
    }()

    private static let byName: [String: VMCBField] = Dictionary(uniqueKeysWithValues: fields.map { ($0.name, $0) })

    /// The field called `name` (`control.exit_code`, `save.cs.attrib`).
    public static func field(named name: String) -> VMCBField? { byName[name] }

    /// Looks a field up by name; traps on a typo in nestdbg's own code.
    static func named(_ name: String) -> VMCBField {
        guard let f = byName[name] else { preconditionFailure("no VMCB field \(name)") }
        return f
    }
}
