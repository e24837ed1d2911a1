import KVMControl
import SVMModel

/// Where the time of stops goes (for `nestdbg bench`). Durations are totals;
/// the stop source and the assembler add to the same record.
public final class StopTimings: @unchecked Sendable {
    public var kvmRun: Duration = .zero
    public var kvmRoundTrips = 0
    public var registerIoctls: Duration = .zero
    public var nestedStateIoctls: Duration = .zero
    public var vmcb12Reads: Duration = .zero
    public var decodeAndDiff: Duration = .zero
    public var patching: Duration = .zero
    public var tracepointReads: Duration = .zero
    /// Totals of the three phases of a step: the stop source (KVM_RUN and its
    /// mechanism), the assembly (the reads above, decode, checks), recording
    /// (breakpoints, history). What the slots above leave is each phase's own work.
    public var stopSource: Duration = .zero
    public var assembly: Duration = .zero
    public var recording: Duration = .zero

    public init() {}

    func timed<T>(_ slot: ReferenceWritableKeyPath<StopTimings, Duration>, _ body: () throws -> T) rethrows -> T {
        let start = ContinuousClock.now
        defer { self[keyPath: slot] += ContinuousClock.now - start }
        return try body()
    }
}

/// Stops by patching L1's code (the mechanism the sandbox notes found exact
/// under TCG, where hardware breakpoints never fire and int3 goes to L1's
/// IDT): a one-byte HLT over each VMRUN and over the L1 instruction after
/// it. KVM_EXIT_HLT at a patch is a stop; the byte is restored and RIP
/// rewound at once, so the guest never sees the patch. To resume past the
/// post-VMRUN instruction the source single-steps it in L1 (never in L2) and
/// patches again. Nothing outside this file knows about patches or sites.
public final class PatchStopSource: StopSource {
    public let name = "patch (HLT over VMRUN and the instruction after it)"
    public var kind: StopSourceKind? { .patch }
    public let capabilities: StopSourceCapabilities = [.l1Breakpoints, .vmrunStops, .singleStep, .freeRun]
    private let target: any RunnableTarget
    private let timings: StopTimings

    private struct Site { let vmrun: UInt64, after: UInt64, vmrunGPA: UInt64, afterGPA: UInt64 }
    private let sites: [Site]
    /// GPA → the guest's byte under a patch.
    private var original: [UInt64: UInt8] = [:]
    /// Resume must first single-step the instruction under this patch (its
    /// byte is back in place), then patch again.
    private var stepOverPatch: UInt64?
    /// L1 breakpoints: L1 address → guest-physical address of the patch.
    private var l1Breakpoints: [UInt64: UInt64] = [:]

    /// Checks each VMRUN site (L1-linear, translated now) and patches them all.
    public init(target: any RunnableTarget, vmrunSites: [UInt64], timings: StopTimings = StopTimings()) throws {
        self.target = target
        self.timings = timings
        var checked: [Site] = []
        for site in vmrunSites {
            guard let gpa = try target.translate(site), try target.readPhysical(gpa, count: 3) == [0x0F, 0x01, 0xD8],
                let afterGPA = try target.translate(site + 3)
            else {
                throw StopSourceError.notVMRUN(site)
            }
            checked.append(Site(vmrun: site, after: site + 3, vmrunGPA: gpa, afterGPA: afterGPA))
        }
        sites = checked
        try patchAll()
    }

    public func interrupt() { target.kick() }

    public func next() throws -> SourceStop {
        while true {
            if let exit = try stepOverPendingPatch() {
                // The step landed on the next instruction: nothing to report unless it was an event.
                if case .debug = exit { continue }
                if let stop = try classify(exit) { return stop }
                continue
            }
            if let stop = try classify(try runVCPU()) { return stop }
        }
    }

    public func singleStep() throws -> SourceStop {
        if let exit = try stepOverPendingPatch() { return try classify(exit) ?? stepped() }
        let rip = try target.generalRegisters().rip
        if sites.contains(where: { $0.vmrun == rip }) { throw StopSourceError.cannotStepVMRUN }
        let exit = try stepOneInstruction()
        return try classify(exit) ?? stepped()
    }

    private func stepped() -> SourceStop { SourceStop(.singleStep, kvmExit: "KVM_EXIT_DEBUG") }

    public func runFree(shouldStop: () -> Bool, sample: () throws -> Void) throws -> SourceStop {
        try detach()
        stepOverPatch = nil
        return try withRestore("patching VMRUN sites and breakpoints back after live watch") {
            while true {
                let exit = try runVCPU()
                if case .interrupted = exit {
                    if shouldStop() { return SourceStop(.paused, kvmExit: exit.kvmName) }
                    try sample()
                    continue
                }
                if let stop = try classify(exit) {
                    switch stop.event {
                    case .fault, .guestExited: return stop
                    default: continue  // free running: I/O and HLT are part of the guest's life
                    }
                }
            }
        } restore: {
            try patchAll()
        }
    }

    public func addL1Breakpoint(_ linear: UInt64) throws {
        if sites.contains(where: { $0.vmrun == linear || $0.after == linear }) {
            throw StopSourceError.breakpointOnVMRUNSite
        }
        guard let gpa = try target.translate(linear) else { throw StopSourceError.notMapped(linear) }
        l1Breakpoints[linear] = gpa
        // Stopped on that very instruction: patch it once it has executed.
        if try target.generalRegisters().rip == linear, stepOverPatch == nil {
            stepOverPatch = gpa
        } else if stepOverPatch != gpa {
            try patch(gpa)
        }
    }

    public func removeL1Breakpoint(_ linear: UInt64) throws {
        guard let gpa = l1Breakpoints.removeValue(forKey: linear) else { return }
        try unpatch(gpa)
        if stepOverPatch == gpa { stepOverPatch = nil }
    }

    public func detach() throws {
        for (gpa, byte) in original { try target.writePhysical([byte], at: gpa) }
        original.removeAll()
    }

    // MARK: patches

    /// Puts every patch in place: the VMRUN sites, their next instructions, L1 breakpoints.
    private func patchAll() throws {
        for site in sites {
            try patch(site.vmrunGPA)
            try patch(site.afterGPA)
        }
        for gpa in l1Breakpoints.values { try patch(gpa) }
    }

    private func patch(_ gpa: UInt64) throws {
        guard original[gpa] == nil else { return }
        try timings.timed(\.patching) {
            original[gpa] = try target.readPhysical(gpa, count: 1)[0]
            try target.writePhysical([0xF4], at: gpa)
        }
    }

    private func unpatch(_ gpa: UInt64) throws {
        guard let byte = original.removeValue(forKey: gpa) else { return }
        try timings.timed(\.patching) { try target.writePhysical([byte], at: gpa) }
    }

    private func runVCPU() throws -> VCPUExit {
        timings.kvmRoundTrips += 1
        return try timings.timed(\.kvmRun) { try target.run() }
    }

    private func stepOneInstruction() throws -> VCPUExit {
        try target.setSingleStep(true)
        return try withRestore("turning single-step off (KVM_SET_GUEST_DEBUG)") {
            try runVCPU()
        } restore: {
            try target.setSingleStep(false)
        }
    }

    /// Executes the instruction under the patch taken out at the last stop,
    /// then puts the patch back; nil when there is none.
    private func stepOverPendingPatch() throws -> VCPUExit? {
        guard let gpa = stepOverPatch else { return nil }
        stepOverPatch = nil
        let exit = try stepOneInstruction()
        try patch(gpa)
        return exit
    }

    /// Turns a KVM exit into an event (nil: nothing for the user).
    private func classify(_ exit: VCPUExit) throws -> SourceStop? {
        switch exit {
        case .hlt:
            var registers = try timings.timed(\.registerIoctls) { try target.generalRegisters() }
            let at = registers.rip &- 1
            // A HLT of ours: rewind RIP onto the instruction and put its byte back.
            func rewind(_ gpa: UInt64) throws {
                registers.rip = at
                try timings.timed(\.registerIoctls) { try target.setGeneralRegisters(registers) }
                try unpatch(gpa)
            }
            if let site = sites.first(where: { $0.vmrun == at }), original[site.vmrunGPA] != nil {
                try rewind(site.vmrunGPA)
                return SourceStop(.vmrun, kvmExit: "KVM_EXIT_HLT (patch at VMRUN)")
            }
            if let site = sites.first(where: { $0.after == at }), original[site.afterGPA] != nil {
                try rewind(site.afterGPA)
                try patch(site.vmrunGPA)  // VMRUN has run: arm it again
                stepOverPatch = site.afterGPA
                return SourceStop(.nestedExit, kvmExit: "KVM_EXIT_HLT (patch after VMRUN)")
            }
            if let gpa = l1Breakpoints[at], original[gpa] != nil {
                try rewind(gpa)
                stepOverPatch = gpa
                return SourceStop(.l1Breakpoint(address: at), kvmExit: "KVM_EXIT_HLT (patch at an L1 breakpoint)")
            }
            return SourceStop(.vmmExit(description: "HLT"), kvmExit: exit.kvmName)
        default:
            return try target.classify(exit)
        }
    }
}
