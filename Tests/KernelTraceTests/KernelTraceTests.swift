import Foundation
import KVMControl
import KernelTrace
import Testing

/// kvm_nested_vmexit_inject as Debian's 6.1 kernel describes it (tracefs), and
/// a string field as kvm_nested_vmenter_failed carries one.
let vmexitInjectFormat = """
    name: kvm_nested_vmexit_inject
    ID: 1742
    format:
    \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
    \tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
    \tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
    \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

    \tfield:__u32 exit_code;\toffset:8;\tsize:4;\tsigned:0;
    \tfield:__u64 exit_info1;\toffset:16;\tsize:8;\tsigned:0;
    \tfield:__u64 exit_info2;\toffset:24;\tsize:8;\tsigned:0;
    \tfield:__u32 exit_int_info;\toffset:32;\tsize:4;\tsigned:0;
    \tfield:__u32 exit_int_info_err;\toffset:36;\tsize:4;\tsigned:0;
    \tfield:__u32 isa;\toffset:40;\tsize:4;\tsigned:0;

    print fmt: "reason: %s ext_inf1: 0x%016llx", REC->exit_code
    """

let vmenterFailedFormat = """
    name: kvm_nested_vmenter_failed
    ID: 1739
    format:
    \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
    \tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
    \tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
    \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

    \tfield:__data_loc char[] msg;\toffset:8;\tsize:4;\tsigned:0;
    \tfield:char comm[4];\toffset:12;\tsize:4;\tsigned:0;
    \tfield:int delta;\toffset:16;\tsize:2;\tsigned:1;

    print fmt: "%s", __get_str(msg)
    """

func le(_ value: UInt64, _ size: Int) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
}

@Suite("tracefs formats and raw records")
struct FormatTests {
    @Test("a format file gives the id and every field's offset, size and sign")
    func parse() throws {
        let f = try TracepointFormat.parse(vmexitInjectFormat, event: "kvm:kvm_nested_vmexit_inject")
        #expect(f.id == 1742)
        #expect(f.fields.count == 10)
        #expect(f.field("exit_info2") == .init(name: "exit_info2", type: "__u64", offset: 24, size: 8, isSigned: false))
        #expect(f.field("common_pid")?.isSigned == true)
        #expect(f.field("nonexistent") == nil)
    }

    @Test("a record's integers and strings are read through the format, never at fixed offsets")
    func record() throws {
        let f = try TracepointFormat.parse(vmexitInjectFormat, event: "inject")
        var bytes = le(1742, 2) + [0, 0] + le(99, 4) + le(0x7B, 4) + le(0, 4)
        bytes += le(0x0080_0210, 8) + le(0x1234, 8) + le(0x8000_0306, 4) + le(7, 4) + le(2, 4)
        let r = TraceRecord(format: f, bytes: bytes)
        #expect(TraceRecord.commonType(of: bytes) == 1742)
        #expect(r.integer("exit_code") == 0x7B)
        #expect(r.integer("exit_info1") == 0x0080_0210)
        #expect(r.integer("exit_int_info") == 0x8000_0306)
        #expect(r.integer("exit_int_info_err") == 7)
        #expect(r.integer("missing") == nil)
        // A record cut short answers nil, not garbage.
        #expect(TraceRecord(format: f, bytes: Array(bytes.prefix(20))).integer("exit_info2") == nil)

        let g = try TracepointFormat.parse(vmenterFailedFormat, event: "failed")
        #expect(g.field("msg")?.isDataLocation == true)
        #expect(g.field("comm")?.type == "char[4]")
        let message = Array("!load_pdptrs(vcpu, cr3)".utf8) + [0]
        var failed = le(1739, 2) + [0, 0] + le(1, 4) + le(UInt64(message.count) << 16 | 20, 4) + Array("abc\0".utf8)
        failed += le(0xFFFE, 2) + [0, 0] + message
        let fr = TraceRecord(format: g, bytes: failed)
        #expect(fr.string("msg") == "!load_pdptrs(vcpu, cr3)")
        #expect(fr.string("comm") == "abc")
        #expect(fr.integer("delta") == UInt64(bitPattern: -2))
    }

    @Test("malformed format text is an error that names the event")
    func malformed() {
        #expect(throws: TraceError.malformedFormat(event: "x:y", detail: "no ID line")) {
            try TracepointFormat.parse(
                "name: y\nformat:\n\tfield:int a;\toffset:0;\tsize:4;\tsigned:1;\n", event: "x:y")
        }
        #expect(throws: TraceError.self) {
            try TracepointFormat.parse("ID: 5\n\tfield:int a;\toffset:zero;\n", event: "x:y")
        }
        #expect(throws: TraceError.self) { try TracepointFormat.parse("", event: "x:y") }
    }
}

/// The host's KVM (no SVM) with a plain guest: the perf layer the tracepoint
/// stop source stands on, on kvm:kvm_cpuid. Needs root, /dev/kvm and tracefs
/// (mounted here when missing); in CI a missing one fails, elsewhere the test
/// is skipped with the reason.
func tracedKVM(sourceLocation: SourceLocation = #_sourceLocation) throws -> (KVM, Tracefs)? {
    let ci = ProcessInfo.processInfo.environment["CI"] != nil
    func missing(_ reason: String) throws -> (KVM, Tracefs)? {
        if ci {
            Issue.record("CI must provide this: \(reason)", sourceLocation: sourceLocation)
            return nil
        }
        try Test.cancel(Comment(rawValue: reason), sourceLocation: sourceLocation)
    }
    guard access("/dev/kvm", R_OK | W_OK) == 0 else { return try missing("/dev/kvm is not accessible") }
    guard geteuid() == 0 else {
        return try missing("perf SIGTRAP on another context's tracepoints and tracefs need root")
    }
    do {
        return (try KVM(), try Tracefs.locate())
    } catch let error as TraceError {
        return try missing(error.description)
    }
}

/// Real mode at 0x1000: `inc si; cpuid; jmp 0x1000` — SI counts the CPUIDs the guest began.
let cpuidLoop: [UInt8] = [0x46, 0x0F, 0xA2, 0xEB, 0xFB]

func realModeGuest(_ kvm: KVM, code: [UInt8]) throws -> (VirtualMachine, VCPU) {
    let vm = try kvm.createVM()
    try vm.addMemory(at: 0, size: 1 << 20)
    try vm.write(code, at: 0x1000)
    let vcpu = try vm.createVCPU()
    var sregs = try vcpu.specialRegisters()
    sregs.cs.base = 0
    sregs.cs.selector = 0
    try vcpu.setSpecialRegisters(sregs)
    var regs = GeneralRegisters()
    regs.rip = 0x1000
    try vcpu.setRegisters(regs)
    return (vm, vcpu)
}

@Suite("perf SIGTRAP on a KVM tracepoint (host KVM, plain guest)", .serialized)
struct SigtrapStopTests {
    @Test("each kvm_cpuid stops the vCPU exactly after that CPUID: one record, one count, no extra instruction")
    func exactStops() throws {
        guard let (kvm, tracefs) = try tracedKVM() else { return }
        let (vm, vcpu) = try realModeGuest(kvm, code: cpuidLoop)
        try PerfTracepoints.prepareCurrentThread()
        let events = try PerfTracepoints(
            [TracepointRequest("kvm", "kvm_cpuid", stops: true)],
            thread: PerfTracepoints.currentThreadID(), tracefs: tracefs)
        try events.enable()
        let signalsBefore = PerfTracepoints.signalsTaken
        for stop in 1...40 {
            let exit = try vcpu.run()
            #expect(exit == .interrupted, "stop \(stop): KVM_RUN returned \(exit.kvmName), not EINTR")
            let regs = try vcpu.registers()
            #expect(regs.rip == 0x1003, "stop \(stop): RIP \(String(regs.rip, radix: 16)), not just after CPUID")
            #expect(regs.rsi & 0xFFFF == UInt64(stop), "stop \(stop): the guest began \(regs.rsi & 0xFFFF) CPUIDs")
            #expect(try events.counts() == [UInt64(stop)])
            let records = events.drain()
            #expect(records.count == 1, "stop \(stop): \(records.count) records")
            if let record = records.first {
                #expect(record.format.event == "kvm:kvm_cpuid")
                #expect(record.integer("function") == 0, "CPUID leaf as the tracepoint recorded it")
            } else {
                Issue.record("stop \(stop): no kvm_cpuid record")
            }
        }
        #expect(PerfTracepoints.signalsTaken - signalsBefore >= 40)
        _ = vm
    }

    @Test("an event without a signal only samples: the vCPU runs on and the ring holds every firing in order")
    func sampleWithoutStopping() throws {
        guard let (kvm, tracefs) = try tracedKVM() else { return }
        // mov ax, 1; cpuid; mov ax, 0; cpuid; mov ax, 2; cpuid; hlt (no irqchip: HLT exits to us)
        let code: [UInt8] = [0xB8, 1, 0, 0x0F, 0xA2, 0xB8, 0, 0, 0x0F, 0xA2, 0xB8, 2, 0, 0x0F, 0xA2, 0xF4]
        let (vm, vcpu) = try realModeGuest(kvm, code: code)
        try PerfTracepoints.prepareCurrentThread()
        let events = try PerfTracepoints(
            [
                TracepointRequest("kvm", "kvm_cpuid", stops: false),
                TracepointRequest("kvm", "kvm_userspace_exit", stops: false),
            ],
            thread: PerfTracepoints.currentThreadID(), tracefs: tracefs)
        try events.enable()
        let exit = try vcpu.run()
        #expect(exit == .hlt)
        let counts = try events.counts()
        #expect(counts[0] == 3)
        #expect(counts[1] == 1, "one exit to userspace: the HLT")
        let leaves = events.drain().filter { $0.format.event == "kvm:kvm_cpuid" }.map { $0.integer("function") }
        #expect(leaves == [1, 0, 2])
        #expect(events.drain().isEmpty, "a drained ring is empty")
        _ = vm
    }

    @Test("a disabled event neither stops nor counts")
    func disabled() throws {
        guard let (kvm, tracefs) = try tracedKVM() else { return }
        let code: [UInt8] = [0x0F, 0xA2, 0x0F, 0xA2, 0xF4]
        let (vm, vcpu) = try realModeGuest(kvm, code: code)
        try PerfTracepoints.prepareCurrentThread()
        let events = try PerfTracepoints(
            [TracepointRequest("kvm", "kvm_cpuid", stops: true)],
            thread: PerfTracepoints.currentThreadID(), tracefs: tracefs)
        #expect(try vcpu.run() == .hlt)
        #expect(try events.counts() == [0])
        #expect(events.drain().isEmpty)
        _ = vm
    }

    @Test("a tracepoint the kernel does not have is named in the error")
    func missingEvent() throws {
        guard let (_, tracefs) = try tracedKVM() else { return }
        #expect(throws: TraceError.noSuchEvent("kvm:kvm_no_such_event")) {
            try PerfTracepoints(
                [TracepointRequest("kvm", "kvm_no_such_event", stops: true)], thread: 1, tracefs: tracefs)
        }
    }
}
