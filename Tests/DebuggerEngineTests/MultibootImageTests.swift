import DebuggerEngine
import Foundation
import KVMControl
import SVMModel
import Testing

/// Whether `bytes` hold a VMRUN (0F 01 D8) anywhere.
private func holdsVMRUN(_ bytes: [UInt8]) -> Bool {
    bytes.count >= 3
        && (0..<(bytes.count - 2)).contains { bytes[$0] == 0x0F && bytes[$0 + 1] == 0x01 && bytes[$0 + 2] == 0xD8 }
}

/// The quad at `offset`.
private func quad(_ bytes: [UInt8], at offset: Int) -> UInt64 {
    (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
}

/// An L1 of one HLT: what the prologue leaves is there to read at its exit.
private struct HaltL1: BuiltInL1 {
    static let imageName = "halt"
    static let loadAddress: UInt64 = 0x1000
    static let memoryEnd: UInt64 = 0x80000
    let bytes: [UInt8] = [0xF4]
    let symbols: [String: UInt64] = ["l1_entry": loadAddress]
}

@Suite("built-in L1s as Multiboot ELF files (no KVM)")
struct MultibootImageTests {
    @Test(
        "the selfcheck file: one segment at 1 MiB, entered there, a valid header, the L1's symbols where they run, no VMRUN"
    )
    func selfCheckFile() throws {
        let l1 = SelfCheckImage()
        let file = try MultibootImage.selfCheck().encoded()
        let image = try GuestImage.multiboot(file)
        #expect(image.isMultiboot)
        #expect(image.entry == 0x10_0000 && image.symbols["multiboot_entry"] == image.entry)
        #expect(image.segments.map(\.physicalAddress) == [0x10_0000])
        let segment = try #require(image.segments.first)
        #expect(Array(segment.bytes.suffix(l1.bytes.count)) == l1.bytes, "the L1 last in the segment, as assembled")
        for (name, address) in l1.symbols {
            #expect(image.symbols[name] == address, "\(name) where it runs")
        }
        // QEMU looks for the header (magic, flags, checksum) in the first 8192 - 48 bytes.
        let magic = try #require(
            stride(from: 0, to: 8192 - 48, by: 4).first { quad(file, at: $0) & 0xFFFF_FFFF == 0x1BAD_B002 })
        let flags = UInt32(truncatingIfNeeded: quad(file, at: magic + 4))
        let checksum = UInt32(truncatingIfNeeded: quad(file, at: magic + 8))
        #expect(flags == 0 && 0x1BAD_B002 &+ flags &+ checksum == 0)
        #expect(!holdsVMRUN(file), "0F 01 D8 in the file")
        #expect(image.vmrunSites() == [])
        // One file for every run: the symbols in a fixed order.
        #expect(try MultibootImage.selfCheck().encoded() == file)
    }

    @Test("the iteration limit is a quad in the image: 40 as assembled, set by the writer, refused outside its range")
    func iterationLimit() throws {
        let l1 = SelfCheckImage()
        let offset = Int(l1.address("iteration_limit") - SelfCheckImage.loadAddress)
        #expect(quad(l1.bytes, at: offset) == UInt64(SelfCheckImage.iterations))
        let patched = try l1.bytes(iterations: 5000)
        #expect(quad(patched, at: offset) == 5000)
        #expect(
            Array(patched[..<offset]) == Array(l1.bytes[..<offset]) && patched.count == l1.bytes.count,
            "only the quad changes")
        let segment = try #require(
            GuestImage.multiboot(MultibootImage.selfCheck(iterations: 5000).encoded()).segments.first)
        #expect(Array(segment.bytes.suffix(patched.count)) == patched)
        // The range's top keeps 0F 01 D8 out: the first limit that spells it is beyond it.
        #expect(SelfCheckImage.iterationRange.upperBound < 0xD8_010F)
        #expect(!holdsVMRUN(try l1.bytes(iterations: SelfCheckImage.iterationRange.upperBound)))
        for bad in [0, -1, SelfCheckImage.iterationRange.upperBound + 1] {
            #expect(throws: ImageWriteError.iterationsOutOfRange(bad, allowed: SelfCheckImage.iterationRange)) {
                try MultibootImage.selfCheck(iterations: bad)
            }
        }
    }

    @Test("the demo file: its symbols where they run, entered through the prologue")
    func demoFile() throws {
        let l1 = DemoImage()
        let image = try GuestImage.multiboot(MultibootImage.demo().encoded())
        #expect(image.entry == 0x10_0000 && image.segments.count == 1)
        #expect(image.symbols["l1_entry"] == l1.address("l1_entry") && image.symbols["vmrun"] == l1.address("vmrun"))
    }

    @Test("an image that would reach the stack is refused")
    func tooLarge() {
        struct Big: BuiltInL1 {
            static let imageName = "big"
            static let loadAddress: UInt64 = 0x1000
            static let memoryEnd: UInt64 = 0x80000
            let bytes = [UInt8](repeating: 0x90, count: 0x7000)
            let symbols: [String: UInt64] = ["l1_entry": loadAddress]
        }
        #expect(throws: ImageWriteError.payloadTooLarge(name: "big", end: 0x8000, limit: 0x7000)) {
            try MultibootImage.file(Big(), bytes: Big().bytes)
        }
    }
}

@Suite("the Multiboot prologue on KVM")
struct MultibootPrologueTests {
    @Test("it starts the L1 in the own VM's long-mode state, the L1's memory zeroed whatever a loader left there")
    func startsLikeTheOwnVM() throws {
        try requireKVM()
        let kvm = try KVM()
        let l1 = HaltL1()
        let image = try GuestImage.multiboot(MultibootImage.file(l1, bytes: l1.bytes).encoded())
        let target = try OwnVMTarget.image(kvm: kvm, image: image)
        // What a firmware may leave below the L1's memory end (nestdbg's own loader left its Multiboot information).
        try target.vm.write([UInt8](repeating: 0xA5, count: 0x7_0000), at: 0x1_0000)
        try target.vm.write([UInt8](repeating: 0x5A, count: 0x100), at: 0x7F00)
        var exits: [VCPUExit] = []
        while exits.count < 10 {
            let exit = try target.run()
            if case .interrupted = exit { continue }
            exits.append(exit)
            if case .hlt = exit { break }
        }
        guard case .hlt? = exits.last else {
            Issue.record("the payload's HLT did not come: \(exits)")
            return
        }
        let entry = l1.address("l1_entry")
        let reset = try kvm.createVM().createVCPU().specialRegisters()
        var (sregs, regs) = OwnVMTarget.longModeStart(from: reset, entry: entry)
        regs.rip = entry + 1
        let actualSregs = try target.specialRegisters()
        // Its own boot tables: identity 2 MiB too, elsewhere (the prologue's pages).
        #expect(try target.translate(0x1F_F000) == 0x1F_F000)
        sregs.cr3 = actualSregs.cr3
        #expect(actualSregs == sregs)
        #expect(try target.generalRegisters() == regs)
        let low = try target.vm.read(at: 0, count: Int(HaltL1.memoryEnd))
        var expected = [UInt8](repeating: 0, count: low.count)
        expected[Int(HaltL1.loadAddress)] = 0xF4
        // The first byte that differs, not 512 KiB of them in the message.
        let differing = zip(low, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(
            differing == nil, "0x\(String(differing ?? 0, radix: 16)) is 0x\(String(low[differing ?? 0], radix: 16))")
    }
}

/// What the engine reports at one stop, for comparing two runs stop for stop.
private struct StopRecord: Equatable, CustomStringConvertible {
    let kind: StopKind
    let exitCode: UInt64?
    let exitInfo1: UInt64?
    let exitInfo2: UInt64?
    let l2RIP: UInt64?
    let status: Int32?

    init(_ stop: Stop) {
        kind = stop.kind
        exitCode = stop.kind == .nestedExit ? stop.exit?.code : nil
        exitInfo1 = stop.kind == .nestedExit ? stop.vmcb12?[integer: .exitInfo1] : nil
        exitInfo2 = stop.kind == .nestedExit ? stop.vmcb12?[integer: .exitInfo2] : nil
        l2RIP = stop.kind == .nestedExit ? stop.vmcb12?[integer: .saveRIP] : stop.l2?[.rip]
        status = stop.exitStatus
    }

    var description: String {
        func hex(_ v: UInt64?) -> String { v.map { "0x" + String($0, radix: 16) } ?? "-" }
        return
            "\(kind.rawValue) \(hex(exitCode)) \(hex(exitInfo1)) \(hex(exitInfo2)) rip \(hex(l2RIP)) \(status.map(String.init) ?? "")"
    }
}

@Suite(
    "the selfcheck Multiboot file on real nested KVM", .serialized, .enabled(if: NestedSVM.available, NestedSVM.reason))
struct MultibootSelfCheckNestedTests {
    /// Every stop to the end, and L1's registers at the first nested exit.
    private func run(_ target: OwnVMTarget) throws -> (stops: [StopRecord], l1: (GeneralRegisters, SpecialRegisters)?) {
        let engine = try Engine(ownVM: target, stops: .tracepoint)
        var stops: [StopRecord] = []
        var l1: (GeneralRegisters, SpecialRegisters)?
        for _ in 0..<1000 {
            let stop = try engine.next()
            stops.append(StopRecord(stop))
            if stop.kind == .nestedExit, l1 == nil {
                l1 = (try target.generalRegisters(), try target.specialRegisters())
            }
            if stop.kind == .exited || stop.kind == .fault { break }
        }
        return (stops, l1)
    }

    @Test(
        "written by write-image and loaded by --image, it stops exactly where the built-in selfcheck stops, and passes")
    func sameStopsAsBuiltIn() throws {
        let file = try MultibootImage.selfCheck().encoded()
        let fromFile = try run(OwnVMTarget.image(kvm: KVM(), image: GuestImage.multiboot(file)))
        let builtIn = try run(OwnVMTarget.selfCheck(kvm: KVM()))
        #expect(builtIn.stops.filter { $0.kind == .nestedExit }.count == SelfCheckImage.nestedExitsPerRun)
        #expect(builtIn.stops.last?.kind == .exited && builtIn.stops.last?.status == SelfCheckImage.passedStatus)
        #expect(
            fromFile.stops.last?.kind == .exited && fromFile.stops.last?.status == SelfCheckImage.passedStatus,
            "\(fromFile.stops.last?.description ?? "no stop")")
        #expect(fromFile.stops.count == builtIn.stops.count)
        if let i = zip(fromFile.stops, builtIn.stops).enumerated().first(where: { $0.element.0 != $0.element.1 })?
            .offset
        {
            Issue.record("stop \(i): from the file \(fromFile.stops[i]), built in \(builtIn.stops[i])")
        }
        // What L1 can see of its own state at the first nested exit: the same (its page tables are its own by then).
        let a = try #require(fromFile.l1)
        let b = try #require(builtIn.l1)
        #expect(a.0 == b.0, "L1's GPRs")
        #expect(a.1 == b.1, "L1's special registers")
    }
}
