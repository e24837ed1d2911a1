import DebuggerEngine
import Foundation
import KVMControl
import SVMModel
import Testing

/// A Multiboot L1: a 32-bit prologue at 1 MiB says hello on COM1, turns on
/// PSE paging and jumps into the demo's 32-bit L1 (which runs L2 on CPUID).
func multibootL1() -> (image: [UInt8], demo: DemoImage) {
    let demo = DemoImage()
    let target = UInt32(demo.address("l1_32_entry"))
    var code: [UInt8] = []
    // mov dx, 0x3f8; mov al, ch; out dx, al
    for ch in Array("MB\n".utf8) { code += [0x66, 0xBA, 0xF8, 0x03, 0xB0, ch, 0xEE] }
    code += [0xC7, 0x05, 0x00, 0x00, 0x01, 0x00, 0x83, 0x00, 0x00, 0x00]  // mov dword [0x10000], 0x83
    code += [0xB8, 0x00, 0x00, 0x01, 0x00, 0x0F, 0x22, 0xD8]  // mov eax, 0x10000; mov cr3, eax
    code += [0x0F, 0x20, 0xE0, 0x83, 0xC8, 0x10, 0x0F, 0x22, 0xE0]  // cr4 |= PSE
    code += [0x0F, 0x20, 0xC0, 0x0D, 0x00, 0x00, 0x00, 0x80, 0x0F, 0x22, 0xC0]  // cr0 |= PG
    code += [0xBC, 0x00, 0x80, 0x00, 0x00]  // mov esp, 0x8000
    // jmp l1_32_entry
    code += [0xB8] + (0..<4).map { UInt8(truncatingIfNeeded: target >> (8 * UInt32($0))) } + [0xFF, 0xE0]
    let elf = MultibootELF(
        segments: [
            .init(address: 0x10_0000, bytes: code),
            .init(address: UInt32(DemoImage.loadAddress), bytes: demo.bytes),
        ],
        symbols: [.init(name: "l1_vmrun_site", address: UInt32(demo.address("vmrun32")))],
        entry: 0x10_0000
    ).encoded()
    return (elf, demo)
}

@Suite("user images: Multiboot ELF and flat binaries")
struct ImageTests {
    @Test("a Multiboot ELF parses: segments, entry, symbols, VMRUN sites from symbols, else a scan")
    func parse() throws {
        let (elf, demo) = multibootL1()
        let image = try GuestImage.multiboot(elf)
        #expect(image.entry == 0x10_0000)
        #expect(image.segments.map(\.physicalAddress) == [0x10_0000, DemoImage.loadAddress])
        #expect(image.symbols["l1_vmrun_site"] == demo.address("vmrun32"))
        #expect(image.vmrunSites() == [demo.address("vmrun32")])
        // Without the symbol, every VMRUN of the demo's bytes is found by the scan, in address order.
        var plain = MultibootELF(
            segments: [.init(address: UInt32(DemoImage.loadAddress), bytes: demo.bytes)], entry: 0x1000)
        #expect(
            try GuestImage.multiboot(plain.encoded()).vmrunSites()
                == [
                    demo.address("vmrun"), demo.address("events_vmrun"), demo.address("timer_vmrun"),
                    demo.address("vmrun32"),
                ])
        plain.hasMultibootHeader = false
        #expect(throws: ImageError.noMultibootHeader) { try GuestImage.multiboot(plain.encoded()) }
    }

    @Test("malformed images get a clear error, never a crash")
    func malformed() throws {
        #expect(throws: ImageError.empty) { try GuestImage.multiboot([]) }
        #expect(throws: ImageError.notELF32) {
            try GuestImage.multiboot(Array("not an elf at all".utf8) + [UInt8](repeating: 0, count: 60))
        }
        let (elf, _) = multibootL1()
        for cut in [60, 100, 200, 4096, elf.count - 10] {
            do { _ = try GuestImage.multiboot(Array(elf.prefix(cut))) } catch is ImageError {}
        }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var bad = elf
            for _ in 0..<8 { bad[Int.random(in: 0..<bad.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            do { _ = try GuestImage.multiboot(bad) } catch is ImageError {}
        }
    }

    @Test("a flat binary runs: COM1 output is collected, a write to port 0xF4 ends the run with its code")
    func flatBinaryExits() throws {
        try requireKVM()
        let code: [UInt8] = [
            0x66, 0xBA, 0xF8, 0x03, 0xB0, 0x68, 0xEE, 0xB0, 0x69, 0xEE,  // "hi" to COM1
            0xB0, 0x2A, 0xE6, 0xF4, 0xF4,
        ]  // out 0xf4, 42; hlt
        let target = try OwnVMTarget.image(kvm: KVM(), image: GuestImage.flat(code, loadAddress: 0x20_0000, entry: nil))
        let engine = try Engine(ownVM: target)
        let stop = try engine.next()
        #expect(stop.kind == .exited && stop.exitStatus == 42, "\(stop.reason)")
        #expect(String(decoding: engine.serialOutput, as: UTF8.self) == "hi")
    }

}

@Suite("a user's Multiboot L1 (real nested KVM)", .enabled(if: NestedSVM.available, NestedSVM.reason))
struct MultibootNestedTests {
    @Test(
        "a Multiboot L1 of the user's runs through the engine like the demo, with either stop source",
        arguments: StopSourceKind.allCases)
    func multibootRuns(stops: StopSourceKind) throws {
        let (elf, demo) = multibootL1()
        let target = try OwnVMTarget.image(kvm: KVM(), image: GuestImage.multiboot(elf))
        let engine = try Engine(ownVM: target, stops: stops)
        for i in 0..<20 {
            let s = try engine.next()
            #expect(s.kind == .nestedExit && s.exit?.name == "CPUID", "exit \(i): \(s.reason)")
            #expect(s.vmcb12?[integer: .saveRIP] == demo.address("l2_32_cpuid"))
            #expect(s.synced.filter { $0.sync == .unexpected }.isEmpty)
            if stops == .tracepoint {
                #expect(
                    s.kvm?.injectedExit?.code == 0x72 && s.kvmDisagreements.isEmpty, "exit \(i): KVM's event and vmcb12"
                )
            }
        }
        #expect(String(decoding: engine.serialOutput, as: UTF8.self) == "MB\n")
        let info = try target.vm.readInteger(UInt32.self, at: Multiboot.infoAddress)
        #expect(info == 1 | 4 | 64, "Multiboot info flags: memory, command line, memory map")
    }
}

@Suite("live watch's tracepoint parser")
struct TraceParserTests {
    @Test("kvm_nested_vmexit_inject lines count by exit code, names with a space included")
    func parse() {
        let text = """
             nestdbg-91 [000] ..... 7.26: kvm_nested_vmexit_inject: reason: io ext_inf1: 0x0000000000800090 ext_inf2: 0x00000000000014f6 ext_int: 0x00000000 ext_int_err: 0x00000000
             nestdbg-91 [000] ..... 7.27: kvm_nested_vmexit_inject: reason: UD excp ext_inf1: 0x0000000000000000 ext_inf2: 0x0000000000000000 ext_int: 0x00000000 ext_int_err: 0x00000000
             nestdbg-91 [000] ..... 7.28: kvm_nested_vmexit_inject: reason: io ext_inf1: 0x0000000000600011 ext_inf2: 0x00000000000014f4 ext_int: 0x00000000 ext_int_err: 0x00000000
             nestdbg-91 [000] ..... 7.29: kvm_nested_vmexit_inject: reason: hypercall ext_inf1: 0x0 ext_inf2: 0x0 ext_int: 0x00000000 ext_int_err: 0x00000000
            # a comment line without an event

            """
        #expect(NestedExitTrace.count(lines: text) == [0x7B: 2, 0x46: 1, 0x81: 1])
    }
}
