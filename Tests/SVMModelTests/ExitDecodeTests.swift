import SVMModel
import Testing

/// EXITINFO cases computed by hand from the AMD encodings (APM vol. 2 §15.10.2,
/// §15.25.6, §15.8; reference §2.2).
@Suite("exit codes and EXITINFO")
struct ExitDecodeTests {
    @Test("IOIO: port, direction, size, string/rep, address size, segment")
    func ioio() {
        // OUT 0x80 byte: port 0x80 in 31:16, SZ8 (bit 4), A16 (bit 7).
        #expect(DecodedExit(code: 0x7B, info1: 0x0080_0090, info2: 0x1002).summary == "OUT 0x80, 1 byte")
        // IN 0x3f8 word, A32: TYPE (bit 0), SZ16 (bit 5), A32 (bit 8).
        let inw = DecodedExit(code: 0x7B, info1: 0x03F8_0000 | 1 | 1 << 5 | 1 << 8, info2: 0)
        #expect(inw.summary == "IN 0x3f8, 2 bytes")
        #expect(inw.details.contains(.init(label: "address size", value: "32")))
        // REP OUTSB from DS, A64: STR, REP, SZ8, A64, segment 3.
        let io = IOIOInfo(0x03F8_0000 | 1 << 2 | 1 << 3 | 1 << 4 | 1 << 9 | 3 << 10)
        #expect(io.summary == "REP OUTS 0x3f8, 1 byte")
        #expect(io.segmentName == "DS" && io.addressSize == 64)
        #expect(DecodedExit(code: 0x7B, info1: 0x0CF8_0000 | 1 << 6, info2: 0).summary == "OUT 0xcf8, 4 bytes")
    }

    @Test("MSR: read or write, the index from L2's ECX when known")
    func msr() {
        #expect(DecodedExit(code: 0x7C, info1: 0, info2: 0).summary == "RDMSR")
        #expect(
            DecodedExit(code: 0x7C, info1: 0, info2: 0, context: ExitContext(l2RCX: 0xC000_0080)).summary
                == "RDMSR 0xc0000080")
        let w = DecodedExit(
            code: 0x7C, info1: 1, info2: 0, context: ExitContext(l2RCX: 0x1B, l2RAX: 0xFEE0_0900, l2RDX: 0))
        #expect(w.summary == "WRMSR 0x1b = 0xfee00900")
    }

    @Test("NPF: access kind, GPA, GUEST_FINAL / GUEST_PAGE")
    func npf() {
        // W | U, not present, GUEST_FINAL (bit 32).
        #expect(
            DecodedExit(code: 0x400, info1: 1 << 32 | 6, info2: 0x1F_0000).summary
                == "NPF write at GPA 0x1f0000, not present, GUEST_FINAL")
        // Present, fetch (ID bit 4), while walking L2's tables (GUEST_PAGE, bit 33).
        let f = DecodedExit(code: 0x400, info1: 1 << 33 | 1 << 4 | 1, info2: 0x3000)
        #expect(f.summary == "NPF fetch at GPA 0x3000, GUEST_PAGE")
        #expect(f.details.contains(.init(label: "error code", value: "0x200000011 P ID GUEST_PAGE")))
    }

    @Test("exceptions: error codes where the vector has one, #PF address")
    func exceptions() {
        #expect(DecodedExit(code: 0x46, info1: 0, info2: 0).summary == "#UD")
        #expect(DecodedExit(code: 0x46, info1: 0, info2: 0).name == "EXCP_UD")
        #expect(DecodedExit(code: 0x4D, info1: 0x10, info2: 0).summary == "#GP error code 0x10")
        #expect(
            DecodedExit(code: 0x4E, info1: 0x2, info2: 0xDEAD_0000).summary
                == "#PF error code 0x2 (not present, write, supervisor) at 0xdead0000")
        #expect(
            DecodedExit(code: 0x4E, info1: 0x15, info2: 0x1000).summary
                == "#PF error code 0x15 (protection, fetch, user) at 0x1000")
    }

    @Test("CR/DR access with decode assists, INTn, INVLPG, task switch")
    func others() {
        #expect(DecodedExit(code: 0x13, info1: 1 << 63 | 3, info2: 0).summary == "write CR3 from rbx")
        #expect(DecodedExit(code: 0x10, info1: 0, info2: 0).summary == "write CR0")
        #expect(DecodedExit(code: 0x10, info1: 0x5, info2: 0).summary == "write CR0 (LMSW/CLTS/SMSW)")
        #expect(DecodedExit(code: 0x27, info1: 0x9, info2: 0).summary == "read DR7 into r9")
        #expect(DecodedExit(code: 0x75, info1: 0x80, info2: 0).summary == "INT 0x80")
        #expect(DecodedExit(code: 0x79, info1: 0xFFFF_8000_1000, info2: 0).summary == "INVLPG 0xffff80001000")
        #expect(DecodedExit(code: 0x7D, info1: 0x28, info2: 1 << 36).summary == "task switch to selector 0x28 by IRET")
    }

    @Test("VMEXIT_INVALID is recognised by the low 32 bits, also with a zero high half")
    func invalid() {
        #expect(DecodedExit(code: 0xFFFF_FFFF_FFFF_FFFF, info1: 0, info2: 0).name == "ERR")
        #expect(DecodedExit(code: 0x0000_0000_FFFF_FFFF, info1: 0, info2: 0).name == "ERR")
        #expect(SVMExit.isInvalid(0xFFFF_FFFF))
        #expect(!SVMExit.isInvalid(0x7B))
    }

    @Test("EXITINTINFO is shown with the exit")
    func exitIntInfo() {
        // #PF (vector 14, type 3, EV, V) being delivered when the NPF hit.
        let d = DecodedExit(code: 0x400, info1: 1 << 32 | 1, info2: 0x5000, exitIntInfo: 0x8000_0B0E)
        #expect(d.summary.hasSuffix("[while delivering exception #PF with error code]"))
    }

    @Test("names and lookups: every SVM_EXIT code, by name, alias or number")
    func names() {
        #expect(SVMExit.name(of: 0x400) == "NPF")
        #expect(SVMExit.name(of: 0x72) == "CPUID")
        #expect(SVMExit.name(of: 0x1F) == "WRITE_CR15")
        #expect(SVMExit.name(of: 0x93) == "CR3_WRITE_TRAP")
        #expect(SVMExit.name(of: 0x1234) == nil)
        #expect(SVMExit.code(named: "npf") == 0x400)
        #expect(SVMExit.code(named: "io") == 0x7B)
        #expect(SVMExit.code(named: "SVM_EXIT_VMMCALL") == 0x81)
        #expect(SVMExit.code(named: "excp_ud") == 0x46)
        #expect(SVMExit.code(named: "0x78") == 0x78)
        #expect(SVMExit.code(named: "nonsense") == nil)
        #expect(SVMExit.allNamed.count > 150)
        // The names KVM's tracepoints print (uapi SVM_EXIT_REASONS).
        for (trace, code) in [
            ("io", 0x7B), ("cpuid", 0x72), ("UD excp", 0x46), ("XF excp", 0x53), ("hypercall", 0x81),
            ("write_cr4", 0x14), ("read_rt", 0x69), ("npf", 0x400), ("write_cr8_trap", 0x98),
            ("hlt", 0x78), ("msr", 0x7C), ("0x7b", 0x7B),
        ] as [(String, UInt64)] {
            #expect(SVMExit.code(traceName: trace) == code, "\(trace)")
        }
        #expect(SVMExit.code(traceName: "no such exit") == nil)
    }
}
