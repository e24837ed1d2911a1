import DebuggerEngine
import Foundation
import KVMControl
import SVMModel
import Synchronization

/// The interactive session: keys and commands become typed engine commands;
/// the view is redrawn from the stops the engine's thread reports. The UI
/// thread never touches the vCPU, so the keyboard stays live while the
/// guest runs and `p` can pause it.
public final class App {
    /// Makes a recorder for `R` and `:record FILE` (nil: recording is not offered, as in a replay).
    public typealias RecorderFactory = (String) throws -> any StopRecorder

    let session: any DebugSession
    private let recorderFactory: RecorderFactory?
    /// A recording being replayed: reverse commands, goto and `/` work over the whole of it.
    private var isReplay: Bool { session.capabilities.contains(.replaysRecording) }
    let terminal: any TerminalDevice
    /// `:quit` ends the loop as `q` does.
    private var quitting = false
    public private(set) var view: SessionView
    private var watchHz: Double?
    /// Live watch on KVM's tracepoint: the guest runs freely, the UI drains the counts.
    private var trace: NestedExitTrace?
    private var lastCounts: [String: Int] = [:]
    private var counts: [String: Int] = [:]
    private var lastSample = ContinuousClock.now
    private var lastSampleRequest = ContinuousClock.now
    /// A command was sent and its answer has not come back: poll for it.
    private var awaitingEngine = false

    /// `terminal` nil: ncurses on this process's terminal.
    public init(
        session: any DebugSession, theme: Theme, recorderFactory: RecorderFactory? = nil,
        terminal: (any TerminalDevice)? = nil
    ) {
        self.session = session
        self.recorderFactory = recorderFactory
        self.terminal =
            terminal
            ?? Terminal(theme: ProcessInfo.processInfo.environment["NO_COLOR"] != nil ? theme.monochrome : theme)
        view = SessionView(target: session.targetName)
        view.unicode = self.terminal.unicode
    }

    /// Puts the terminal back (curses off) before nestdbg ends on a signal it
    /// took on another thread (attach detaches first, then ends).
    public static func restoreTerminal() { Terminal.restoreForExit() }

    /// Runs until `q` (or `quit` is requested from another thread); `watch` starts in live watch at that rate.
    public func run(watch: Double? = nil, quit: QuitRequest? = nil) {
        quit?.running()
        defer {
            session.shutdown()
            terminal.stop()
            quit?.ended()
        }
        collectEvents(waitingUpTo: .seconds(5))  // the start stop: L1 as loaded
        if let watch { startWatch(hz: watch) }
        redraw()
        while !quitting && quit?.isRequested != true {
            // Idle, the keyboard is polled a few times a second so that a quit request is seen.
            let idleMs: Int32 = quit == nil ? -1 : 200
            let waitMs: Int32 = watchHz.map { Int32(1000 / $0) } ?? (awaitingEngine ? 50 : idleMs)
            let key = terminal.key(timeoutMs: waitMs)
            collectEvents()
            if key != .none, !handle(key) { break }
            redraw()
        }
    }

    private func redraw() {
        var screen = ScreenBuffer(width: terminal.width, height: terminal.height)
        Renderer.render(view, into: &screen)
        terminal.draw(screen)
    }

    /// The guest's COM1 output so far, its last lines in a panel.
    private func showSerial() {
        guard let bytes = session.serialOutput else {
            say(
                "no serial output here: an attached QEMU's COM1 is QEMU's; a recording keeps it in its serial table",
                error: true)
            return
        }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        let shown = lines.suffix(max(1, terminal.height - 6)).map(String.init)
        view.panel = (
            title: "serial (COM1): \(bytes.count) bytes, the last \(shown.count) lines (any key closes)", lines: shown
        )
    }

    private func say(_ text: String, error: Bool = false) {
        view.message = text
        view.messageIsError = error
    }

    // MARK: keys

    /// Handles one key; false quits.
    private func handle(_ key: Terminal.Key) -> Bool {
        if view.commandLine != nil {
            editCommand(key)
            return true
        }
        if view.editingSearch {
            editSearch(key)
            return true
        }
        view.message = nil
        if view.showHelp, key != .resize {
            view.showHelp = false
            if key == .char("?") { return true }
        }
        if view.panel != nil, key != .resize {
            view.panel = nil
            return true
        }
        switch key {
        case .char("q"): return false
        case .char("n"): command("next")
        case .char("e"): command("vmrun")
        case .char("s"): command("step")
        case .char("c"): command("continue")
        case .char("N"): command("reverse-next")
        case .char("E"): command("reverse-vmrun")
        case .char("S"): command("reverse-step")
        case .char("C"): command("reverse-continue")
        case .char("R"): command(view.recording == nil ? "record" : "record off")
        case .char("p"): command("pause")
        case .char("w"): command("watch")
        case .char("v"): view.fullVMCB.toggle()
        case .char("o"): command("serial")
        case .char("?"): view.showHelp = true
        case .char(":"): view.commandLine = ""
        case .char("/"):
            view.editingSearch = true
            view.search = ""
            if !isReplay { view.fullVMCB = true }
        case .char("b"): view.commandLine = "break exit "
        case .char("["), .left: moveSelection(-1)
        case .char("]"), .right: moveSelection(1)
        case .tab:
            let all = SessionView.Focus.allCases
            view.focus = all[(all.firstIndex(of: view.focus)! + 1) % all.count]
        case .resize: terminal.updateSize()
        default: break
        }
        return true
    }

    private func moveSelection(_ delta: Int) {
        guard !view.stops.isEmpty else { return }
        let current = view.selected ?? view.stops.count - 1
        let next = max(0, min(view.stops.count - 1, current + delta))
        view.selected = next == view.stops.count - 1 ? nil : next
    }

    private func editSearch(_ key: Terminal.Key) {
        var text = view.search ?? ""
        switch key {
        case .enter where isReplay:
            // Over a recording, / searches every stop (StopQuery), not the fields of this one.
            view.editingSearch = false
            view.search = nil
            do { try send(.search(text)) } catch { say("\(error)", error: true) }
            return
        case .enter:
            view.editingSearch = false
            return
        case .escape:
            view.editingSearch = false
            view.search = nil
            return
        case .backspace: if !text.isEmpty { text.removeLast() }
        case let .char(c): text.append(c)
        default: break
        }
        view.search = text
    }

    private func editCommand(_ key: Terminal.Key) {
        guard var line = view.commandLine else { return }
        switch key {
        case .enter:
            view.commandLine = nil
            command(line)
            return
        case .escape:
            view.commandLine = nil
            return
        case .backspace: if !line.isEmpty { line.removeLast() }
        case .tab:
            let (completed, candidates) = Completion.complete(line)
            line = completed
            if candidates.count > 1 {
                say(candidates.prefix(8).joined(separator: " ") + (candidates.count > 8 ? " ..." : ""))
            }
        case let .char(c): line.append(c)
        default: break
        }
        view.commandLine = line
    }

    // MARK: commands

    func command(_ text: String) {
        let words = text.split(separator: " ").map(String.init)
        guard let verb = words.first else { return }
        do {
            switch verb {
            case "next", "n": try send(.next)
            case "vmrun", "e": try send(.nextVMRUN)
            case "step", "s": try send(.stepInstruction)
            case "continue", "c": try send(.continueRunning)
            case "reverse-next", "rn": try send(.previous)
            case "reverse-vmrun", "re": try send(.previousVMRUN)
            case "reverse-step", "rs": try send(.previousStop)
            case "reverse-continue", "rc": try send(.reverseContinue)
            case "record": try record(words.count > 1 ? words[1] : nil)
            case "pause", "p": try send(.pause)
            case "watch" where words.count == 2 && VMCBLayout.field(named: words[1]) != nil:
                try send(.addBreakpoint(.watch(VMCBLayout.field(named: words[1])!)))
            case "watch", "w":
                if watchHz != nil {
                    try send(.stopWatch)
                } else {
                    startWatch(hz: words.count > 1 ? Double(words[1]) ?? 10 : 10)
                }
            case "break", "b":
                guard let breakpoint = Self.breakpoint(words) else {
                    say("break exit NAME | break l2-rip ADDR | break l1-rip ADDR", error: true)
                    return
                }
                try send(.addBreakpoint(breakpoint))
            case "delete":
                try send(.deleteBreakpoints(words.count > 1 ? Int(words[1]) : nil))
            case "goto" where isReplay:
                guard words.count > 1, let n = Int(words[1]) else {
                    say("goto N: N is a stop number", error: true)
                    return
                }
                try send(.goto(n))
            case "goto":
                guard words.count > 1, let n = Int(words[1]), let i = view.stops.firstIndex(where: { $0.index == n })
                else {
                    say("goto N: N is a stop number in the history", error: true)
                    return
                }
                view.selected = i == view.stops.count - 1 ? nil : i
            case "theme":
                guard words.count > 1 else {
                    say("theme NAME|PATH", error: true)
                    return
                }
                let theme = try Theme.load(words[1])
                terminal.apply(ProcessInfo.processInfo.environment["NO_COLOR"] != nil ? theme.monochrome : theme)
            case "migrate": migrate(Array(words.dropFirst()))
            case "serial", "o": showSerial()
            case "help", "?": view.showHelp = true
            case "quit", "q":
                quitting = true
            default: say("unknown command \(verb): ? lists them", error: true)
            }
        } catch {
            say("\(error)", error: true)
        }
    }

    /// `:migrate [order NAME] [omit PART]… [exits N]`: the migration check at
    /// the current stop. The original runs on for the comparison; the panes
    /// show where it is afterwards. The check waits on the engine itself, so
    /// the front end's own event loop steps aside until it is done.
    private func migrate(_ words: [String]) {
        guard session.capabilities.contains(.savesVCPU) else {
            say(
                "migrate needs a live vCPU nestdbg can save (its own VM), not a recording or another process's vCPU",
                error: true)
            return
        }
        guard session.state == .stopped else {
            say("migrate needs the guest stopped", error: true)
            return
        }
        guard let at = view.stops.last else { return }
        var plan = MigrationPlan()
        var rest = words[...]
        while let key = rest.popFirst() {
            guard let value = rest.popFirst() else {
                say("migrate [order NAME] [omit PART] [exits N]", error: true)
                return
            }
            switch key {
            case "order":
                do { plan.order = try RestoreOrder.parse(value) } catch {
                    say("\(error)", error: true)
                    return
                }
            case "omit":
                guard let omission = Omission(value) else {
                    say("omit: one of \(Omission.help)", error: true)
                    return
                }
                plan.omitting.insert(omission)
            case "exits":
                guard let n = Int(value), n > 0 else {
                    say("exits N: a positive number", error: true)
                    return
                }
                plan.exits = n
            default:
                say("migrate [order NAME] [omit PART] [exits N]", error: true)
                return
            }
        }
        say("migration check at stop #\(at.index): saving, restoring, running both for \(plan.exits) nested exits…")
        redraw()
        do {
            let report = try Self.offTheUIThread { [session] in
                try MigrationCheck.check(session, at: .stop(at.index), plan: plan)
            }
            if !report.originalHistory.isEmpty { view.stops = report.originalHistory }
            view.selected = nil
            view.panel = (title: "migrate: \(report.verdict.rawValue) (any key closes)", lines: report.lines)
            say(
                "migration check: \(report.verdict.rawValue); the original ran on to stop #\(view.stops.last?.index ?? at.index)",
                error: report.verdict != .same)
        } catch {
            say("migrate: \(error)", error: true)
        }
    }

    /// Runs `work` on a thread of its own and waits for it: the check makes clone VMs and reads them
    /// back (KVM ioctls), which the UI thread never does. The session is only handed over: this thread
    /// does nothing with it until the work is done.
    private static func offTheUIThread<T: Sendable>(_ work: @escaping () throws -> T) throws -> T {
        nonisolated(unsafe) let job = work
        let result = Mutex<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            let outcome = Result { try job() }
            result.withLock { $0 = outcome }
            done.signal()
        }
        thread.name = "nestdbg-migrate"
        thread.start()
        done.wait()
        return try result.withLock { $0! }.get()
    }

    /// `break exit NAME`, `break l2-rip ADDR`, `break l1-rip ADDR`: read as a search would read them.
    static func breakpoint(_ words: [String]) -> Breakpoint? {
        guard case let .breakpoint(breakpoint) = StopQuery(words.dropFirst().joined(separator: " ")) else { return nil }
        return breakpoint
    }

    /// `R`, `:record [FILE]`, `:record off`: every stop from here on into a new
    /// recording (default name: the time), or recording stops.
    private func record(_ argument: String?) throws {
        if argument == "off" {
            try send(.record(nil))
            return
        }
        guard let recorderFactory else {
            throw CommandRefusal(description: "this session cannot record (a replay is a recording already)")
        }
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        let path = argument ?? "nestdbg-\(stamp).nestdbg"
        let recorder = try recorderFactory(path)
        do {
            try send(.record(RecorderHandle(recorder)))
        } catch {
            // Refused (the guest runs): the new, empty file goes again.
            recorder.finish()
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
    }

    private func send(_ command: EngineCommand) throws {
        try session.send(command)
        awaitingEngine = true
        switch command {
        case .next, .nextVMRUN, .stepInstruction, .continueRunning: view.runState = "running"
        default: break
        }
    }

    // MARK: live watch

    private func startWatch(hz: Double) {
        let rate = min(60, max(1, hz))
        // Exact per-exit counts from KVM's tracepoint while the guest runs
        // freely; without tracefs (not root), every exit is stopped at instead.
        var whyStepping: String?
        do {
            trace = try NestedExitTrace(threadID: session.vcpuThreadID)
        } catch {
            trace = nil
            whyStepping = "\(error)"
        }
        do {
            try send(.watch(freeRunning: trace != nil))
        } catch {
            trace = nil
            say("\(error)", error: true)
            return
        }
        watchHz = rate
        lastCounts = [:]
        counts = [:]
        lastSample = .now
        view.runState =
            trace != nil ? "watching \(Int(rate)) Hz, free-running" : "watching \(Int(rate)) Hz, stopping at each exit"
        if let whyStepping {
            say("live watch stops at every exit: KVM's tracepoint could not be opened (\(whyStepping))")
        }
    }

    private var stoppedState: String { session.stoppedDescription }

    /// Picks up what the engine's thread reported since the last look.
    private func collectEvents(waitingUpTo timeout: Duration = .zero) {
        for event in session.takeEvents(waitingUpTo: timeout) {
            switch event {
            case let .stopped(stop, history):
                awaitingEngine = false
                endWatch()
                view.runState = stoppedState
                view.stops = Array(history)
                view.selected = nil
                if let hit = stop.hit {
                    say("breakpoint \(hit): \(stop.reason)")
                } else {
                    say(stop.reason, error: stop.kind == .fault)
                }
            case let .sample(stop, sampledCounts):
                view.stops = [stop]
                view.selected = nil
                if let sampledCounts { counts = sampledCounts }
            case let .breakpoints(list):
                awaitingEngine = false
                let items = list.enumerated().map { "\($0.offset): \($0.element)" }
                say("breakpoints: " + (items.isEmpty ? "none" : items.joined(separator: ", ")))
            case .captured:
                awaitingEngine = false
            case let .recording(path):
                awaitingEngine = false
                view.recording = path
                say(path.map { "recording every stop to \($0) (R stops)" } ?? "recording stopped; the file is complete")
            case let .notice(text):
                say(text)
            case let .failed(failure):
                awaitingEngine = false
                endWatch()
                view.runState = stoppedState
                say(failure.description, error: true)
            }
        }
        guard let watchHz else { return }
        if let trace {
            for (code, n) in trace.drain() {
                counts[SVMExit.name(of: code) ?? "0x" + String(code, radix: 16), default: 0] += n
            }
            // A sample of QEMU's vCPU holds it for its injected ioctls: twice a
            // second leaves the guest most of its speed; the counts stay exact.
            if !session.isAttached || ContinuousClock.now - lastSampleRequest >= .milliseconds(500) {
                session.requestSample()
                lastSampleRequest = .now
            }
        }
        let now = ContinuousClock.now
        let elapsed = now - lastSample
        guard elapsed >= .milliseconds(Int64(1000 / watchHz / 2)) else { return }
        let dt = max(1e-3, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        view.rates = counts.map {
            (name: $0.key, perSecond: Double($0.value - (lastCounts[$0.key] ?? 0)) / dt, total: $0.value)
        }
        .sorted { $0.total > $1.total }
        lastCounts = counts
        lastSample = now
    }

    private func endWatch() {
        guard watchHz != nil else { return }
        watchHz = nil
        trace = nil
        view.rates = []
    }
}

/// Another thread (a signal's) asks the front end to end: the UI thread, which
/// owns curses, restores the terminal and shuts the session down itself.
public final class QuitRequest: Sendable {
    private enum Phase { case notRunning, running, ended }
    private let phase = Mutex<Phase>(.notRunning)
    private let requested = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)

    public init() {}

    var isRequested: Bool { requested.load(ordering: .acquiring) }

    /// Asks the front end to end at its next look, without waiting.
    func request() { requested.store(true, ordering: .releasing) }

    func running() { phase.withLock { $0 = .running } }

    func ended() {
        phase.withLock { $0 = .ended }
        done.signal()
    }

    /// Asks the running front end to end and waits for it (at most `timeout`). False when no front
    /// end is running or it did not end in time: the caller then restores the terminal itself.
    public func requestAndWait(timeout: Duration) -> Bool {
        requested.store(true, ordering: .releasing)
        guard phase.withLock({ $0 }) == .running else { return phase.withLock { $0 } == .ended }
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        return done.wait(timeout: .now() + seconds) == .success
    }
}
