import ArgumentParser
import DebuggerEngine
import Foundation
import SVMModel

/// The batch loop of `run` and `attach`: the engine goes from stop to stop,
/// each printed as it happens (one JSON object per line with --json), until
/// `exits` nested exits, a breakpoint, a fault or the guest's end. Never
/// hangs: a guest that gives no stop within `timeout` is paused and reported.
struct BatchRun {
    let exits: Int
    let json: Bool
    let timeout: Double
    let breakpoints: [Breakpoint]

    /// Checks the options as given on the command line (bad input: status 2).
    init(exits: Int, json: Bool, timeout: Double, breakAt: [String]) throws {
        guard exits > 0 else { throw fail("--exits must be positive", status: 2) }
        guard timeout > 0 else { throw fail("--timeout must be positive", status: 2) }
        self.exits = exits
        self.json = json
        self.timeout = timeout
        breakpoints = try breakAt.map { name in
            guard let code = SVMExit.code(named: name) else {
                throw fail("unknown exit code or name: \(name)", status: 2)
            }
            return .exit(code)
        }
    }

    /// A live session, or a replay: that prints what the live run printed and
    /// ends where the recording does.
    func run(_ session: any DebugSession) throws {
        for breakpoint in breakpoints {
            try session.send(.addBreakpoint(breakpoint))
            _ = try awaitStop(session)
        }
        var nestedExits = 0
        while nestedExits < exits {
            let refusal: CommandRefusal?
            do {
                try session.send(.next)
                refusal = nil
            } catch {
                refusal = error
            }
            if let refusal {
                if session.capabilities.contains(.replaysRecording) { return }  // the recording holds no further stop
                throw refusal
            }
            guard let stop = try awaitStop(session) else { continue }
            if stop.kind == .nestedExit { nestedExits += 1 }
            print(json ? stop.json.serialized() : line(stop))
            if stop.kind == .fault { throw fail("stopped: \(stop.reason)", status: 1) }
            if stop.kind == .exited { throw ExitCode(stop.exitStatus ?? 0) }
            if let hit = stop.hit {
                if !json { print("breakpoint: \(hit)") }
                return
            }
        }
    }

    /// Waits for the engine to finish a command: its stop, or nil for a
    /// command that ends without one.
    private func awaitStop(_ session: any DebugSession) throws -> Stop? {
        switch session.awaitOutcome(timeout: .milliseconds(Int64(timeout * 1000))) {
        case let .stopped(stop, _): return stop
        case .done: return nil
        case let .failed(failure): throw fail(failure.description, status: 1)
        case .noAnswer: break
        }
        try? session.send(.pause)
        let paused = session.takeEvents(waitingUpTo: .seconds(5)).compactMap { event -> Stop? in
            if case let .stopped(stop, _) = event { return stop } else { return nil }
        }.last
        let rip = paused.flatMap { $0.level == .l2 ? $0.l2?[.rip] : $0.l1[.rip] }
        let at = paused.map { " (paused in \($0.level.rawValue) at rip 0x\(String(rip ?? 0, radix: 16)))" } ?? ""
        throw fail(
            "no stop within \(String(format: "%g", timeout)) s: the guest produced no nested exit or exit to the VMM\(at)",
            status: 1)
    }

    private func line(_ s: Stop) -> String {
        let l2rip = s.l2?[.rip].map { "0x" + String($0, radix: 16) } ?? "?"
        let unexpected = s.synced.filter { $0.sync == .unexpected }.count
        return "#\(s.index) \(s.kind.rawValue) [\(s.level.rawValue)] L2 rip \(l2rip): \(s.reason)"
            + (s.synced.isEmpty
                ? "" : " (\(s.synced.count) synced\(unexpected > 0 ? ", \(unexpected) UNEXPECTED" : ""))")
    }
}
