import Foundation
import KVMControl
import SVMModel

/// A moment a migration check saves the vCPU at: the windows the KVM thread
/// argued about, each a property of a stop.
public enum MigrationWindow: String, CaseIterable, Sendable {
    /// KVM has emulated VMRUN, L2 has not run: guest mode with RUN_PENDING.
    case runPending = "run-pending"
    /// As `runPending`, with an event in vmcb12's EVENTINJ that KVM has yet to deliver to L2.
    case eventInjection = "event-injection"
    /// L1 right after a nested #VMEXIT, before it ran an instruction: GIF clear.
    case gifClear = "gif-clear"
    /// L2 stopped at an exit to the VMM with a virtual interrupt (V_IRQ) pending.
    case interruptPending = "interrupt-pending"
    /// L2 stopped at any exit to the VMM (guest mode, nothing pending).
    case inL2 = "in-l2"

    public func matches(_ stop: Stop) -> Bool {
        let cached = stop.cachedControls
        switch self {
        case .runPending:
            return stop.kind == .vmrun && stop.nestedFlags.contains(.runPending)
        case .eventInjection:
            return stop.kind == .vmrun && stop.nestedFlags.contains(.runPending)
                && (cached?[integer: .eventInj] ?? 0) & (1 << 31) != 0
        case .gifClear:
            return stop.kind == .nestedExit && !stop.nestedFlags.contains(.gifSet)
        case .interruptPending:
            return stop.kind == .l2UserspaceExit && (cached?[integer: .intCtl] ?? 0) & (1 << 8) != 0
        case .inL2:
            return stop.kind == .l2UserspaceExit
        }
    }

    public var summary: String {
        switch self {
        case .runPending: return "right after VMRUN, RUN_PENDING (L2 not yet entered)"
        case .eventInjection:
            return "right after VMRUN with vmcb12's EVENTINJ valid (the event not yet delivered to L2)"
        case .gifClear: return "L1 right after a nested #VMEXIT, GIF clear"
        case .interruptPending: return "in L2 with a virtual interrupt pending (V_IRQ)"
        case .inL2: return "in L2, at an exit to the VMM"
        }
    }
}

/// Where a check saves the vCPU.
public enum MigrationPoint: Equatable, Sendable, CustomStringConvertible {
    /// At the Nth nested #VMEXIT (1-based).
    case nestedExit(Int)
    /// At the Nth VMRUN KVM emulated (1-based).
    case vmrun(Int)
    /// At the Nth stop in a window (1-based).
    case window(MigrationWindow, occurrence: Int)
    /// Wherever the session stands (the front end's `:migrate`): its stop number.
    case stop(Int)

    public var description: String {
        switch self {
        case let .nestedExit(n): return "exit \(n)"
        case let .vmrun(n): return "vmrun \(n)"
        case let .window(w, n): return n == 1 ? w.rawValue : "\(w.rawValue) #\(n)"
        case let .stop(n): return "stop #\(n)"
        }
    }

    /// Whether `stop` is the point, given how many of each kind came before it (this one included).
    func reached(_ stop: Stop, exits: Int, vmruns: Int, inWindow: Int) -> Bool {
        switch self {
        case let .nestedExit(n): return stop.kind == .nestedExit && exits == n
        case let .vmrun(n): return stop.kind == .vmrun && vmruns == n
        case let .window(w, n): return w.matches(stop) && inWindow == n
        case let .stop(n): return stop.index == n
        }
    }
}

/// How the clone is made and how long it is watched.
public struct MigrationPlan: Sendable {
    public var order: RestoreOrder
    public var omitting: Set<Omission>
    /// Nested #VMEXITs to run the original and the clone side by side.
    public var exits: Int
    /// Seconds either may take to reach its next stop.
    public var stopTimeout: Double

    public init(order: RestoreOrder = .qemu, omitting: Set<Omission> = [], exits: Int = 50, stopTimeout: Double = 20) {
        self.order = order
        self.omitting = omitting
        self.exits = exits
        self.stopTimeout = stopTimeout
    }
}

/// What a check found.
public struct MigrationReport: Sendable {
    public enum Verdict: String, Sendable {
        /// Read back equal (but for the running TSC) and the same stops for the whole run.
        case same
        /// A restore ioctl failed: the clone could not be made.
        case restoreFailed = "restore_failed"
        /// The read-back differs; the run stayed the same.
        case stateDiffers = "state_differs"
        /// The clone's run left the original's, and a second restore of the same saved state
        /// ran as the first clone did: the difference is the restore's.
        case diverged
        /// The clone's run left the original's, but the platform's timing decides this run, not the
        /// restore: a second restore of the same saved state parted from the first clone too, or L0
        /// handled different exits (a host interrupt) in the two runs before the stop where they parted.
        case nondeterministic
    }

    /// A second clone restored from the same saved state, run as far as the divergence (on divergence only).
    public struct ControlRun: Sendable {
        /// 1-based: the first stop where the second clone parted from the first, nil when it never did.
        public let partedFromClone: Int?
        /// The second clone's stop at the divergence, and whether it is the original's there.
        public let atDivergence: Stop?
        public let matchesOriginal: Bool
        /// Where the two clones parted, field by field.
        public let differences: [Difference]
    }

    public struct Divergence: Sendable {
        /// 1-based: the stop after the save at which they parted.
        public let stopNumber: Int
        public let original: Stop
        public let clone: Stop
        public let differences: [Difference]

        /// L0 (the host's KVM) took a different number of host interrupts (INTR, NMI, SMI exits) in the
        /// two runs on the way to this stop: timing, unlike L0's page faults, which a fresh clone takes
        /// anyway while its memory is mapped in.
        public var l0InterruptsDiffer: Bool { Self.interrupts(original) != Self.interrupts(clone) }

        static func interrupts(_ stop: Stop) -> [UInt64: Int] {
            var counts: [UInt64: Int] = [:]
            for c in stop.kvm?.handledByL0 ?? [] where (0x60...0x62).contains(c.code) {
                counts[c.code, default: 0] += c.count
            }
            return counts
        }

        /// Both runs took the VINTR #VMEXIT, at L2 RIPs one instruction apart, and the earlier one is
        /// the run where L0 took a host interrupt: L2's STI shadow did not survive L0's exit and
        /// re-entry, so the pending V_IRQ was taken before the instruction after STI, not after it.
        /// KVM keeps the shadow in vmcb02's int_state; the CPU under L0 must honour it at VMRUN (the
        /// sandbox's TCG CPU runs as if it did not: an older QEMU's VMRUN, as read, loads no int_state;
        /// the current one does).
        public var lostInterruptShadow: Bool {
            let vintr: UInt64 = 0x64
            guard original.exit?.code == vintr, clone.exit?.code == vintr,
                let a = original.vmcb12?[integer: .saveRIP], let b = clone.vmcb12?[integer: .saveRIP], a != b,
                max(a, b) - min(a, b) <= 15
            else { return false }
            let early = a < b ? original : clone
            let late = a < b ? clone : original
            return Self.interrupts(early)[0x60, default: 0] > Self.interrupts(late)[0x60, default: 0]
        }
    }

    public let point: MigrationPoint
    /// The original's stop where the vCPU was saved.
    public let savedAt: Stop
    public let plan: MigrationPlan
    public let restore: [RestoreStep]
    public let readBack: [Difference]
    /// Stops compared side by side, and the nested #VMEXITs among them.
    public let comparedStops: Int
    public let comparedExits: Int
    public let divergence: Divergence?
    public var control: ControlRun? = nil
    /// Why the side-by-side run ended early without a divergence (both ended the same way).
    public let endedEarly: String?
    /// The original's history after the side-by-side run (it ran on: a front end shows where it is now).
    public let originalHistory: [Stop]
    /// The nested-state blobs as saved and as the clone read back (for `nested-state diff`).
    public let savedNestedState: NestedState?
    public let readBackNestedState: NestedState?

    public var failedStep: RestoreStep? {
        restore.last.flatMap { if case .failed = $0.outcome { return $0 } else { return nil } }
    }

    public var unexpectedReadBack: [Difference] { readBack.filter { !$0.expected } }

    public var verdict: Verdict {
        if failedStep != nil { return .restoreFailed }
        if let divergence {
            return control?.partedFromClone != nil || divergence.l0InterruptsDiffer ? .nondeterministic : .diverged
        }
        return unexpectedReadBack.isEmpty ? .same : .stateDiffers
    }
}

/// Why a check could not be made (not a finding about KVM: the guest never
/// reached the point, or a stop never came).
public struct MigrationCheckError: Error, CustomStringConvertible {
    public let description: String
}

/// The migration check: save the vCPU where the original stands, restore it
/// into a fresh VM in the plan's order, read it back and compare, then run
/// both for the plan's nested exits and compare every stop.
public enum MigrationCheck {
    /// Runs `original` (a session on an own VM, stopped) to `point`.
    public static func run(
        _ original: any DebugSession, to point: MigrationPoint, timeout: Double,
        maxStops: Int = 20_000
    ) throws -> Stop {
        var exits = 0
        var vmruns = 0
        var inWindow = 0
        for _ in 0..<maxStops {
            let stop = try nextStop(original, timeout: timeout, who: "the original")
            if stop.kind == .nestedExit { exits += 1 }
            if stop.kind == .vmrun { vmruns += 1 }
            if case let .window(w, _) = point, w.matches(stop) { inWindow += 1 }
            if point.reached(stop, exits: exits, vmruns: vmruns, inWindow: inWindow) { return stop }
            if stop.endsRun || stop.kind == .paused {
                throw MigrationCheckError(description: "the run ended before \(point): \(stop.reason)")
            }
        }
        throw MigrationCheckError(
            description: "\(point) not reached in \(maxStops) stops (\(exits) nested exits, \(vmruns) VMRUNs)")
    }

    /// Checks at the stop `original` stands at. The original runs on for the
    /// side-by-side comparison; the clone is shut down at the end.
    public static func check(_ original: any DebugSession, at point: MigrationPoint, plan: MigrationPlan) throws
        -> MigrationReport
    {
        guard original.stopSourceKind == .tracepoint else {
            // The patch source's HLTs sit in guest memory: a copy of it is not the guest's.
            throw MigrationCheckError(
                description: "the migration check needs the tracepoint stop source (--stops tracepoint): "
                    + "the patch source's HLTs are in guest memory")
        }
        try original.send(.captureState)
        let captured = try awaitCapture(original, timeout: plan.stopTimeout)
        guard let savedAt = captured.stop else { throw MigrationCheckError(description: "no stop to save at") }
        let (clone, log) = try captured.target.restoredClone(
            from: captured.state, order: plan.order, omitting: plan.omitting)
        guard let clone else {
            return MigrationReport(
                point: point, savedAt: savedAt, plan: plan, restore: log, readBack: [], comparedStops: 0,
                comparedExits: 0, divergence: nil, endedEarly: nil, originalHistory: [],
                savedNestedState: captured.state.nested, readBackNestedState: nil)
        }
        // Unclaimed yet: this thread may read it back before its session claims it.
        let cloneState = try clone.captureState()
        let readBack = StateComparison.compare(
            captured.state, cloneState,
            vmcb12GPA: savedAt.vmcb12GPA ?? captured.state.svmNested?.vmcbPA)
        let twin = try session(on: clone, from: captured)
        defer { twin.shutdown() }
        var cloneStops: [Stop?] = []
        var compared = 0
        var exits = 0
        var divergence: MigrationReport.Divergence?
        var endedEarly: String?
        var history: [Stop] = []
        while exits < plan.exits {
            try original.send(.nextStop)
            try twin.send(.nextStop)
            let a = try nextStopResult(original, timeout: plan.stopTimeout)
            let b = try nextStopResult(twin, timeout: plan.stopTimeout)
            history = a.history
            cloneStops.append(b.stop)
            compared += 1
            guard let x = a.stop, let y = b.stop else {
                let said = { (r: StopResult) in r.stop.map { "stopped: \($0.reason)" } ?? r.failure ?? "no stop" }
                let differences = [
                    Difference(
                        part: "stop", field: "stop", original: said(a), clone: said(b),
                        meaning: "one of the two gave no stop within \(plan.stopTimeout) s")
                ]
                divergence = .init(
                    stopNumber: compared, original: a.stop ?? savedAt, clone: b.stop ?? savedAt,
                    differences: differences)
                break
            }
            let differences = StateComparison.compare(x, y)
            if !differences.isEmpty {
                divergence = .init(stopNumber: compared, original: x, clone: y, differences: differences)
                break
            }
            if x.kind == .nestedExit { exits += 1 }
            if x.endsRun || x.kind == .paused {
                endedEarly = "both ended at stop \(compared): \(x.reason)"
                break
            }
        }
        var report = MigrationReport(
            point: point, savedAt: savedAt, plan: plan, restore: log, readBack: readBack,
            comparedStops: compared, comparedExits: exits, divergence: divergence, endedEarly: endedEarly,
            originalHistory: history, savedNestedState: captured.state.nested,
            readBackNestedState: cloneState.nested)
        if let divergence {
            report.control = try controlRun(captured, plan: plan, against: cloneStops, divergence: divergence)
        }
        return report
    }

    /// An engine session on a fresh clone, going on from the captured stop's context.
    private static func session(on clone: OwnVMTarget, from captured: CapturedStop) throws -> EngineSession {
        let engine = try Engine(ownVM: clone, stops: .tracepoint)
        engine.continueFrom(captured.context)
        let session = EngineSession(engine: engine)
        if let failure = session.startFailure(waitingUpTo: .seconds(10)) {
            session.shutdown()
            throw MigrationCheckError(description: "the clone's engine did not start: \(failure)")
        }
        _ = session.takeEvents()
        return session
    }

    /// Restores the same saved state a second time and runs it as far as the divergence: if the
    /// two clones part from each other, what the first clone did is not a property of the restore.
    private static func controlRun(
        _ captured: CapturedStop, plan: MigrationPlan, against cloneStops: [Stop?],
        divergence: MigrationReport.Divergence
    ) throws -> MigrationReport.ControlRun? {
        guard
            case let (second?, _) = try captured.target.restoredClone(
                from: captured.state, order: plan.order, omitting: plan.omitting)
        else { return nil }
        let control = try session(on: second, from: captured)
        defer { control.shutdown() }
        for (index, first) in cloneStops.enumerated() {
            try control.send(.nextStop)
            let result = try nextStopResult(control, timeout: plan.stopTimeout)
            let parted: [Difference]
            switch (first, result.stop) {
            case let (x?, y?): parted = StateComparison.compare(x, y)
            case (nil, nil): parted = []
            default:
                parted = [
                    Difference(
                        part: "stop", field: "stop", original: first?.reason ?? "no stop",
                        clone: result.stop?.reason ?? result.failure ?? "no stop",
                        meaning: "one of the two clones gave no stop within \(plan.stopTimeout) s")
                ]
            }
            let atDivergence = index + 1 == divergence.stopNumber
            if !parted.isEmpty || atDivergence {
                let matches = result.stop.map { StateComparison.compare(divergence.original, $0).isEmpty } ?? false
                return .init(
                    partedFromClone: parted.isEmpty ? nil : index + 1, atDivergence: result.stop,
                    matchesOriginal: atDivergence && matches, differences: parted)
            }
        }
        return nil
    }

    // MARK: waiting on a session

    struct StopResult {
        var stop: Stop?
        var failure: String?
        var history: [Stop] = []
    }

    private static func nextStop(_ session: any DebugSession, timeout: Double, who: String) throws -> Stop {
        try session.send(.nextStop)
        let result = try nextStopResult(session, timeout: timeout)
        guard let stop = result.stop else {
            throw MigrationCheckError(description: "\(who): \(result.failure ?? "no stop")")
        }
        return stop
    }

    /// The stop a command ended at; a guest that gives none within `timeout` is paused and said to.
    private static func nextStopResult(_ session: any DebugSession, timeout: Double) throws -> StopResult {
        switch session.awaitOutcome(timeout: .milliseconds(Int64(timeout * 1000))) {
        case let .stopped(stop, history): return StopResult(stop: stop, history: Array(history))
        case let .failed(failure): return StopResult(stop: nil, failure: failure.description)
        case .done, .noAnswer: break
        }
        try? session.send(.pause)
        guard case let .stopped(stop, history) = session.awaitOutcome(timeout: .seconds(10)) else {
            throw MigrationCheckError(description: "the engine neither stopped nor paused within \(timeout + 10) s")
        }
        return StopResult(
            stop: nil, failure: "no stop within \(timeout) s (paused at \(stop.reason))", history: Array(history))
    }

    private static func awaitCapture(_ session: any DebugSession, timeout: Double) throws -> CapturedStop {
        switch session.awaitOutcome(timeout: .milliseconds(Int64(timeout * 1000))) {
        case let .done(.captured(captured)): return captured
        case let .failed(failure): throw MigrationCheckError(description: "saving the vCPU: \(failure)")
        default: throw MigrationCheckError(description: "saving the vCPU took longer than \(timeout) s")
        }
    }
}
