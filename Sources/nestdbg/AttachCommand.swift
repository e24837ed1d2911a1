import ArgumentParser
import DebuggerEngine
import Foundation
import KVMControl
import KernelTrace
import ProcessControl
import SVMModel
import Synchronization
import TUI

/// `nestdbg attach PID`: step the nested exits of a vCPU that belongs to a
/// running QEMU.
struct AttachCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attach",
        abstract:
            "Attach to a vCPU of a running QEMU (-accel kvm) and stop at every nested VMRUN and #VMEXIT of its L1.",
        discussion: """
            nestdbg traces QEMU's vCPU thread (ptrace), stops it with KVM's own tracepoints, and runs the \
            vCPU ioctls it needs inside that thread; QEMU treats each stop like one of its own kicks. \
            q, detach, SIGINT, SIGTERM or SIGHUP leave QEMU running as before; if nestdbg is killed, the \
            kernel lets the thread go and a late SIGTRAP is ignored. While nestdbg holds the vCPU, QEMU \
            work that waits for it (QMP stop, info registers, migration) waits too. Needs root (or \
            CAP_SYS_PTRACE), perf and tracefs, and a KVM with nested state (scripts/sandbox).
            """)

    @Argument(help: "QEMU's process id.") var pid: Int32
    @Option(help: "The vCPU (QEMU's cpu-index).") var vcpu = 0
    @Option(
        help: """
            QEMU's QMP socket: the vCPU's thread, the guest's RAM, and `cont` for a QEMU started with -S \
            (so its first VMRUN is seen). Default: the socket on QEMU's command line (-qmp unix:PATH,server=on,wait=off).
            """)
    var qmp: String?
    @Flag(help: "Run without the front end, printing every stop.") var batch = false
    @Option(help: "Stop after this many nested exits, then detach (batch).") var exits = 100
    @Flag(help: "One JSON object per stop (the README's schema).") var json = false
    @Option(name: .customLong("break"), help: "Exit code or name to stop at (batch: stops the run there). Repeatable.")
    var breakAt: [String] = []
    @Option(help: "Batch: give up when no stop comes within this many seconds.") var timeout = 30.0
    @Option(
        help:
            "Live watch without the front end for this many seconds (the guest runs freely, KVM's tracepoint counts its nested exits), then detach."
    )
    var watch: Double?
    @Option(help: "L1's MAXPHYADDR for the VMRUN consistency checks.") var physBits = 40
    @Option(help: "Theme name (Themes/NAME.theme) or path, for the front end.") var theme = "default"
    @Option(help: "Record every stop into this new file (SQLite; nestdbg replay FILE, SQL with sqlite3).") var record:
        String?

    func run() throws {
        let batchRun = try BatchRun(exits: exits, json: json, timeout: timeout, breakAt: breakAt)
        if let watch, !(watch > 0) { throw fail("--watch must be a positive number of seconds", status: 2) }
        guard vcpu >= 0 else { throw fail("--vcpu must be 0 or more", status: 2) }
        try refuseExistingRecording(record)
        // --watch is a batch mode of its own (one summary), front end or not.
        let headless = batch || watch != nil
        let t: Theme?
        if headless {
            t = nil
        } else {
            do { t = try Theme.load(theme) } catch let error as ThemeError { throw fail(error.description, status: 2) }
            guard isatty(0) == 1, isatty(1) == 1 else {
                throw fail("the front end needs a terminal; use attach --batch", status: 2)
            }
        }
        let engine = try attachedEngine()
        try startRecording(to: record, engine: engine, image: nil)
        // A signal detaches before nestdbg ends (the engine's thread is the
        // tracer); taken by a thread of its own, set up before the engine's.
        let running = RunningSession()
        let quit = QuitRequest()
        TerminationSignals.onSignal { signal in
            // The front end's own thread restores the terminal and detaches; only if it
            // does not answer (busy in a long command) does this thread do both.
            if headless || !quit.requestAndWait(timeout: .seconds(3)) {
                running.session?.shutdown()
                if !headless { App.restoreTerminal() }
            }
            running.session.map(Self.reportEndFailure)
            Glibc.exit(128 + signal)
        }
        let session = EngineSession(engine: engine)
        running.session = session
        if let why = session.startFailure(waitingUpTo: .seconds(30)) {
            session.shutdown()
            throw fail(why, status: 1)
        }
        defer {
            session.shutdown()
            Self.reportEndFailure(session)
        }
        if let t {
            App(session: session, theme: t, recorderFactory: recorderFactory(engine: engine, image: nil)).run(
                quit: quit)
        } else if let watch {
            try liveWatch(session, seconds: watch)
        } else {
            try batchRun.run(session)
        }
    }

    /// A detach that failed leaves QEMU's vCPU not as nestdbg found it: the user must know.
    private static func reportEndFailure(_ session: EngineSession) {
        if let failure = session.endFailure { FileHandle.standardError.write(Data("nestdbg: \(failure)\n".utf8)) }
    }

    /// The engine on QEMU's vCPU, or one line that says what is missing.
    private func attachedEngine() throws -> Engine {
        try reportingErrors {
            let point = try AttachPoint.locate(pid: pid, vcpu: vcpu, qmpPath: qmp)
            let target = try AttachedVCPUTarget(point)
            let timings = StopTimings()
            let engine = Engine(
                target: target, source: try TracepointStopSource(target: target, timings: timings), timings: timings)
            engine.checkEnvironment = CheckEnvironment(physicalAddressBits: physBits)
            return engine
        }
    }

    /// Live watch without the front end: the guest runs freely for `seconds`
    /// while KVM's tracepoint counts its nested exits; one summary line.
    private func liveWatch(_ session: EngineSession, seconds: Double) throws {
        let trace: NestedExitTrace
        do { trace = try NestedExitTrace(threadID: session.vcpuThreadID) } catch { throw fail("\(error)", status: 1) }
        try session.send(.watch(freeRunning: true))
        let start = ContinuousClock.now
        var counts: [UInt64: Int] = [:]
        var samples = 0
        var ended: Stop?
        // A sample holds QEMU's vCPU for its injected ioctls (about 0.1 s in
        // the sandbox); the summary needs none, so one a second shows the
        // vCPU is alive and leaves the guest most of its speed.
        var lastSample = start - .seconds(1)
        while ContinuousClock.now - start < .milliseconds(Int64(seconds * 1000)), ended == nil {
            if ContinuousClock.now - lastSample >= .seconds(1) {
                session.requestSample()
                lastSample = .now
            }
            for event in session.takeEvents(waitingUpTo: .milliseconds(100)) {
                switch event {
                case .sample: samples += 1
                case let .stopped(stop, _) where stop.kind != .start: ended = stop
                case let .failed(failure): throw fail(failure.description, status: 1)
                default: break
                }
            }
            for (code, n) in trace.drain() { counts[code, default: 0] += n }
        }
        if ended == nil {
            try? session.send(.stopWatch)
            for event in session.takeEvents(waitingUpTo: .seconds(5)) {
                if case let .stopped(stop, _) = event { ended = stop }
            }
        }
        for (code, n) in trace.drain() { counts[code, default: 0] += n }
        let elapsed =
            Double((ContinuousClock.now - start).components.attoseconds) / 1e18
            + Double((ContinuousClock.now - start).components.seconds)
        let total = counts.values.reduce(0, +)
        let byExit = counts.sorted { $0.key < $1.key }.map { (SVMExit.name(of: $0.key) ?? hex($0.key), $0.value) }
        if json {
            let fields = byExit.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",")
            print(
                "{\"watch_seconds\":\(String(format: "%.3f", elapsed)),\"nested_exits\":\(total),\"per_second\":\(String(format: "%.1f", Double(total) / elapsed)),\"samples\":\(samples),\"by_exit\":{\(fields)},\"ended\":\"\(ended?.kind.rawValue ?? "none")\"}"
            )
        } else {
            print(
                "live watch \(String(format: "%.1f", elapsed)) s: \(total) nested exits (\(String(format: "%.0f", Double(total) / elapsed))/s), \(samples) samples: "
                    + byExit.map { "\($0.0)×\($0.1)" }.joined(separator: " "))
        }
        if let ended, ended.kind == .exited { throw ExitCode(ended.exitStatus ?? 0) }
        if let ended, ended.kind == .fault { throw fail("stopped: \(ended.reason)", status: 1) }
    }

    private func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
}

/// The session a signal must shut down, once there is one.
final class RunningSession: Sendable {
    private let current = Mutex<EngineSession?>(nil)
    var session: EngineSession? {
        get { current.withLock { $0 } }
        set { current.withLock { $0 = newValue } }
    }
}

/// SIGINT, SIGTERM and SIGHUP, taken by one thread (sigwait) rather than a
/// handler, so that nestdbg can detach (ptrace, perf, QEMU's signal state)
/// before it ends. Installed before the engine's thread starts: threads
/// inherit the blocked mask.
enum TerminationSignals {
    static func onSignal(_ handler: @escaping @Sendable (Int32) -> Void) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let blocked = set
        let waiter = Thread {
            var signal: Int32 = 0
            var waitSet = blocked
            sigwait(&waitSet, &signal)
            handler(signal)
        }
        waiter.name = "nestdbg-signals"
        waiter.start()
    }
}
