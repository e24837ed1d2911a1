/// The VMCB layout, declared once. Every decoder, encoder, diff, JSON object
/// and pane in nestdbg walks this table; nothing else knows an offset.
///
/// Source: Linux `arch/x86/include/asm/svm.h`, `struct vmcb_control_area` and
/// `struct vmcb_save_area` (the non-SEV-ES save area at 0x400, 744 bytes), as of
/// torvalds/linux commit 01f492e1817e858d1712f2489d0afbaa552f417b (2026 mainline:
/// after "KVM: SVM: Treat exit_code as an unsigned 64-bit value" and the
/// nested_ctl -> misc_ctl, virt_ext -> misc_ctl2 rename; with erap_ctl,
/// bus_lock_counter, allowed_sev_features, guest_sev_features and a u64 spec_ctrl).
/// Offsets, widths and names were read from that header. The AMD reference it
/// implements is the AMD64 APM vol. 2 (pub. 24593) rev. 3.46, appendix B
/// ("VMCB Layout": control area, state save area); where the two differ in
/// naming, Linux's names win (e.g. EXITCODE is `control.exit_code`).
///
/// Names are Linux's (`control.<name>`, `save.<name>`, segments as
/// `save.cs.selector`). Linux names the save area's reserved runs by offset
/// (`reserved_0xa0`); the run after `spec_ctrl` to the end of the page, which
/// Linux leaves unnamed, is `save.reserved_0x2e8` here. The table covers all
/// 4096 bytes, reserved ranges included, so decoding and encoding round-trip.
///
/// Each field is declared once, as a static on `VMCBField` (`.exitCode`,
/// `.saveCSAttrib`), and `VMCBLayout.fields` is built from those statics; code
/// inside nestdbg names fields through them, so a misspelling does not compile.
/// `VMCBLayout.field(named:)` is for names a user types.

/// Which half of the VMCB a field lives in.
public enum VMCBArea: String, Sendable, CaseIterable {
    case control, save
}

/// How a field's value is read and what it means.
public enum FieldMeaning: Sendable, Equatable {
    case plain  // a number with no further structure
    case address  // a physical or linear address
    case interceptCR, interceptDR, interceptExceptions
    case interceptMisc(word: Int)  // intercepts[3], [4], [5]
    case tlbControl, erapControl, intControl, intVector, intState
    case exitCode, exitInfo1, exitInfo2
    case eventInjection  // EVENTINJ / EXITINTINFO low half
    case miscControl  // misc_ctl (formerly nested_ctl)
    case miscControl2  // misc_ctl2 (formerly virt_ext)
    case cleanBits
    case sevFeatures  // allowed_sev_features, guest_sev_features
    case cr0, cr3, cr4, efer, rflags, dr6, dr7
    case segmentSelector, segmentAttributes
    case bytes  // an opaque byte run (instruction bytes)
    case reserved  // must be zero / unused by this layout
}

/// One VMCB field: Linux's name, where it lives, how wide it is, what it means.
/// Immutable, declared once each (the statics below), and passed around at
/// every stop (diffs, rules, JSON): a reference, so a copy is one retain.
public final class VMCBField: Sendable, Hashable {
    init(name: String, offset: Int, width: Int, area: VMCBArea, meaning: FieldMeaning, summary: String) {
        self.name = name
        self.offset = offset
        self.width = width
        self.area = area
        self.meaning = meaning
        self.summary = summary
        shortName = String(name.dropFirst(area.rawValue.count + 1))
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
    public let shortName: String
    public var range: Range<Int> { offset..<(offset + width) }

    public static func == (a: VMCBField, b: VMCBField) -> Bool { a.name == b.name }
    // Fields key the per-stop diff and rule lookups: hash the offset, not the name's bytes.
    public func hash(into h: inout Hasher) { h.combine(offset) }
}

// MARK: - The fields, each declared once

extension VMCBField {
    private static func control(
        _ offset: Int, _ width: Int, _ name: String, _ meaning: FieldMeaning,
        _ summary: String
    ) -> VMCBField {
        VMCBField(
            name: "control." + name, offset: offset, width: width, area: .control, meaning: meaning, summary: summary)
    }

    /// A save-area field; `rel` is the offset inside `struct vmcb_save_area`.
    private static func save(
        _ rel: Int, _ width: Int, _ name: String, _ meaning: FieldMeaning,
        _ summary: String
    ) -> VMCBField {
        VMCBField(
            name: "save." + name, offset: VMCBLayout.saveAreaOffset + rel, width: width, area: .save,
            meaning: meaning, summary: summary)
    }

    // The four parts of a `struct vmcb_seg` (16 bytes at `rel`).
    private static func selector(_ rel: Int, _ seg: String, _ loadedBy: String) -> VMCBField {
        save(rel, 2, seg + ".selector", .segmentSelector, "\(seg.uppercased()) selector (\(loadedBy))")
    }
    private static func attributes(_ rel: Int, _ seg: String) -> VMCBField {
        save(rel, 2, seg + ".attrib", .segmentAttributes, "\(seg.uppercased()) attributes: type S DPL P AVL L D/B G")
    }
    private static func limit(_ rel: Int, _ seg: String) -> VMCBField {
        save(rel, 4, seg + ".limit", .plain, "\(seg.uppercased()) limit")
    }
    private static func base(_ rel: Int, _ seg: String) -> VMCBField {
        save(rel, 8, seg + ".base", .address, "\(seg.uppercased()) base")
    }

    // MARK: control area (struct vmcb_control_area, 0x000-0x3FF)
    public static let intercepts0 = control(
        0x000, 4, "intercepts[0]", .interceptCR,
        "CR read (bits 0-15) / write (16-31) intercepts")
    public static let intercepts1 = control(
        0x004, 4, "intercepts[1]", .interceptDR,
        "DR read (bits 0-15) / write (16-31) intercepts")
    public static let intercepts2 = control(
        0x008, 4, "intercepts[2]", .interceptExceptions,
        "exception intercepts, bit n = vector n")
    public static let intercepts3 = control(
        0x00C, 4, "intercepts[3]", .interceptMisc(word: 3),
        "instruction/event intercepts (INTR..SHUTDOWN)")
    public static let intercepts4 = control(
        0x010, 4, "intercepts[4]", .interceptMisc(word: 4),
        "instruction intercepts (VMRUN..CR write traps)")
    public static let intercepts5 = control(
        0x014, 4, "intercepts[5]", .interceptMisc(word: 5),
        "instruction intercepts (INVLPGB..IDLE_HLT)")
    public static let reserved1 = control(0x018, 36, "reserved_1", .reserved, "reserved")
    public static let pauseFilterThresh = control(0x03C, 2, "pause_filter_thresh", .plain, "PAUSE filter threshold")
    public static let pauseFilterCount = control(0x03E, 2, "pause_filter_count", .plain, "PAUSE filter count")
    public static let iopmBasePA = control(0x040, 8, "iopm_base_pa", .address, "I/O permission map (12 KiB)")
    public static let msrpmBasePA = control(0x048, 8, "msrpm_base_pa", .address, "MSR permission map (8 KiB)")
    public static let tscOffset = control(0x050, 8, "tsc_offset", .plain, "TSC offset while the guest runs")
    public static let asid = control(0x058, 4, "asid", .plain, "guest ASID (0 is illegal)")
    public static let tlbCtl = control(0x05C, 1, "tlb_ctl", .tlbControl, "TLB control")
    public static let erapCtl = control(
        0x05D, 1, "erap_ctl", .erapControl,
        "ERAPS control: ALLOW_LARGER_RAP, CLEAR_RAP")
    public static let reserved2 = control(0x05E, 2, "reserved_2", .reserved, "reserved")
    public static let intCtl = control(0x060, 4, "int_ctl", .intControl, "virtual interrupt control")
    public static let intVector = control(0x064, 4, "int_vector", .intVector, "virtual interrupt vector (bits 7:0)")
    public static let intState = control(0x068, 4, "int_state", .intState, "interrupt shadow, guest interrupt mask")
    public static let reserved3 = control(0x06C, 4, "reserved_3", .reserved, "reserved")
    public static let exitCode = control(0x070, 8, "exit_code", .exitCode, "EXITCODE (64 bits; VMEXIT_INVALID is -1)")
    public static let exitInfo1 = control(0x078, 8, "exit_info_1", .exitInfo1, "EXITINFO1")
    public static let exitInfo2 = control(0x080, 8, "exit_info_2", .exitInfo2, "EXITINFO2")
    public static let exitIntInfo = control(
        0x088, 4, "exit_int_info", .eventInjection,
        "EXITINTINFO: event being delivered at the exit")
    public static let exitIntInfoErr = control(0x08C, 4, "exit_int_info_err", .plain, "EXITINTINFO error code")
    public static let miscCtl = control(
        0x090, 8, "misc_ctl", .miscControl,
        "NP_ENABLE, SEV, SEV-ES, GMET (formerly nested_ctl)")
    public static let avicVAPICBar = control(0x098, 8, "avic_vapic_bar", .address, "AVIC APIC BAR")
    public static let ghcbGPA = control(0x0A0, 8, "ghcb_gpa", .address, "SEV-ES GHCB")
    public static let eventInj = control(0x0A8, 4, "event_inj", .eventInjection, "EVENTINJ: event to inject at VMRUN")
    public static let eventInjErr = control(0x0AC, 4, "event_inj_err", .plain, "EVENTINJ error code")
    public static let nestedCR3 = control(0x0B0, 8, "nested_cr3", .address, "nested page table root (nCR3)")
    public static let miscCtl2 = control(
        0x0B8, 8, "misc_ctl2", .miscControl2,
        "LBR virtualization, virtual VMLOAD/VMSAVE (formerly virt_ext)")
    public static let clean = control(0x0C0, 4, "clean", .cleanBits, "VMCB clean bits")
    public static let reserved5 = control(0x0C4, 4, "reserved_5", .reserved, "reserved")
    public static let nextRIP = control(0x0C8, 8, "next_rip", .address, "nRIP: next sequential instruction")
    public static let insnLen = control(0x0D0, 1, "insn_len", .plain, "instruction bytes fetched (decode assists)")
    public static let insnBytes = control(0x0D1, 15, "insn_bytes", .bytes, "instruction bytes (decode assists)")
    public static let avicBackingPage = control(0x0E0, 8, "avic_backing_page", .address, "AVIC backing page")
    public static let reserved6 = control(0x0E8, 8, "reserved_6", .reserved, "reserved")
    public static let avicLogicalID = control(0x0F0, 8, "avic_logical_id", .address, "AVIC logical APIC ID table")
    public static let avicPhysicalID = control(0x0F8, 8, "avic_physical_id", .address, "AVIC physical APIC ID table")
    public static let reserved7 = control(0x100, 8, "reserved_7", .reserved, "reserved")
    public static let vmsaPA = control(0x108, 8, "vmsa_pa", .address, "SEV-ES VMSA")
    public static let reserved8 = control(0x110, 16, "reserved_8", .reserved, "reserved")
    public static let busLockCounter = control(
        0x120, 2, "bus_lock_counter", .plain,
        "bus lock threshold counter (BUSLOCK intercept)")
    public static let reserved9 = control(0x122, 22, "reserved_9", .reserved, "reserved")
    public static let allowedSEVFeatures = control(
        0x138, 8, "allowed_sev_features", .sevFeatures,
        "SEV_FEATURES the guest may enable (bit 63: the mask is valid)")
    public static let guestSEVFeatures = control(
        0x140, 8, "guest_sev_features", .sevFeatures,
        "the guest's SEV_FEATURES (SEV-SNP)")
    public static let reserved10 = control(0x148, 0x298, "reserved_10", .reserved, "reserved")
    public static let reservedSW = control(
        0x3E0, 32, "reserved_sw", .reserved,
        "reserved for hypervisor software (Hyper-V enlightenments)")

    // MARK: save area (struct vmcb_save_area at 0x400; offsets relative to it)
    public static let saveESSelector = selector(0x000, "es", "VMRUN")
    public static let saveESAttrib = attributes(0x002, "es")
    public static let saveESLimit = limit(0x004, "es")
    public static let saveESBase = base(0x008, "es")
    public static let saveCSSelector = selector(0x010, "cs", "VMRUN")
    public static let saveCSAttrib = attributes(0x012, "cs")
    public static let saveCSLimit = limit(0x014, "cs")
    public static let saveCSBase = base(0x018, "cs")
    public static let saveSSSelector = selector(0x020, "ss", "VMRUN")
    public static let saveSSAttrib = attributes(0x022, "ss")
    public static let saveSSLimit = limit(0x024, "ss")
    public static let saveSSBase = base(0x028, "ss")
    public static let saveDSSelector = selector(0x030, "ds", "VMRUN")
    public static let saveDSAttrib = attributes(0x032, "ds")
    public static let saveDSLimit = limit(0x034, "ds")
    public static let saveDSBase = base(0x038, "ds")
    public static let saveFSSelector = selector(0x040, "fs", "VMLOAD")
    public static let saveFSAttrib = attributes(0x042, "fs")
    public static let saveFSLimit = limit(0x044, "fs")
    public static let saveFSBase = base(0x048, "fs")
    public static let saveGSSelector = selector(0x050, "gs", "VMLOAD")
    public static let saveGSAttrib = attributes(0x052, "gs")
    public static let saveGSLimit = limit(0x054, "gs")
    public static let saveGSBase = base(0x058, "gs")
    public static let saveGDTRSelector = selector(0x060, "gdtr", "VMRUN")
    public static let saveGDTRAttrib = attributes(0x062, "gdtr")
    public static let saveGDTRLimit = limit(0x064, "gdtr")
    public static let saveGDTRBase = base(0x068, "gdtr")
    public static let saveLDTRSelector = selector(0x070, "ldtr", "VMLOAD")
    public static let saveLDTRAttrib = attributes(0x072, "ldtr")
    public static let saveLDTRLimit = limit(0x074, "ldtr")
    public static let saveLDTRBase = base(0x078, "ldtr")
    public static let saveIDTRSelector = selector(0x080, "idtr", "VMRUN")
    public static let saveIDTRAttrib = attributes(0x082, "idtr")
    public static let saveIDTRLimit = limit(0x084, "idtr")
    public static let saveIDTRBase = base(0x088, "idtr")
    public static let saveTRSelector = selector(0x090, "tr", "VMLOAD")
    public static let saveTRAttrib = attributes(0x092, "tr")
    public static let saveTRLimit = limit(0x094, "tr")
    public static let saveTRBase = base(0x098, "tr")
    public static let saveReserved0xA0 = save(0x0A0, 42, "reserved_0xa0", .reserved, "reserved")
    public static let saveVMPL = save(0x0CA, 1, "vmpl", .plain, "VMPL (SEV-SNP)")
    public static let saveCPL = save(0x0CB, 1, "cpl", .plain, "current privilege level")
    public static let saveReserved0xCC = save(0x0CC, 4, "reserved_0xcc", .reserved, "reserved")
    public static let saveEFER = save(0x0D0, 8, "efer", .efer, "EFER")
    public static let saveReserved0xD8 = save(0x0D8, 112, "reserved_0xd8", .reserved, "reserved")
    public static let saveCR4 = save(0x148, 8, "cr4", .cr4, "CR4")
    public static let saveCR3 = save(0x150, 8, "cr3", .cr3, "CR3")
    public static let saveCR0 = save(0x158, 8, "cr0", .cr0, "CR0")
    public static let saveDR7 = save(0x160, 8, "dr7", .dr7, "DR7")
    public static let saveDR6 = save(0x168, 8, "dr6", .dr6, "DR6")
    public static let saveRFLAGS = save(0x170, 8, "rflags", .rflags, "RFLAGS")
    public static let saveRIP = save(0x178, 8, "rip", .address, "RIP")
    public static let saveReserved0x180 = save(0x180, 88, "reserved_0x180", .reserved, "reserved")
    public static let saveRSP = save(0x1D8, 8, "rsp", .address, "RSP")
    public static let saveSCET = save(0x1E0, 8, "s_cet", .plain, "S_CET (CET)")
    public static let saveSSP = save(0x1E8, 8, "ssp", .address, "shadow stack pointer (CET)")
    public static let saveISSTAddr = save(0x1F0, 8, "isst_addr", .address, "interrupt SSP table (CET)")
    public static let saveRAX = save(0x1F8, 8, "rax", .plain, "RAX")
    public static let saveStar = save(0x200, 8, "star", .plain, "STAR (VMLOAD/VMSAVE)")
    public static let saveLstar = save(0x208, 8, "lstar", .address, "LSTAR (VMLOAD/VMSAVE)")
    public static let saveCstar = save(0x210, 8, "cstar", .address, "CSTAR (VMLOAD/VMSAVE)")
    public static let saveSfmask = save(0x218, 8, "sfmask", .plain, "SFMASK (VMLOAD/VMSAVE)")
    public static let saveKernelGSBase = save(0x220, 8, "kernel_gs_base", .address, "KernelGSBase (VMLOAD/VMSAVE)")
    public static let saveSysenterCS = save(0x228, 8, "sysenter_cs", .plain, "SYSENTER_CS (VMLOAD/VMSAVE)")
    public static let saveSysenterESP = save(0x230, 8, "sysenter_esp", .address, "SYSENTER_ESP (VMLOAD/VMSAVE)")
    public static let saveSysenterEIP = save(0x238, 8, "sysenter_eip", .address, "SYSENTER_EIP (VMLOAD/VMSAVE)")
    public static let saveCR2 = save(0x240, 8, "cr2", .address, "CR2")
    public static let saveReserved0x248 = save(0x248, 32, "reserved_0x248", .reserved, "reserved")
    public static let saveGPAT = save(0x268, 8, "g_pat", .plain, "guest PAT (nested paging)")
    public static let saveDbgctl = save(0x270, 8, "dbgctl", .plain, "DEBUGCTL (LBR virtualization)")
    public static let saveBrFrom = save(0x278, 8, "br_from", .address, "last branch from (LBR)")
    public static let saveBrTo = save(0x280, 8, "br_to", .address, "last branch to (LBR)")
    public static let saveLastExcpFrom = save(0x288, 8, "last_excp_from", .address, "last exception from (LBR)")
    public static let saveLastExcpTo = save(0x290, 8, "last_excp_to", .address, "last exception to (LBR)")
    public static let saveReserved0x298 = save(0x298, 72, "reserved_0x298", .reserved, "reserved")
    public static let saveSpecCtrl = save(0x2E0, 8, "spec_ctrl", .plain, "guest SPEC_CTRL (V_SPEC_CTRL)")
    /// From the end of `struct vmcb_save_area` (744 bytes) to the end of the page.
    public static let saveReserved0x2E8 = save(
        0x2E8, VMCBLayout.size - VMCBLayout.saveAreaOffset - 0x2E8,
        "reserved_0x2e8", .reserved, "reserved (beyond the save area)")
}

public enum VMCBLayout {
    public static let size = 4096
    public static let saveAreaOffset = 0x400

    /// Every field, in offset order: each `VMCBField` static exactly once.
    public static let fields: [VMCBField] = [
        .intercepts0, .intercepts1, .intercepts2, .intercepts3, .intercepts4, .intercepts5, .reserved1,
        .pauseFilterThresh, .pauseFilterCount, .iopmBasePA, .msrpmBasePA, .tscOffset, .asid, .tlbCtl, .erapCtl,
        .reserved2, .intCtl, .intVector, .intState, .reserved3, .exitCode, .exitInfo1, .exitInfo2, .exitIntInfo,
        .exitIntInfoErr, .miscCtl, .avicVAPICBar, .ghcbGPA, .eventInj, .eventInjErr, .nestedCR3, .miscCtl2, .clean,
        .reserved5, .nextRIP, .insnLen, .insnBytes, .avicBackingPage, .reserved6, .avicLogicalID, .avicPhysicalID,
        .reserved7, .vmsaPA, .reserved8, .busLockCounter, .reserved9, .allowedSEVFeatures, .guestSEVFeatures,
        .reserved10, .reservedSW, .saveESSelector, .saveESAttrib, .saveESLimit, .saveESBase, .saveCSSelector,
        .saveCSAttrib, .saveCSLimit, .saveCSBase, .saveSSSelector, .saveSSAttrib, .saveSSLimit, .saveSSBase,
        .saveDSSelector, .saveDSAttrib, .saveDSLimit, .saveDSBase, .saveFSSelector, .saveFSAttrib, .saveFSLimit,
        .saveFSBase, .saveGSSelector, .saveGSAttrib, .saveGSLimit, .saveGSBase, .saveGDTRSelector, .saveGDTRAttrib,
        .saveGDTRLimit, .saveGDTRBase, .saveLDTRSelector, .saveLDTRAttrib, .saveLDTRLimit, .saveLDTRBase,
        .saveIDTRSelector, .saveIDTRAttrib, .saveIDTRLimit, .saveIDTRBase, .saveTRSelector, .saveTRAttrib,
        .saveTRLimit, .saveTRBase, .saveReserved0xA0, .saveVMPL, .saveCPL, .saveReserved0xCC, .saveEFER,
        .saveReserved0xD8, .saveCR4, .saveCR3, .saveCR0, .saveDR7, .saveDR6, .saveRFLAGS, .saveRIP,
        .saveReserved0x180, .saveRSP, .saveSCET, .saveSSP, .saveISSTAddr, .saveRAX, .saveStar, .saveLstar,
        .saveCstar, .saveSfmask, .saveKernelGSBase, .saveSysenterCS, .saveSysenterESP, .saveSysenterEIP, .saveCR2,
        .saveReserved0x248, .saveGPAT, .saveDbgctl, .saveBrFrom, .saveBrTo, .saveLastExcpFrom, .saveLastExcpTo,
        .saveReserved0x298, .saveSpecCtrl, .saveReserved0x2E8,
    ]

    private static let byName: [String: VMCBField] = Dictionary(uniqueKeysWithValues: fields.map { ($0.name, $0) })

    /// The field called `name` (`control.exit_code`, `save.cs.attrib`), for names a user types.
    public static func field(named name: String) -> VMCBField? { byName[name] }

    /// Looks a field up by name; traps on a name the layout does not have.
    static func named(_ name: String) -> VMCBField {
        guard let f = byName[name] else { preconditionFailure("no VMCB field \(name)") }
        return f
    }
}
