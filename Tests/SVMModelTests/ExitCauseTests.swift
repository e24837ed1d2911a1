import SVMModel
import Testing

/// L1's memory as a few bytes; reads of anything else fail, as an unmapped GPA would.
final class FakeL1Memory: @unchecked Sendable {
    var bytes: [UInt64: UInt8] = [:]
    /// Every read KVM's rules made: (gpa, count).
    var reads: [(UInt64, Int)] = []

    func read(_ gpa: UInt64, _ count: Int) -> [UInt8]? {
        reads.append((gpa, count))
        var out: [UInt8] = []
        for i in 0..<count {
            guard let b = bytes[gpa + UInt64(i)] else { return nil }
            out.append(b)
        }
        return out
    }

    /// A permission map of `size` zero bytes at `base`, with the given bits set.
    func map(at base: UInt64, size: Int, setting bits: [Int] = []) {
        for i in 0..<size { bytes[base + UInt64(i)] = 0 }
        for bit in bits { bytes[base + UInt64(bit / 8), default: 0] |= 1 << UInt8(bit % 8) }
    }
}

private let iopmBase: UInt64 = 0x10_0000
private let msrpmBase: UInt64 = 0x10_4000

/// vmcb12 controls with IOIO_PROT, MSR_PROT and HLT intercepted and both maps placed.
private func controls(word3: UInt64 = 1 << 24 | 1 << 27 | 1 << 28) -> VMCB {
    var v = VMCB()
    v[integer: .intercepts3] = word3
    v[integer: .intercepts4] = 1
    v[integer: .iopmBasePA] = iopmBase
    v[integer: .msrpmBasePA] = msrpmBase
    return v
}

private func cause(
    _ code: UInt64, info1: UInt64 = 0, info2: UInt64 = 0, msr: UInt32? = nil, _ vmcb: VMCB = controls(),
    _ memory: FakeL1Memory = FakeL1Memory()
) -> ExitCause {
    ExitCause(code: code, exitInfo1: info1, exitInfo2: info2, msr: msr, controls: vmcb, readL1: memory.read)
}

/// EXITINFO1 of an IOIO exit: port, size in bytes, IN or OUT.
private func ioInfo(port: UInt16, size: Int, isIn: Bool = false) -> UInt64 {
    UInt64(port) << 16 | UInt64(size) << 4 | (isIn ? 1 : 0)
}

@Suite("why a nested #VMEXIT reached L1 (KVM's nested_svm_intercept, from vmcb12 and L1's maps)")
struct ExitCauseTests {
    @Test("an instruction intercept: the vmcb12 bit whose index is the exit code")
    func intercept() {
        let why = cause(0x78)
        #expect(why == .intercept(InterceptBit(word: 3, bit: 24)))
        #expect(why.control == "intercept word 3 bit 24 HLT")
        #expect(why.kind == "intercept" && !why.isAlarming)
        #expect(why.description.contains("L1 intercepts HLT"))
        // CR and DR exits: word 0 / 1, writes at bits 16-31.
        var v = controls()
        v[integer: .intercepts0] = 1 << 19
        #expect(cause(0x13, v) == .intercept(InterceptBit(word: 0, bit: 19)))
        #expect(InterceptBit(word: 0, bit: 19).name == "CR3 write")
        #expect(InterceptBit(exitCode: 0xA5)?.description == "intercept word 5 bit 5 BUSLOCK")
    }

    @Test("an intercept bit that is clear, yet the exit reached L1: not requested by L1, loudly")
    func interceptClear() {
        let why = cause(0x72)  // CPUID, not intercepted by these controls
        #expect(why == .notRequestedByL1(.intercept(InterceptBit(word: 3, bit: 18))))
        #expect(why.isAlarming && why.kind == "not_requested_by_l1")
        #expect(why.description.hasPrefix("!! NOT REQUESTED BY L1: intercept word 3 bit 18 CPUID is clear"))
        // A code no intercept bit names (AVIC) cannot be L1's either.
        #expect(cause(0x401) == .notRequestedByL1(.none(exitCode: 0x401)))
    }

    @Test("INTR, NMI, SMI, INIT: KVM synthesises them, but only when vmcb12 intercepts them")
    func events() {
        var v = controls()
        v[integer: .intercepts3] |= 1 | 1 << 3
        #expect(cause(0x60, v) == .intercept(InterceptBit(word: 3, bit: 0)))
        #expect(cause(0x60, v).description.contains("synthesised the exit from a pending interrupt"))
        #expect(cause(0x63, v).description.contains("pending INIT"))
        #expect(cause(0x61, v) == .notRequestedByL1(.intercept(InterceptBit(word: 3, bit: 1))), "NMI not intercepted")
    }

    @Test("IOIO, one byte: the IOPM bit at base + port/8, bit port%8")
    func iopmSingle() {
        let memory = FakeL1Memory()
        memory.map(at: iopmBase, size: 0x3000, setting: [0x80])
        let why = cause(0x7B, info1: ioInfo(port: 0x80, size: 1), controls(), memory)
        let check = IOPermissionCheck(
            port: 0x80, size: 1, base: iopmBase,
            bits: [PermissionBit(gpa: iopmBase + 0x10, bit: 0, isSet: true)])
        #expect(why == .ioPermission(check))
        #expect(why.control == "IOPM port 0x80 (1 byte): 0x100010 bit 0 set")
        #expect(memory.reads.count == 1 && memory.reads[0] == (iopmBase + 0x10, 1), "one map byte read")
        // The neighbour's bit does not count.
        #expect(cause(0x7B, info1: ioInfo(port: 0x81, size: 1), controls(), memory).isAlarming)
    }

    @Test("IOIO, several bytes: every port of the access, across a map byte (KVM reads two bytes)")
    func iopmMultiByte() {
        let memory = FakeL1Memory()
        memory.map(at: iopmBase, size: 0x3000, setting: [0x401])
        // A 4-byte IN at 0x3FE covers 0x3FE, 0x3FF (byte 0x7F bits 6, 7) and 0x400, 0x401 (byte 0x80 bits 0, 1).
        let why = cause(0x7B, info1: ioInfo(port: 0x3FE, size: 4, isIn: true), controls(), memory)
        guard case let .ioPermission(check) = why else {
            Issue.record("\(why)")
            return
        }
        #expect(check.bits.map(\.gpa) == [iopmBase + 0x7F, iopmBase + 0x7F, iopmBase + 0x80, iopmBase + 0x80])
        #expect(check.bits.map(\.bit) == [6, 7, 0, 1])
        #expect(check.bits.map(\.isSet) == [false, false, false, true])
        #expect(memory.reads.last! == (iopmBase + 0x7F, 2))
        #expect(why.control?.hasPrefix("IOPM ports 0x3fe-0x401 (4 bytes)") == true)
        // None of the four bits set: not L1's.
        memory.map(at: iopmBase, size: 0x3000)
        let clear = cause(0x7B, info1: ioInfo(port: 0x3FE, size: 4, isIn: true), controls(), memory)
        guard case let .notRequestedByL1(.ioPermission(c)) = clear else {
            Issue.record("\(clear)")
            return
        }
        #expect(c.bits.count == 4 && !c.anySet)
    }

    @Test("IOIO without IOIO_PROT, a map base with low bits, and an unreadable map")
    func iopmEdges() {
        let memory = FakeL1Memory()
        memory.map(at: iopmBase, size: 0x3000, setting: [0x60])
        #expect(
            cause(0x7B, info1: ioInfo(port: 0x60, size: 1), controls(word3: 1 << 24), memory)
                == .notRequestedByL1(.intercept(.ioioProtection)))
        var v = controls()
        v[integer: .iopmBasePA] = iopmBase | 0x123  // KVM drops bits 11:0
        #expect(cause(0x7B, info1: ioInfo(port: 0x60, size: 1), v, memory).kind == "iopm")
        v[integer: .iopmBasePA] = 0x900_0000
        #expect(
            cause(0x7B, info1: ioInfo(port: 0x60, size: 1), v, memory)
                == .permissionMapUnreadable(.iopm, gpa: 0x900_000C), "KVM reflects when its read fails")
    }

    /// (MSR, byte of its read bit in the map, bit in that byte) for each of the three ranges.
    static let msrs: [(UInt32, Int, Int)] = [
        (0x10, 0x4, 0), (0x1FFF, 0x7FF, 6), (0xC000_0080, 0x820, 0),
        (0xC000_0103, 0x840, 6), (0xC001_0015, 0x1005, 2),
    ]

    @Test("MSR: the MSRPM bit, read even and write odd, in each of the three ranges", arguments: msrs)
    func msrpm(msr: UInt32, byte: Int, bit: Int) {
        for write in [false, true] {
            let memory = FakeL1Memory()
            memory.map(at: msrpmBase, size: 0x2000, setting: [byte * 8 + bit + (write ? 1 : 0)])
            let why = cause(0x7C, info1: write ? 1 : 0, msr: msr, controls(), memory)
            let expected = MSRPermissionCheck(
                msr: msr, isWrite: write, base: msrpmBase, offset: byte,
                bit: PermissionBit(gpa: msrpmBase + UInt64(byte), bit: bit + (write ? 1 : 0), isSet: true))
            #expect(why == .msrPermission(expected), "\(String(msr, radix: 16)) write=\(write)")
            // Only the other direction's bit set: not L1's.
            memory.map(at: msrpmBase, size: 0x2000, setting: [byte * 8 + bit + (write ? 0 : 1)])
            let other = cause(0x7C, info1: write ? 1 : 0, msr: msr, controls(), memory)
            #expect(other.isAlarming, "\(other)")
        }
    }

    @Test("MSR outside the ranges is always intercepted under MSR_PROT; without MSR_PROT none is L1's")
    func msrOutside() {
        let memory = FakeL1Memory()
        memory.map(at: msrpmBase, size: 0x2000)
        #expect(
            cause(0x7C, info1: 1, msr: 0x4000_0000, controls(), memory)
                == .msrOutsidePermissionMap(msr: 0x4000_0000, isWrite: true))
        #expect(cause(0x7C, msr: 0xC000_2000, controls(), memory).kind == "msr_outside_msrpm")
        #expect(memory.reads.isEmpty, "no map read for an MSR outside the ranges")
        #expect(
            cause(0x7C, msr: 0x10, controls(word3: 1 << 24), memory) == .notRequestedByL1(.intercept(.msrProtection)))
        #expect(cause(0x7C, msr: nil) == .msrIndexUnknown)
        #expect(cause(0x7C, msr: 0x10) == .permissionMapUnreadable(.msrpm, gpa: msrpmBase + 4))
    }

    @Test("an exception: vmcb12's exception intercept bit for vector = code - 0x40")
    func exception() {
        var v = controls()
        v[integer: .intercepts2] = 1 << 14
        let why = cause(0x4E, info1: 2, info2: 0x1000, v)
        #expect(why == .exceptionIntercept(vector: 14))
        #expect(why.control == "intercept word 2 bit 14 #PF" && why.kind == "exception_intercept")
        #expect(cause(0x46, v) == .notRequestedByL1(.intercept(InterceptBit(word: 2, bit: 6))), "#UD not intercepted")
    }

    @Test("NPF: L1's own nested paging, or not L1's at all")
    func npf() {
        var v = controls()
        v[integer: .miscCtl] = 1
        v[integer: .nestedCR3] = 0x20_0000
        let why = cause(0x400, info1: 0x1_0000_0004, info2: 0x6_0000, v)
        #expect(why == .nestedPaging(nestedCR3: 0x20_0000, faultGPA: 0x6_0000))
        #expect(why.control == "misc_ctl NP_ENABLE (nested paging)")
        #expect(cause(0x400, controls()) == .notRequestedByL1(.nestedPaging))
    }

    @Test("KVM's own: VMEXIT_INVALID (both encodings), SHUTDOWN without the intercept, SVM_EXIT_SW for SMM")
    func synthesized() {
        #expect(cause(SVMExit.vmexitInvalid, controls(word3: 0)) == .synthesizedByKVM(.vmrunFailed))
        #expect(cause(0xFFFF_FFFF, controls(word3: 0)) == .synthesizedByKVM(.vmrunFailed))
        #expect(cause(SVMExit.vmexitInvalid).kind == "kvm_vmrun_failed" && cause(SVMExit.vmexitInvalid).control == nil)
        #expect(cause(0x7F, controls(word3: 0)) == .synthesizedByKVM(.shutdown))
        #expect(cause(0x7F, controls(word3: 1 << 31)) == .intercept(.shutdown))
        let smm = cause(0xF000_0000)
        #expect(smm == .synthesizedByKVM(.smmEntry) && !smm.isAlarming)
        #expect(smm.description.contains("no #VMEXIT to L1"))
        #expect(SVMExit.name(of: 0xF000_0000) == "SW")
    }

    @Test("each cause is one line of JSON: kind, control, detail, alarm")
    func json() {
        let line = cause(0x72).json.serialized()
        #expect(
            line.hasPrefix(
                #"{"kind":"not_requested_by_l1","control":"intercept word 3 bit 18 CPUID","detail":"!! NOT REQUESTED BY L1"#
            ))
        #expect(line.hasSuffix(#""alarm":true}"#))
        #expect(cause(SVMExit.vmexitInvalid).json.serialized().contains(#""control":null"#))
        for c in [cause(0x78), cause(0x72), cause(SVMExit.vmexitInvalid), cause(0x7C, msr: nil), cause(0xF000_0000)] {
            #expect(!c.description.contains("\n") && !c.description.isEmpty)
        }
    }
}

@Suite("everything KVM wrote into vmcb12 at the #VMEXIT, by SyncRule.kvm")
struct KVMWroteTests {
    func exitPages(lbr: Bool = false) -> (VMCB, VMCB) {
        var before = validVMCB12()
        if lbr { before[integer: .miscCtl2] = 1 }
        var after = before
        after[integer: .exitCode] = 0x78
        after[integer: .saveRIP] = 0x40_0010
        return (before, after)
    }

    @Test("every rule field, changed or rewritten, in layout order; LBR fields only with LBR virtualization")
    func listsRuleFields() {
        let (before, after) = exitPages()
        let wrote = SyncDiff.written(before: before, after: after)
        let names = wrote.map(\.field.name)
        #expect(names == VMCBLayout.fields.map(\.name).filter(names.contains), "layout order")
        #expect(wrote.first { $0.field == .exitCode }?.outcome == .changed)
        let rip = wrote.first { $0.field == .saveRIP }
        #expect(rip?.before == .integer(0x40_0000) && rip?.after == .integer(0x40_0010))
        #expect(wrote.first { $0.field == .saveCSAttrib }?.outcome == .rewritten)
        #expect(wrote.first { $0.field == .nextRIP }?.note == "only when NRIPS is exposed to L1")
        #expect(wrote.filter { $0.outcome == .changed }.map(\.field) == [.exitCode, .saveRIP])
        for field: VMCBField in [.exitInfo1, .exitIntInfo, .saveCR3, .saveCPL, .intState, .intCtl, .eventInj, .tlbCtl] {
            #expect(names.contains(field.name), "\(field.name)")
        }
        for field: VMCBField in [.saveDbgctl, .saveBrFrom, .saveFSBase, .intercepts3, .asid] {
            #expect(!names.contains(field.name), "\(field.name) is not KVM's to write here")
        }
        let lbr = SyncDiff.written(before: exitPages(lbr: true).0, after: exitPages(lbr: true).1).map(\.field)
        #expect(lbr.contains(.saveDbgctl) && lbr.contains(.saveLastExcpTo))
        #expect(
            wrote.count == SyncRule.kvm.filter { $0.condition != .lbrVirtualization }.map(\.fields.count).reduce(0, +))
    }

    @Test("VMRUN failed: only the exit fields (and the cleared EVENTINJ)")
    func vmrunFailed() {
        let (before, _) = exitPages()
        var after = before
        after[integer: .exitCode] = SVMExit.vmexitInvalid
        let wrote = SyncDiff.written(before: before, after: after).map(\.field)
        #expect(wrote == [.exitCode, .exitInfo1, .exitInfo2, .eventInj, .eventInjErr])
    }

    @Test("the JSON names the changed fields and gives each rewritten one its value")
    func json() {
        let (before, after) = exitPages()
        let line = FieldWrite.json(SyncDiff.written(before: before, after: after)).serialized()
        #expect(line.hasPrefix(#"{"changed":["control.exit_code""#))
        #expect(line.contains(#""save.cs.selector":"0x8""#))
        #expect(!line.contains(#""rewritten":{"control.exit_code""#), "a changed field is not listed as rewritten")
    }
}
