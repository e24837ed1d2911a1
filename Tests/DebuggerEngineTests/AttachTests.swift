import DebuggerEngine
import Foundation
import KVMControl
import KernelTrace
import ProcessControl
import Testing

/// A real QEMU (`-accel kvm`) with a plain guest, on the host's KVM: the
/// attach machinery (ptrace, ioctls run in QEMU's vCPU thread, a tracepoint's
/// SIGTRAP stopping another process's vCPU, release) without nested SVM.
/// Without the PIT: in the sandbox its interrupt, pending for a guest with
/// IF=0, locks the whole sandbox up within seconds (TCG's SVM under kvm_amd,
/// QEMU or not: measured with no nestdbg running).
/// Needs root, /dev/kvm, tracefs and qemu-system-x86_64; in CI a missing one
/// fails, elsewhere the test is skipped with the reason. On a PVM host KVM it
/// is skipped and runs in the sandbox (scripts/e2e).
final class PlainQEMU {
    let process = Process()
    let directory: URL
    let qmpPath: String

    /// A Multiboot (a.out kludge) guest at 1 MiB: `iterations` CPUIDs (ESI
    /// counts down), then 21 to isa-debug-exit: QEMU exits with 43.
    static func cpuidLoopImage(iterations: UInt32) -> [UInt8] {
        func le(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }
        let magic: UInt32 = 0x1BAD_B002
        let flags: UInt32 = 1 << 16
        var image = le(magic) + le(flags) + le(0 &- magic &- flags)
        // header, load, load_end, bss_end, entry
        image += le(0x10_0000) + le(0x10_0000) + le(0) + le(0) + le(0x10_0020)
        image += [UInt8](repeating: 0, count: 0x20 - image.count)
        image += [0xBE] + le(iterations)  // mov esi, iterations
        image += [0x31, 0xC0, 0x0F, 0xA2]  // loop: xor eax, eax; cpuid
        image += [0x4E, 0x75, 0xF9]  // dec esi; jnz loop
        image += [0xB0, 0x15, 0xE6, 0xF4, 0xF4]  // mov al, 21; out 0xf4, al; hlt
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
        process.arguments =
            [
                "-accel", "kvm", "-machine", "pc,pit=off", "-m", "64", "-display", "none", "-no-reboot", "-serial",
                "none",
                "-monitor", "none", "-nic", "none", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                "-qmp", "unix:\(qmpPath),server=on,wait=off", "-kernel", image.path,
            ] + (paused ? ["-S"] : [])
        process.standardOutput = FileHandle.nullDevice
        try runWithSignalsUnblocked(process)
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

    /// QEMU's vCPU 0: its fd in QEMU (/proc) and its thread (QMP).
    func vcpu0(within seconds: Double = 20) throws -> (thread: Int32, fd: Int32) {
        let deadline = Date(timeIntervalSinceNow: seconds)
        while Date() < deadline {
            // QMP answers once the machine (and its vCPUs) exist.
            if let client = try? QMPClient(path: qmpPath), let thread = (try? client.vcpuThreads())?.first,
                let vcpu = try? QEMUProcess(pid: process.processIdentifier).kvmDescriptors().vcpus.first
            {
                return (thread.threadID, vcpu.fileDescriptor)
            }
            usleep(50_000)
        }
        throw ProcessError.unsuitable("QEMU \(process.processIdentifier): no vCPU 0 on QMP within \(seconds) s")
    }
}

/// Starts `process` with no signal blocked: a child inherits its parent
/// thread's mask, and the test's threads (libdispatch workers) block SIGTERM,
/// which QEMU never unblocks (measured: SIGTERM stayed pending in QEMU).
func runWithSignalsUnblocked(_ process: Process) throws {
    var none = sigset_t()
    var saved = sigset_t()
    sigemptyset(&none)
    pthread_sigmask(SIG_SETMASK, &none, &saved)
    defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
    try process.run()
}

/// Guest memory is not needed here (test double: every read fails, naming why).
final class NoGuestMemory: GuestPhysicalMemory {
    func read(_ address: UInt64, count: Int) throws -> [UInt8] {
        throw ProcessError.unsuitable("no guest memory in this test")
    }
    func write(_ bytes: [UInt8], at address: UInt64) throws {
        throw ProcessError.unsuitable("no guest memory in this test")
    }
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
    if FileManager.default.fileExists(atPath: "/sys/module/kvm_pvm") {
        // Not a gap CI leaves open: scripts/e2e runs these tests in the sandbox, on kvm_amd.
        try Test.cancel(
            "this host's KVM is PVM (kvm_pvm): ptrace sees no user registers of a thread inside KVM_RUN; the sandbox runs this test",
            sourceLocation: sourceLocation)
    }
    do {
        return try Tracefs.locate()
    } catch let error as TraceError {
        return try missing(error.description)
    }
}

@Suite("attaching to a vCPU of a real QEMU (host KVM, plain guest)", .serialized)
struct AttachTests {
    @Test(
        "kvm_cpuid's SIGTRAP stops QEMU's vCPU after the CPUID; ioctls run in QEMU's thread; QEMU ends correctly after release"
    )
    func stopsAndReleases() throws {
        guard let tracefs = try attachEnvironment() else { return }
        let iterations: UInt32 = 300_000
        let qemu = try PlainQEMU(iterations: iterations)
        let (thread, fd) = try qemu.vcpu0()
        let target = try AttachedVCPUTarget(
            AttachPoint(
                pid: qemu.process.processIdentifier, vcpuIndex: 0, thread: thread,
                vcpuFD: fd, memory: NoGuestMemory(), processName: "QEMU"))
        try target.claimVCPU()
        let bound = try target.prepareForTracepointStops()
        #expect(bound == thread)
        let events = try PerfTracepoints(
            [TracepointRequest("kvm", "kvm_cpuid", stops: true)], thread: bound, tracefs: tracefs)
        try events.enable()
        // The firmware runs CPUIDs of its own before the guest's loop: skip those.
        var firmwareStops = 0
        while try target.run() == .interrupted, try target.generalRegisters().rip != PlainQEMU.afterCPUID {
            firmwareStops += 1
            try #require(firmwareStops < 10_000, "the guest's loop never reached")
        }
        var counters: [UInt64] = [try target.generalRegisters().rsi]
        for _ in 0..<19 {
            #expect(try target.run() == .interrupted)
            let regs = try target.generalRegisters()
            #expect(regs.rip == PlainQEMU.afterCPUID, "stopped right after the CPUID that fired kvm_cpuid")
            counters.append(regs.rsi)
        }
        // One stop per CPUID: ESI went down by one each time.
        #expect(zip(counters, counters.dropFirst()).allSatisfy { $0 - 1 == $1 }, "\(counters)")
        #expect(counters.first.map { $0 <= iterations && $0 > 0 } == true)
        #expect(try events.counts().first ?? 0 >= 20, "kvm_cpuid fired at least once per stop")
        #expect(try target.isInGuestMode() == false)
        try events.disable()
        try target.release()
        // QEMU runs the rest of the loop on its own and exits the guest's way.
        #expect(qemu.exitStatus(within: 60) == 43)
    }

    @Test("attaching twice is refused (one tracer per thread), naming ptrace")
    func secondTracer() throws {
        guard try attachEnvironment() != nil else { return }
        // Paused (-S): the vCPU thread waits in a futex, not in KVM_RUN.
        let qemu = try PlainQEMU(iterations: 1000, paused: true)
        let (thread, fd) = try qemu.vcpu0()
        let point = AttachPoint(
            pid: qemu.process.processIdentifier, vcpuIndex: 0, thread: thread, vcpuFD: fd,
            memory: NoGuestMemory(), processName: "QEMU")
        let first = try AttachedVCPUTarget(point)
        try first.claimVCPU()
        let second = try AttachedVCPUTarget(point)
        #expect(throws: ProcessError.self) { try second.claimVCPU() }
        try first.release()
        qemu.process.terminate()
        #expect(qemu.exitStatus(within: 30) != nil, "QEMU ends on SIGTERM once released")
    }
}

/// What must be equal between QEMU's run of an L1 and nestdbg's own, stop by
/// stop: the exit, its EXITINFO, L2's RIP and what KVM synced into vmcb12
/// (save.rax aside: it holds what L2's CPUID returned, and QEMU's -cpu host
/// and nestdbg's CPUID tables differ).
struct ComparableStop: Equatable, CustomStringConvertible {
    let kind: StopKind
    let exitCode: UInt64?
    let info1: UInt64?
    let info2: UInt64?
    let l2RIP: UInt64?
    let synced: [String]

    init(_ stop: Stop) {
        kind = stop.kind
        exitCode = stop.exit?.code
        info1 = stop.vmcb12?[integer: .exitInfo1]
        info2 = stop.vmcb12?[integer: .exitInfo2]
        l2RIP = stop.kind == .nestedExit ? stop.vmcb12?[integer: .saveRIP] : stop.l2?[.rip] ?? nil
        synced = stop.synced.filter { $0.field != .saveRAX }.map { "\($0.field.name)=\($0.after)" }
    }

    var description: String {
        "\(kind.rawValue) exit \(exitCode.map { String($0, radix: 16) } ?? "-") info \(info1 ?? 0)/\(info2 ?? 0) L2 rip \(l2RIP.map { String($0, radix: 16) } ?? "-") synced \(synced)"
    }
}

/// A QEMU (-accel kvm -cpu host) running a Multiboot L1 on the sandbox's
/// nested KVM, started with -S and a QMP socket. Without the PIT (see
/// PlainQEMU); with it, KVM 6.1 would also sync its interrupt-window V_IRQ
/// into vmcb12's int_ctl at every #VMEXIT (measured), which nestdbg's own VM,
/// with no timer, never shows.
final class NestedQEMU {
    let process = Process()
    let directory: URL
    let debugcon: URL

    init(image: [UInt8]) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("nestdbg-qemu-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("l1.elf")
        try Data(image).write(to: file)
        debugcon = directory.appendingPathComponent("e9.txt")
        process.executableURL = URL(fileURLWithPath: PlainQEMU.path!)
        process.arguments = [
            "-accel", "kvm", "-cpu", "host", "-machine", "pc,pit=off", "-m", "64", "-display", "none", "-no-reboot",
            "-serial", "none",
            "-monitor", "none", "-nic", "none", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-debugcon", "file:\(debugcon.path)", "-S",
            "-qmp", "unix:\(directory.path)/qmp.sock,server=on,wait=off", "-kernel", file.path,
        ]
        process.standardOutput = FileHandle.nullDevice
        try runWithSignalsUnblocked(process)
        // QMP answers once the machine (and its vCPUs) exist.
        let deadline = Date(timeIntervalSinceNow: 20)
        while Date() < deadline {
            if let client = try? QMPClient(path: "\(directory.path)/qmp.sock"),
                (try? client.vcpuThreads())?.isEmpty == false
            {
                return
            }
            usleep(50_000)
        }
        throw ProcessError.unsuitable("QEMU did not answer on QMP within 20 s")
    }

    deinit {
        if process.isRunning { process.terminate() }
        try? FileManager.default.removeItem(at: directory)
    }
}

@Suite(
    "attaching to a QEMU that runs an L1 (real nested KVM)", .enabled(if: NestedSVM.available, NestedSVM.reason),
    .serialized)
struct AttachNestedTests {
    @Test(
        "attach from the start: every stop of the selfcheck L1 in QEMU equals nestdbg's own run of the same file; QEMU ends the guest's way"
    )
    func sameStopsAsOwnVM() throws {
        guard try attachEnvironment() != nil else { return }
        let elf = try MultibootImage.selfCheck().encoded()

        let own = try Engine(
            ownVM: OwnVMTarget.image(kvm: KVM(), image: GuestImage.multiboot(elf), name: "selfcheck.elf"),
            stops: .tracepoint)
        var ownStops: [Stop] = []
        try own.recordStart()
        while ownStops.last?.endsRun != true && ownStops.count < 1000 { ownStops.append(try own.step()) }

        let qemu = try NestedQEMU(image: elf)
        let point = try AttachPoint.locate(
            pid: qemu.process.processIdentifier, vcpu: 0,
            qmpPath: qemu.directory.path + "/qmp.sock")
        let target = try AttachedVCPUTarget(point)
        let timings = StopTimings()
        let attached = Engine(
            target: target, source: try TracepointStopSource(target: target, timings: timings), timings: timings)
        try target.claimVCPU()
        try attached.recordStart()
        var qemuStops: [Stop] = []
        while qemuStops.last?.endsRun != true && qemuStops.count < 1000 { qemuStops.append(try attached.step()) }

        #expect(ownStops.filter { $0.kind == .nestedExit }.count == SelfCheckImage.nestedExitsPerRun)
        #expect(ownStops.last?.kind == .exited && ownStops.last?.exitStatus == 0)
        let ownCompared = ownStops.filter { $0.kind == .nestedExit || $0.kind == .vmrun }.map(ComparableStop.init)
        let qemuCompared = qemuStops.filter { $0.kind == .nestedExit || $0.kind == .vmrun }.map(ComparableStop.init)
        #expect(qemuCompared.count == ownCompared.count)
        if let first = zip(ownCompared, qemuCompared).enumerated().first(where: { $0.element.0 != $0.element.1 }) {
            Issue.record("stop \(first.offset) differs:\n  own:  \(first.element.0)\n  QEMU: \(first.element.1)")
        }
        #expect(!qemuStops.contains { $0.kind == .fault }, "\(qemuStops.first { $0.kind == .fault }?.reason ?? "")")
        // The guest's own end: isa-debug-exit 0, which QEMU turns into exit status 1.
        #expect(qemuStops.last?.kind == .exited && qemuStops.last?.exitStatus == 0, "\(qemuStops.last?.reason ?? "")")
        qemu.process.waitUntilExit()
        #expect(qemu.process.terminationStatus == 1)
        #expect(
            (try? Data(contentsOf: qemu.debugcon).count) == SelfCheckImage.iterations, "one 0xE9 byte per L2 iteration")
    }
}
