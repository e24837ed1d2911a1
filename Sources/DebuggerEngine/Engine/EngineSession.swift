import Foundation
import KVMControl

/// What the front end (or batch mode) asks of the engine.
public enum EngineCommand: Equatable, Sendable {
    /// One L1 instruction.
    case stepInstruction
    /// To the next stop of any kind (VMRUN stops included).
    case nextStop
    /// To the next nested #VMEXIT.
    case next
    /// To the next VMRUN.
    case nextVMRUN
    /// Until a breakpoint, a fault, the guest's exit or a pause.
    case continueRunning
    /// Live watch: `freeRunning` lets the guest run (samples on `requestSample`);
    /// otherwise every exit is stopped at and counted.
    case watch(freeRunning: Bool)
    case stopWatch
    case pause
    case addBreakpoint(Breakpoint)
    /// One by index, or all (nil).
    case deleteBreakpoints(Int?)
    /// Saves the whole vCPU and guest memory as a migrating VMM would (own VMs).
    case captureState
    /// Every stop from here on also goes into this recording (nil: recording stops).
    case record(RecorderHandle?)
    // Over a recording only (`ReplaySession`): a live vCPU does not run backwards.
    /// Back one stop.
    case previousStop
    /// Back to the previous nested #VMEXIT.
    case previous
    /// Back to the previous VMRUN.
    case previousVMRUN
    /// Back until a breakpoint matches (or the recording's start).
    case reverseContinue
    /// To the stop with this number.
    case goto(Int)
    /// To the next stop the query matches (`StopQuery`), from the one after the current, wrapping.
    case search(String)

    /// The commands that move backwards or jump: recordings only.
    var needsRecording: Bool {
        switch self {
        case .previousStop, .previous, .previousVMRUN, .reverseContinue, .goto, .search: return true
        default: return false
        }
    }
}

/// A vCPU saved at a stop, with what the engine knew there: enough for a clone to go on from it.
public struct CapturedStop: Sendable {
    /// The target it was saved from (a clone keeps its devices and symbols).
    public let target: any MigratableTarget
    public let state: VCPUState
    public let stop: Stop?
    public let context: StopContext
}

/// What the session is doing; a command that does not fit is refused.
public enum SessionState: Equatable, Sendable {
    case stopped
    /// A step, next, vmrun or continue is under way.
    case running(EngineCommand)
    case watching(freeRunning: Bool)
    /// The engine thread has ended (`shutdown`).
    case ended
}

/// A command refused for the state the session is in.
public struct CommandRefusal: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// What the engine thread reports.
public enum SessionEvent: Sendable {
    /// A command finished at this stop; the history is the engine's (a
    /// replay's: the recording up to here, shared, not copied).
    case stopped(Stop, history: ArraySlice<Stop>)
    /// Live watch: where the guest is now; `counts` when every exit is stopped at.
    case sample(Stop, counts: [String: Int]?)
    case breakpoints([Breakpoint])
    /// The state `captureState` saved.
    case captured(CapturedStop)
    /// Recording started (the file) or stopped (nil).
    case recording(String?)
    /// Something to tell the user that is not a stop (a search's result, the end of a recording).
    case notice(String)
    /// A command failed (an ioctl, a refused breakpoint); the session is stopped.
    case failed(SessionFailure)
}

/// Why the engine's thread could not do what it was asked, typed by what it was doing.
public enum SessionFailure: Error, Equatable, Sendable, CustomStringConvertible {
    /// Taking the vCPU (for another process's: seizing its thread).
    case claimingVCPU(String)
    case readingStartState(String)
    /// The command, and what failed under it (an ioctl, a refused breakpoint).
    case command(EngineCommand, String)
    /// A pause or stop-watch arrived when nothing ran.
    case notRunning
    /// A reverse or jump command reached a live vCPU.
    case liveVCPUDoesNotRunBackwards

    public var description: String {
        switch self {
        case let .claimingVCPU(error): return error
        case let .readingStartState(error): return "reading the target's start state: \(error)"
        case let .command(_, error): return error
        case .notRunning: return "not running"
        case .liveVCPUDoesNotRunBackwards: return "a live vCPU does not run backwards"
        }
    }
}

/// One thread owns the engine and the vCPU; everyone else sends typed
/// commands and reads events. `pause` and watch samples reach a running
/// vCPU through the stop source's `interrupt()`, the one thread-safe call.
public final class EngineSession: DebugSession, @unchecked Sendable {
    private let engine: Engine
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var inbox: [EngineCommand] = []
    private var events: [SessionEvent] = []
    private var currentState: SessionState = .stopped
    private var stopWatchRequested = false
    private var quitRequested = false
    private var threadID: Int32?
    private var detachFailure: String?

    /// Why ending the session did not leave the vCPU as nestdbg found it (QEMU's signal state,
    /// the source's patches or events); nil when it did. Read it after `shutdown`.
    public var endFailure: String? { locked { detachFailure } }

    /// Starts the engine's thread; it claims the vCPU and records the start stop.
    public init(engine: Engine) {
        self.engine = engine
        let thread = Thread { [self] in self.serve() }
        thread.name = "nestdbg-engine"
        thread.start()
        condition.lock()
        while threadID == nil { condition.wait() }
        condition.unlock()
    }

    public var state: SessionState { locked { currentState } }

    /// The kernel thread id of the thread inside KVM_RUN (tracepoints filter
    /// on it): the engine's, or QEMU's vCPU thread for an attached target.
    public var vcpuThreadID: Int32 {
        engine.target.vcpuThreadID ?? locked { threadID ?? 0 }
    }

    /// Whether the vCPU belongs to another process (QEMU), which waits while nestdbg holds it.
    public var isAttached: Bool { !engine.target.capabilities.contains(.ownsVM) }

    /// A live vCPU; its vCPU can be saved for a migration check where the target allows it.
    public var capabilities: SessionCapabilities { engine.target.migratable == nil ? [] : [.savesVCPU] }

    /// "stopped"; for QEMU's vCPU, also what stalls while nestdbg holds it.
    public var stoppedDescription: String {
        isAttached
            ? "stopped: QEMU's vCPU is held (QMP stop, info registers, migration wait; c runs, q detaches)" : "stopped"
    }

    /// What stops it (KVM's tracepoints: nothing patched into guest memory). Fixed: any thread.
    public var stopSourceKind: StopSourceKind? { engine.source.kind }

    /// The target's name and capabilities are fixed: safe to read from any thread.
    public var targetName: String { engine.target.name }

    /// The own VM's COM1 (its devices are shared under a lock: any thread may read it).
    public var serialOutput: [UInt8]? { engine.target.serialOutput }

    private func locked<T>(_ body: () -> T) -> T {
        condition.lock()
        defer { condition.unlock() }
        return body()
    }

    /// Sends a command, or says why it does not fit the current state.
    public func send(_ command: EngineCommand) throws(CommandRefusal) {
        condition.lock()
        defer { condition.unlock() }
        if command.needsRecording {
            throw CommandRefusal(
                description:
                    "a live vCPU does not run backwards or jump: record it (--record FILE, or R in the front end) and open it with nestdbg replay FILE"
            )
        }
        switch (currentState, command) {
        case (.ended, _):
            throw CommandRefusal(description: "the engine has ended")
        case (.stopped, .pause):
            throw CommandRefusal(description: "not running: nothing to pause")
        case (.stopped, .stopWatch):
            throw CommandRefusal(description: "live watch is not on")
        case (.stopped, _):
            inbox.append(command)
            currentState = Self.stateFor(command)
            condition.broadcast()
        case let (.running(what), .pause) where Self.runsTheGuest(what):
            engine.interrupt()
        case let (.running(what), _):
            throw CommandRefusal(description: "the guest is running (\(Self.verb(what))): p pauses it first")
        case (.watching, .stopWatch), (.watching, .pause):
            stopWatchRequested = true
            engine.interrupt()
        case (.watching, _):
            throw CommandRefusal(description: "live watch is on: w stops it first")
        }
    }

    /// Live watch: asks the running guest for a snapshot (a `.sample` event follows).
    public func requestSample() {
        locked {
            if case .watching = currentState { engine.interrupt() }
        }
    }

    /// Waits until the engine's thread has said how the start went: nil once
    /// the start stop is posted, else why it failed (attaching, reading the
    /// first state). The events stay queued for `takeEvents`.
    public func startFailure(waitingUpTo timeout: Duration) -> String? {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: Double(timeout.components.seconds))
        while events.isEmpty, condition.wait(until: deadline) {}
        for case let .failed(failure) in events { return failure.description }
        return events.isEmpty ? "the engine did not report its start within \(timeout)" : nil
    }

    /// The events since the last call; waits up to `timeout` for one when there are none.
    public func takeEvents(waitingUpTo timeout: Duration) -> [SessionEvent] {
        condition.lock()
        defer { condition.unlock() }
        if events.isEmpty, timeout > .zero {
            let deadline = Date(
                timeIntervalSinceNow: Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
            )
            while events.isEmpty, condition.wait(until: deadline) {}
        }
        defer { events.removeAll() }
        return events
    }

    /// Ends the engine's thread: interrupts what runs and waits for it (at
    /// most `timeout`). Returns false if the thread did not end in time.
    @discardableResult
    public func shutdown(timeout: Duration) -> Bool {
        condition.lock()
        quitRequested = true
        stopWatchRequested = true
        engine.interrupt()
        condition.broadcast()
        let deadline = Date(timeIntervalSinceNow: Double(timeout.components.seconds))
        while currentState != .ended, condition.wait(until: deadline) {}
        let ended = currentState == .ended
        condition.unlock()
        return ended
    }

    private static func runsTheGuest(_ command: EngineCommand) -> Bool {
        [.nextStop, .next, .nextVMRUN, .continueRunning, .stepInstruction].contains(command)
    }

    /// Busy from the moment a command is queued until its event is posted,
    /// so a second command cannot slip in behind it.
    private static func stateFor(_ command: EngineCommand) -> SessionState {
        if case let .watch(freeRunning) = command { return .watching(freeRunning: freeRunning) }
        return .running(command)
    }

    private static func verb(_ command: EngineCommand) -> String {
        switch command {
        case .next, .nextStop: return "next"
        case .nextVMRUN: return "vmrun"
        case .continueRunning: return "continue"
        case .stepInstruction: return "step"
        default: return "busy with the last command"
        }
    }

    private func post(_ event: SessionEvent, state: SessionState? = nil) {
        locked {
            events.append(event)
            if let state { currentState = state }
            condition.broadcast()
        }
    }

    // MARK: the engine's thread

    private func serve() {
        var claimed = true
        do {
            try engine.target.claimVCPU()
        } catch {
            claimed = false
            post(.failed(.claimingVCPU("\(error)")))
        }
        locked {
            threadID = VCPU.currentThreadID()
            condition.broadcast()
        }
        if claimed {
            do {
                let start = try engine.recordStart()
                post(.stopped(start, history: engine.history[...]))
            } catch {
                post(.failed(.readingStartState("\(error)")))
            }
        }
        while true {
            condition.lock()
            while inbox.isEmpty && !quitRequested && claimed { condition.wait() }
            if quitRequested || !claimed {
                condition.unlock()
                // On this thread: for another process's vCPU it is the tracer. A failed
                // detach is kept for the caller to read after `shutdown` (`endFailure`).
                if claimed {
                    do { try engine.detach() } catch {
                        locked { detachFailure = "leaving the vCPU as nestdbg found it: \(error)" }
                    }
                }
                engine.recorder = nil  // finishes the file
                condition.lock()
                currentState = .ended
                condition.broadcast()
                condition.unlock()
                return
            }
            let command = inbox.removeFirst()
            stopWatchRequested = false
            condition.unlock()
            execute(command)
        }
    }

    private func execute(_ command: EngineCommand) {
        do {
            switch command {
            case .nextStop: post(.stopped(try engine.step(), history: engine.history[...]), state: .stopped)
            case .next: post(.stopped(try engine.next(), history: engine.history[...]), state: .stopped)
            case .nextVMRUN: post(.stopped(try engine.nextVMRUN(), history: engine.history[...]), state: .stopped)
            case .continueRunning:
                post(.stopped(try engine.continueRunning(), history: engine.history[...]), state: .stopped)
            case .stepInstruction:
                post(.stopped(try engine.stepInstruction(), history: engine.history[...]), state: .stopped)
            case let .watch(freeRunning):
                let end = freeRunning ? try watchFreely() : try watchByStepping()
                post(.stopped(end, history: engine.history[...]), state: .stopped)
            case let .addBreakpoint(breakpoint):
                try engine.addBreakpoint(breakpoint)
                post(.breakpoints(engine.breakpoints.list), state: .stopped)
            case let .deleteBreakpoints(index):
                try engine.deleteBreakpoints(at: index)
                post(.breakpoints(engine.breakpoints.list), state: .stopped)
            case .captureState:
                guard let own = engine.target.migratable else {
                    throw TargetError.notSupported(
                        operation: "saving the vCPU for a migration check (nestdbg's own VMs only)",
                        target: engine.target.name)
                }
                let captured = CapturedStop(
                    target: own, state: try own.captureState(), stop: engine.history.last,
                    context: engine.context)
                post(.captured(captured), state: .stopped)
            case let .record(handle):
                engine.recorder = handle?.recorder
                post(.recording(handle?.recorder.path), state: .stopped)
            case .pause, .stopWatch:
                post(.failed(.notRunning), state: .stopped)
            case .previousStop, .previous, .previousVMRUN, .reverseContinue, .goto, .search:
                post(.failed(.liveVCPUDoesNotRunBackwards), state: .stopped)
            }
        } catch {
            post(.failed(.command(command, "\(error)")), state: .stopped)
        }
    }

    private func watchFreely() throws -> Stop {
        try engine.runFree(
            shouldStop: { locked { stopWatchRequested || quitRequested } },
            sample: { post(.sample($0, counts: nil)) })
    }

    /// Without KVM's tracepoints: stop at each exit and count it.
    private func watchByStepping() throws -> Stop {
        var counts: [String: Int] = [:]
        while true {
            let stop = try engine.next()
            if locked({ stopWatchRequested || quitRequested }) || stop.endsRun || stop.kind == .paused { return stop }
            counts[stop.exit?.name ?? stop.kind.rawValue, default: 0] += 1
            post(.sample(stop, counts: counts))
        }
    }
}
