import DebuggerEngine
import Foundation
import KVMControl
import SVMModel
import Synchronization

/// The interactive session: keys and commands drive the engine, the view is
/// redrawn from stops. The engine runs on a worker thread while the guest
/// runs (continue, watch) so the keyboard stays live and `p` can pause it.
public final class App {
    let engine: Engine
    let terminal: Terminal
    public private(set) var view: SessionView

    /// What the worker shares with the UI thread.
    private struct Shared {
        var running = false
        var stopRequested = false
        var latest: Stop?
        var counts: [String: Int] = [:]
        var finished: (stop: Stop?, hit: Breakpoint?, error: String?)?
        /// Live watch on KVM's tracepoint: the guest runs freely, the UI drains the counts.
        var trace: NestedExitTrace?
    }
    /// A reference the worker thread can hold (a Mutex cannot be copied).
    private final class SharedBox: @unchecked Sendable {
        let mutex = Mutex(Shared())
        func withLock<R>(_ body: (inout Shared) -> R) -> R { mutex.withLock { body(&$0) } }
    }
    private let shared = SharedBox()
    private var watchHz: Double?
    private var lastCounts: [String: Int] = [:]
    private var tracedCounts: [String: Int] = [:]
    private var lastSample = ContinuousClock.now

    public init(engine: Engine, target: String, theme: Theme) {
        self.engine = engine
        terminal = Terminal(theme: ProcessInfo.processInfo.environment["NO_COLOR"] != nil ? theme.monochrome : theme)
        view = SessionView(target: target)
        view.unicode = terminal.unicode
    }

    /// Runs until `q`; `watch` starts in live watch at that rate.
    public func run(watch: Double? = nil) {
        defer { terminal.stop() }
        if let watch { startWatch(hz: watch) }
        redraw()
        while true {
            let working = shared.withLock { $0.running }
            let waitMs: Int32 = watchHz.map { Int32(1000 / $0) } ?? (working ? 100 : -1)
            let key = terminal.key(timeoutMs: waitMs)
            collectWorker()
            if key != .none, !handle(key) { break }
            redraw()
        }
        stopWorker()
    }

    private func redraw() {
        var screen = ScreenBuffer(width: terminal.width, height: terminal.height)
        Renderer.render(view, into: &screen)
        terminal.draw(screen)
    }

    private func say(_ text: String, error: Bool = false) { view.message = text; view.messageIsError = error }

    // MARK: keys

    /// Handles one key; false quits.
    private func handle(_ key: Terminal.Key) -> Bool {
        if view.commandLine != nil { editCommand(key); return true }
        if view.editingSearch { editSearch(key); return true }
        view.message = nil
        if view.showHelp, key != .resize { view.showHelp = false; if key == .char("?") { return true } }
        switch key {
        case .char("q"): return false
        case .char("n"): command("next")
        case .char("e"): command("vmrun")
        case .char("s"): command("step")
        case .char("c"): command("continue")
        case .char("p"): command("pause")
        case .char("w"): command("watch")
        case .char("v"): view.fullVMCB.toggle()
        case .char("?"): view.showHelp = true
        case .char(":"): view.commandLine = ""
        case .char("/"): view.editingSearch = true; view.search = ""; view.fullVMCB = true
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
        case .enter: view.editingSearch = false; return
        case .escape: view.editingSearch = false; view.search = nil; return
        case .backspace: if !text.isEmpty { text.removeLast() }
        case let .char(c): text.append(c)
        default: break
        }
        view.search = text
    }

    private func editCommand(_ key: Terminal.Key) {
        guard var line = view.commandLine else { return }
        switch key {
        case .enter: view.commandLine = nil; command(line); return
        case .escape: view.commandLine = nil; return
        case .backspace: if !line.isEmpty { line.removeLast() }
        case .tab:
            let (completed, candidates) = Completion.complete(line)
            line = completed
            if candidates.count > 1 { say(candidates.prefix(8).joined(separator: " ") + (candidates.count > 8 ? " ..." : "")) }
        case let .char(c): line.append(c)
        default: break
        }
        view.commandLine = line
    }

    // MARK: commands

    func command(_ text: String) {
        let words = text.split(separator: " ").map(String.init)
        guard let verb = words.first else { return }
        let busy = shared.withLock { $0.running }
        if busy && !["pause", "watch", "quit", "help", "theme"].contains(verb) {
            say("the guest is running: p pauses it", error: true)
            return
        }
        do {
            switch verb {
            case "next", "n": try synchronous { try engine.next() }
            case "vmrun", "e": try synchronous { try engine.nextVMRUN() }
            case "step", "s": try synchronous { try engine.stepInstruction() }
            case "continue", "c": startWorker(watch: false)
            case "pause", "p":
                if busy { engine.pause() } else { say("not running") }
            case "watch" where words.count == 2 && VMCBLayout.field(named: words[1]) != nil:
                engine.breakpoints.append(.watch(VMCBLayout.field(named: words[1])!))
                refreshBreakpoints()
            case "watch", "w":
                if watchHz != nil { stopWorker(); watchHz = nil; view.rates = []; view.runState = "stopped"; syncStops() }
                else { startWatch(hz: words.count > 1 ? Double(words[1]) ?? 10 : 10) }
            case "break", "b":
                guard words.count >= 3 else { say("break exit NAME | break l2-rip ADDR", error: true); return }
                if words[1] == "exit", let code = SVMExit.code(named: words[2]) { engine.breakpoints.append(.exit(code)) }
                else if words[1] == "l2-rip", let a = UInt64(words[2].replacingOccurrences(of: "0x", with: ""), radix: 16) { engine.breakpoints.append(.l2RIP(a)) }
                else if words[1] == "l1-rip", let a = UInt64(words[2].replacingOccurrences(of: "0x", with: ""), radix: 16) { try engine.addL1Breakpoint(a) }
                else { say("unknown breakpoint: \(text)", error: true); return }
                refreshBreakpoints()
            case "delete":
                try engine.deleteBreakpoints(at: words.count > 1 ? Int(words[1]) : nil)
                refreshBreakpoints()
            case "goto":
                guard words.count > 1, let n = Int(words[1]), let i = view.stops.firstIndex(where: { $0.index == n }) else {
                    say("goto N: N is a stop number in the history", error: true); return
                }
                view.selected = i == view.stops.count - 1 ? nil : i
            case "theme":
                guard words.count > 1 else { say("theme NAME|PATH", error: true); return }
                let theme = try Theme.load(words[1])
                terminal.apply(ProcessInfo.processInfo.environment["NO_COLOR"] != nil ? theme.monochrome : theme)
            case "help", "?": view.showHelp = true
            case "quit", "q": stopWorker(); terminal.stop(); exit(0)
            default: say("unknown command \(verb): ? lists them", error: true)
            }
        } catch {
            say("\(error)", error: true)
        }
    }

    private func refreshBreakpoints() {
        let list = engine.breakpoints.enumerated().map { "\($0.offset): \($0.element)" }
        say("breakpoints: " + (list.isEmpty ? "none" : list.joined(separator: ", ")))
    }

    private func synchronous(_ body: () throws -> Stop) throws {
        let stop = try body()
        syncStops()
        say(stop.reason)
    }

    private func syncStops() {
        view.stops = engine.history
        view.selected = nil
    }

    // MARK: the worker

    private func startWorker(watch: Bool) {
        shared.withLock { $0 = Shared(); $0.running = true }
        view.runState = watch ? "watching \(Int(watchHz ?? 10)) Hz" : "running"
        let engine = self.engine, shared = self.shared
        Thread {
            do {
                if watch, let trace = try? NestedExitTrace(threadID: VCPU.currentThreadID()) {
                    // Free running: the UI kicks the vCPU at the watch rate for a sample.
                    shared.withLock { $0.trace = trace }
                    let end = try engine.runFree(shouldStop: { shared.withLock { $0.stopRequested } },
                                                 sample: { s in shared.withLock { $0.latest = s } })
                    shared.withLock { $0.finished = (end, nil, nil) }
                } else if watch {
                    // No tracepoints (not root, no tracefs): count exits by stopping at each.
                    while !shared.withLock({ $0.stopRequested }) {
                        let s = try engine.next()
                        let name = s.exit?.name ?? s.kind.rawValue
                        shared.withLock { $0.latest = s; $0.counts[name, default: 0] += 1 }
                        if s.kind == .fault || s.kind == .paused || s.kind == .exited {
                            shared.withLock { $0.finished = (s, nil, nil) }
                            break
                        }
                    }
                    shared.withLock { if $0.finished == nil { $0.finished = (nil, nil, nil) } }
                } else {
                    let (s, hit) = try engine.continueRunning()
                    shared.withLock { $0.finished = (s, hit, nil) }
                }
            } catch {
                shared.withLock { $0.finished = (nil, nil, "\(error)") }
            }
            shared.withLock { $0.running = false }
        }.start()
    }

    private func startWatch(hz: Double) {
        watchHz = min(60, max(1, hz))
        lastCounts = [:]
        tracedCounts = [:]
        lastSample = .now
        startWorker(watch: true)
    }

    /// Picks up what the worker did since the last look.
    private func collectWorker() {
        var (latest, counts, finished, running, trace) = shared.withLock { ($0.latest, $0.counts, $0.finished, $0.running, $0.trace) }
        if let trace, watchHz != nil {
            for (code, n) in trace.drain() { tracedCounts[SVMExit.name(of: code) ?? "0x" + String(code, radix: 16), default: 0] += n }
            counts = tracedCounts
            if running { engine.pause() }   // the next sample
        }
        if watchHz != nil {
            let now = ContinuousClock.now
            let dt = max(1e-3, Double((now - lastSample).components.attoseconds) / 1e18 + Double((now - lastSample).components.seconds))
            view.rates = counts.map { (name: $0.key, perSecond: Double($0.value - (lastCounts[$0.key] ?? 0)) / dt, total: $0.value) }
                .sorted { $0.total > $1.total }
            lastCounts = counts
            lastSample = now
            if let latest { view.stops = [latest]; view.selected = nil }
            view.runState = trace != nil ? "watching \(Int(watchHz ?? 10)) Hz, free-running" : "watching \(Int(watchHz ?? 10)) Hz, stopping at each exit"
        }
        if let finished, !running {
            shared.withLock { $0.finished = nil; $0.trace = nil }
            watchHz = nil
            view.rates = []
            view.runState = "stopped"
            syncStops()
            if let e = finished.error { say(e, error: true) }
            else if let hit = finished.hit { say("breakpoint \(hit): \(finished.stop?.reason ?? "")") }
            else if let s = finished.stop { say(s.reason, error: s.kind == .fault) }
        }
    }

    /// Stops a running worker and waits for it.
    private func stopWorker() {
        guard shared.withLock({ $0.running }) else { return }
        shared.withLock { $0.stopRequested = true }
        engine.pause()
        while shared.withLock({ $0.running }) { usleep(1000) }
        collectWorker()
    }
}

