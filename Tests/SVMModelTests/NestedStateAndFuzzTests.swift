import SVMModel
import Testing

@Suite("SVM nested state")
struct NestedStateTests {
    @Test("a guest-mode blob decodes: flags, vmcb_pa, cached controls, L1's save half; round-trips")
    func guestMode() throws {
        var data = VMCB()
        data[integer: .asid] = 1  // cached vmcb12 control
        data[integer: .intercepts4] = 1
        data[integer: .saveRIP] = 0x20_0105  // L1 after VMRUN
        data[integer: .saveRAX] = 0x10_2000  // = vmcb12 GPA
        data[integer: .saveCR0] = 0x8000_0011
        let bytes = SVMNestedState.make(flags: [.guestMode, .gifSet], vmcbPA: 0x10_2000, data: data)
        #expect(bytes.count == 4224)
        // Header fields at the ABI offsets: flags @0, format @2, size @4, vmcb_pa @8.
        #expect(bytes[0] == 0x01 && bytes[1] == 0x01 && bytes[2] == 1 && bytes[4] == 0x80 && bytes[5] == 0x10)
        let s = try SVMNestedState(bytes: bytes)
        #expect(s.flags == [.guestMode, .gifSet])
        #expect(s.flags.description == "GUEST_MODE|GIF_SET")
        #expect(s.vmcbPA == 0x10_2000)
        #expect(s.data?[integer: .saveRIP] == 0x20_0105)
        #expect(s.data?[integer: .asid] == 1)
        #expect(s.bytes == bytes)
        #expect(SVMNestedState.make(flags: s.flags, vmcbPA: s.vmcbPA, data: s.data) == bytes)
    }

    @Test("outside guest mode: a bare 128-byte header")
    func notGuestMode() throws {
        let bytes = SVMNestedState.make(flags: [.gifSet], vmcbPA: 0, data: nil)
        let s = try SVMNestedState(bytes: bytes)
        #expect(s.data == nil && s.flags == [.gifSet] && s.bytes == bytes)
    }

    @Test("bad blobs are refused with a clear reason")
    func bad() {
        #expect(throws: NestedStateError.tooShort(10)) { try SVMNestedState(bytes: [UInt8](repeating: 0, count: 10)) }
        var vmx = SVMNestedState.make(flags: [], vmcbPA: 0, data: nil)
        vmx[2] = 0
        #expect(throws: NestedStateError.notSVM(format: 0)) { try SVMNestedState(bytes: vmx) }
        var truncated = SVMNestedState.make(flags: [.guestMode], vmcbPA: 0x1000, data: VMCB())
        truncated.removeLast(100)
        #expect(throws: NestedStateError.sizeMismatch(header: 4224, actual: 4124)) {
            try SVMNestedState(bytes: truncated)
        }
        var noData = SVMNestedState.make(flags: [.guestMode], vmcbPA: 0x1000, data: nil)
        noData[0] = 1
        #expect(throws: NestedStateError.missingData(flags: "GUEST_MODE")) { try SVMNestedState(bytes: noData) }
    }
}

@Suite("fuzz: random and truncated bytes never crash a decoder")
struct FuzzTests {
    @Test("random pages through decode, meaning, checks, diff, JSON; random blobs; truncations")
    func fuzz() throws {
        var rng = SeededRandom(state: 7)
        var previous = VMCB()
        for round in 0..<200 {
            let page = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let v = try VMCB(bytes: page)
            for f in VMCBLayout.fields { _ = f.meaning(of: v[f], in: v) }
            _ = DecodedExit(vmcb: v, context: ExitContext(l2RCX: rng.next(), l2RAX: rng.next(), l2RDX: rng.next()))
            _ = ConsistencyChecks.check(v)
            let changes = SyncDiff.changes(before: previous, after: v)
            #expect(!changes.isEmpty)
            _ = v.json().serialized()
            previous = v
            // Truncated and random-length inputs: errors, never traps.
            let cut = Int.random(in: 0..<4096, using: &rng)
            #expect(throws: VMCBError.self) { try VMCB(bytes: page.prefix(cut)) }
            var blob = Array(page.prefix(Int.random(in: 0...4300, using: &rng)))
            if round % 3 == 0, blob.count >= 8 {
                blob[2] = 1
                blob[3] = 0
            }  // SVM format, random size
            if let s = try? SVMNestedState(bytes: blob) { _ = s.json.serialized() }
        }
        for code in [0, 0x3F, 0x40, 0x5F, 0x7B, 0x7C, 0x400, 0xFFFF_FFFF, UInt64.max, 0xF000_0000] as [UInt64] {
            _ = DecodedExit(code: code, info1: rng.next(), info2: rng.next(), exitIntInfo: rng.next())
        }
    }
}

@Suite("nested-state blobs compared field by field")
struct NestedStateDiffTests {
    @Test("the header and each data field, with whose it is")
    func differences() throws {
        var data = VMCB()
        data[integer: .saveRIP] = 0x1234
        data[integer: .intCtl] = 1 << 24
        let a = try SVMNestedState(
            bytes: SVMNestedState.make(flags: [.guestMode, .gifSet], vmcbPA: 0x20000, data: data))
        var other = data
        other[integer: .saveDR6] = 0xFFFF_0FF0
        other[integer: .intCtl] = 1 << 24 | 1 << 8
        let b = try SVMNestedState(
            bytes: SVMNestedState.make(flags: [.guestMode, .runPending, .gifSet], vmcbPA: 0x20000, data: other))
        let d = a.differences(from: b)
        #expect(d.map(\.field) == ["flags", "control.int_ctl", "save.dr6"])
        #expect(d[0].first.contains("GUEST_MODE|GIF_SET") && d[0].second.contains("RUN_PENDING"))
        #expect(d[1].meaning.contains(SVMNestedState.controlMeaning))
        #expect(d[2].meaning.contains(SVMNestedState.saveMeaning))
        #expect(a.differences(from: a).isEmpty)
        let outside = try SVMNestedState(bytes: SVMNestedState.make(flags: [.gifSet], vmcbPA: 0, data: nil))
        #expect(a.differences(from: outside).map(\.field) == ["flags", "vmcb_pa", "size", "data"])
    }
}
