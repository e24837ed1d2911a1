import Foundation
import Testing

@testable import ProcessControl

@Suite("QEMU's HMP and QMP outputs (7.2, captured on this machine)")
struct HMPParsingTests {
    @Test("info ramblock: every block, page size and length; 7.2 prints no HVA")
    func ramblockTable() throws {
        let blocks = try RAMBlock.parseTable(QEMU72.ramblock)
        #expect(
            blocks.map(\.name) == [
                "pc.ram", "0000:00:02.0/vga.vram", "/rom@etc/acpi/tables", "pc.bios", "pc.rom", "0000:00:02.0/vga.rom",
                "/rom@etc/table-loader", "/rom@etc/acpi/rsdp",
            ])
        #expect(
            blocks[0]
                == RAMBlock(
                    name: "pc.ram", pageSize: 4096, offset: 0, usedLength: 0x400_0000, maxLength: 0x400_0000,
                    hostAddress: nil))
        // A resizable block: used 128 KiB of at most 2 MiB.
        #expect(blocks[2].offset == 0x50c_0000 && blocks[2].usedLength == 0x2_0000 && blocks[2].maxLength == 0x20_0000)
        #expect(blocks[1].isBlock(of: "vga.vram") && !blocks[1].isBlock(of: "vram"))
    }

    @Test("info ramblock with the HVA and RO columns of later QEMUs (rows as ram_block_format prints them)")
    func ramblockWithHostAddress() throws {
        // Not captured here (7.2 has no such columns): spaced as the format "%24s %8s  %18s %18s %18s %18s %3s".
        let text = """
                          Block Name    PSize              Offset               Used              Total                HVA  RO
                              pc.ram    2 MiB  0x0000000000000000 0x0000000040000000 0x0000000040000000 0x00007f1c40000000  rw
                             pc.bios    4 KiB  0x0000000040000000 0x0000000000040000 0x0000000000040000 0x00007f1c8c200000  ro
            """
        let blocks = try RAMBlock.parseTable(text)
        #expect(blocks.map(\.hostAddress) == [0x7f1c_4000_0000, 0x7f1c_8c20_0000])
        #expect(blocks[0].pageSize == 2 << 20)
    }

    @Test("info ramblock: anything but the table is an error that quotes it")
    func ramblockGarbage() {
        #expect(throws: ProcessError.qmp("info ramblock: no table header in \"unknown command: 'info'\"")) {
            try RAMBlock.parseTable("unknown command: 'info'")
        }
    }

    @Test("info mtree -f: the \"memory\" view is found wherever QEMU numbers it")
    func flatViews() throws {
        let prelaunch = try FlatRange.parseFlatView(QEMU72.mtreePrelaunch, addressSpace: "memory")
        // View #2 under -S; view #0 in the memfd run.
        let memfd = try FlatRange.parseFlatView(QEMU72.mtreeMemfd, addressSpace: "memory")
        #expect(prelaunch.count == 9)
        #expect(prelaunch.filter { $0.kind == .ram } == memfd.filter { $0.kind == .ram })
        #expect(
            prelaunch[0]
                == FlatRange(
                    start: 0, size: 0xA0000, priority: 0, kind: .ram, regionName: "pc.ram", offsetInRegion: 0))
        #expect(
            prelaunch[1]
                == FlatRange(
                    start: 0xA0000, size: 0x20000, priority: 1, kind: .io, regionName: "vga-lowmem", offsetInRegion: 0))
        #expect(
            prelaunch[3]
                == FlatRange(
                    start: 0xE0000, size: 0x20000, priority: 0, kind: .rom, regionName: "pc.bios",
                    offsetInRegion: 0x20000))
        #expect(
            prelaunch[4]
                == FlatRange(
                    start: 0x100000, size: 0x3F0_0000, priority: 0, kind: .ram, regionName: "pc.ram",
                    offsetInRegion: 0x100000))
        #expect(prelaunch[7].kind == .io && prelaunch[7].priority == 4096 && prelaunch[7].regionName == "kvm-apic-msi")
        let io = try FlatRange.parseFlatView(QEMU72.mtreePrelaunch, addressSpace: "I/O")
        #expect(
            io.first == FlatRange(start: 0, size: 8, priority: 0, kind: .io, regionName: "dma-chan", offsetInRegion: 0))
        #expect(throws: ProcessError.qmp("info mtree -f: no flat view for address space \"nothing\"")) {
            try FlatRange.parseFlatView(QEMU72.mtreePrelaunch, addressSpace: "nothing")
        }
    }

    @Test("gpa2hva: the address and region, or QEMU's words for a GPA that is not RAM")
    func hostAddressAnswers() throws {
        #expect(
            try HostAddressAnswer.parse(QEMU72.gpa2hvaVRAM, command: "gpa2hva 0xfd000000")
                == HostAddressAnswer(regionName: "vga.vram", hostAddress: 0x7fac_da20_0000))
        // The same run as the memfd's maps line: 1 MiB into the mapping.
        #expect(
            try HostAddressAnswer.parse(QEMU72.gpa2hvaMemfd, command: "gpa2hva 0x100000")
                == HostAddressAnswer(regionName: "pc.ram", hostAddress: 0x7f5f_280f_f000))
        #expect(MemoryMapping.parseMaps(QEMU72.memfdMapping).first?.start == 0x7f5f_280f_f000 - 0x100000)
        #expect(throws: ProcessError.qmp("gpa2hva 0xa0000: Memory at address 0xa0000 is not RAM")) {
            try HostAddressAnswer.parse(QEMU72.gpa2hvaNotRAM, command: "gpa2hva 0xa0000")
        }
        #expect(throws: ProcessError.qmp("gpa2hva 0x10000000: No memory is mapped at address 0x10000000")) {
            try HostAddressAnswer.parse(QEMU72.gpa2hvaUnmapped, command: "gpa2hva 0x10000000")
        }
    }

    @Test("guest RAM from a booted machine's views: shadowed BIOS area and the VGA BAR are RAM too")
    func resolveBooted() throws {
        let flat = try FlatRange.parseFlatView(QEMU72.mtreeBooted, addressSpace: "memory")
        let blocks = try RAMBlock.parseTable(QEMU72.ramblock)
        let base: UInt64 = 0x7f00_0000_0000
        var asked: [UInt64] = []
        let ranges = try GuestRAMRange.resolve(flat: flat, blocks: blocks) { range in
            asked.append(range.start)
            return base + range.start
        }
        #expect(asked == [0, 0xC0000, 0xFD00_0000])
        #expect(
            ranges == [
                GuestRAMRange(
                    guestPhysicalAddress: 0, size: 0xA0000, hostAddress: base, blockName: "pc.ram", blockOffset: 0),
                GuestRAMRange(
                    guestPhysicalAddress: 0xC0000, size: 0x3F4_0000, hostAddress: base + 0xC0000, blockName: "pc.ram",
                    blockOffset: 0xC0000),
                GuestRAMRange(
                    guestPhysicalAddress: 0xFD00_0000, size: 0x100_0000, hostAddress: base + 0xFD00_0000,
                    blockName: "0000:00:02.0/vga.vram", blockOffset: 0),
            ])
    }

    @Test("a flat range past the end of its RAM block is refused")
    func rangePastBlock() {
        let flat = [
            FlatRange(start: 0, size: 0x800_0000, priority: 0, kind: .ram, regionName: "pc.ram", offsetInRegion: 0)
        ]
        let blocks = [
            RAMBlock(
                name: "pc.ram", pageSize: 4096, offset: 0, usedLength: 0x400_0000, maxLength: 0x400_0000,
                hostAddress: 0x1000)
        ]
        #expect(throws: ProcessError.self) {
            try GuestRAMRange.resolve(flat: flat, blocks: blocks) { _ in 0 }
        }
    }

    @Test("the pc/q35 convention: GPA == offset, the legacy hole left out, at most 2 GiB")
    func pcConvention() {
        let small = GuestRAMRange.pcConvention(hostAddress: 0x7000_0000_0000, size: 0x400_0000, blockName: "ram")
        #expect(
            small == [
                GuestRAMRange(
                    guestPhysicalAddress: 0, size: 0xA0000, hostAddress: 0x7000_0000_0000, blockName: "ram",
                    blockOffset: 0),
                GuestRAMRange(
                    guestPhysicalAddress: 0x100000, size: 0x3F0_0000, hostAddress: 0x7000_0010_0000, blockName: "ram",
                    blockOffset: 0x100000),
            ])
        let large = GuestRAMRange.pcConvention(hostAddress: 0, size: 8 << 30, blockName: "ram")
        #expect(large.last?.guestPhysicalEnd == 0x8000_0000)
        let tiny = GuestRAMRange.pcConvention(hostAddress: 0, size: 0x1000, blockName: "ram")
        #expect(tiny.map(\.size) == [0x1000])
    }

    @Test("query-status's run states by name, and any other as spelled")
    func runStates() {
        #expect(RunState("prelaunch") == .prelaunch)
        #expect(RunState("guest-panicked") == .guestPanicked)
        #expect(RunState("colo") == .other("colo"))
        #expect(RunState.finishMigrate.description == "finish-migrate")
        #expect(RunState.other("colo").description == "colo")
    }

    @Test("JSONValue keeps query-cpus-fast's answer as QEMU sent it")
    func jsonValue() throws {
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(QEMU72.queryCPUsFast.utf8))
        guard case let .array(cpus)? = value["return"] else {
            Issue.record("no array in \(value)")
            return
        }
        #expect(cpus.first?["thread-id"] == .integer(11386))
        #expect(cpus.first?["target"] == .string("x86_64"))
        #expect(
            try JSONDecoder().decode(JSONValue.self, from: Data("18446744073709551615".utf8)) == .unsignedInteger(.max))
        #expect(
            try JSONDecoder().decode(JSONValue.self, from: Data("[true, 1.5, null]".utf8))
                == .array([.bool(true), .double(1.5), .null]))
    }
}

@Suite("/proc formats")
struct ProcFormatTests {
    @Test("a thread's syscall file: QEMU's vCPU in KVM_RUN, a futex wait, running, not in a system call")
    func syscallStates() {
        // Captured from QEMU 7.2's threads: the vCPU halted in KVM_RUN on fd 11, then waiting under -S.
        let inRun = ThreadSyscallState(parsing: "16 0xb 0xae80 0x0 0x40 0x5563f13fc290 0x7fdca4003010 0x0 0x0\n")
        #expect(inRun?.kvmRunDescriptor == 11)
        let futex = ThreadSyscallState(
            parsing: "202 0x5563f1b1e7a8 0x0 0xffffffff 0x0 0x0 0x0 0x7fdcaf1fe668 0x7fdcafee7829\n")
        #expect(futex == .syscall(number: 202, arguments: [0x5563_f1b1_e7a8, 0, 0xffff_ffff, 0, 0, 0]))
        #expect(futex?.kvmRunDescriptor == nil)
        #expect(ThreadSyscallState(parsing: "running\n") == .running)
        #expect(ThreadSyscallState(parsing: "-1 0x7ffd5d1c0a48 0x7f3d8b0e2f0e\n") == .notInSyscall)
        #expect(ThreadSyscallState(parsing: "") == nil)
        // Another ioctl on a vCPU fd is not KVM_RUN (KVM_GET_REGS = 0x8090ae81).
        #expect(ThreadSyscallState(parsing: "16 0xb 0x8090ae81 0x0 0x0 0x0 0x0 0x0 0x0")?.kvmRunDescriptor == nil)
    }

    @Test("maps lines: the memfd backend's name keeps its spaces")
    func maps() {
        let text = """
            556008b9f000-556008fa6000 r--p 00000000 fe:00 16236551                   /usr/bin/qemu-system-x86_64
            7f94e3600000-7f94e3e00000 rw-p 00000000 00:00 0
            """ + "\n" + QEMU72.memfdMapping
        let mappings = MemoryMapping.parseMaps(text)
        #expect(mappings.count == 3)
        #expect(mappings[1].path == nil && mappings[1].isWritable && !mappings[1].isShared)
        #expect(
            mappings[2]
                == MemoryMapping(
                    start: 0x7f5f_27ff_f000, end: 0x7f5f_2bff_f000, isReadable: true, isWritable: true, isShared: true,
                    fileOffset: 0, path: "/memfd:memory-backend-memfd (deleted)"))
        #expect(mappings[2].size == 64 << 20)
    }

    @Test("CapEff: CAP_SYS_PTRACE is bit 19")
    func capabilities() {
        // This machine's root: every capability but CAP_SETPCAP... as captured.
        #expect(TracePermission.hasPtraceCapability(capEff: "000001fffeffffff"))
        #expect(TracePermission.hasPtraceCapability(capEff: "0000000000080000"))
        #expect(!TracePermission.hasPtraceCapability(capEff: "0000000000000000"))
        #expect(!TracePermission.hasPtraceCapability(capEff: "0000000000040000"))
    }
}

@Suite("QEMU command lines")
struct QEMUCommandLineTests {
    @Test("-qmp unix:PATH with or without options, -qmp-pretty and TCP left out")
    func qmpOption() {
        #expect(
            QEMUCommandLine.qmpSockets(in: ["-accel", "kvm", "-qmp", "unix:/tmp/d/q.sock,server=on,wait=off"])
                == [.path("/tmp/d/q.sock")])
        #expect(QEMUCommandLine.qmpSockets(in: ["--qmp", "unix:q.sock"]) == [.path("q.sock")])
        #expect(QEMUCommandLine.qmpSockets(in: ["-qmp", "unix:/a,,b=c,server,nowait"]) == [.path("/a,b=c")])
        #expect(
            QEMUCommandLine.qmpSockets(in: ["-qmp", "tcp:localhost:4444,server=on", "-qmp-pretty", "unix:/p"]) == [])
        // An option's value is never taken for an option.
        #expect(QEMUCommandLine.qmpSockets(in: ["-name", "-qmp", "-m", "64"]) == [])
    }

    @Test("-chardev socket + -mon mode=control, by path or by libvirt's inherited descriptor")
    func chardevMonitor() {
        let byPath = [
            "-chardev", "socket,id=mon0,path=/run/q/m.sock,server=on,wait=off", "-mon", "chardev=mon0,mode=control",
            "-chardev", "socket,id=hmp,path=/run/q/h.sock,server=on", "-mon", "chardev=hmp,mode=readline",
        ]
        #expect(QEMUCommandLine.qmpSockets(in: byPath) == [.path("/run/q/m.sock")])
        let libvirt = [
            "-chardev", "socket,id=charmonitor,fd=33,server=on,wait=off",
            "-mon", "chardev=charmonitor,id=monitor,mode=control",
        ]
        #expect(QEMUCommandLine.qmpSockets(in: libvirt) == [.inheritedDescriptor(33)])
        #expect(
            QEMUCommandLine.qmpSockets(in: [
                "-chardev", "backend=socket,id=m,path=/x", "-mon", "mode=control,chardev=m",
            ])
                == [.path("/x")])
        #expect(QEMUCommandLine.qmpSockets(in: ["-chardev", "pty,id=m", "-mon", "chardev=m,mode=control"]) == [])
    }
}
