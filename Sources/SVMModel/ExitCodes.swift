/// SVM exit codes (`SVM_EXIT_*`, uapi asm/svm.h; reference §2.1).
public enum SVMExit {
    public static let vmexitInvalid: UInt64 = 0xFFFF_FFFF_FFFF_FFFF
    public static let npf: UInt64 = 0x400
    public static let ioio: UInt64 = 0x7B
    public static let msr: UInt64 = 0x7C
    public static let vmrun: UInt64 = 0x80
    public static let shutdown: UInt64 = 0x7F
    /// SVM_EXIT_SW: reserved for hypervisor software; KVM writes it into vmcb12 when it leaves L2 for SMM.
    public static let software: UInt64 = 0xF000_0000
    public static let exceptionBase: UInt64 = 0x40

    /// The fixed-name codes; CR/DR/exception ranges are named by rule in `name(of:)`.
    public static let names: [UInt64: String] = [
        0x060: "INTR", 0x061: "NMI", 0x062: "SMI", 0x063: "INIT", 0x064: "VINTR", 0x065: "CR0_SEL_WRITE",
        0x066: "IDTR_READ", 0x067: "GDTR_READ", 0x068: "LDTR_READ", 0x069: "TR_READ", 0x06A: "IDTR_WRITE",
        0x06B: "GDTR_WRITE", 0x06C: "LDTR_WRITE", 0x06D: "TR_WRITE", 0x06E: "RDTSC", 0x06F: "RDPMC",
        0x070: "PUSHF", 0x071: "POPF", 0x072: "CPUID", 0x073: "RSM", 0x074: "IRET", 0x075: "SWINT",
        0x076: "INVD", 0x077: "PAUSE", 0x078: "HLT", 0x079: "INVLPG", 0x07A: "INVLPGA", 0x07B: "IOIO",
        0x07C: "MSR", 0x07D: "TASK_SWITCH", 0x07E: "FERR_FREEZE", 0x07F: "SHUTDOWN", 0x080: "VMRUN",
        0x081: "VMMCALL", 0x082: "VMLOAD", 0x083: "VMSAVE", 0x084: "STGI", 0x085: "CLGI", 0x086: "SKINIT",
        0x087: "RDTSCP", 0x088: "ICEBP", 0x089: "WBINVD", 0x08A: "MONITOR", 0x08B: "MWAIT",
        0x08C: "MWAIT_COND", 0x08D: "XSETBV", 0x08E: "RDPRU", 0x08F: "EFER_WRITE_TRAP", 0x0A0: "INVLPGB",
        0x0A1: "INVLPGB_ILLEGAL", 0x0A2: "INVPCID", 0x0A3: "MCOMMIT", 0x0A4: "TLBSYNC", 0x0A5: "BUS_LOCK",
        0x0A6: "IDLE_HLT", 0x400: "NPF", 0x401: "AVIC_INCOMPLETE_IPI", 0x402: "AVIC_UNACCELERATED_ACCESS",
        0x403: "VMGEXIT", 0xF000_0000: "SW",
    ]

    /// Is this EXITCODE VMEXIT_INVALID? Judged by the low 32 bits (older KVM
    /// synthesised 0x00000000_FFFFFFFF; reference §2.1).
    public static func isInvalid(_ code: UInt64) -> Bool { code & 0xFFFF_FFFF == 0xFFFF_FFFF }

    /// KVM's name for an exit code (`NPF`, `WRITE_CR3`, `EXCP_PF`, `ERR`), or nil when unknown.
    public static func name(of code: UInt64) -> String? {
        if isInvalid(code) { return "ERR" }
        switch code {
        case 0x00...0x0F: return "READ_CR\(code)"
        case 0x10...0x1F: return "WRITE_CR\(code - 0x10)"
        case 0x20...0x2F: return "READ_DR\(code - 0x20)"
        case 0x30...0x3F: return "WRITE_DR\(code - 0x30)"
        case 0x40...0x5F: return "EXCP_" + (Bits.exceptionNames[Int(code - 0x40)] ?? "\(code - 0x40)")
        case 0x90...0x9F: return "CR\(code - 0x90)_WRITE_TRAP"
        default: return names[code]
        }
    }

    /// Every named code, for completion and `break exit NAME`.
    public static let allNamed: [(code: UInt64, name: String)] = {
        var codes = Array(0x00...0x5F).map(UInt64.init) + Array(0x90...0x9F).map(UInt64.init) + names.keys.sorted()
        codes.append(vmexitInvalid)
        return codes.compactMap { c in name(of: c).map { (c, $0) } }
    }()

    /// Looks a code up by name, case-insensitively, with or without `SVM_EXIT_`,
    /// or as a number (`npf`, `SVM_EXIT_IOIO`, `0x7b`).
    public static func code(named text: String) -> UInt64? {
        var t = text.uppercased()
        if t.hasPrefix("SVM_EXIT_") { t.removeFirst(9) }
        if t.hasPrefix("0X"), let v = UInt64(t.dropFirst(2), radix: 16) { return v }
        if let v = UInt64(t) { return v }
        let aliases = ["IO": "IOIO", "INVALID": "ERR", "VMEXIT_INVALID": "ERR", "EXCP_XF": "EXCP_XM"]
        t = aliases[t] ?? t
        return allNamed.first { $0.name == t }?.code
    }

    /// Looks a code up by the name KVM's tracepoints print (uapi SVM_EXIT_REASONS:
    /// "io", "cpuid", "UD excp", "hypercall", "read_rt", "write_cr4", "npf", …).
    public static func code(traceName name: String) -> UInt64? {
        if name.hasSuffix(" excp") {
            let mnemonic = name.dropLast(5)
            return code(named: "EXCP_" + (mnemonic == "XF" ? "XM" : mnemonic))
        }
        let special: [String: String] = [
            "io": "IOIO", "hypercall": "VMMCALL", "interrupt": "INTR", "read_rt": "TR_READ", "write_rt": "TR_WRITE",
            "read_idtr": "IDTR_READ", "read_gdtr": "GDTR_READ", "read_ldtr": "LDTR_READ", "write_idtr": "IDTR_WRITE",
            "write_gdtr": "GDTR_WRITE", "write_ldtr": "LDTR_WRITE", "write_efer_trap": "EFER_WRITE_TRAP",
            "buslock": "BUS_LOCK", "idle-halt": "IDLE_HLT", "avic_unaccelerated_access": "AVIC_UNACCELERATED_ACCESS",
            "invalid_guest_state": "ERR",
        ]
        if let n = special[name] { return code(named: n) }
        if name.hasPrefix("write_cr"), name.hasSuffix("_trap") {
            return code(named: "CR" + name.dropFirst(8).dropLast(5) + "_WRITE_TRAP")
        }
        return code(named: name)
    }
}

/// One nested exit decoded: its name and EXITINFO in words.
public struct DecodedExit: Equatable, Sendable {
    public let code: UInt64
    public let name: String
    /// One line, e.g. "OUT 0x80, 1 byte" or "NPF write at GPA 0x1f0000, GUEST_FINAL".
    public let summary: String
    /// Label/value pairs for a detail view and JSON.
    public let details: [Detail]

    public struct Detail: Equatable, Sendable {
        public let label: String
        public let value: String
        public init(label: String, value: String) {
            self.label = label
            self.value = value
        }
    }
}

/// Context from outside the VMCB that some exits need (RDMSR/WRMSR keep the
/// MSR index in L2's ECX). Optional: decoding works without it.
public struct ExitContext: Sendable {
    public var l2RCX: UInt64?
    public var l2RAX: UInt64?
    public var l2RDX: UInt64?
    public init(l2RCX: UInt64? = nil, l2RAX: UInt64? = nil, l2RDX: UInt64? = nil) {
        self.l2RCX = l2RCX
        self.l2RAX = l2RAX
        self.l2RDX = l2RDX
    }
}

extension DecodedExit {
    /// Decodes EXITCODE with EXITINFO1/2 (and EXITINTINFO) as the APM defines them.
    public init(
        code: UInt64, info1: UInt64, info2: UInt64, exitIntInfo: UInt64 = 0, context: ExitContext = ExitContext()
    ) {
        self.code = code
        let name = SVMExit.name(of: code) ?? "UNKNOWN_0x\(String(code, radix: 16))"
        self.name = name
        var d: [Detail] = []
        func add(_ l: String, _ v: String) { d.append(Detail(label: l, value: v)) }
        var summary = name

        switch code {
        case _ where SVMExit.isInvalid(code):
            summary = "VMRUN failed: VMEXIT_INVALID (illegal guest state or controls)"
        case SVMExit.ioio:
            let io = IOIOInfo(info1)
            summary = io.summary
            add("port", hex(UInt64(io.port)))
            add("direction", io.isIn ? "in" : "out")
            add("size", "\(io.size)")
            if io.isString { add("string", "yes") }
            if io.isRep { add("rep", "yes") }
            add("address size", "\(io.addressSize)")
            if io.isString { add("segment", io.segmentName) }
            add("next rip", hex(info2))
        case SVMExit.msr:
            let write = info1 & 1 == 1
            summary = write ? "WRMSR" : "RDMSR"
            if let rcx = context.l2RCX {
                let index = rcx & 0xFFFF_FFFF
                summary += " 0x\(String(index, radix: 16))"
                add("msr", hex(index))
                if write, let rax = context.l2RAX, let rdx = context.l2RDX {
                    let value = (rdx & 0xFFFF_FFFF) << 32 | (rax & 0xFFFF_FFFF)
                    summary += " = \(hex(value))"
                    add("value", hex(value))
                }
            }
            add("access", write ? "write" : "read")
        case SVMExit.npf:
            let errorBits = Bits.names(info1, Bits.pageFaultErrorCode)
            let kind = info1 & (1 << 4) != 0 ? "fetch" : info1 & 2 != 0 ? "write" : "read"
            summary = "NPF \(kind) at GPA \(hex(info2))"
            if info1 & 1 == 0 { summary += ", not present" }
            if info1 & (1 << 32) != 0 { summary += ", GUEST_FINAL" }
            if info1 & (1 << 33) != 0 { summary += ", GUEST_PAGE" }
            add("gpa", hex(info2))
            add("error code", "\(hex(info1)) \(errorBits)")
        case 0x40...0x5F:
            let vector = Int(code - 0x40)
            summary = Bits.exceptionName(vector)
            if Bits.exceptionsWithErrorCode.contains(vector) {
                summary += " error code \(hex(info1 & 0xFFFF_FFFF))"
                add("error code", hex(info1 & 0xFFFF_FFFF))
            }
            if vector == 14 {
                let e = info1 & 0xFFFF_FFFF
                let words =
                    [
                        e & 1 != 0 ? "protection" : "not present",
                        e & 2 != 0 ? "write" : e & 16 != 0 ? "fetch" : "read",
                        e & 4 != 0 ? "user" : "supervisor",
                    ] + (e & 8 != 0 ? ["reserved bit"] : [])
                summary += " (\(words.joined(separator: ", "))) at \(hex(info2))"
                add("fault address", hex(info2))
            }
        case 0x00...0x3F:
            let isCR = code < 0x20
            let isWrite = (code & 0x10) != 0
            let reg = "\(isCR ? "CR" : "DR")\(code & 0xF)"
            summary = "\(isWrite ? "write" : "read") \(reg)"
            if info1 != 0 {  // decode assists present
                if isCR, info1 & (1 << 63) == 0 {
                    summary += " (LMSW/CLTS/SMSW)"
                } else {
                    summary += isWrite ? " from \(gprName(Int(info1 & 0xF)))" : " into \(gprName(Int(info1 & 0xF)))"
                }
                add("gpr", gprName(Int(info1 & 0xF)))
            }
        case 0x75:
            summary = "INT 0x\(String(info1 & 0xFF, radix: 16))"
            add("vector", hex(info1 & 0xFF))
        case 0x79:
            summary = "INVLPG \(hex(info1))"
            add("address", hex(info1))
        case 0x7D:
            let reason = info2 & (1 << 36) != 0 ? "IRET" : info2 & (1 << 38) != 0 ? "far JMP" : "CALL/INT"
            summary = "task switch to selector \(hex(info1 & 0xFFFF)) by \(reason)"
            add("selector", hex(info1 & 0xFFFF))
            add("reason", reason)
            if info2 & (1 << 44) != 0 { add("error code", hex(info2 & 0xFFFF_FFFF)) }
        default:
            break
        }
        if exitIntInfo & (1 << 31) != 0 {
            let e = EventInjection(exitIntInfo & 0xFFFF_FFFF)
            summary += " [while delivering \(e)]"
            add("exit_int_info", e.description)
        }
        self.summary = summary
        self.details = d
    }

    /// Decodes the exit recorded in a VMCB.
    public init(vmcb: VMCB, context: ExitContext = ExitContext()) {
        self.init(
            code: vmcb.exitCode, info1: vmcb[integer: .exitInfo1], info2: vmcb[integer: .exitInfo2],
            exitIntInfo: vmcb[integer: .exitIntInfo], context: context)
    }
}

/// EXITINFO1 of an IOIO intercept (APM §15.10.2).
public struct IOIOInfo: Equatable, Sendable {
    public let raw: UInt64
    public init(_ raw: UInt64) { self.raw = raw }
    public var isIn: Bool { raw & 1 != 0 }
    public var isString: Bool { raw & (1 << 2) != 0 }
    public var isRep: Bool { raw & (1 << 3) != 0 }
    /// Operand size in bytes (bits 6:4 are one-hot 1/2/4).
    public var size: Int { Int(raw >> 4 & 7) }
    public var addressSize: Int { raw & (1 << 9) != 0 ? 64 : raw & (1 << 8) != 0 ? 32 : 16 }
    public var segment: Int { Int(raw >> 10 & 7) }
    public var segmentName: String { segment < 6 ? ["ES", "CS", "SS", "DS", "FS", "GS"][segment] : "seg\(segment)" }
    public var port: UInt16 { UInt16(raw >> 16 & 0xFFFF) }

    public var summary: String {
        let op = (isRep ? "REP " : "") + (isIn ? "IN" : "OUT") + (isString ? "S" : "")
        return "\(op) \(hex(UInt64(port))), \(size) byte\(size == 1 ? "" : "s")"
    }
}

func gprName(_ n: Int) -> String {
    ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"][
        n & 15]
}
