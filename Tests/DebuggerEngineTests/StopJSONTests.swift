import DebuggerEngine
import SVMModel
import Testing

@Suite("a nested-exit stop's JSON says why the exit is L1's and everything KVM wrote (no KVM)")
struct StopJSONTests {
    func stop() -> Stop {
        var before = VMCB()
        before[integer: .intercepts3] = 1 << 24
        before[integer: .saveRIP] = 0x14F0
        var after = before
        after[integer: .exitCode] = 0x78
        after[integer: .saveRIP] = 0x14F1
        var stop = Stop.synthetic(index: 3, before: before, after: after, l1: [:], l2: [:])
        stop.why = ExitCause(code: 0x78, exitInfo1: 0, controls: before) { _, _ in nil }
        return stop
    }

    @Test(
        "\"why\" is {kind, control, detail, alarm}; \"kvm_wrote\" names every written field, changed or rewritten with its value"
    )
    func json() throws {
        let line = stop().json.serialized()
        #expect(
            line.contains(
                #""why":{"kind":"intercept","control":"intercept word 3 bit 24 HLT","detail":"L1 intercepts HLT: intercept word 3 bit 24 HLT is set in vmcb12","alarm":false}"#
            ))
        #expect(line.contains(#""kvm_wrote":{"changed":["control.exit_code","save.rip"],"rewritten":{"#))
        #expect(line.contains(#""save.cr0":"0x0""#), "a rewritten field with its value")
        #expect(
            line.contains(#"{"field":"save.rip","before":"0x14f0","after":"0x14f1","class":"l2_state_synced"}"#),
            "a changed field's before and after are its synced entry")
        let wrote = try #require(line.range(of: #""kvm_wrote":{"#))
        let synced = try #require(line.range(of: #""synced":["#))
        #expect(synced.lowerBound < wrote.lowerBound, "the synced list stays, kvm_wrote follows it")
        let rewritten = stop().kvmWrote.filter { $0.outcome == .rewritten }
        #expect(rewritten.allSatisfy { line.contains("\"\($0.field.name)\":") }, "every rewritten field is named")
    }

    @Test("stops that are no nested exit carry neither key; a nested exit without a cause has \"why\": null")
    func absent() {
        var s = stop()
        s.why = nil
        #expect(s.json.serialized().contains(#""why":null"#))
        s.kind = .vmrun
        #expect(!s.json.serialized().contains(#""why""#) && !s.json.serialized().contains("kvm_wrote"))
    }
}
