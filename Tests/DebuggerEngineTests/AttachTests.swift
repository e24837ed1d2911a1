import DebuggerEngine
import Foundation
import KernelTrace
import KVMControl
import ProcessControl
import Testing

/// A real QEMU (`-accel kvm`) with a plain guest, on the host's KVM: the
/// attach machinery (ptrace, ioctls run in QEMU's vCPU thread, a tracepoint's
/// SIGTRAP stopping another process's vCPU, release) without nested SVM.
/// Needs root, /dev/kvm, tracefs and qemu-system-x86_64; in CI a missing one
/// fails, elsewhere the test is skipped with the reason.
final class PlainQEMU {
    let process = Process()
    let directory: URL
    let qmpPath: String

    /// A Multiboot (a.out kludge) guest at 1 MiB: `iterations` CPUIDs (ESI
    /// counts down), then 21 to isa-debug-exit: QEMU exits with 43.
    static func cpuidLoopImage(iterations: UInt32) -> [UInt8] {
        func le(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }
        let magic: UInt32 = 0x1BAD_B002, flags: UInt32 = 1 << 16
        var image = le(magic) + le(flags) + le(0 &- magic &- flags)
        image += le(0x10_0000) + le(0x10_0000) + le(0) + le(0) + le(0x10_0020)   // header, load, load_end, bss_end, entry
        image += [UInt8](repeating: 0, count: 0x20 - image.count)
        image += [0xBE] + le(iterations)          // mov esi, iterations
        image += [0x31, 0xC0, 0x0F, 0xA2]         // loop: xor eax, eax; cpuid
        image += [0x4E, 0x75, 0xF9]               // dec esi; jnz loop
        image += [0xB0, 0x15, 0xE6, 0xF4, 0xF4]   // mov al, 21; out 0xf4, al; hlt
        return image
    }
    /// The guest's RIP right after its CPUID.
    static let afterCPUID: UInt64 = 0x10_0029

    init(iterations: UInt32, paused: Bool = false) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("nestdbg-attach-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let image = directory.appendingPathComponent("guest.bin")
        try Data(Self.cpuidLoopImage(iterations: iterations)).write(to: image)
        qmpPath = directory.appendingPathComponent("qmp.sock").path
        process.executableURL = URL(fileURLWithPath: PlainQEMU.path!)
        process.arguments = ["-accel", "kvm", "-m", "64", "-display", "none", "-no-reboot", "-serial", "none",
                             "-monitor", "none", "-nic", "none", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                             "-qmp", "unix:\(qmpPath),server=on,wait=off", "-kernel", image.path] + (paused ? ["-S"] : [])
        process.standardOutput = FileHandle.nullDevice
        try process.run()
    }

    deinit {
        if process.isRunning { process.terminate() }
        try? FileManager.default.removeItem(at: directory)
    }

    static var path: String? {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":")
        return dirs.map { "\($0)/qemu-system-x86_64" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Waits for QEMU to exit (at most `seconds`) and returns its status; nil if it did not.
    func exitStatus(within seconds: Double) -> Int32? {
        let deadline = Date(timeIntervalSinceNow: seconds)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// QEMU's vCPU 0: its fd (anon_inode:kvm-vcpu:0) and the thread seen inside KVM_RUN on it.
    func vcpu0(within seconds: Double = 10) throws -> (thread: Int32, fd: Int32) {
        let pid = process.processIdentifier
        let deadline = Date(timeIntervalSinceNow: seconds)
        while Date() < deadline {
            let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
            if let fd = fds.first(where: {
                (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)")) == "anon_inode:kvm-vcpu:0"
            }).flatMap({ Int32($0) }) {
                for task in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? [] {
                    let line = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/syscall", encoding: .utf8)) ?? ""
                    let f = line.split(separator: " ")
                    if f.count > 2, f[0] == "16", f[1] == "0x" + String(fd, radix: 16), f[2] == "0xae80", let tid = Int32(task) {
                        return (tid, fd)
                    }
                }
            }
            usleep(20_000)
        }
        throw ProcessError.unsuitable("QEMU \(pid): no thread inside KVM_RUN on vCPU 0 within \(seconds) s")
    }
}

/// Guest memory is not needed here (test double: every read fails, naming why).
final class NoGuestMemory: GuestPhysicalMemory {
    func read(_ address: UInt64, count: Int) throws -> [UInt8] { throw ProcessError.unsuitable("no guest memory in this test") }
    func write(_ bytes: [UInt8], at address: UInt64) throws { throw ProcessError.unsuitable("no guest memory in this test") }
}

/// Root, /dev/kvm, tracefs and QEMU, or the reason (a failure in CI).
func attachEnvironment(sourceLocation: SourceLocation = #_sourceLocation) throws -> Tracefs? {
    func missing(_ reason: String) throws -> Tracefs? {
        if ProcessInfo.processInfo.environment["CI"] != nil {
            Issue.record("CI must provide this: \(reason)", sourceLocation: sourceLocation)
            return nil
        }
        try Test.cancel(Comment(rawValue: reason), sourceLocation: sourceLocation)
    }
    guard access("/dev/kvm", R_OK | W_OK) == 0 else { return try missing("/dev/kvm is not accessible") }
    guard geteuid() == 0 else { return try missing("ptrace and perf SIGTRAP on another process need root") }
    guard PlainQEMU.path != nil else { return try missing("qemu-system-x86_64 is not installed") }
    do {
        return try Tracefs.locate()
    } catch let error as TraceError {
        return try missing(error.description)
    }
}

@Suite("attaching to a vCPU of a real QEMU (host KVM, plain guest)", .serialized)
struct AttachTests {
    @Test("kvm_cpuid's SIGTRAP stops QEMU's vCPU after the CPUID; ioctls run in QEMU's thread; QEMU ends correctly after release")
    func stopsAndReleases() throws {
        guard let tracefs = try attachEnvironment() else { return }
        let iterations: UInt32 = 300_000
        let qemu = try PlainQEMU(iterations: iterations)
        let (thread, fd) = try qemu.vcpu0()
        let target = try AttachedVCPUTarget(AttachPoint(pid: qemu.process.processIdentifier, vcpuIndex: 0, thread: thread,
                                                        vcpuFD: fd, memory: NoGuestMemory(), processName: "QEMU"))
        try target.claimVCPU()
        let bound = try target.prepareForTracepointStops()
        #expect(bound == thread)
        let events = try PerfTracepoints([TracepointRequest("kvm", "kvm_cpuid", stops: true)], thread: bound, tracefs: tracefs)
        try events.enable()
        var counters: [UInt64] = []
        for _ in 0..<20 {
            #expect(try target.run() == .interrupted)
            let regs = try target.generalRegisters()
            #expect(regs.rip == PlainQEMU.afterCPUID, "stopped right after the CPUID that fired kvm_cpuid")
            counters.append(regs.rsi)
        }
        // One stop per CPUID: ESI went down by one each time.
        #expect(zip(counters, counters.dropFirst()).allSatisfy { $0 - 1 == $1 }, "\(counters)")
        #expect(counters.first.map { $0 < iterations && $0 > 0 } == true)
        #expect(try events.counts().first == 20 + 1 || (try events.counts().first ?? 0) >= 20)
        #expect(try target.isInGuestMode() == false)
        try events.disable()
        try target.release()
        // QEMU runs the rest of the loop on its own and exits the guest's way.
        #expect(qemu.exitStatus(within: 60) == 43)
    }

    @Test("attaching twice is refused (one tracer per thread), naming ptrace")
    func secondTracer() throws {
        guard try attachEnvironment() != nil else { return }
        let qemu = try PlainQEMU(iterations: 50_000_000)
        let (thread, fd) = try qemu.vcpu0()
        let point = AttachPoint(pid: qemu.process.processIdentifier, vcpuIndex: 0, thread: thread, vcpuFD: fd,
                                memory: NoGuestMemory(), processName: "QEMU")
        let first = try AttachedVCPUTarget(point)
        try first.claimVCPU()
        let second = try AttachedVCPUTarget(point)
        #expect(throws: ProcessError.self) { try second.claimVCPU() }
        try first.release()
        qemu.process.terminate()
    }
}
