import KVMControl
import SVMModel

/// Why the engine refused a command.
public enum EngineError: Error, Equatable, CustomStringConvertible {
    case cannotStepL2
    case breakpointNeedsL1
    /// The stop source lacks what the command needs.
    case sourceCannot(SourceAbility)

    /// What a command asked of a stop source that it could not do.
    public enum SourceAbility: Equatable, Sendable {
        case singleStep, runFreely, stopOnL1Instructions
    }

    public var description: String {
        switch self {
        case .cannotStepL2:
            return
                "single-step in L2 is refused: re-arming it on an instruction L1 intercepts makes KVM inject #DB into L1; use n (next exit)"
        case .breakpointNeedsL1: return "set L1 breakpoints while stopped in L1 (its paging translates the address)"
        case .sourceCannot(.singleStep): return "this stop source cannot single-step"
        case .sourceCannot(.runFreely): return "this stop source cannot run freely"
        case .sourceCannot(.stopOnL1Instructions): return "this stop source cannot stop on L1 instructions"
        }
    }
}

/// What a stop's meaning rests on beyond the vCPU (vmcb12 at the last
/// VMRUN, where L1 resumes), taken from one engine for another to go on with.
public struct StopContext: Sendable {
    var assembler: StopAssembler
}

/// Runs a target through a stop source and keeps what happened: every stop
/// is assembled in one place, evaluated against the breakpoints in one
/// place, and recorded. Not thread-safe by design: one thread owns an
/// engine (see `EngineSession`); only `interrupt()` may come from elsewhere.
public final class Engine {
    public let target: any RunnableTarget
    public let source: any StopSource
    private var assembler: StopAssembler
    public private(set) var breakpoints = BreakpointTable()
    public private(set) var history: [Stop] = []
    public static let historyLimit = 5000
    public private(set) var stopCount = 0
    public private(set) var nestedExitCount = 0
    public let timings: StopTimings
    /// Where every recorded stop also goes (`--record`, the front end's `R`); the engine's thread sets it.
    public var recorder: (any StopRecorder)? {
        didSet { if oldValue !== recorder { oldValue?.finish() } }
    }

    public var checkEnvironment: CheckEnvironment {
        get { assembler.checkEnvironment }
        set { assembler.checkEnvironment = newValue }
    }

    public init(target: any RunnableTarget, source: any StopSource, timings: StopTimings) {
        self.target = target
        self.source = source
        self.timings = timings
        assembler = StopAssembler(timings: timings)
    }

    /// nestdbg's own VM, stopped by `stops`: KVM's tracepoints, or patches over
    /// its VMRUN sites (`noVMRUNSite` for a target whose VMRUN cannot be known in advance).
    public convenience init(ownVM target: OwnVMTarget, stops: StopSourceKind = .patch) throws {
        if stops == .patch, target.vmrunSites.isEmpty, let reason = target.unknownVMRUNSitesReason {
            throw StopSourceError.noVMRUNSite(target: target.name, reason: reason)
        }
        if stops == .patch, target.vm.hasIRQChip { throw StopSourceError.patchNeedsHLTExits(target: target.name) }
        let timings = StopTimings()
        let source: any StopSource
        switch stops {
        case .tracepoint:
            source = try TracepointStopSource(target: target, timings: timings)
        case .patch:
            source = try PatchStopSource(target: target, vmrunSites: target.vmrunSites, timings: timings)
        }
        self.init(target: target, source: source, timings: timings)
    }

    /// What the engine remembers beyond the vCPU, for a clone of the vCPU to go on from this stop.
    public var context: StopContext { StopContext(assembler: assembler) }

    /// Continues where `context` was taken: the next #VMEXIT is diffed against the same vmcb12 page.
    public func continueFrom(_ context: StopContext) { assembler.continueFrom(context.assembler) }

    /// What the guest wrote to COM1 (where nestdbg is the VMM; empty elsewhere).
    public var serialOutput: [UInt8] { target.serialOutput ?? [] }

    // MARK: Commands

    /// Records the target as it is now, before it runs (the first screen).
    @discardableResult
    public func recordStart() throws -> Stop {
        try record(try assembler.startStop(from: target))
    }

    /// Runs to the next stop of any kind (VMRUN stops included).
    public func step() throws -> Stop {
        // All-stop: the other vCPUs run exactly while this one runs toward its stop.
        target.resumeOtherVCPUs()
        defer { target.pauseOtherVCPUs() }
        let event = try timings.timed(\.stopSource) { try source.next() }
        let stop = try timings.timed(\.assembly) { try assembler.assemble(event, from: target) }
        return try timings.timed(\.recording) { try record(stop) }
    }

    /// Runs to the next nested #VMEXIT (or any stop that is not a VMRUN).
    public func next() throws -> Stop {
        while true {
            let stop = try step()
            if stop.kind != .vmrun { return stop }
        }
    }

    /// Runs to the next VMRUN (or a stop that needs the user: a fault, a pause, an exit to the VMM).
    public func nextVMRUN() throws -> Stop {
        while true {
            let stop = try step()
            if stop.kind != .nestedExit { return stop }
        }
    }

    /// Runs until a breakpoint matches, the guest faults or ends, or the
    /// user pauses. `limit` bounds the stops taken.
    public func continueRunning(limit: Int = .max) throws -> Stop {
        var taken = 0
        while true {
            let stop = try step()
            taken += 1
            if stop.hit != nil || stop.endsRun || stop.kind == .paused || taken >= limit { return stop }
        }
    }

    /// Executes one L1 instruction (L2 single-step is refused: see `EngineError.cannotStepL2`).
    public func stepInstruction() throws -> Stop {
        guard source.capabilities.contains(.singleStep) else {
            throw EngineError.sourceCannot(.singleStep)
        }
        if try target.isInGuestMode() { throw EngineError.cannotStepL2 }
        return try record(try assembler.assemble(try source.singleStep(), from: target))
    }

    /// Makes a running command on another thread stop with `.paused`. Any thread.
    public func interrupt() { source.interrupt() }

    /// Lets the guest run with no stops (live watch). At each interrupt
    /// `sample` gets a snapshot, until `shouldStop` says so; then the stop
    /// where the guest is now is recorded and returned (a pause, or the
    /// fault or exit that ended it).
    public func runFree(shouldStop: () -> Bool, sample: (Stop) -> Void) throws -> Stop {
        guard source.capabilities.contains(.freeRun) else {
            throw EngineError.sourceCannot(.runFreely)
        }
        var assembler = self.assembler
        target.resumeOtherVCPUs()
        defer { target.pauseOtherVCPUs() }
        let end = try source.runFree(shouldStop: shouldStop) {
            sample(try assembler.assemble(SourceStop(.paused, kvmExit: "KVM_EXIT_INTR"), from: target))
        }
        // VMRUNs happened unseen: there is no "before" page to diff the next #VMEXIT against.
        self.assembler.forgetVMRUN()
        var stop = try self.assembler.assemble(end, from: target)
        if stop.kind == .paused { stop.reason = "live watch ended here" }
        return try record(stop)
    }

    /// Adds a breakpoint; an L1-instruction one needs a source that patches and a vCPU in L1.
    public func addBreakpoint(_ breakpoint: Breakpoint) throws {
        if case let .l1RIP(address) = breakpoint {
            guard source.capabilities.contains(.l1Breakpoints) else {
                throw EngineError.sourceCannot(.stopOnL1Instructions)
            }
            guard try !target.isInGuestMode() else { throw EngineError.breakpointNeedsL1 }
            try source.addL1Breakpoint(address)
        }
        breakpoints.add(breakpoint, baselineFrom: history.last)
    }

    /// Removes breakpoints (all when `index` is nil), taking L1 patches out.
    public func deleteBreakpoints(at index: Int? = nil) throws {
        for case let .l1RIP(address) in breakpoints.remove(at: index) { try source.removeL1Breakpoint(address) }
    }

    /// Leaves the guest as it would be without nestdbg: the source's patches
    /// or events gone, another process's vCPU released. The engine's thread calls it.
    public func detach() throws {
        try source.detach()
        try target.release()
    }

    /// Numbers the stop, evaluates the breakpoints, keeps it in the history and
    /// the recording. A recording that fails is dropped and the failure thrown:
    /// the stop is in the history, the file keeps every stop before it.
    private func record(_ stop: Stop) throws -> Stop {
        var s = stop
        s.index = stopCount
        s.hit = breakpoints.evaluate(s)
        stopCount += 1
        if s.kind == .nestedExit { nestedExitCount += 1 }
        history.append(s)
        assembler.previous = s
        // Trim in batches: removing from the front of an array is O(n).
        if history.count > Engine.historyLimit + 500 { history.removeFirst(history.count - Engine.historyLimit) }
        if let recorder {
            do {
                try recorder.record(s, serialOutput: serialOutput)
            } catch {
                self.recorder = nil
                throw RecordingFailure(path: recorder.path, underlying: error)
            }
        }
        return s
    }
}
