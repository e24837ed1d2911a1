import ArgumentParser
import DebuggerEngine
import Foundation
import KVMControl
import KernelTrace
import SVMModel
import TUI

/// `nestdbg run`: run an L1 hypervisor and stop at its nested exits.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run an L1 hypervisor (the built-in demo, or --image) and stop at every nested #VMEXIT.",
        discussion: """
            Needs a KVM that offers SVM (scripts/sandbox provides one). With --batch, each stop \
            is printed as it happens (one JSON object per line with --json); the interactive \
            front end comes with the TUI.
            """)

    @OptionGroup var target: TargetOptions
    @Flag(help: "Run without the front end, printing every stop.") var batch = false
    @Option(help: "Stop after this many nested exits (batch).") var exits = 100
    @Flag(help: "One JSON object per stop (the README's schema).") var json = false
    @Option(name: .customLong("break"), help: "Exit code or name to stop at (batch: stops the run there). Repeatable.")
    var breakAt: [String] = []
    @Option(help: "Save what the guest writes to COM1 (port 0x3F8) in this file.") var serial: String?
    @Option(help: "Record every stop into this new file (SQLite; nestdbg replay FILE, SQL with sqlite3).") var record:
        String?

    @Option(
        help:
            "Batch: give up when no stop comes within this many seconds (a guest that never exits); with --free, when the guest has not ended within them."
    )
    var timeout = 30.0
    @Flag(
        help:
            "Batch without any stop: run the L1 to its end, print its serial output, end with its status (the baseline for stepping)."
    )
    var free = false

    func run() throws {
        if free { return try runFree() }
        let batchRun = try BatchRun(exits: exits, json: json, timeout: timeout, breakAt: breakAt)
        try refuseExistingRecording(record)
        let engine = try target.makeEngine()
        try startRecording(to: record, engine: engine, image: try target.imageBytes())
        guard batch else {
            try target.interactive(engine: engine, watch: nil)
            return
        }
        let session = EngineSession(engine: engine)
        defer {
            session.shutdown()
            saveSerial(engine)
        }
        try batchRun.run(session)
    }

    /// `--free`: no stop source, no engine; the VMM alone. Exits with the guest's status.
    private func runFree() throws {
        guard record == nil, breakAt.isEmpty, !json else {
            throw fail("--free takes no --record, --break or --json: it stops nowhere", status: 2)
        }
        let target = try self.target.makeTarget()
        let out = FileHandle.standardOutput
        let summary = try self.target.reportingErrors {
            try target.runToEnd(timeout: timeout) { bytes in out.write(Data(bytes)) }
        }
        if let serial { _ = FileManager.default.createFile(atPath: serial, contents: Data(target.serialOutput ?? [])) }
        let seconds = Double(summary.elapsed.components.seconds) + Double(summary.elapsed.components.attoseconds) / 1e18
        var report = String(
            format: "free run of %@ ended after %.2f s, %d exits to nestdbg", target.name, seconds,
            summary.vmmExits)
        if summary.unclaimedPorts > 0 { report += ", \(summary.unclaimedPorts) to unclaimed ports" }
        if summary.smmEntries > 0 {
            report += ", \(summary.smmEntries) SMI\(summary.smmEntries == 1 ? "" : "s") into the SMM stub"
        }
        switch summary.end {
        case let .exited(status):
            FileHandle.standardError.write(
                Data(("nestdbg: " + report + ": the guest exited with status \(status)\n").utf8))
            throw ExitCode(status)
        case let .fault(description):
            throw fail(report + ": \(description)", status: 1)
        case let .timedOut(limit):
            throw fail(report + ": the guest had not ended within \(limit) s (--timeout)", status: 1)
        }
    }

    private func saveSerial(_ engine: Engine) {
        guard !engine.serialOutput.isEmpty else { return }
        if let serial {
            _ = FileManager.default.createFile(atPath: serial, contents: Data(engine.serialOutput))
        } else if !json {
            print("serial (COM1): " + String(decoding: engine.serialOutput, as: UTF8.self))
        }
    }
}

/// `nestdbg watch`: the guest runs while the panes refresh.
struct WatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Live watch: the guest runs while the panes and a per-exit rate table refresh.")
    @OptionGroup var target: TargetOptions
    @Option(help: "Refresh rate in Hz (1 to 60).") var rate = 10.0

    func run() throws {
        guard (1...60).contains(rate) else { throw fail("--rate must be between 1 and 60", status: 2) }
        try target.interactive(engine: target.makeEngine(), watch: rate)
    }
}

/// nestdbg's built-in L1s, by the name `--scenario` takes.
enum Scenario: String, CaseIterable {
    case demo, pse, pae, selfcheck, events, timer

    func makeTarget(kvm: KVM) throws -> OwnVMTarget {
        switch self {
        case .demo: return try OwnVMTarget.demo(kvm: kvm)
        case .pse: return try OwnVMTarget.legacyPagingScenario(kvm: kvm, paging: .pse)
        case .pae: return try OwnVMTarget.legacyPagingScenario(kvm: kvm, paging: .pae)
        case .selfcheck: return try OwnVMTarget.selfCheck(kvm: kvm)
        case .events: return try OwnVMTarget.eventsScenario(kvm: kvm)
        case .timer: return try OwnVMTarget.timerScenario(kvm: kvm)
        }
    }
}

/// Which L1 to run, shared by run, watch and the front end.
struct TargetOptions: ParsableArguments {
    @Option(help: "L1's MAXPHYADDR for the VMRUN consistency checks.") var physBits = 40
    @Option(
        help: """
            demo (64-bit L1, nested paging); pse / pae: a 32-bit L1 with that paging, L2 without nested paging; \
            selfcheck: a 64-bit L1 whose VMRUN is generated at run time and that checks its own code; \
            events: a 64-bit L1 injecting #UD into L2 and leaving a virtual interrupt pending; \
            timer: a 64-bit L1 whose APIC timer interrupts its L2 (INTR exits; the in-kernel irqchip, so tracepoint stops only).
            """)
    var scenario = "demo"
    @Option(help: "An L1 image of your own: a Multiboot v1 ELF, or a flat binary with --load-at.") var image: String?
    @Option(help: "Load a flat binary at this guest-physical address (hex).") var loadAt: String?
    @Option(help: "Entry point of a flat binary (hex; default: the load address).") var entry: String?
    @Option(help: "A VMRUN site in the image (hex), instead of its symbols or a scan. Repeatable.") var vmrunAt:
        [String] = []
    // Taken whatever it looks like: kvm-unit-tests' selections start with "-" ("-pause_filter_test").
    @Option(parsing: .unconditional, help: "The image's command line after its name, as QEMU's -append (Multiboot).")
    var append: String?
    @Option(help: "A Multiboot module (e.g. an environ file), placed after the image. Repeatable.") var module:
        [String] = []
    @Option(help: "Guest RAM in MiB for --image (4 to 3072).") var memory = MachineConfig.defaultMemoryMiB
    @Option(help: "vCPUs for --image (1 to 8): one thread each; the debugger follows vCPU 0, all stop together.")
    var smp = 1
    @Flag(
        name: .customLong("no-irqchip"),
        help: "--image without the in-kernel LAPIC, IOAPIC and PIC (HLT then exits to nestdbg, as --stops patch needs)."
    )
    var noIRQChip = false
    @Option(help: "Theme name (Themes/NAME.theme) or path, for the front end.") var theme = "default"
    @Option(
        help:
            "How to stop at nested exits: tracepoint (KVM's own events; the default where root, perf and tracefs allow) or patch (HLT over VMRUN)."
    )
    var stops: String?

    var name: String { image.map { "image \(URL(fileURLWithPath: $0).lastPathComponent)" } ?? scenario }

    func interactive(engine: Engine, watch: Double?) throws {
        let t: Theme
        do { t = try Theme.load(theme) } catch let error as ThemeError { throw fail(error.description, status: 2) }
        guard isatty(0) == 1, isatty(1) == 1 else {
            throw fail("the front end needs a terminal; use run --batch", status: 2)
        }
        App(
            session: EngineSession(engine: engine), theme: t,
            recorderFactory: recorderFactory(engine: engine, image: try imageBytes())
        ).run(watch: watch)
    }

    /// The L1 image file's bytes (for the recording's hash); nil for the built-in scenarios.
    func imageBytes() throws -> [UInt8]? { try image.map(readInput) }

    func makeEngine() throws -> Engine {
        try reportingErrors {
            // The stop source first: a bad --stops is bad input, whatever KVM offers.
            let stops = try stopSource()
            let engine = try Engine(ownVM: try makeTarget(), stops: stops)
            engine.checkEnvironment = CheckEnvironment(physicalAddressBits: physBits)
            return engine
        }
    }

    /// A fresh VM with the chosen L1 loaded (the bench makes several).
    func makeTarget() throws -> OwnVMTarget {
        try reportingErrors {
            let kvm = try KVM()
            if let image {
                let machine = MachineConfig(
                    memoryMiB: memory, vcpuCount: smp, irqchip: !noIRQChip, arguments: append,
                    modules: try module.map { BootModule(path: $0, bytes: try readInput($0)) })
                return try OwnVMTarget.image(
                    kvm: kvm, image: try loadImage(image), machine: machine, imageName: image,
                    vmrunSites: try sites(), name: name)
            }
            guard append == nil, module.isEmpty, memory == MachineConfig.defaultMemoryMiB, smp == 1, !noIRQChip else {
                throw fail(
                    "--append, --module, --memory, --smp and --no-irqchip describe the machine for --image; "
                        + "the built-in scenarios have their own", status: 2)
            }
            guard let builtIn = Scenario(rawValue: scenario) else {
                throw fail("unknown scenario \(scenario): demo, pse, pae, events, timer or selfcheck", status: 2)
            }
            return try builtIn.makeTarget(kvm: kvm)
        }
    }

    /// Turns the errors of making a target or an engine into one line and an exit status.
    func reportingErrors<T>(_ body: () throws -> T) throws -> T {
        try nestdbg.reportingErrors(
            describe: { error in error is ImageError ? "\(image ?? ""): \(error)" : "\(error)" }, body)
    }

    /// `--stops`, or the tracepoint source where this host allows it (else
    /// the patch source, saying why on stderr).
    private func stopSource() throws -> StopSourceKind {
        if let stops {
            guard let kind = StopSourceKind(rawValue: stops) else {
                throw fail("--stops \(stops): tracepoint or patch", status: 2)
            }
            if case let .unavailable(why) = kind.availability {
                throw fail("--stops \(stops) is not available here: \(why)", status: 1)
            }
            return kind
        }
        guard case let .unavailable(why) = StopSourceKind.tracepoint.availability else { return .tracepoint }
        FileHandle.standardError.write(
            Data("nestdbg: tracepoint stops unavailable (\(why)); using the patch source\n".utf8))
        return .patch
    }

    private func loadImage(_ path: String) throws -> GuestImage {
        let bytes = try readInput(path)
        if let loadAt {
            guard let load = parseAddress(loadAt) else {
                throw fail("--load-at \(loadAt) is not an address", status: 2)
            }
            guard let start = entry.map(parseAddress) ?? load else {
                throw fail("--entry \(entry ?? "") is not an address", status: 2)
            }
            return try GuestImage.flat(bytes, loadAddress: load, entry: start)
        }
        return try GuestImage.multiboot(bytes)
    }

    private func sites() throws -> [UInt64]? {
        guard !vmrunAt.isEmpty else { return nil }
        return try vmrunAt.map { text in
            guard let a = parseAddress(text) else { throw fail("--vmrun-at \(text) is not an address", status: 2) }
            return a
        }
    }

}
