import KVMControl
import Testing

@testable import DebuggerEngine

/// The own VMM's PC pieces as values: fw_cfg, the Multiboot information, the port devices.
@Suite("Machine")
struct MachineTests {
    @Test(
        "fw_cfg: a selector write picks an item, data reads walk it little-endian, the unknown and the past-the-end read 0"
    )
    func firmwareConfig() {
        var f = FirmwareConfig(ramSize: 0x1_2345_6000, cpuCount: 3)
        f.select(FirmwareConfig.Key.cpuCount.rawValue)
        #expect([f.readByte(), f.readByte(), f.readByte()] == [3, 0, 0])
        f.select(FirmwareConfig.Key.ramSize.rawValue)
        #expect((0..<8).map { _ in f.readByte() } == [0x00, 0x60, 0x45, 0x23, 0x01, 0, 0, 0])
        f.select(FirmwareConfig.Key.signature.rawValue)
        #expect((0..<4).map { _ in f.readByte() } == Array("QEMU".utf8))
        f.select(0x1234)
        #expect(f.readByte() == 0)
    }

    @Test(
        "the devices: the fw_cfg ports, COM1's line status and output, all-ones from nobody's port, the SMM stub only in SMM"
    )
    func devices() {
        let d = Devices(ports: .standard, firmwareConfig: FirmwareConfig(ramSize: 1 << 27, cpuCount: 2))
        #expect(
            d.access(port: 0x510, direction: .out, size: 2, count: 1, data: [5, 0], inSMM: false).outcome == .handled)
        #expect(d.access(port: 0x511, direction: .in, size: 1, count: 2, data: [], inSMM: false).reply == [2, 0])
        #expect(d.access(port: 0x3FD, direction: .in, size: 1, count: 1, data: [], inSMM: false).reply == [0x60])
        _ = d.access(port: 0x3F8, direction: .out, size: 1, count: 2, data: Array("ok".utf8), inSMM: false)
        #expect(d.serialOutput == Array("ok".utf8))
        let nobody = d.access(port: 0x5555, direction: .in, size: 4, count: 1, data: [], inSMM: false)
        #expect(nobody.reply == [0xFF, 0xFF, 0xFF, 0xFF])
        #expect(nobody.outcome == .unclaimed(description: "IN port 0x5555, 4 bytes"))
        #expect(
            d.access(port: SMMStub.port, direction: .out, size: 1, count: 1, data: [0], inSMM: true).outcome
                == .smmEntered)
        if case .smmEntered = d.access(port: SMMStub.port, direction: .out, size: 1, count: 1, data: [0], inSMM: false)
            .outcome
        {
            Issue.record("the stub's port outside SMM is just a port")
        }
        #expect(
            d.access(port: 0xF4, direction: .out, size: 4, count: 1, data: [38, 0, 0, 0], inSMM: false).outcome
                == .guestExited(status: 38))
    }

    @Test("Multiboot information: flags, mem_upper, \"image ARGS\", a module after the image's end, the memory map")
    func multibootLayout() throws {
        let config = MachineConfig(
            memoryMiB: 64, arguments: "vmrun ioio", modules: [BootModule(path: "env", bytes: [1, 2, 3])])
        let pieces = try Multiboot.layout(config: config, imageName: "svm.flat", imageEnd: 0x40_1234)
        #expect(pieces.count == 2)
        let info = pieces[0]
        #expect(info.address == Multiboot.infoAddress)
        func u32(_ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(info.bytes[o + $1]) << (8 * UInt32($1)) } }
        func string(at address: UInt32) -> String {
            let o = Int(address - UInt32(Multiboot.infoAddress))
            return String(decoding: info.bytes[o...].prefix { $0 != 0 }, as: UTF8.self)
        }
        #expect(u32(0) == 1 | 4 | 8 | 64)
        #expect(u32(8) == (64 - 1) * 1024)
        #expect(string(at: u32(16)) == "svm.flat vmrun ioio")
        #expect(u32(20) == 1)
        let module = Int(u32(24) - UInt32(Multiboot.infoAddress))
        let start = (0..<4).reduce(UInt32(0)) { $0 | UInt32(info.bytes[module + $1]) << (8 * UInt32($1)) }
        #expect(start == 0x40_2000, "page-aligned after the image, as QEMU places modules")
        #expect(pieces[1].address == 0x40_2000 && pieces[1].bytes == [1, 2, 3])
        #expect(u32(44) == 48, "two memory map entries")
        #expect(throws: MachineError.moduleDoesNotFit(path: "env", size: 3, memoryMiB: 4)) {
            _ = try Multiboot.layout(
                config: MachineConfig(memoryMiB: 4, modules: config.modules), imageName: "x",
                imageEnd: 4 << 20)
        }
    }

    @Test("machine limits are clear errors: memory, vCPUs, SMP without the irqchip")
    func limits() {
        #expect(throws: MachineError.memoryOutOfRange(5000)) { try MachineConfig(memoryMiB: 5000).validate() }
        #expect(throws: MachineError.vcpuCountOutOfRange(0)) { try MachineConfig(vcpuCount: 0).validate() }
        #expect(throws: MachineError.smpNeedsIRQChip) { try MachineConfig(vcpuCount: 2, irqchip: false).validate() }
    }

    @Test("each vCPU's CPUID carries its APIC ID (leaf 1 EBX[31:24], leaves 0xB and 0x1F EDX)")
    func apicIDs() {
        let leaf1 = CPUIDEntry(function: 1, ebx: 0x0012_3456)
        #expect(leaf1.withAPICID(3).ebx == 0x0312_3456)
        #expect(CPUIDEntry(function: 0xB, edx: 0).withAPICID(2).edx == 2)
        #expect(CPUIDEntry(function: 7, ebx: 9).withAPICID(2) == CPUIDEntry(function: 7, ebx: 9))
    }
}
