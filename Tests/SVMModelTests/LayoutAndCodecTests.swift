import SVMModel
import Testing

/// Writes a little-endian integer into a page at an offset taken from Linux's
/// svm.h (and the reference, kvm-nested-svm.md §1.1, §1.5), independently of VMCBLayout.
func poke(_ page: inout [UInt8], _ offset: Int, _ value: UInt64, _ width: Int) {
    for i in 0..<width { page[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
}

struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("VMCB layout and codec")
struct LayoutAndCodecTests {
    @Test("the table covers all 4096 bytes exactly once, in order, with unique names")
    func coverage() {
        var cursor = 0
        for f in VMCBLayout.fields {
            #expect(f.offset == cursor, "\(f.name) starts at \(f.offset), expected \(cursor)")
            cursor = f.offset + f.width
        }
        #expect(cursor == 4096)
        #expect(Set(VMCBLayout.fields.map(\.name)).count == VMCBLayout.fields.count)
        #expect(VMCBLayout.fields.allSatisfy { $0.name.hasPrefix($0.area.rawValue + ".") })
    }

    @Test("a golden image built from the reference's offsets decodes field by field")
    func golden() throws {
        var page = [UInt8](repeating: 0, count: 4096)
        poke(&page, 0x00C, 1 << 18 | 1 << 24 | 1 << 27 | 1 << 28, 4)  // CPUID HLT IOIO MSR
        poke(&page, 0x010, 0x3, 4)  // VMRUN VMMCALL
        poke(&page, 0x040, 0x0010_0000, 8)  // iopm_base_pa
        poke(&page, 0x048, 0x0010_3000, 8)  // msrpm_base_pa
        poke(&page, 0x058, 1, 4)  // asid
        poke(&page, 0x060, 0x0100_0100, 4)  // int_ctl V_IRQ | V_INTR_MASKING
        poke(&page, 0x070, 0x7B, 8)  // exit_code IOIO (u64)
        poke(&page, 0x078, 0x0080_0010, 8)  // OUT 0x80, 1 byte
        poke(&page, 0x080, 0x40_1234, 8)  // exit_info_2 = next RIP
        poke(&page, 0x090, 1, 8)  // misc_ctl NP_ENABLE
        poke(&page, 0x0B0, 0x20_0000, 8)  // nested_cr3
        poke(&page, 0x0C8, 0x40_1234, 8)  // next_rip
        poke(&page, 0x410, 0x08, 2)
        poke(&page, 0x412, 0x29B, 2)  // cs selector, attrib (L P S code)
        poke(&page, 0x414, 0xFFFF_FFFF, 4)
        poke(&page, 0x418, 0, 8)
        poke(&page, 0x4CB, 3, 1)  // cpl
        poke(&page, 0x4D0, 0x1D00, 8)  // efer SVME LMA LME NXE
        poke(&page, 0x548, 0x20, 8)  // cr4 PAE
        poke(&page, 0x550, 0x5000, 8)  // cr3
        poke(&page, 0x558, 0x8000_0011, 8)  // cr0
        poke(&page, 0x570, 0x202, 8)  // rflags
        poke(&page, 0x578, 0x40_1232, 8)  // rip
        poke(&page, 0x5D8, 0x7000, 8)  // rsp
        poke(&page, 0x5F8, 0xABCD, 8)  // rax
        poke(&page, 0x640, 0xDEAD_B000, 8)  // cr2
        poke(&page, 0x6E0, 0x1_0000_0005, 8)  // spec_ctrl (u64)
        let v = try VMCB(bytes: page)
        let expected: [VMCBField: UInt64] = [
            .intercepts3: 0x1904_0000, .intercepts4: 3, .iopmBasePA: 0x10_0000,
            .msrpmBasePA: 0x10_3000, .asid: 1, .intCtl: 0x0100_0100,
            .exitCode: 0x7B, .exitInfo1: 0x0080_0010, .exitInfo2: 0x40_1234,
            .miscCtl: 1, .nestedCR3: 0x20_0000, .nextRIP: 0x40_1234,
            .saveCSSelector: 8, .saveCSAttrib: 0x29B, .saveCSLimit: 0xFFFF_FFFF, .saveCPL: 3,
            .saveEFER: 0x1D00, .saveCR4: 0x20, .saveCR3: 0x5000, .saveCR0: 0x8000_0011, .saveRFLAGS: 0x202,
            .saveRIP: 0x40_1232, .saveRSP: 0x7000, .saveRAX: 0xABCD, .saveCR2: 0xDEAD_B000,
            .saveSpecCtrl: 0x1_0000_0005,
        ]
        for (field, value) in expected {
            #expect(v[field] == .integer(value), "\(field.name)")
            #expect(v[integer: field] == value, "\(field.name)")
        }
        #expect(v.exitCode == 0x7B)
        func meaning(_ f: VMCBField) -> String { f.meaning(of: v[f], in: v) }
        #expect(meaning(.intercepts3) == "CPUID HLT IOIO_PROT MSR_PROT")
        #expect(meaning(.saveCR0) == "PE ET PG")
        #expect(meaning(.saveEFER) == "LME LMA NXE SVME")
        #expect(meaning(.saveCSAttrib) == "type=11 (code r a) S DPL=0 P L")
        #expect(meaning(.intCtl) == "V_TPR=0 V_IRQ V_INTR_MASKING")
        #expect(meaning(.exitInfo1) == "OUT 0x80, 1 byte")
        #expect(meaning(.exitCode) == "SVM_EXIT_IOIO")
        #expect(meaning(.miscCtl) == "NP_ENABLE")
    }

    @Test("decode then encode from the table alone round-trips random images byte for byte")
    func roundTrip() throws {
        var rng = SeededRandom(state: 42)
        for _ in 0..<50 {
            let page = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let v = try VMCB(bytes: page)
            let encoded = VMCB(values: v.values)
            #expect(encoded.bytes == page)
        }
    }

    @Test("anything but 4096 bytes is refused with a clear error")
    func wrongSize() {
        #expect(throws: VMCBError.wrongSize(4095)) { try VMCB(bytes: [UInt8](repeating: 0, count: 4095)) }
        #expect(VMCBError.wrongSize(10).description == "a VMCB is 4096 bytes, this is 10")
    }
}
