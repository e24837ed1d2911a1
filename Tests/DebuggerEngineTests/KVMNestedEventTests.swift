import DebuggerEngine
import KernelTrace
import Testing

/// Format lines as Debian's 6.1 and 6.12 kernels print them (tracefs, captured
/// in the sandbox); 6.12 prints the same fields for these events.
private func format(_ name: String, id: UInt64, _ fields: [String]) throws -> TracepointFormat {
    let common = [
        "unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;",
        "unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;",
        "unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;",
        "int common_pid;\toffset:4;\tsize:4;\tsigned:1;",
    ]
    let lines = (common + fields).map { "\tfield:" + $0 }.joined(separator: "\n")
    return try TracepointFormat.parse("name: \(name)\nID: \(id)\nformat:\n\(lines)\n", event: "kvm:" + name)
}

private func le(_ value: UInt64, _ size: Int) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
}

/// A record of `size` bytes with the given (offset, size, value) fields.
private func record(_ f: TracepointFormat, size: Int, _ values: [(Int, Int, UInt64)]) -> TraceRecord {
    var bytes = [UInt8](repeating: 0, count: size)
    bytes.replaceSubrange(0..<2, with: le(f.id, 2))
    for (offset, width, value) in values { bytes.replaceSubrange(offset..<(offset + width), with: le(value, width)) }
    return TraceRecord(format: f, bytes: bytes)
}

@Suite("KVM's nested tracepoints decoded by field name")
struct KVMNestedEventTests {
    @Test("kvm_nested_vmenter: where L1 resumes, vmcb12, L2's RIP, nested paging (tdp_enabled on 6.1 and 6.12)")
    func vmenter() throws {
        let f = try format(
            "kvm_nested_vmenter", id: 1462,
            [
                "__u64 rip;\toffset:8;\tsize:8;\tsigned:0;", "__u64 vmcb;\toffset:16;\tsize:8;\tsigned:0;",
                "__u64 nested_rip;\toffset:24;\tsize:8;\tsigned:0;", "__u32 int_ctl;\toffset:32;\tsize:4;\tsigned:0;",
                "__u32 event_inj;\toffset:36;\tsize:4;\tsigned:0;", "bool tdp_enabled;\toffset:40;\tsize:1;\tsigned:0;",
                "__u64 guest_pgd;\toffset:48;\tsize:8;\tsigned:0;", "__u32 isa;\toffset:56;\tsize:4;\tsigned:0;",
            ])
        let r = record(
            f, size: 60,
            [(8, 8, 0x12AB), (16, 8, 0x20000), (24, 8, 0x14F0), (32, 4, 0x0100_0000), (40, 1, 1), (56, 4, 2)])
        #expect(
            try KVMNestedEvent(r)
                == .vmenter(
                    l1RIP: 0x12AB, vmcb12: 0x20000, l2RIP: 0x14F0, intCtl: 0x0100_0000,
                    eventInj: 0, nestedPaging: true))
    }

    @Test("kvm_nested_vmexit: the L2 exit to L0 (exit_reason, info1, info2, intr_info, error_code)")
    func l2Exit() throws {
        let f = try format(
            "kvm_nested_vmexit", id: 1460,
            [
                "unsigned int exit_reason;\toffset:8;\tsize:4;\tsigned:0;",
                "unsigned long guest_rip;\toffset:16;\tsize:8;\tsigned:0;",
                "u32 isa;\toffset:24;\tsize:4;\tsigned:0;", "u64 info1;\toffset:32;\tsize:8;\tsigned:0;",
                "u64 info2;\toffset:40;\tsize:8;\tsigned:0;", "u32 intr_info;\toffset:48;\tsize:4;\tsigned:0;",
                "u32 error_code;\toffset:52;\tsize:4;\tsigned:0;",
                "unsigned int vcpu_id;\toffset:56;\tsize:4;\tsigned:0;",
            ])
        let r = record(f, size: 60, [(8, 4, 0x400), (32, 8, 0x6), (40, 8, 0x60000), (48, 4, 0)])
        #expect(try KVMNestedEvent(r) == .l2Exit(KVMExitFields(code: 0x400, info1: 6, info2: 0x60000)))
    }

    @Test("a kernel whose format lacks a field the decoder needs is an error naming event and field")
    func missingField() throws {
        let f = try format("kvm_nested_vmexit_inject", id: 1461, ["__u32 exit_code;\toffset:8;\tsize:4;\tsigned:0;"])
        #expect(throws: TraceError.missingField(event: "kvm:kvm_nested_vmexit_inject", field: "exit_info1 or info1")) {
            try KVMNestedEvent(record(f, size: 12, [(8, 4, 0x72)]))
        }
    }
}

@Suite("the order of KVM's nested events, checked at every stop (no KVM)")
struct KVMEventSequenceTests {
    let vmenter = KVMNestedEvent.vmenter(
        l1RIP: 0x12AB, vmcb12: 0x20000, l2RIP: 0x14F0, intCtl: 0, eventInj: 0, nestedPaging: true)
    func inject(_ code: UInt64) -> KVMNestedEvent { .vmexitInject(KVMExitFields(code: code)) }
    func l2Exit(_ code: UInt64) -> KVMNestedEvent { .l2Exit(KVMExitFields(code: code)) }

    @Test("the L2 exits since the VMRUN but the reflected one are the ones KVM handled, counted by reason")
    func handledByL0() {
        var sequence = KVMEventSequence()
        #expect(sequence.evidence(for: [vmenter]).problems.isEmpty)
        let exit = sequence.evidence(for: [l2Exit(0x400), l2Exit(0x7B), l2Exit(0x400), l2Exit(0x72), inject(0x72)])
        #expect(exit.handledByL0 == [L0ExitCount(code: 0x400, count: 2), L0ExitCount(code: 0x7B, count: 1)])
        #expect(exit.problems.isEmpty && exit.events == [inject(0x72)])
        // An exit KVM synthesised (no L2 exit of that code): every L2 exit was KVM's own.
        _ = sequence.evidence(for: [vmenter])
        #expect(
            sequence.evidence(for: [l2Exit(0x60), inject(0x7F)]).handledByL0 == [L0ExitCount(code: 0x60, count: 1)])
    }

    @Test("before the first VMRUN was seen the counts are unknown, not zero")
    func unknownAtFirst() {
        var sequence = KVMEventSequence()
        #expect(sequence.evidence(for: [l2Exit(0x400), inject(0x72)]).handledByL0 == nil)
    }

    @Test("a missing event is a problem: two VMRUNs without a #VMEXIT, two #VMEXITs without a VMRUN, one the ring lost")
    func missing() {
        var sequence = KVMEventSequence()
        _ = sequence.evidence(for: [vmenter])
        #expect(sequence.evidence(for: [vmenter]).problems.first?.contains("#VMEXIT before it fired no event") == true)
        _ = sequence.evidence(for: [inject(0x72)])
        #expect(
            sequence.evidence(for: [inject(0x72)]).problems.first?.contains("kvm_nested_vmenter is missing") == true)
        #expect(sequence.evidence(for: [], missingStops: ["1 kvm_nested_vmexit_inject"]).problems.count == 1)
        let short = sequence.evidence(for: [], missingL2Exits: 3)
        #expect(
            short.problems.isEmpty && short.lost == 3 && short.notes.count == 1,
            "lost L2 exits only make the counts short")
    }

    @Test("merged SIGTRAPs: VMRUN then #VMEXIT in one KVM_RUN is exact; a #VMEXIT then a VMRUN means L1 ran unseen")
    func merged() {
        var sequence = KVMEventSequence()
        let exact = sequence.evidence(for: [
            vmenter, .vmenterFailed(check: "!load_pdptrs(vcpu, cr3)"), inject(0xFFFF_FFFF),
        ])
        #expect(exact.problems.isEmpty && exact.notes.first?.contains("L2 did not run") == true)
        #expect(exact.failedCheck == "!load_pdptrs(vcpu, cr3)" && exact.injectedExit?.code == 0xFFFF_FFFF)
        _ = sequence.evidence(for: [vmenter])
        let late = sequence.evidence(for: [inject(0x72), vmenter])
        #expect(late.problems.first?.hasPrefix("late stop") == true)
    }
}
