import DebuggerEngine
import Foundation
import KVMControl
import SVMModel
import Testing

/// The bytes each L2 instruction of the selfcheck image must assemble to, by symbol.
private let l2InstructionBytes: [String: [UInt8]] = [
    "l2_passthrough": [0xE6, 0xE9], "l2_cpuid0": [0x0F, 0xA2], "l2_cpuid1": [0x0F, 0xA2], "l2_in": [0xE4, 0x80],
    "l2_out": [0xE6, 0x80], "l2_rdmsr": [0x0F, 0x32], "l2_ud": [0x0F, 0x0B], "l2_hlt": [0xF4],
    "l2_vmmcall": [0x0F, 0x01, 0xD9],
]

@Suite("the selfcheck L1 image (no KVM)")
struct SelfCheckImageTests {
    let image = SelfCheckImage()

    @Test("the image holds no VMRUN: no 0F 01 D8 bytes, nothing for symbol lookup or the scan to find")
    func noVMRUNInImage() throws {
        let bytes = image.bytes
        #expect(!bytes.isEmpty)
        #expect(
            !(0..<(bytes.count - 2)).contains { bytes[$0] == 0x0F && bytes[$0 + 1] == 0x01 && bytes[$0 + 2] == 0xD8 })
        let load = SelfCheckImage.loadAddress
        #expect(try GuestImage.flat(bytes, loadAddress: load, entry: nil).vmrunSites() == [], "the scan")
        // As a Multiboot ELF with every symbol: the lookup by name finds nothing either.
        let elf = MultibootELF(
            segments: [.init(address: UInt32(load), bytes: bytes)],
            symbols: image.symbols.map { .init(name: $0.key, address: UInt32($0.value)) }
                + [.init(name: "vmrun", address: UInt32(load))],
            entry: UInt32(image.address("l1_entry"))
        ).encoded()
        #expect(try GuestImage.multiboot(elf).vmrunSites() == [], "symbols and the scan")
    }

    @Test("the symbols resolve inside the image, onto the L2 instructions the exit data names")
    func symbolsResolve() {
        let load = SelfCheckImage.loadAddress
        #expect(image.address("l1_entry") == load)
        #expect(!image.symbols.keys.contains { $0.lowercased().contains("vmrun") })
        let named = SelfCheckImage.l2Program.flatMap { [$0.symbol] + $0.l0HandledBefore.map(\.symbol) }
        #expect(Set(named) == Set(l2InstructionBytes.keys), "every L2 instruction is in the exit data")
        for (symbol, expected) in l2InstructionBytes {
            let offset = Int(image.address(symbol) - load)
            #expect(offset >= 0 && offset + expected.count <= image.bytes.count, "\(symbol) inside the image")
            #expect(Array(image.bytes[offset..<(offset + expected.count)]) == expected, "\(symbol)")
        }
        #expect(image.address("l1_panic") > load && image.address("l1_panic") < image.address("l2_entry"))
    }

    @Test("the expected exits: six reach L1 per iteration, 240 a run; CPUID and the passthrough stay in L0")
    func expectedExits() {
        #expect(SelfCheckImage.l2Program.map(\.exitCode) == [0x7B, 0x7B, 0x7C, 0x46, 0x78, 0x81])
        #expect(SelfCheckImage.nestedExitsPerRun == 240)
        #expect(SelfCheckImage.expectedExitLog.count == SelfCheckImage.nestedExitsPerRun)
        #expect(SelfCheckImage.expectedExitLog.count <= SelfCheckImage.exitLogCapacity)
        #expect(SelfCheckImage.l0HandledPerRun == [0x72: 80, 0x7B: 40])
        #expect(
            StopSourceError.noVMRUNSite(target: "selfcheck", reason: "its VMRUN is generated at run time").description
                == "no VMRUN site known for selfcheck: its VMRUN is generated at run time; use --stops tracepoint")
    }
}

/// How a free run of the selfcheck target ended.
struct SelfCheckRun {
    var status: Int32?
    var passthroughs = 0
}

/// Runs the selfcheck target with no stop source (nestdbg only emulates its
/// ports) until L1 ends the run. `atPassthrough` gets each of L2's writes to
/// the passthrough port, numbered from 1: the vCPU is stopped in L2 there.
func runSelfCheckFree(_ target: OwnVMTarget, atPassthrough: (Int) throws -> Void = { _ in }) throws -> SelfCheckRun {
    var run = SelfCheckRun()
    // Bounded: a run takes about 300 KVM exits.
    for _ in 0..<20_000 {
        let exit = try target.run()
        switch exit {
        case let .io(port, .out, _, _, _) where port == SelfCheckImage.passthroughPort:
            run.passthroughs += 1
            try atPassthrough(run.passthroughs)
        case .io:
            switch try target.handleIO(exit) {
            case .handled: continue
            case let .guestExited(status):
                run.status = status
                return run
            case let .l1ReportedUnhandledExit(code):
                Issue.record("L1 got an exit it does not expect: \(SVMExit.name(of: code) ?? String(code, radix: 16))")
                return run
            case let .unclaimed(description):
                Issue.record("unexpected port access: \(description)")
                return run
            case .smmEntered:
                Issue.record("unexpected SMI")
                return run
            }
        case .interrupted: continue
        default:
            Issue.record("unexpected KVM exit \(exit.kvmName): \(exit)")
            return run
        }
    }
    Issue.record("the selfcheck L1 did not end its run")
    return run
}

@Suite("the selfcheck L1 on real nested KVM", .serialized, .enabled(if: NestedSVM.available, NestedSVM.reason))
struct SelfCheckNestedTests {
    func qword(_ target: OwnVMTarget, _ address: UInt64) throws -> UInt64 {
        try target.vm.readInteger(UInt64.self, at: address)
    }

    @Test("runs free to its end: status 0, every expected exit in order, the code unchanged at every check")
    func runsToTheEnd() throws {
        let target = try OwnVMTarget.selfCheck(kvm: KVM())
        let run = try runSelfCheckFree(target)
        #expect(run.status == SelfCheckImage.passedStatus)
        #expect(run.passthroughs == SelfCheckImage.iterations)
        #expect(try qword(target, SelfCheckImage.exitCounter) == UInt64(SelfCheckImage.nestedExitsPerRun))
        #expect(try qword(target, SelfCheckImage.iterationCounter) == UInt64(SelfCheckImage.iterations))
        #expect(try qword(target, SelfCheckImage.checkCounter) == UInt64(SelfCheckImage.checksPerRun))
        let reference = try qword(target, SelfCheckImage.referenceChecksum)
        #expect(reference != 0)
        #expect(try qword(target, SelfCheckImage.lastChecksum) == reference)
        let log = try target.vm.read(at: SelfCheckImage.exitLog, count: 4 * SelfCheckImage.nestedExitsPerRun)
        let codes = stride(from: 0, to: log.count, by: 4).map { i in
            (0..<4).reduce(UInt32(0)) { $0 | UInt32(log[i + $1]) << (8 * $1) }
        }
        #expect(codes == SelfCheckImage.expectedExitLog, "the exit log")

        // The VMRUN lives only at run time, at a linear address that is not its physical one.
        #expect(try target.vm.read(at: SelfCheckImage.stubPhysical, count: 4) == [0x0F, 0x01, 0xD8, 0xC3])
        #expect(try target.translate(SelfCheckImage.stubLinear) == SelfCheckImage.stubPhysical)

        // vmcb12 asks for exactly what the exit data says, and not for what L0 keeps.
        let vmcb = try VMCB(bytes: target.vm.read(at: SelfCheckImage.vmcb12, count: 4096))
        func isSet(_ word: VMCBField, _ bit: Int) -> Bool { vmcb[integer: word] >> UInt64(bit) & 1 == 1 }
        for exit in SelfCheckImage.l2Program {
            #expect(isSet(exit.intercept.control.word, exit.intercept.control.bit), "\(exit.symbol): \(exit.intercept)")
            for l0 in exit.l0HandledBefore {
                if case let .notIntercepted(word, bit) = l0.reason {
                    #expect(!isSet(word, bit), "\(l0.symbol): \(l0.reason)")
                }
            }
        }
        #expect(isSet(.intercepts4, 0), "VMRUN")
        #expect(vmcb[integer: .asid] != 0)
        // The IOPM and the MSRPM hold one bit each: the intercepted port, the intercepted MSR's read.
        let iopm = try target.vm.read(at: SelfCheckImage.iopm, count: 0x3000)
        let msrpm = try target.vm.read(at: SelfCheckImage.msrpm, count: 0x2000)
        func setBits(_ map: [UInt8]) -> [Int] {
            map.indices.flatMap { i in (0..<8).filter { map[i] >> $0 & 1 == 1 }.map { i * 8 + $0 } }
        }
        var ports: [Int] = []
        var msrBits: [Int] = []
        for exit in SelfCheckImage.l2Program {
            switch exit.intercept {
            case let .ioPort(port, _): ports.append(Int(port))
            case let .msr(msr, isWrite):
                #expect(msr >= 0xC000_0000 && msr <= 0xC000_1FFF, "the MSRPM's second range")
                msrBits.append(0x800 * 8 + Int(msr - 0xC000_0000) * 2 + (isWrite ? 1 : 0))
            default: break
            }
        }
        let passthrough = SelfCheckImage.l2Program.flatMap(\.l0HandledBefore).compactMap { l0 -> Int? in
            if case let .portNotInIOPM(port) = l0.reason { return Int(port) } else { return nil }
        }
        #expect(setBits(iopm) == Array(Set(ports)).sorted())
        #expect(!passthrough.isEmpty && passthrough.allSatisfy { !setBits(iopm).contains($0) })
        #expect(setBits(msrpm) == msrBits)
    }

    @Test("the patch stop source cannot run it: one clear line instead of a run without stops")
    func patchSourceRefuses() throws {
        let target = try OwnVMTarget.selfCheck(kvm: KVM())
        #expect(target.vmrunSites.isEmpty)
        #expect(throws: StopSourceError.noVMRUNSite(target: "selfcheck", reason: "its VMRUN is generated at run time"))
        {
            try Engine(ownVM: target)
        }
    }

    /// Where the tamper test changes one byte: code that never runs, in the
    /// image or in the stub page, so only the checksum can notice.
    enum TamperSite: String, CaseIterable { case imageCode, stubPage }

    @Test(
        "a byte of L1's code changed mid-run ends the run at the next check with the tampered status",
        arguments: TamperSite.allCases)
    func detectsTampering(site: TamperSite) throws {
        let target = try OwnVMTarget.selfCheck(kvm: KVM())
        let address = site == .imageCode ? SelfCheckImage().address("l1_panic") : SelfCheckImage.stubPhysical + 0x800
        let at = 3
        let run = try runSelfCheckFree(target) { passthrough in
            guard passthrough == at else { return }
            let byte = try target.vm.read(at: address, count: 1)[0]
            try target.vm.write([byte ^ 0xFF], at: address)
        }
        #expect(run.status == SelfCheckImage.tamperedStatus)
        #expect(run.passthroughs == at)
        // The iterations before, then the first exit after the change (the next check precedes the next VMRUN).
        let exitsBefore = (at - 1) * SelfCheckImage.l2Program.count
        #expect(try qword(target, SelfCheckImage.exitCounter) == UInt64(exitsBefore + 1))
        #expect(try qword(target, SelfCheckImage.checkCounter) == UInt64(exitsBefore + 2))
        #expect(try qword(target, SelfCheckImage.lastChecksum) != qword(target, SelfCheckImage.referenceChecksum))
    }
}
