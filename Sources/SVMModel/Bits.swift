/// Named bits and bit fields of the registers and VMCB words nestdbg decodes.
/// Sources: AMD APM vol. 2/3, the project's reference §1.3–1.5.
public struct BitName: Sendable {
    public let mask: UInt64
    public let name: String
    init(_ bit: Int, _ name: String) {
        mask = 1 << UInt64(bit)
        self.name = name
    }
    init(mask: UInt64, _ name: String) {
        self.mask = mask
        self.name = name
    }
}

public enum Bits {
    public static let cr0: [BitName] = [
        .init(0, "PE"), .init(1, "MP"), .init(2, "EM"), .init(3, "TS"), .init(4, "ET"), .init(5, "NE"),
        .init(16, "WP"), .init(18, "AM"), .init(29, "NW"), .init(30, "CD"), .init(31, "PG"),
    ]
    public static let cr4: [BitName] = [
        .init(0, "VME"), .init(1, "PVI"), .init(2, "TSD"), .init(3, "DE"), .init(4, "PSE"), .init(5, "PAE"),
        .init(6, "MCE"), .init(7, "PGE"), .init(8, "PCE"), .init(9, "OSFXSR"), .init(10, "OSXMMEXCPT"),
        .init(11, "UMIP"), .init(12, "LA57"), .init(13, "VMXE"), .init(14, "SMXE"), .init(16, "FSGSBASE"),
        .init(17, "PCIDE"), .init(18, "OSXSAVE"), .init(19, "KL"), .init(20, "SMEP"), .init(21, "SMAP"),
        .init(22, "PKE"), .init(23, "CET"), .init(24, "PKS"), .init(25, "UINTR"), .init(28, "LAM_SUP"),
    ]
    public static let efer: [BitName] = [
        .init(0, "SCE"), .init(8, "LME"), .init(10, "LMA"), .init(11, "NXE"), .init(12, "SVME"),
        .init(13, "LMSLE"), .init(14, "FFXSR"), .init(15, "TCE"), .init(21, "AUTOIBRS"),
    ]
    public static let rflags: [BitName] = [
        .init(0, "CF"), .init(2, "PF"), .init(4, "AF"), .init(6, "ZF"), .init(7, "SF"), .init(8, "TF"),
        .init(9, "IF"), .init(10, "DF"), .init(11, "OF"), .init(14, "NT"), .init(16, "RF"), .init(17, "VM"),
        .init(18, "AC"), .init(19, "VIF"), .init(20, "VIP"), .init(21, "ID"),
    ]
    public static let intCtl: [BitName] = [
        .init(8, "V_IRQ"), .init(9, "V_GIF"), .init(11, "V_NMI_PENDING"), .init(12, "V_NMI_BLOCKING"),
        .init(20, "V_IGN_TPR"), .init(24, "V_INTR_MASKING"), .init(25, "V_GIF_ENABLE"), .init(26, "V_NMI_ENABLE"),
        .init(30, "X2APIC_MODE"), .init(31, "AVIC_ENABLE"),
    ]
    public static let intState: [BitName] = [.init(0, "INTERRUPT_SHADOW"), .init(1, "GUEST_INTERRUPT_MASK")]
    /// `control.misc_ctl` (formerly nested_ctl; Linux SVM_MISC_ENABLE_*).
    public static let miscCtl: [BitName] = [
        .init(0, "NP_ENABLE"), .init(1, "SEV_ENABLE"), .init(2, "SEV_ES_ENABLE"), .init(3, "GMET"), .init(5, "VTE"),
    ]
    /// `control.misc_ctl2` (formerly virt_ext; Linux SVM_MISC2_ENABLE_*).
    public static let miscCtl2: [BitName] = [.init(0, "LBR_VIRT"), .init(1, "V_VMLOAD_VMSAVE")]
    /// `control.erap_ctl` (Linux ERAP_CONTROL_*).
    public static let erapCtl: [BitName] = [.init(0, "ALLOW_LARGER_RAP"), .init(1, "CLEAR_RAP")]
    /// `control.allowed_sev_features` / `guest_sev_features` (Linux SVM_SEV_FEAT_*; bit 63 is
    /// VMCB_ALLOWED_SEV_FEATURES_VALID, meaningful in allowed_sev_features).
    public static let sevFeatures: [BitName] = [
        .init(0, "SNP_ACTIVE"), .init(3, "RESTRICTED_INJECTION"), .init(4, "ALTERNATE_INJECTION"),
        .init(5, "DEBUG_SWAP"), .init(9, "SECURE_TSC"), .init(63, "VALID"),
    ]
    public static let clean: [BitName] = [
        .init(0, "INTERCEPTS"), .init(1, "PERM_MAP"), .init(2, "ASID"), .init(3, "INTR"), .init(4, "NPT"),
        .init(5, "CR"), .init(6, "DR"), .init(7, "DT"), .init(8, "SEG"), .init(9, "CR2"), .init(10, "LBR"),
        .init(11, "AVIC"), .init(12, "CET"), .init(31, "SW"),
    ]
    public static let dr6: [BitName] = [
        .init(0, "B0"), .init(1, "B1"), .init(2, "B2"), .init(3, "B3"), .init(13, "BD"), .init(14, "BS"),
        .init(15, "BT"),
    ]
    public static let pageFaultErrorCode: [BitName] = [
        .init(0, "P"), .init(1, "W"), .init(2, "U"), .init(3, "RSV"), .init(4, "ID"), .init(5, "PK"), .init(6, "SS"),
        .init(31, "RMP"), .init(32, "GUEST_FINAL"), .init(33, "GUEST_PAGE"), .init(34, "ENC"), .init(35, "SIZEM"),
        .init(36, "VMPL"),
    ]
    /// Words 3–5 of the intercept vector (bit in word → name).
    public static let interceptWord3 = [
        "INTR", "NMI", "SMI", "INIT", "VINTR", "CR0_SEL_WRITE", "IDTR_READ", "GDTR_READ", "LDTR_READ", "TR_READ",
        "IDTR_WRITE", "GDTR_WRITE", "LDTR_WRITE", "TR_WRITE", "RDTSC", "RDPMC", "PUSHF", "POPF", "CPUID", "RSM",
        "IRET", "INTn", "INVD", "PAUSE", "HLT", "INVLPG", "INVLPGA", "IOIO_PROT", "MSR_PROT", "TASK_SWITCH",
        "FERR_FREEZE", "SHUTDOWN",
    ]
    public static let interceptWord4 =
        [
            "VMRUN", "VMMCALL", "VMLOAD", "VMSAVE", "STGI", "CLGI", "SKINIT", "RDTSCP", "ICEBP", "WBINVD", "MONITOR",
            "MWAIT", "MWAIT_COND", "XSETBV", "RDPRU", "EFER_WRITE_TRAP",
        ] + (0..<16).map { "CR\($0)_WRITE_TRAP" }
    public static let interceptWord5 = [
        "INVLPGB", "INVLPGB_ILLEGAL", "INVPCID", "MCOMMIT", "TLBSYNC", "BUSLOCK", "IDLE_HLT",
    ]

    /// Exception mnemonics by vector.
    public static let exceptionNames: [Int: String] = [
        0: "DE", 1: "DB", 2: "NMI", 3: "BP", 4: "OF", 5: "BR", 6: "UD", 7: "NM", 8: "DF", 9: "CSO", 10: "TS",
        11: "NP", 12: "SS", 13: "GP", 14: "PF", 16: "MF", 17: "AC", 18: "MC", 19: "XM", 20: "VE", 21: "CP",
        28: "HV", 29: "VC", 30: "SX",
    ]
    /// Vectors that push an error code.
    public static let exceptionsWithErrorCode: Set<Int> = [8, 10, 11, 12, 13, 14, 17, 21, 29, 30]

    public static let tlbControl: [UInt64: String] = [
        0: "DO_NOTHING", 1: "FLUSH_ALL_ASID", 3: "FLUSH_ASID", 7: "FLUSH_ASID_LOCAL",
    ]

    /// "PE ET PG", plus any set bit without a name as "bit N".
    public static func names(_ value: UInt64, _ table: [BitName]) -> String {
        var parts = table.filter { value & $0.mask != 0 }.map(\.name)
        let unnamed = value & ~table.reduce(0) { $0 | $1.mask }
        for bit in 0..<64 where unnamed & (1 << UInt64(bit)) != 0 { parts.append("bit\(bit)") }
        return parts.joined(separator: " ")
    }

    /// Names of the set bits of an intercept word, given a name per bit.
    public static func names(_ value: UInt64, perBit: [String]) -> String {
        (0..<32).filter { value & (1 << UInt64($0)) != 0 }
            .map { $0 < perBit.count ? perBit[$0] : "bit\($0)" }.joined(separator: " ")
    }

    public static func exceptionName(_ vector: Int) -> String { "#" + (exceptionNames[vector] ?? "\(vector)") }
}

/// A VMCB segment attribute word (AMD's compressed format) decoded.
public struct SegmentAttributes: Equatable, Sendable, CustomStringConvertible {
    public let raw: UInt16
    public init(_ raw: UInt16) { self.raw = raw }
    public var type: Int { Int(raw & 0xF) }
    public var s: Bool { raw & (1 << 4) != 0 }
    public var dpl: Int { Int(raw >> 5 & 3) }
    public var present: Bool { raw & (1 << 7) != 0 }
    public var avl: Bool { raw & (1 << 8) != 0 }
    public var l: Bool { raw & (1 << 9) != 0 }
    public var db: Bool { raw & (1 << 10) != 0 }
    public var g: Bool { raw & (1 << 11) != 0 }

    public var typeName: String {
        if s {
            if type & 8 != 0 {
                return "code" + (type & 2 != 0 ? " r" : "") + (type & 4 != 0 ? " conf" : "")
                    + (type & 1 != 0 ? " a" : "")
            }
            return "data" + (type & 2 != 0 ? " w" : " ro") + (type & 4 != 0 ? " down" : "")
                + (type & 1 != 0 ? " a" : "")
        }
        let system = [
            1: "tss16 avail", 2: "ldt", 3: "tss16 busy", 9: "tss avail", 11: "tss busy", 12: "call gate",
            14: "int gate", 15: "trap gate",
        ]
        return system[type] ?? "sys type \(type)"
    }

    public var description: String {
        var parts = ["type=\(type) (\(typeName))", s ? "S" : "sys", "DPL=\(dpl)"]
        if present { parts.append("P") } else { parts.append("not-present") }
        if avl { parts.append("AVL") }
        if l { parts.append("L") }
        if db { parts.append("D/B") }
        if g { parts.append("G") }
        return parts.joined(separator: " ")
    }
}

/// EVENTINJ / EXITINTINFO (low 32 bits; the error code is a separate field).
public struct EventInjection: Equatable, Sendable, CustomStringConvertible {
    public let raw: UInt64
    public init(_ raw: UInt64) { self.raw = raw }
    public var vector: Int { Int(raw & 0xFF) }
    public var type: Int { Int(raw >> 8 & 7) }
    public var errorCodeValid: Bool { raw & (1 << 11) != 0 }
    public var valid: Bool { raw & (1 << 31) != 0 }
    public var reservedBits: UInt64 { raw & 0x7FFF_F000 }

    public static let typeNames = [0: "INTR", 2: "NMI", 3: "exception", 4: "software interrupt"]
    public var typeName: String { EventInjection.typeNames[type] ?? "invalid type \(type)" }

    public var description: String {
        guard valid else { return raw == 0 ? "none" : "not valid (0x\(String(raw, radix: 16)))" }
        let what = type == 3 ? Bits.exceptionName(vector) : "vector 0x\(String(vector, radix: 16))"
        return "\(typeName) \(what)" + (errorCodeValid ? " with error code" : "")
    }
}
