/// Why a nested #VMEXIT reached L1: the control in vmcb12 (or in L1's
/// permission maps) that made KVM reflect it, judged the way KVM judges it.
///
/// Source: Linux `arch/x86/kvm/svm/nested.c` (kvm-x86 2026 tree):
/// `nested_svm_intercept` reflects VMRUN failures always, MSR exits by
/// `nested_svm_exit_handled_msr`, IOIO exits by `nested_svm_intercept_ioio`,
/// exceptions that got past `nested_svm_exit_special` (their vmcb12 bit was
/// checked when KVM queued them, `nested_svm_is_exception_vmexit`), and every
/// other code iff vmcb12's intercept bit with index = exit code is set
/// (`vmcb12_is_intercept`). INTR/NMI/SMI/INIT are synthesised by
/// `svm_check_nested_events` only when vmcb12 intercepts them; NPF only comes
/// from KVM's walk of L1's nested page tables (`nested_svm_inject_npf_exit`);
/// SHUTDOWN from an L2 triple fault only when L1 intercepts it
/// (`nested_svm_triple_fault`; older KVM reflected it regardless).
/// KVM judges against its cache of the controls taken at VMRUN and reads
/// L1's IOPM/MSRPM from L1's memory at the exit; a failed read reflects.

/// Reads `count` bytes of L1's guest-physical memory at `gpa`; nil when it cannot.
/// SVMModel does no I/O: the engine passes one over its target.
public typealias L1MemoryReader = (_ gpa: UInt64, _ count: Int) -> [UInt8]?

/// One bit of vmcb12's intercept vector: bit `bit` of `intercepts[word]`.
public struct InterceptBit: Hashable, Sendable, Codable, CustomStringConvertible {
    public let word: Int
    public let bit: Int

    public init(word: Int, bit: Int) {
        self.word = word
        self.bit = bit
    }

    /// The bit KVM tests for an exit code: its index is the code itself
    /// (`vmcb12_is_intercept(ctl, exit_code)`). Nil past the six words (NPF, AVIC, VMGEXIT…).
    public init?(exitCode: UInt64) {
        guard exitCode < UInt64(InterceptBit.words.count * 32) else { return nil }
        self.init(word: Int(exitCode / 32), bit: Int(exitCode % 32))
    }

    public static let ioioProtection = InterceptBit(word: 3, bit: 27)
    public static let msrProtection = InterceptBit(word: 3, bit: 28)
    public static let shutdown = InterceptBit(word: 3, bit: 31)

    static let words: [VMCBField] = [
        .intercepts0, .intercepts1, .intercepts2, .intercepts3, .intercepts4, .intercepts5,
    ]

    /// The vmcb12 field holding the bit.
    public var field: VMCBField { InterceptBit.words[word] }

    /// "HLT", "#PF", "CR3 write".
    public var name: String {
        switch word {
        case 0: return "CR\(bit & 15) \(bit < 16 ? "read" : "write")"
        case 1: return "DR\(bit & 15) \(bit < 16 ? "read" : "write")"
        case 2: return Bits.exceptionName(bit)
        default:
            let names = word == 3 ? Bits.interceptWord3 : word == 4 ? Bits.interceptWord4 : Bits.interceptWord5
            return bit < names.count ? names[bit] : "bit\(bit)"
        }
    }

    public func isSet(in vmcb: VMCB) -> Bool { vmcb[integer: field] >> UInt64(bit) & 1 == 1 }

    /// "intercept word 3 bit 24 HLT".
    public var description: String { "intercept word \(word) bit \(bit) \(name)" }
}

/// One bit of a permission map in L1's memory, and whether L1 set it.
public struct PermissionBit: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The byte's guest-physical address.
    public let gpa: UInt64
    /// The bit in that byte.
    public let bit: Int
    public let isSet: Bool

    public init(gpa: UInt64, bit: Int, isSet: Bool) {
        self.gpa = gpa
        self.bit = bit
        self.isSet = isSet
    }

    /// "0x100010 bit 0 set".
    public var description: String { "\(hex(gpa)) bit \(bit) \(isSet ? "set" : "clear")" }
}

/// The IOPM bits KVM consults for an IN/OUT: one per byte of the access
/// (port, port+1, … for size 2 or 4), at base + port/8, bit port%8.
public struct IOPermissionCheck: Hashable, Sendable, Codable, CustomStringConvertible {
    public let port: UInt16
    /// Bytes accessed (EXITINFO1 bits 6:4).
    public let size: Int
    /// L1's IOPM_BASE_PA as KVM uses it (bits 11:0 dropped).
    public let base: UInt64
    /// Bit i is port + i's.
    public let bits: [PermissionBit]

    public init(port: UInt16, size: Int, base: UInt64, bits: [PermissionBit]) {
        self.port = port
        self.size = size
        self.base = base
        self.bits = bits
    }

    public var anySet: Bool { bits.contains { $0.isSet } }

    /// "IOPM port 0x80 (1 byte): 0x100010 bit 0 set".
    public var description: String {
        let ports =
            size > 1
            ? "ports \(hex(UInt64(port)))-\(hex(UInt64(port) + UInt64(size) - 1))" : "port \(hex(UInt64(port)))"
        return "IOPM \(ports) (\(size) byte\(size == 1 ? "" : "s")): " + bits.map(\.description).joined(separator: ", ")
    }
}

/// The MSRPM bit KVM consults for an RDMSR/WRMSR: two bits per MSR, read the
/// even one, write the odd one.
public struct MSRPermissionCheck: Hashable, Sendable, Codable, CustomStringConvertible {
    public let msr: UInt32
    public let isWrite: Bool
    /// L1's MSRPM_BASE_PA as KVM uses it (bits 11:0 dropped).
    public let base: UInt64
    /// Byte offset of the bit in the map.
    public let offset: Int
    public let bit: PermissionBit

    public init(msr: UInt32, isWrite: Bool, base: UInt64, offset: Int, bit: PermissionBit) {
        self.msr = msr
        self.isWrite = isWrite
        self.base = base
        self.offset = offset
        self.bit = bit
    }

    /// "MSRPM write of MSR 0xc0000080: byte 0x820 (0x104820) bit 1 set".
    public var description: String {
        "MSRPM \(isWrite ? "write" : "read") of MSR \(hex(UInt64(msr))): byte \(hex(UInt64(offset)))"
            + " (\(hex(bit.gpa))) bit \(bit.bit) \(bit.isSet ? "set" : "clear")"
    }

    /// The MSRPM's three ranges: first MSR and the byte they start at (APM vol. 2 §15.11).
    public static let ranges: [(first: UInt32, byteOffset: Int)] = [
        (0, 0), (0xC000_0000, 0x800), (0xC001_0000, 0x1000),
    ]
    public static let msrsPerRange: UInt32 = 0x2000

    /// The map bit of `msr`'s read permission (write is the next one); nil outside the ranges
    /// (KVM's `svm_msrpm_bit_nr`).
    public static func readBitNumber(of msr: UInt32) -> Int? {
        for range in ranges where msr >= range.first && msr - range.first < msrsPerRange {
            return range.byteOffset * 8 + Int(msr - range.first) * 2
        }
        return nil
    }
}

/// Which permission map.
public enum PermissionMap: String, Sendable, Codable {
    case iopm = "IOPM"
    case msrpm = "MSRPM"
}

/// A vmcb12 control L1 could set to ask for an exit.
public enum ExitControl: Hashable, Sendable, Codable, CustomStringConvertible {
    case intercept(InterceptBit)
    case ioPermission(IOPermissionCheck)
    case msrPermission(MSRPermissionCheck)
    /// misc_ctl NP_ENABLE (nested paging).
    case nestedPaging
    /// No control in vmcb12 names this exit code.
    case none(exitCode: UInt64)

    public var description: String {
        switch self {
        case let .intercept(bit): return bit.description
        case let .ioPermission(check): return check.description
        case let .msrPermission(check): return check.description
        case .nestedPaging: return "misc_ctl NP_ENABLE (nested paging)"
        case let .none(code): return "no vmcb12 control for exit code \(hex(code))"
        }
    }
}

/// Exits KVM makes itself, whatever L1's controls say.
public enum KVMSynthesizedExit: String, Sendable, Codable, CaseIterable {
    /// VMEXIT_INVALID: vmcb12 failed the consistency checks, or KVM could not load L2.
    case vmrunFailed = "vmrun_failed"
    /// L2 shut down although L1 does not intercept SHUTDOWN (KVM before the
    /// intercept check in `nested_svm_triple_fault` reflected it regardless).
    case shutdown
    /// SVM_EXIT_SW (0xF0000000): KVM entered SMM while L2 ran (`svm_enter_smm`).
    case smmEntry = "smm_entry"
}

/// Why a nested #VMEXIT is L1's. Each case has a one-line `description`.
public enum ExitCause: Hashable, Sendable, Codable, CustomStringConvertible {
    /// vmcb12 intercepts the exit code (INTR/NMI/SMI/INIT: KVM synthesises the exit from a pending event).
    case intercept(InterceptBit)
    /// vmcb12's exception intercepts (word 2) have the vector's bit.
    case exceptionIntercept(vector: Int)
    /// L1's IOPM has a bit set for a port of the access.
    case ioPermission(IOPermissionCheck)
    /// L1's MSRPM has the MSR's read or write bit set.
    case msrPermission(MSRPermissionCheck)
    /// An MSR outside the MSRPM's ranges: always intercepted under MSR_PROT (APM); KVM reflects it.
    case msrOutsidePermissionMap(msr: UInt32, isWrite: Bool)
    /// L1 enabled nested paging: the fault is in L1's nested page tables, which KVM walks for it.
    case nestedPaging(nestedCR3: UInt64, faultGPA: UInt64)
    /// KVM makes this exit whatever L1's controls say.
    case synthesizedByKVM(KVMSynthesizedExit)
    /// Alarming: the control that would ask for the exit is clear, yet it reached L1.
    case notRequestedByL1(ExitControl)
    /// L1's permission map could not be read; KVM reflects when its own read fails.
    case permissionMapUnreadable(PermissionMap, gpa: UInt64)
    /// An MSR exit with L2's RCX unknown: the MSRPM cannot be consulted.
    case msrIndexUnknown

    /// The name JSON uses.
    public var kind: String {
        switch self {
        case .intercept: return "intercept"
        case .exceptionIntercept: return "exception_intercept"
        case .ioPermission: return "iopm"
        case .msrPermission: return "msrpm"
        case .msrOutsidePermissionMap: return "msr_outside_msrpm"
        case .nestedPaging: return "nested_paging"
        case let .synthesizedByKVM(what): return "kvm_" + what.rawValue
        case .notRequestedByL1: return "not_requested_by_l1"
        case .permissionMapUnreadable: return "permission_map_unreadable"
        case .msrIndexUnknown: return "msr_index_unknown"
        }
    }

    /// The control that decided, as one phrase ("intercept word 3 bit 24 HLT"); nil when none did.
    public var control: String? {
        switch self {
        case let .intercept(bit): return bit.description
        case let .exceptionIntercept(vector): return InterceptBit(word: 2, bit: vector).description
        case let .ioPermission(check): return check.description
        case let .msrPermission(check): return check.description
        case .msrOutsidePermissionMap: return InterceptBit.msrProtection.description
        case .nestedPaging: return ExitControl.nestedPaging.description
        case .synthesizedByKVM, .msrIndexUnknown: return nil
        case let .notRequestedByL1(control): return control.description
        case let .permissionMapUnreadable(map, gpa): return "\(map.rawValue) byte at \(hex(gpa))"
        }
    }

    /// An exit L1 did not ask for: KVM (or something else) is wrong.
    public var isAlarming: Bool {
        if case .notRequestedByL1 = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case let .intercept(bit):
            let events = [0: "interrupt", 1: "NMI", 2: "SMI", 3: "INIT"]
            if bit.word == 3, let event = events[bit.bit] {
                return "L1 intercepts \(bit.name) (\(bit)): KVM synthesised the exit from a pending \(event)"
            }
            if bit == .shutdown { return "L1 intercepts SHUTDOWN (\(bit)): L2 shut down (e.g. a triple fault)" }
            return "L1 intercepts \(bit.name): \(bit) is set in vmcb12"
        case let .exceptionIntercept(vector):
            return "L1 intercepts \(Bits.exceptionName(vector)): \(InterceptBit(word: 2, bit: vector)) is set in vmcb12"
        case let .ioPermission(check):
            return "L1's IOPM asks for the access: \(check)"
        case let .msrPermission(check):
            return "L1's MSRPM asks for the access: \(check)"
        case let .msrOutsidePermissionMap(msr, isWrite):
            return "\(isWrite ? "WRMSR" : "RDMSR") \(hex(UInt64(msr))) is outside the MSRPM's ranges:"
                + " under MSR_PROT it always exits (APM) and KVM reflects it"
        case let .nestedPaging(nestedCR3, faultGPA):
            return
                "L1 enabled nested paging (nCR3 \(hex(nestedCR3))): L2 GPA \(hex(faultGPA)) faulted in L1's nested page tables"
        case .synthesizedByKVM(.vmrunFailed):
            return "KVM failed the VMRUN (consistency checks or loading L2): VMEXIT_INVALID, L1 cannot prevent it"
        case .synthesizedByKVM(.shutdown):
            return
                "L2 shut down and L1 does not intercept SHUTDOWN: older KVM reflects it regardless (newer KVM shuts L1 down)"
        case .synthesizedByKVM(.smmEntry):
            return
                "SVM_EXIT_SW: KVM entered SMM while L2 ran and saved L2 into vmcb12; no #VMEXIT to L1 (RSM re-enters L2)"
        case let .notRequestedByL1(control):
            // Permission checks name their bits' states themselves.
            switch control {
            case .intercept, .nestedPaging:
                return "!! NOT REQUESTED BY L1: \(control) is clear, yet the exit reached L1"
            case .ioPermission, .msrPermission, .none:
                return "!! NOT REQUESTED BY L1: \(control), yet the exit reached L1"
            }
        case let .permissionMapUnreadable(map, gpa):
            return
                "L1's \(map.rawValue) at \(hex(gpa)) could not be read; KVM reflects the exit when its own read fails"
        case .msrIndexUnknown:
            return "MSR exit with L2's RCX unknown: the MSRPM bit cannot be named"
        }
    }
}

extension ExitCause {
    /// Judges an exit as `nested_svm_intercept` does. `controls` is vmcb12 as L1
    /// prepared it at VMRUN (KVM decides from its VMRUN-time copy of the
    /// controls); `msr` is L2's ECX for MSR exits; `readL1` reads L1's
    /// permission maps, as KVM does at the exit.
    public init(
        code: UInt64, exitInfo1: UInt64, exitInfo2: UInt64 = 0, msr: UInt32? = nil, controls: VMCB,
        readL1: L1MemoryReader
    ) {
        if SVMExit.isInvalid(code) {
            self = .synthesizedByKVM(.vmrunFailed)
            return
        }
        switch code {
        case SVMExit.software:
            self = .synthesizedByKVM(.smmEntry)
        case SVMExit.msr:
            self = ExitCause.msrCause(write: exitInfo1 & 1 == 1, msr: msr, controls: controls, readL1: readL1)
        case SVMExit.ioio:
            self = ExitCause.ioCause(IOIOInfo(exitInfo1), controls: controls, readL1: readL1)
        case SVMExit.exceptionBase..<(SVMExit.exceptionBase + 32):
            let vector = Int(code - SVMExit.exceptionBase)
            let bit = InterceptBit(word: 2, bit: vector)
            self = bit.isSet(in: controls) ? .exceptionIntercept(vector: vector) : .notRequestedByL1(.intercept(bit))
        case SVMExit.npf:
            // Hardware NPFs are L0's own (nested_svm_exit_special); L1 gets one only from its own tables.
            self =
                controls[integer: .miscCtl] & 1 != 0
                ? .nestedPaging(nestedCR3: controls[integer: .nestedCR3], faultGPA: exitInfo2)
                : .notRequestedByL1(.nestedPaging)
        case SVMExit.shutdown:
            self = InterceptBit.shutdown.isSet(in: controls) ? .intercept(.shutdown) : .synthesizedByKVM(.shutdown)
        default:
            guard let bit = InterceptBit(exitCode: code) else {
                self = .notRequestedByL1(.none(exitCode: code))
                return
            }
            self = bit.isSet(in: controls) ? .intercept(bit) : .notRequestedByL1(.intercept(bit))
        }
    }

    /// `nested_svm_exit_handled_msr`: MSR_PROT clear keeps the exit in L0; an MSR
    /// outside the ranges or an unreadable map reflects; else the map bit decides.
    private static func msrCause(write: Bool, msr: UInt32?, controls: VMCB, readL1: L1MemoryReader) -> ExitCause {
        guard InterceptBit.msrProtection.isSet(in: controls) else {
            return .notRequestedByL1(.intercept(.msrProtection))
        }
        guard let msr else { return .msrIndexUnknown }
        guard let readBit = MSRPermissionCheck.readBitNumber(of: msr) else {
            return .msrOutsidePermissionMap(msr: msr, isWrite: write)
        }
        let base = controls[integer: .msrpmBasePA] & ~0xFFF
        let bitNumber = readBit + (write ? 1 : 0)
        let gpa = base + UInt64(bitNumber / 8)
        guard let bytes = readL1(gpa, 1), let byte = bytes.first else {
            return .permissionMapUnreadable(.msrpm, gpa: gpa)
        }
        let bit = PermissionBit(gpa: gpa, bit: bitNumber % 8, isSet: byte >> UInt8(bitNumber % 8) & 1 == 1)
        let check = MSRPermissionCheck(msr: msr, isWrite: write, base: base, offset: bitNumber / 8, bit: bit)
        return bit.isSet ? .msrPermission(check) : .notRequestedByL1(.msrPermission(check))
    }

    /// `nested_svm_intercept_ioio`: IOIO_PROT clear keeps the exit in L0; else
    /// the bits of every byte of the access (one or two map bytes) decide.
    private static func ioCause(_ io: IOIOInfo, controls: VMCB, readL1: L1MemoryReader) -> ExitCause {
        guard InterceptBit.ioioProtection.isSet(in: controls) else {
            return .notRequestedByL1(.intercept(.ioioProtection))
        }
        let base = controls[integer: .iopmBasePA] & ~0xFFF
        let port = Int(io.port)
        let gpa = base + UInt64(port / 8)
        let firstBit = port % 8
        let length = firstBit + io.size > 8 ? 2 : 1
        guard let bytes = readL1(gpa, length), bytes.count >= length else {
            return .permissionMapUnreadable(.iopm, gpa: gpa)
        }
        let bits = (0..<io.size).map { i -> PermissionBit in
            let n = firstBit + i
            return PermissionBit(gpa: gpa + UInt64(n / 8), bit: n % 8, isSet: bytes[n / 8] >> UInt8(n % 8) & 1 == 1)
        }
        let check = IOPermissionCheck(port: io.port, size: io.size, base: base, bits: bits)
        return check.anySet ? .ioPermission(check) : .notRequestedByL1(.ioPermission(check))
    }
}
