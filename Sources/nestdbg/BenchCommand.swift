import ArgumentParser
import DebuggerEngine
import Foundation
import KVMControl
import KernelTrace
import Recording
import SVMModel
import TUI

/// `nestdbg bench`: what stopping at every nested exit costs, against the same L1 running free.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract:
            "Measure an L1's free-running cost per nested exit against stepping it with each stop source, and where a stop's time goes.",
        discussion: """
            Needs nested SVM: scripts/sandbox --release -- nestdbg bench [--scenario NAME | --image FILE]. \
            Nested exits are counted by KVM's kvm_nested_vmexit_inject (a counting perf event, no signal) \
            in every run, the free one included, so any L1 can be measured.
            """)

    @OptionGroup var target: TargetOptions
    @Option(help: "Seconds per measurement (a run also ends when the guest does).") var seconds = 2.0
    @Flag(help: "Measure the front end's full redraw of a 200×60 screen instead (no KVM needed).") var render = false
    @Flag(help: "Measure one stop's JSON line instead: building it and writing it out (no KVM needed).") var jsonLine =
        false
    @Flag(
        help:
            "Measure recording the shipped demo recording's stops into a new file instead, against their JSON lines (no KVM needed)."
    )
    var recording = false

    func run() throws {
        if render { return renderBench() }
        if jsonLine { return jsonBench() }
        if recording { return try recordingBench() }
        do {
            try measure()
        } catch let error as TraceError {
            throw fail(error.description, status: 1)
        } catch let error as KVMError {
            throw fail(error.description, status: 1)
        }
    }

    /// What a stepping run does at each stop.
    enum Mode: CaseIterable {
        case stopsOnly, capture, json, record
        var suffix: String {
            switch self {
            case .stopsOnly: return ", stops only"
            case .capture: return ""
            case .json: return " + JSON"
            case .record: return " + --record"
            }
        }
    }

    /// One measured run: nested exits and the time they took.
    struct Run {
        var label: String
        var exits: UInt64
        var elapsed: Duration
        var timings: StopTimings?
        var json: Duration = .zero
        var mode: Mode?
        var source: StopSourceKind?
        var perExit: Duration { exits > 0 ? elapsed / Int(exits) : .zero }
    }

    private func measure() throws {
        let window = Duration.milliseconds(Int64(seconds * 1000))
        let tracefs = try Tracefs.locate()
        try PerfTracepoints.prepareCurrentThread()
        /// Counts the nested #VMEXITs KVM delivers to L1 on this thread, without stopping anything.
        func counter() throws -> PerfTracepoints {
            let events = try PerfTracepoints(
                [TracepointRequest("kvm", "kvm_nested_vmexit_inject", stops: false)],
                thread: PerfTracepoints.currentThreadID(), tracefs: tracefs, ringPages: 1)
            try events.enable()
            return events
        }
        let clock = ContinuousClock()

        // 1. Free-running: KVM_RUN and the VMM's own I/O, nothing else.
        let free = try target.makeTarget()
        let count = try counter()
        let start = clock.now
        running: while clock.now - start < window {
            let exit = try free.run()
            if case .io = exit, case .guestExited = try free.handleIO(exit) { break running }
            if case .shutdown = exit { throw fail("the guest triple-faulted while running free", status: 1) }
        }
        let baseline = Run(label: "free-running", exits: try count.counts()[0], elapsed: clock.now - start)

        // 2. Stepping exit by exit with each stop source: the stops alone (the
        //    mechanism's floor: no register, page or state read), full capture,
        //    and full capture with the JSON line written.
        var runs: [Run] = []
        let sink = FileHandle(forWritingAtPath: "/dev/null")
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("nestdbg-bench-\(getpid()).nestdbg")
            .path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        /// A fresh VM and an engine on it, recording into the scratch file when asked; nil where the
        /// source cannot run this target.
        func freshEngine(_ kind: StopSourceKind, recording: Bool) throws -> Engine? {
            let candidate = try target.makeTarget()
            if kind == .patch, candidate.vmrunSites.isEmpty { return nil }
            let engine = try target.reportingErrors { try Engine(ownVM: candidate, stops: kind) }
            try? FileManager.default.removeItem(atPath: scratch)
            if recording { engine.recorder = try makeRecorder(scratch, engine: engine, image: nil) }
            return engine
        }
        /// One stepping run of `window`; nil where the source cannot run this target.
        func stepping(_ kind: StopSourceKind, _ mode: Mode) throws -> Run? {
            let label = kind.rawValue + mode.suffix
            guard let engine = try freshEngine(kind, recording: mode == .record) else {
                print("\(label): skipped (no VMRUN site known in \(target.name))")
                return nil
            }
            let count = try counter()
            var json = Duration.zero
            let start = clock.now
            stepping: while clock.now - start < window {
                if mode == .stopsOnly {
                    switch try engine.source.next().event {
                    case .fault, .guestExited: break stepping
                    default: continue stepping
                    }
                }
                let stop = try engine.next()
                if mode == .json {
                    let t0 = clock.now
                    sink?.write(Data(stop.json.serializedBytes() + [0x0A]))
                    json += clock.now - t0
                }
                if stop.endsRun { break stepping }
            }
            // The recording's last stops committed and the file finished: part of the run's time.
            engine.recorder = nil
            var run = Run(
                label: label, exits: try count.counts()[0], elapsed: clock.now - start,
                timings: mode == .capture || mode == .record ? engine.timings : nil)
            run.json = json
            run.mode = mode
            run.source = kind
            return run
        }
        for kind in StopSourceKind.allCases {
            for mode in Mode.allCases { if let run = try stepping(kind, mode) { runs.append(run) } }
        }
        // 3. Recording's overhead, paired: capture without and with --record, alternately, three times;
        //    each pair's ratio, and their median.
        var pairs: [(StopSourceKind, [Double])] = []
        for kind in StopSourceKind.allCases {
            var ratios: [Double] = []
            for _ in 0..<3 {
                guard let plain = try stepping(kind, .capture), let recorded = try stepping(kind, .record),
                    plain.perExit > .zero
                else { break }
                ratios.append(recorded.perExit / plain.perExit)
            }
            if !ratios.isEmpty { pairs.append((kind, ratios)) }
        }
        // 4. A user stepping: one `n` at a time with a pause between (the writer commits meanwhile);
        //    the median time an `n` takes, without and with --record, alternately.
        var latencies: [(StopSourceKind, plain: Duration, recorded: Duration)] = []
        for kind in StopSourceKind.allCases {
            var plain: [Duration] = []
            var recorded: [Duration] = []
            for round in 0..<6 {
                guard let engine = try freshEngine(kind, recording: round % 2 == 1) else { break }
                for _ in 0..<20 {
                    let start = clock.now
                    let stop = try engine.next()
                    if round % 2 == 1 { recorded.append(clock.now - start) } else { plain.append(clock.now - start) }
                    if stop.endsRun { break }
                    usleep(20_000)
                }
                engine.recorder = nil
            }
            guard !plain.isEmpty, !recorded.isEmpty else { continue }
            latencies.append((kind, plain.sorted()[plain.count / 2], recorded.sorted()[recorded.count / 2]))
        }
        report(baseline, runs, recordingPairs: pairs, latencies: latencies)
    }

    private func report(
        _ baseline: Run, _ runs: [Run], recordingPairs: [(StopSourceKind, [Double])],
        latencies: [(StopSourceKind, plain: Duration, recorded: Duration)]
    ) {
        func us(_ d: Duration) -> String { String(format: "%8.1f µs", d.seconds * 1e6) }
        print(
            "nestdbg bench (\(target.name), up to \(seconds) s per run; nested exits counted by kvm_nested_vmexit_inject)"
        )
        print(
            "\(baseline.label.padding(toLength: 22, withPad: " ", startingAt: 0)) \(us(baseline.perExit)) per nested exit  (\(baseline.exits) exits in \(String(format: "%.2f", baseline.elapsed.seconds)) s)  1.0x"
        )
        for run in runs {
            let ratio = baseline.perExit > .zero ? run.perExit / baseline.perExit : 0
            var line =
                "\(run.label.padding(toLength: 22, withPad: " ", startingAt: 0)) \(us(run.perExit)) per nested exit  (\(run.exits) exits in \(String(format: "%.2f", run.elapsed.seconds)) s)  \(String(format: "%.1f", ratio))x free-running"
            if run.json > .zero {
                line += String(format: "; the JSON line is %.1f%% of a stop", run.json / run.elapsed * 100)
            }
            print(line)
        }
        // Recording against the same source capturing the same stops without it, in pairs, in this run.
        for (kind, ratios) in recordingPairs {
            let median = ratios.sorted()[ratios.count / 2]
            let each = ratios.map { String(format: "%+.1f%%", ($0 - 1) * 100) }.joined(separator: ", ")
            print(
                String(
                    format:
                        "recording overhead (%@, every exit as fast as it comes, --record against the same capture, %d pairs): median %+.1f%% per nested exit (%@); target: under 10%%",
                    kind.rawValue, ratios.count, (median - 1) * 100, each))
        }
        for (kind, plain, recorded) in latencies {
            print(
                String(
                    format:
                        "recording overhead (%@, a user stepping: one n, 20 ms, the next; 60 each): median n %@ without, %@ with --record: %+.1f%%",
                    kind.rawValue, us(plain).trimmingCharacters(in: .whitespaces),
                    us(recorded).trimmingCharacters(in: .whitespaces),
                    (recorded / plain - 1) * 100))
        }
        print("where a stop's time goes (mean per nested exit, VMRUN stop included):")
        for run in runs {
            guard let t = run.timings, run.exits > 0 else { continue }
            let n = Int(run.exits)
            let parts: [(String, Duration)] = [
                ("KVM_RUN (guest time included)", t.kvmRun), ("tracepoint ring + counters", t.tracepointReads),
                ("patching", t.patching),
                ("the source's own work", t.stopSource - t.kvmRun - t.tracepointReads - t.patching),
                ("registers", t.registerIoctls), ("KVM_GET_NESTED_STATE", t.nestedStateIoctls),
                ("vmcb12 reads", t.vmcb12Reads),
                ("decode + diff + checks", t.decodeAndDiff),
                (
                    "building the stop",
                    t.assembly - t.registerIoctls - t.nestedStateIoctls - t.vmcb12Reads - t.decodeAndDiff
                ),
                ("recording", t.recording),
            ]
            let accounted = t.stopSource + t.assembly + t.recording
            let shown = parts.filter { $0.1 > .zero }.map {
                "\($0.0) \(us($0.1 / n).trimmingCharacters(in: .whitespaces))"
            }
            print(
                "  \(run.label): " + shown.joined(separator: ", ")
                    + ", outside the engine \(us((run.elapsed - accounted) / n).trimmingCharacters(in: .whitespaces)); "
                    + String(format: "%.1f KVM_RUN round trips per exit", Double(t.kvmRoundTrips) / Double(n)))
        }
    }
}

extension BenchCommand {
    /// Full redraws of a 200×60 screen from a realistic session (real VMCB pages, 300 stops of history).
    func renderBench() {
        var before = VMCB()
        before[integer: .intercepts4] = 1
        before[integer: .saveRIP] = 0x14F0
        before[integer: .saveCR0] = 0x8000_0011
        var after = before
        after[integer: .exitCode] = 0x7B
        after[integer: .exitInfo1] = 0x0080_0090
        after[integer: .saveRIP] = 0x14F4
        let regs = Dictionary(uniqueKeysWithValues: Register.allCases.map { ($0, RegisterValue.known(0x1234)) })
        let stops = (0..<300).map { Stop.synthetic(index: $0, before: before, after: after, l1: regs, l2: regs) }
        let view = SessionView(target: "demo", stops: stops)
        let clock = ContinuousClock()
        var screen = ScreenBuffer(width: 200, height: 60)
        let n = 2000
        // Baseline in the same run: allocating and clearing the buffer alone.
        var start = clock.now
        for _ in 0..<n { screen = ScreenBuffer(width: 200, height: 60) }
        let baseline = (clock.now - start) / n
        start = clock.now
        for _ in 0..<n { Renderer.render(view, into: &screen) }
        let frame = (clock.now - start) / n
        print("nestdbg bench --render (200×60, 300 stops of history)")
        print(String(format: "full redraw into the screen buffer: %8.1f µs", frame.seconds * 1e6))
        print(
            String(
                format: "baseline (clearing the buffer):     %8.1f µs  (redraw = %.1f× baseline)",
                baseline.seconds * 1e6, frame / baseline))
        print(String(format: "share of a 60 Hz frame (16.7 ms):   %8.2f %%", frame.seconds / (1.0 / 60) * 100))
    }
}

extension BenchCommand {
    /// One realistic nested-exit stop's JSON line (both register panes full, the
    /// pages of a CPUID exit, KVM's events), built and serialized many times.
    func jsonBench() {
        var before = VMCB()
        before[integer: .intercepts3] = 1 << 18
        before[integer: .asid] = 1
        before[integer: .saveRIP] = 0x14F0
        before[integer: .saveCR0] = 0x8000_0011
        before[integer: .saveEFER] = 0x1500
        var after = before
        after[integer: .exitCode] = 0x72
        after[integer: .saveRIP] = 0x14F0
        let regs = Dictionary(
            uniqueKeysWithValues: Register.allCases.map { ($0, RegisterValue.known(0xFFFF_8000_1234_5678)) })
        var stop = Stop.synthetic(index: 7, before: before, after: after, l1: regs, l2: regs)
        stop.why = ExitCause(code: 0x72, exitInfo1: 0, controls: before) { _, _ in nil }
        var evidence = KVMEvidence()
        evidence.events = [.vmexitInject(KVMExitFields(code: 0x72))]
        evidence.handledByL0 = [L0ExitCount(code: 0x400, count: 2)]
        stop.kvm = evidence
        let clock = ContinuousClock()
        let n = 2000
        var start = clock.now
        var trees: [JSON] = []
        trees.reserveCapacity(n)
        for _ in 0..<n { trees.append(stop.json) }
        let build = (clock.now - start) / n
        start = clock.now
        var bytes = 0
        for tree in trees { bytes += tree.serialized().utf8.count }
        let serialize = (clock.now - start) / n
        print("nestdbg bench --json-line (one nested-exit stop, \(bytes / n) bytes)")
        print(String(format: "building the JSON value:  %8.1f µs", build.seconds * 1e6))
        print(String(format: "serializing it:           %8.1f µs", serialize.seconds * 1e6))
    }
}

extension BenchCommand {
    /// The demo recording's 63 real stops written into fresh recordings, per
    /// stop, against building and serializing the same stops' JSON lines.
    func recordingBench() throws {
        let (_, stops) = try openRecording(try recordingPath(nil, demo: true))
        let clock = ContinuousClock()
        let passes = 20
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nestdbg-bench-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let session = RecordingSession.here(
            nestdbgVersion: NestdbgVersion.string, target: "bench", image: nil, stopSource: "bench")
        var handedOver = Duration.zero
        var committed = Duration.zero
        for pass in 0..<passes {
            let recorder = try Recorder(path: dir.appendingPathComponent("\(pass).nestdbg").path, session: session)
            let start = clock.now
            for stop in stops { try recorder.record(stop, serialOutput: []) }
            handedOver += clock.now - start
            recorder.waitUntilCommitted()
            committed += clock.now - start
            recorder.finish()
        }
        var bytes = 0
        let start = clock.now
        for _ in 0..<passes {
            for stop in stops { bytes += stop.json.serializedBytes().count }
        }
        let json = clock.now - start
        let n = passes * stops.count
        print("nestdbg bench --recording (the demo recording's \(stops.count) stops, \(passes) times)")
        print(
            String(
                format: "handing a stop to the recorder (what the engine waits): %8.1f µs",
                (handedOver / n).seconds * 1e6))
        print(
            String(
                format: "a stop recorded and committed (the writer's pace):      %8.1f µs",
                (committed / n).seconds * 1e6))
        print(
            String(
                format:
                    "its JSON line, built and serialized (the baseline):     %8.1f µs  (committing = %.2f× the JSON line)",
                (json / n).seconds * 1e6, committed / json))
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
