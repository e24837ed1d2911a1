import Foundation
import SVMModel
import Testing

/// Every `VMCBField` static, written out in offset order. Typed: a field that is
/// renamed or removed breaks this list at compile time.
let allFieldStatics: [VMCBField] = [
    // control area
    .intercepts0, .intercepts1, .intercepts2, .intercepts3, .intercepts4, .intercepts5, .reserved1,
    .pauseFilterThresh, .pauseFilterCount, .iopmBasePA, .msrpmBasePA, .tscOffset, .asid, .tlbCtl, .erapCtl,
    .reserved2, .intCtl, .intVector, .intState, .reserved3, .exitCode, .exitInfo1, .exitInfo2, .exitIntInfo,
    .exitIntInfoErr, .miscCtl, .avicVAPICBar, .ghcbGPA, .eventInj, .eventInjErr, .nestedCR3, .miscCtl2, .clean,
    .reserved5, .nextRIP, .insnLen, .insnBytes, .avicBackingPage, .reserved6, .avicLogicalID, .avicPhysicalID,
    .reserved7, .vmsaPA, .reserved8, .busLockCounter, .reserved9, .allowedSEVFeatures, .guestSEVFeatures,
    .reserved10, .reservedSW,
    // save area: segments
    .saveESSelector, .saveESAttrib, .saveESLimit, .saveESBase, .saveCSSelector, .saveCSAttrib, .saveCSLimit,
    .saveCSBase, .saveSSSelector, .saveSSAttrib, .saveSSLimit, .saveSSBase, .saveDSSelector, .saveDSAttrib,
    .saveDSLimit, .saveDSBase, .saveFSSelector, .saveFSAttrib, .saveFSLimit, .saveFSBase, .saveGSSelector,
    .saveGSAttrib, .saveGSLimit, .saveGSBase, .saveGDTRSelector, .saveGDTRAttrib, .saveGDTRLimit, .saveGDTRBase,
    .saveLDTRSelector, .saveLDTRAttrib, .saveLDTRLimit, .saveLDTRBase, .saveIDTRSelector, .saveIDTRAttrib,
    .saveIDTRLimit, .saveIDTRBase, .saveTRSelector, .saveTRAttrib, .saveTRLimit, .saveTRBase,
    // save area: the rest
    .saveReserved0xA0, .saveVMPL, .saveCPL, .saveReserved0xCC, .saveEFER, .saveReserved0xD8, .saveCR4, .saveCR3,
    .saveCR0, .saveDR7, .saveDR6, .saveRFLAGS, .saveRIP, .saveReserved0x180, .saveRSP, .saveSCET, .saveSSP,
    .saveISSTAddr, .saveRAX, .saveStar, .saveLstar, .saveCstar, .saveSfmask, .saveKernelGSBase, .saveSysenterCS,
    .saveSysenterESP, .saveSysenterEIP, .saveCR2, .saveReserved0x248, .saveGPAT, .saveDbgctl, .saveBrFrom,
    .saveBrTo, .saveLastExcpFrom, .saveLastExcpTo, .saveReserved0x298, .saveSpecCtrl, .saveReserved0x2E8,
]

@Suite("VMCB layout against Linux svm.h")
struct LinuxLayoutTests {
    /// (field, Linux name, absolute offset, width) as read from Linux's
    /// arch/x86/include/asm/svm.h (commit 01f492e1817e): the fields that are new
    /// or renamed since the 6.x table, and the neighbours whose place they fix.
    static let golden: [(VMCBField, String, Int, Int)] = [
        (.tlbCtl, "control.tlb_ctl", 0x05C, 1),
        (.erapCtl, "control.erap_ctl", 0x05D, 1),
        (.reserved2, "control.reserved_2", 0x05E, 2),
        (.intCtl, "control.int_ctl", 0x060, 4),
        (.exitCode, "control.exit_code", 0x070, 8),  // u64 exit_code; exit_code_hi is gone
        (.exitInfo1, "control.exit_info_1", 0x078, 8),
        (.miscCtl, "control.misc_ctl", 0x090, 8),  // formerly nested_ctl
        (.avicVAPICBar, "control.avic_vapic_bar", 0x098, 8),
        (.ghcbGPA, "control.ghcb_gpa", 0x0A0, 8),
        (.nestedCR3, "control.nested_cr3", 0x0B0, 8),
        (.miscCtl2, "control.misc_ctl2", 0x0B8, 8),  // formerly virt_ext
        (.clean, "control.clean", 0x0C0, 4),
        (.vmsaPA, "control.vmsa_pa", 0x108, 8),
        (.reserved8, "control.reserved_8", 0x110, 16),
        (.busLockCounter, "control.bus_lock_counter", 0x120, 2),
        (.reserved9, "control.reserved_9", 0x122, 22),
        (.allowedSEVFeatures, "control.allowed_sev_features", 0x138, 8),
        (.guestSEVFeatures, "control.guest_sev_features", 0x140, 8),
        (.reserved10, "control.reserved_10", 0x148, 664),
        (.reservedSW, "control.reserved_sw", 0x3E0, 32),
        (.saveESSelector, "save.es.selector", 0x400, 2),
        (.saveTRBase, "save.tr.base", 0x498, 8),
        (.saveReserved0xA0, "save.reserved_0xa0", 0x4A0, 42),
        (.saveVMPL, "save.vmpl", 0x4CA, 1),
        (.saveCPL, "save.cpl", 0x4CB, 1),
        (.saveReserved0xCC, "save.reserved_0xcc", 0x4CC, 4),
        (.saveEFER, "save.efer", 0x4D0, 8),
        (.saveReserved0xD8, "save.reserved_0xd8", 0x4D8, 112),
        (.saveCR4, "save.cr4", 0x548, 8),
        (.saveReserved0x180, "save.reserved_0x180", 0x580, 88),
        (.saveRSP, "save.rsp", 0x5D8, 8),
        (.saveSCET, "save.s_cet", 0x5E0, 8),
        (.saveSSP, "save.ssp", 0x5E8, 8),
        (.saveISSTAddr, "save.isst_addr", 0x5F0, 8),
        (.saveRAX, "save.rax", 0x5F8, 8),
        (.saveCR2, "save.cr2", 0x640, 8),
        (.saveReserved0x248, "save.reserved_0x248", 0x648, 32),
        (.saveGPAT, "save.g_pat", 0x668, 8),
        (.saveLastExcpTo, "save.last_excp_to", 0x690, 8),
        (.saveReserved0x298, "save.reserved_0x298", 0x698, 72),
        (.saveSpecCtrl, "save.spec_ctrl", 0x6E0, 8),  // u64, was 4 bytes here
        (.saveReserved0x2E8, "save.reserved_0x2e8", 0x6E8, 0x918),  // to the end of the page
    ]

    @Test("new and renamed fields sit at svm.h's offsets with svm.h's widths and names")
    func goldenOffsets() {
        for (field, name, offset, width) in Self.golden {
            #expect(field.name == name)
            #expect(field.offset == offset, "\(name)")
            #expect(field.width == width, "\(name)")
            #expect(VMCBLayout.field(named: name) == field)
        }
        // EXPECTED_VMCB_CONTROL_AREA_SIZE 1024, EXPECTED_VMCB_SAVE_AREA_SIZE 744.
        #expect(VMCBField.reservedSW.range.upperBound == VMCBLayout.saveAreaOffset)
        #expect(VMCBField.saveSpecCtrl.range.upperBound - VMCBLayout.saveAreaOffset == 744)
    }

    @Test("names Linux no longer has are gone")
    func removedNames() {
        for name in [
            "control.exit_code_hi", "control.nested_ctl", "control.virt_ext", "save.reserved_tail",
            "save.reserved_1", "control.reserved_4",
        ] {
            #expect(VMCBLayout.field(named: name) == nil, "\(name)")
        }
    }

    @Test("the table is exactly the statics: each once, in offset order, 4096 bytes without overlap")
    func staticsAreTheTable() {
        #expect(allFieldStatics == VMCBLayout.fields)
        #expect(Set(allFieldStatics).count == allFieldStatics.count)
        #expect(Set(VMCBLayout.fields.map(\.name)).count == VMCBLayout.fields.count)
        #expect(VMCBLayout.fields.map(\.width).reduce(0, +) == VMCBLayout.size)
        var owner = [Int](repeating: -1, count: VMCBLayout.size)
        for (i, f) in VMCBLayout.fields.enumerated() {
            for b in f.range {
                #expect(owner[b] == -1, "\(f.name) overlaps byte \(b)")
                owner[b] = i
            }
        }
        #expect(!owner.contains(-1))
        #expect(VMCBLayout.fields.allSatisfy { ($0.offset >= VMCBLayout.saveAreaOffset) == ($0.area == .save) })
    }

    /// The declarations in VMCBLayout.swift: (static name, Linux name), read from the source.
    static func declarations() throws -> [(String, String)] {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/SVMModel/VMCBLayout.swift").standardized
        let source = try String(contentsOf: file, encoding: .utf8)
        let decl = try NSRegularExpression(
            pattern:
                #"public static let (\w+) = (control|save|selector|attributes|limit|base)\([^"]*"([^"]+)""#)
        let ns = source as NSString
        return decl.matches(in: source, range: NSRange(location: 0, length: ns.length)).map { m in
            let id = ns.substring(with: m.range(at: 1))
            let helper = ns.substring(with: m.range(at: 2))
            let name = ns.substring(with: m.range(at: 3))
            let part = ["selector": ".selector", "attributes": ".attrib", "limit": ".limit", "base": ".base"][helper]
            return (id, (helper == "control" ? "control." : "save.") + name + (part ?? ""))
        }
    }

    @Test("every static declared in VMCBLayout.swift is in the table, once")
    func everyDeclarationInTable() throws {
        let decls = try Self.declarations()
        #expect(decls.count == VMCBLayout.fields.count)
        #expect(Set(decls.map(\.1)) == Set(VMCBLayout.fields.map(\.name)))
        #expect(Set(decls.map(\.0)).count == decls.count)
    }

    /// lowerCamelCase of the Linux name, acronyms uppercased; save fields prefixed `save`.
    static func swiftName(_ name: String) -> String {
        let acronyms: Set<String> = [
            "RIP", "RSP", "RAX", "CR0", "CR2", "CR3", "CR4", "DR6", "DR7", "EFER", "RFLAGS", "CS", "SS", "DS", "ES",
            "FS",
            "GS", "TR", "LDTR", "GDTR", "IDTR", "PA", "ASID", "TLB", "IOPM", "MSRPM", "CPL", "PAT", "SSP", "CET", "GPA",
            "GHCB", "AVIC", "VMSA", "ID", "SEV", "VAPIC", "VMPL", "ISST", "ESP", "EIP",
        ]
        let save = name.hasPrefix("save.")
        let words = name.split(separator: ".", maxSplits: 1)[1].split(whereSeparator: { "_.[]".contains($0) }).map(
            String.init)
        var out = save ? "save" : ""
        for (i, w) in words.enumerated() {
            if i == 0 && !save {
                out += acronyms.contains(w.uppercased()) ? w.lowercased() : w
                continue
            }
            out += acronyms.contains(w.uppercased()) ? w.uppercased() : w.prefix(1).uppercased() + w.dropFirst()
        }
        return out
    }

    @Test("static names follow the Linux names (lowerCamelCase, acronyms uppercased, save prefix)")
    func naming() throws {
        #expect(Self.swiftName("control.exit_int_info_err") == "exitIntInfoErr")
        #expect(Self.swiftName("save.gdtr.attrib") == "saveGDTRAttrib")
        for (id, name) in try Self.declarations() where !(VMCBLayout.field(named: name)?.isReserved ?? true) {
            #expect(id == Self.swiftName(name), "\(name)")
        }
    }

    @Test("new fields round-trip: typed writes land at svm.h's bytes and decode back")
    func newFieldsRoundTrip() throws {
        let values: [(VMCBField, UInt64)] = [
            (.erapCtl, 0x3), (.exitCode, SVMExit.vmexitInvalid), (.miscCtl, 0x1), (.miscCtl2, 0x3),
            (.busLockCounter, 0xBEEF), (.allowedSEVFeatures, 1 << 63 | 1 << 5 | 1), (.guestSEVFeatures, 0x21),
            (.vmsaPA, 0x1234_5000), (.ghcbGPA, 0x8_0000), (.saveVMPL, 2), (.saveSpecCtrl, 0x8000_0000_0000_0004),
            (.saveSCET, 0x801),
        ]
        var v = VMCB()
        for (f, x) in values { v[integer: f] = x }
        // Raw bytes at svm.h offsets, little-endian.
        func raw(_ offset: Int, _ width: Int) -> UInt64 {
            (0..<width).reduce(0) { $0 | UInt64(v.bytes[offset + $1]) << (8 * UInt64($1)) }
        }
        #expect(raw(0x05D, 1) == 0x3 && raw(0x05C, 1) == 0 && raw(0x05E, 2) == 0)
        #expect(raw(0x070, 8) == UInt64.max)
        #expect(raw(0x090, 8) == 1 && raw(0x0B8, 8) == 3)
        #expect(raw(0x120, 2) == 0xBEEF && raw(0x122, 8) == 0)
        #expect(raw(0x138, 8) == 1 << 63 | 1 << 5 | 1 && raw(0x140, 8) == 0x21)
        #expect(raw(0x4CA, 1) == 2 && raw(0x6E0, 8) == 0x8000_0000_0000_0004 && raw(0x6E8, 8) == 0)
        let decoded = try VMCB(bytes: v.bytes)
        for (f, x) in values { #expect(decoded[integer: f] == x, "\(f.name)") }
        #expect(decoded.exitCode == SVMExit.vmexitInvalid)
        let encoded = VMCB(values: decoded.values)
        #expect(encoded == v)
        // JSON carries the new names.
        let json = v.json(onlyNonZero: true).serialized()
        for key in [
            "\"erap_ctl\":\"0x3\"", "\"exit_code\":\"0xffffffffffffffff\"", "\"misc_ctl\":\"0x1\"",
            "\"misc_ctl2\":\"0x3\"", "\"bus_lock_counter\":\"0xbeef\"", "\"guest_sev_features\":\"0x21\"",
            "\"spec_ctrl\":\"0x8000000000000004\"",
        ] {
            #expect(json.contains(key), "\(key)")
        }
    }

    @Test("renamed and new fields decode their bits")
    func meanings() {
        var v = VMCB()
        v[integer: .miscCtl] = 1 | 1 << 1
        v[integer: .miscCtl2] = 1 | 1 << 1
        v[integer: .erapCtl] = 3
        v[integer: .allowedSEVFeatures] = 1 << 63 | 1 << 5 | 1
        v[integer: .guestSEVFeatures] = 1 << 9 | 1 << 2
        v[integer: .exitCode] = SVMExit.vmexitInvalid
        func meaning(_ f: VMCBField) -> String { f.meaning(of: v[f], in: v) }
        #expect(meaning(.miscCtl) == "NP_ENABLE SEV_ENABLE")
        #expect(meaning(.miscCtl2) == "LBR_VIRT V_VMLOAD_VMSAVE")
        #expect(meaning(.erapCtl) == "ALLOW_LARGER_RAP CLEAR_RAP")
        #expect(meaning(.allowedSEVFeatures) == "SNP_ACTIVE DEBUG_SWAP VALID")
        #expect(meaning(.guestSEVFeatures) == "SECURE_TSC bit2")
        #expect(meaning(.exitCode) == "SVM_EXIT_ERR")
    }

    @Test("the integer subscript: widths truncate, byte runs and reserved fields read 0")
    func integerSubscript() {
        var v = VMCB()
        v[integer: .busLockCounter] = 0x1_2345
        #expect(v[integer: .busLockCounter] == 0x2345)
        #expect(v[integer: .reserved9] == 0)
        v[integer: .insnLen] = 2
        v[.insnBytes] = .bytes([0x0F, 0x01, 0xD8])
        #expect(v[integer: .insnBytes] == 0)
        #expect(v[.insnBytes] == .bytes([0x0F, 0x01, 0xD8] + [UInt8](repeating: 0, count: 12)))
        #expect(VMCBField.insnBytes.meaning(of: v[.insnBytes], in: v) == "fetched: 0f 01")
        v[integer: .saveReserved0xCC] = 7
        #expect(v[integer: .saveReserved0xCC] == 0 && v[.saveReserved0xCC] == .bytes([7, 0, 0, 0]))
    }
}
