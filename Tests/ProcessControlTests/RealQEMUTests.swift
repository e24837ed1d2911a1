import Foundation
import ProcessControl
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Against this host's qemu-system-x86_64 with -accel kvm: one QEMU per test,
/// killed at its end whatever happens. Serialized: two cores, one QEMU at a time.
@Suite("a real QEMU (-accel kvm)", .serialized, .enabled(if: RealQEMU.shouldRun, RealQEMU.skipReason))
struct RealQEMUTests {
    @Test("QMP: prelaunch under -S, running after cont, paused after stop; errors name the command")
    func statusAndCont() throws {
        let qemu = try RunningQEMU()
        defer { qemu.stop() }
        let qmp = try QMPClient(path: qemu.socketPath)
        #expect(qmp.greeting.major >= 7)
        #expect(try qmp.status() == VMStatus(isRunning: false, state: .prelaunch))
        try qmp.cont()
        #expect(try qmp.status() == VMStatus(isRunning: true, state: .running))
        try qmp.stop()
        #expect(try qmp.status() == VMStatus(isRunning: false, state: .paused))
        #expect(throws: ProcessError.qmp("nosuch: CommandNotFound: The command nosuch has not been found")) {
            try qmp.execute("nosuch")
        }
        let version = try qmp.execute(
            "human-monitor-command", arguments: JSONValue.object(["command-line": .string("info version")]))
        guard case let .string(text) = version else {
            Issue.record("info version answered \(version)")
            return
        }
        #expect(text.hasPrefix("\(qmp.greeting.major).\(qmp.greeting.minor)."))
    }

    @Test("/proc: KVM descriptors, the QMP socket from the command line, QMP's vCPU thread among the tasks")
    func procDiscovery() throws {
        let qemu = try RunningQEMU()
        defer { qemu.stop() }
        let process = try QEMUProcess(pid: qemu.pid)
        #expect(process.name.hasPrefix("qemu-system"))
        #expect(process.commandLine.contains("-accel"))
        let descriptors = try process.kvmDescriptors()
        #expect(descriptors.vm != nil)
        try #require(descriptors.vcpus.count == 1)
        let vcpu = descriptors.vcpus[0]
        #expect(vcpu.index == 0)
        let link = try FileManager.default.destinationOfSymbolicLink(
            atPath: "/proc/\(qemu.pid)/fd/\(vcpu.fileDescriptor)")
        #expect(link == "anon_inode:kvm-vcpu:0")
        #expect(process.qmpSocketPath() == qemu.socketPath)

        let qmp = try QMPClient(path: try #require(process.qmpSocketPath()))
        let threads = try qmp.vcpuThreads()
        try #require(threads.count == 1)
        #expect(threads[0].index == 0)
        #expect(try process.threadIDs().contains(threads[0].threadID))
        let thread = threads[0].threadID
        #expect(
            throws: ProcessError.unsuitable(
                "\(thread) is a thread of process \(qemu.pid) (\(process.name)), not a process: give \(qemu.pid)")
        ) {
            try QEMUProcess(pid: thread)
        }
        #expect(try process.tracer() == nil)
        try process.ensureNotTraced()
    }

    @Test("/proc cannot find a paused QEMU's vCPU thread, and says to use --qmp")
    func pausedVCPUNeedsQMP() throws {
        let qemu = try RunningQEMU()
        defer { qemu.stop() }
        let process = try QEMUProcess(pid: qemu.pid)
        #expect(try process.vcpuThreadsInKVMRun() == [])
        let error = #expect(throws: ProcessError.self) { try process.vcpuThread(index: 0, samples: 3) }
        guard case let .unsuitable(text)? = error else {
            Issue.record("expected .unsuitable, got \(String(describing: error))")
            return
        }
        #expect(text.contains("KVM_RUN on vCPU 0") && text.contains("--qmp PATH"))
        #expect(throws: ProcessError.unsuitable("\(process.label) has no vCPU 1: its vCPUs are 0")) {
            try process.vcpuThread(index: 1)
        }
        // RAM is anonymous without a memory backend: the fallback says what to do.
        let fallback = #expect(throws: ProcessError.self) { try process.fallbackGuestRAM() }
        #expect(fallback?.description.contains("memory-backend-memfd") == true)
    }

    @Test("a halted vCPU waits in KVM_RUN: /proc finds its thread, the same one QMP names")
    func haltedVCPUFromProc() throws {
        let directory = try TemporaryDirectory()
        let qemu = try RunningQEMU(["-bios", try RunningQEMU.haltingBIOS(in: directory.path)])
        defer { qemu.stop() }
        let qmp = try QMPClient(path: qemu.socketPath)
        try qmp.cont()
        let process = try QEMUProcess(pid: qemu.pid)
        // Up to 2 s for the first KVM_RUN; it halts at the reset vector's first instruction.
        let found = try process.vcpuThread(index: 0, samples: 200, interval: .milliseconds(10))
        #expect([found] == (try qmp.vcpuThreads()))
        // KVM's NX recovery worker shows the same ioctl on this kernel; it must not count.
        #expect(try process.vcpuThreadsInKVMRun() == [found])
    }

    @Test("guest RAM from QMP covers GPA 0 and 1 MiB–64 MiB; bytes written through it are what QEMU's xp reads")
    func guestRAMAndMemory() throws {
        let qemu = try RunningQEMU()
        defer { qemu.stop() }
        let qmp = try QMPClient(path: qemu.socketPath)
        let ram = try qmp.guestRAM()
        try #require(ram.count == 2)
        #expect(ram[0].guestPhysicalAddress == 0 && ram[0].size == 0xA0000 && ram[0].blockOffset == 0)
        #expect(ram[1].guestPhysicalAddress == 0x100000 && ram[1].guestPhysicalEnd == 64 << 20)
        #expect(ram.allSatisfy { $0.blockName == "pc.ram" })
        // One block: the high range sits 1 MiB after the low one in QEMU too.
        #expect(ram[1].hostAddress == ram[0].hostAddress + 0x100000)

        let memory = GuestMemory(pid: qemu.pid, ranges: ram)
        #expect(memory.hostAddress(of: 0x123456) == hostAddressFromQEMU(qmp, 0x123456))
        let pattern: [UInt8] = [0xDE, 0xAD, 0xBE, 0xEF]
        for address: UInt64 in [0x100000, 0x9FFFC, 0x3FF_FFFC, 0x7C00] {
            try memory.write(pattern, at: address)
            #expect(
                try qmp.humanMonitorCommand("xp /4xb 0x\(String(address, radix: 16))")
                    == "\(String(format: "%016lx", address)): 0xde 0xad 0xbe 0xef\n")
            #expect(try memory.read(at: address, count: 4) == pattern)
        }
        // A read of several MiB, over many pages.
        let big = try memory.read(at: 0x100000, count: 8 << 20)
        #expect(big.prefix(4) == pattern[...] && big.count == 8 << 20)

        // Out of RAM: nothing moves, the first address outside is named.
        #expect(throws: ProcessError.outsideGuestRAM(address: 0xA0000)) {
            try memory.write([1, 2, 3, 4, 5, 6, 7, 8], at: 0x9FFFC)
        }
        #expect(try qmp.humanMonitorCommand("xp /4xb 0x9fffc") == "000000000009fffc: 0xde 0xad 0xbe 0xef\n")
        #expect(throws: ProcessError.outsideGuestRAM(address: 0x400_0000)) { try memory.read(at: 0x3FF_FFFC, count: 8) }
        #expect(throws: ProcessError.outsideGuestRAM(address: 0xFFFF_FFF0)) {
            try memory.read(at: 0xFFFF_FFF0, count: 16)
        }
        #expect(throws: ProcessError.outsideGuestRAM(address: .max)) { try memory.read(at: .max, count: 2) }
    }

    @Test("memfd RAM: the /proc fallback places it where QMP does, and writes through it reach the guest")
    func memfdFallback() throws {
        let qemu = try RunningQEMU([
            "-object", "memory-backend-memfd,id=pc.ram,size=64M", "-machine", "memory-backend=pc.ram",
        ])
        defer { qemu.stop() }
        let process = try QEMUProcess(pid: qemu.pid)
        let fallback = try process.fallbackGuestRAM()
        let qmp = try QMPClient(path: qemu.socketPath)
        let exact = try qmp.guestRAM()
        #expect(fallback.map(\.guestPhysicalAddress) == exact.map(\.guestPhysicalAddress))
        #expect(fallback.map(\.size) == exact.map(\.size))
        #expect(fallback.map(\.hostAddress) == exact.map(\.hostAddress))
        #expect(fallback.first?.blockName.hasPrefix("/memfd:") == true)

        let memory = GuestMemory(pid: qemu.pid, ranges: fallback)
        try memory.write([0x4E, 0x45, 0x53, 0x54], at: 0x200000)
        #expect(try qmp.humanMonitorCommand("xp /4xb 0x200000") == "0000000000200000: 0x4e 0x45 0x53 0x54\n")
    }

    /// `gpa2hva`'s address, as QEMU computes it.
    private func hostAddressFromQEMU(_ qmp: QMPClient, _ address: UInt64) -> UInt64? {
        guard let text = try? qmp.humanMonitorCommand("gpa2hva 0x\(String(address, radix: 16))"),
            let value = text.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines)
        else { return nil }
        return UInt64(value.dropFirst(2), radix: 16)
    }
}
