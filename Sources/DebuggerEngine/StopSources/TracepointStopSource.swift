import KVMControl
import KernelTrace
import SVMModel
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Stops where KVM itself says a nested transition happened: perf events on
/// kvm_nested_vmenter, kvm_nested_vmexit_inject and kvm_nested_vmenter_failed,
/// bound to the vCPU's thread with `sigtrap`. The tracepoint queues SIGTRAP
/// in the vCPU thread; KVM sees the pending signal before it re-enters the
/// guest and KVM_RUN returns EINTR, so the vCPU stops at the exact boundary.
/// Nothing in guest memory changes and no VMRUN address is needed.
/// kvm_nested_vmexit is sampled without a signal: the L2 exits KVM handled
/// itself between a VMRUN and the #VMEXIT L1 sees.
public final class TracepointStopSource: StopSource {
    public let name = "tracepoint (perf SIGTRAP on kvm_nested_vmenter / _vmexit_inject / _vmenter_failed)"
    public var kind: StopSourceKind? { .tracepoint }
    public let capabilities: StopSourceCapabilities = [.vmrunStops, .singleStep, .freeRun]
    private let target: any RunnableTarget
    private let timings: StopTimings
    private let tracefs: Tracefs
    private var events: PerfTracepoints?
    /// The thread the events are bound to.
    private var boundThread: pthread_t?
    /// Each event's fields, resolved once, by tracepoint id.
    private var decoders: [UInt64: KVMEventDecoder] = [:]
    /// Counters at the last drain, in request order.
    private var lastCounts: [UInt64] = []
    /// KVM's events so far, checked for order (pure: tested on its own).
    private var sequence = KVMEventSequence()
    private let pauseRequested = Atomic<Bool>(false)

    public init(target: any RunnableTarget, timings: StopTimings = StopTimings()) throws {
        self.target = target
        self.timings = timings
        tracefs = try Tracefs.locate()
        // Fail now, naming what is missing, rather than at the first run.
        for request in KVMNestedEvent.requests { _ = try tracefs.format(system: request.system, name: request.name) }
    }

    /// Probes what the source needs: root, tracefs (mounted if it is not),
    /// the four tracepoints, and perf_event_open with sigtrap on this thread.
    public static func availability() -> StopSourceAvailability {
        do {
            let tracefs = try Tracefs.locate()
            // Opened and closed at once: the kernel accepts what the source will ask.
            _ = try PerfTracepoints(
                KVMNestedEvent.requests, thread: PerfTracepoints.currentThreadID(), tracefs: tracefs,
                ringPages: 1)
            return .available("perf SIGTRAP on kvm:kvm_nested_* (tracefs at \(tracefs.root))")
        } catch let error as TraceError {
            return .unavailable(error.description)
        } catch {
            return .unavailable("\(error)")
        }
    }

    public func interrupt() {
        pauseRequested.store(true, ordering: .sequentiallyConsistent)
        target.kick()
    }

    public func next() throws -> SourceStop {
        try openOnThisThread()
        while true {
            // A pause that came with an event's stop is answered now, before running on.
            if pauseRequested.exchange(false, ordering: .sequentiallyConsistent) {
                return SourceStop(.paused, kvmExit: "none (paused before running)")
            }
            let exit: VCPUExit
            do { exit = try runVCPU() } catch let ended as TargetEnded { return ended.stop }
            if let stop = try interpret(exit) { return stop }
        }
    }

    public func singleStep() throws -> SourceStop {
        try openOnThisThread()
        let rip = try target.generalRegisters().rip
        if let gpa = try target.translate(rip), try target.readPhysical(gpa, count: 3) == [0x0F, 0x01, 0xD8] {
            throw StopSourceError.cannotStepVMRUN
        }
        try target.setSingleStep(true)
        let exit = try withRestore("turning single-step off (KVM_SET_GUEST_DEBUG)") {
            try runVCPU()
        } restore: {
            try target.setSingleStep(false)
        }
        return try interpret(exit) ?? SourceStop(.singleStep, kvmExit: exit.kvmName)
    }

    public func runFree(shouldStop: () -> Bool, sample: () throws -> Void) throws -> SourceStop {
        try openOnThisThread()
        // No SIGTRAPs while the guest runs free; the sequence is unknown afterwards.
        try events?.disable()
        return try withRestore("enabling KVM's tracepoint events again after live watch") {
            while true {
                let exit: VCPUExit
                do { exit = try runVCPU() } catch let ended as TargetEnded { return ended.stop }
                if case .interrupted = exit {
                    // Here a kick asks for a sample; only `shouldStop` ends the run.
                    pauseRequested.store(false, ordering: .sequentiallyConsistent)
                    if shouldStop() { return SourceStop(.paused, kvmExit: exit.kvmName) }
                    try sample()
                    continue
                }
                if let stop = try target.classify(exit) {
                    switch stop.event {
                    case .fault, .guestExited: return stop
                    default: continue
                    }
                }
            }
        } restore: {
            try events?.enable()
            // What the events counted while disabled is not a stop; the sequence starts anew.
            _ = try collect()
            sequence.reset()
        }
    }

    /// KVM has no tracepoint for an L1 instruction (the engine checks the capability first).
    public func addL1Breakpoint(_ linear: UInt64) throws {
        throw TargetError.notSupported(operation: "an L1 instruction breakpoint", target: "the tracepoint stop source")
    }

    public func removeL1Breakpoint(_ linear: UInt64) throws {}

    /// Closes the perf events: the vCPU runs on exactly as without nestdbg.
    public func detach() throws {
        try events?.disable()
        events = nil
    }

    // MARK: running and reading KVM's events

    /// Binds the events to the calling thread: the one that runs KVM_RUN
    /// (the engine's thread, which may not be the one that made the source).
    private func openOnThisThread() throws {
        // pthread_self is no system call: this runs before every stop.
        if events != nil, let bound = boundThread, pthread_equal(bound, pthread_self()) != 0 { return }
        let thread = try target.prepareForTracepointStops()
        let opened = try PerfTracepoints(KVMNestedEvent.requests, thread: thread, tracefs: tracefs)
        decoders = Dictionary(uniqueKeysWithValues: try opened.formats.map { ($0.id, try KVMEventDecoder($0)) })
        try opened.enable()
        events = opened
        boundThread = pthread_self()
        lastCounts = try opened.counts()
    }

    private func runVCPU() throws -> VCPUExit {
        timings.kvmRoundTrips += 1
        return try timings.timed(\.kvmRun) { try target.run() }
    }

    /// The events since the last call, decoded, in the order they fired, and
    /// what the counters (exact even when the ring overflowed) say is missing
    /// from the ring: stopping events, and L2 exits sampled for the counts.
    private func collect() throws -> (events: [KVMNestedEvent], missingStops: [String], missingL2Exits: UInt64) {
        guard let events else { return ([], [], 0) }
        return try timings.timed(\.tracepointReads) {
            var decoded: [KVMNestedEvent] = []
            for record in events.drain() {
                guard let decoder = decoders[record.format.id] else { continue }
                decoded.append(try decoder.decode(record.bytes))
            }
            let counts = try events.counts()
            let fired = zip(counts, lastCounts).map { $0 &- $1 }
            lastCounts = counts
            var missingStops: [String] = []
            var missingL2Exits: UInt64 = 0
            var seen = [UInt64](repeating: 0, count: fired.count)
            for event in decoded { seen[event.requestIndex] += 1 }
            for (i, request) in KVMNestedEvent.requests.enumerated() where fired[i] > seen[i] {
                if request.stops {
                    missingStops.append("\(fired[i] - seen[i]) \(request.name)")
                } else {
                    missingL2Exits += fired[i] - seen[i]
                }
            }
            return (decoded, missingStops, missingL2Exits)
        }
    }

    /// Turns a KVM exit plus KVM's events into a stop (nil: nothing for the user; run on).
    private func interpret(_ exit: VCPUExit) throws -> SourceStop? {
        let (fired, missingStops, missingL2Exits) = try collect()
        var evidence = sequence.evidence(for: fired, missingStops: missingStops, missingL2Exits: missingL2Exits)
        let stopping = evidence.events
        let kicked = pauseRequested.exchange(false, ordering: .sequentiallyConsistent)
        switch exit {
        case .interrupted:
            guard let last = stopping.last else {
                // A kick with nothing from KVM: the user paused. Anything else is a stray signal.
                return kicked ? SourceStop(.paused, kvmExit: exit.kvmName) : nil
            }
            if kicked { pauseRequested.store(true, ordering: .sequentiallyConsistent) }
            let how = last.interruptedRun
            switch last {
            case .vmenter: return SourceStop(.vmrunEmulated, kvmExit: how, evidence: evidence)
            case .vmexitInject, .vmenterFailed: return SourceStop(.nestedExit, kvmExit: how, evidence: evidence)
            case .l2Exit: return nil
            }
        default:
            if kicked { pauseRequested.store(true, ordering: .sequentiallyConsistent) }
            guard var stop = try target.classify(exit) else {
                // Emulated I/O in the same KVM_RUN as a nested transition: still the transition's stop.
                guard let last = stopping.last else { return nil }
                let how = "KVM_RUN after \(exit.kvmName) (SIGTRAP from \(last.tracepoint))"
                if case .vmenter = last { return SourceStop(.vmrunEmulated, kvmExit: how, evidence: evidence) }
                return SourceStop(.nestedExit, kvmExit: how, evidence: evidence)
            }
            if !stopping.isEmpty {
                evidence.notes.append(
                    "KVM fired \(stopping.map(\.tracepoint).joined(separator: ", ")) before this exit")
            }
            stop.evidence = evidence
            return stop
        }
    }

}
