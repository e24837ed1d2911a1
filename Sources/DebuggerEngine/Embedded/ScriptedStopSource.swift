import Foundation
import KVMControl
import SVMModel
import Synchronization

/// One thing that happens to an embedded vCPU, as KVM would have left it.
public enum ScriptedEvent: Sendable {
    /// L1 reaches VMRUN (its RIP on the instruction) with vmcb12 at this address in RAX.
    case vmrun(vmcb12: UInt64)
    /// KVM's nested #VMEXIT after the last VMRUN: vmcb12 gets the exit code and EXITINFO, L2's RIP
    /// and `synced` save-area values (what L2 changed); L1 resumes after its VMRUN (3 bytes on).
    case nestedExit(
        code: UInt64, info1: UInt64 = 0, info2: UInt64 = 0, l2RIP: UInt64, synced: [VMCBField: UInt64] = [:])
    /// Someone other than KVM writes vmcb12 while L2 runs (no stop): the next sync diff must say so.
    case foreignWrite(VMCBField, UInt64)
    /// An exit to the VMM that is not a nested event, described.
    case vmmExit(String)
    case fault(String)
    /// The guest writes its status to isa-debug-exit.
    case guestExited(Int32)
    /// The guest runs and never exits to the VMM: the run waits for `interrupt()`.
    case runsForever
}

/// A stop source that plays a script of events on an `EmbeddedTarget`: the
/// engine and everything above it see real stops (assembled, diffed, checked
/// against breakpoints) without KVM. When the script ends the guest ends
/// with `endStatus`. The test fixture's half of the embedded pair.
public final class ScriptedStopSource: StopSource {
    public let name = "scripted (an embedded vCPU's events, played in order)"
    public var kind: StopSourceKind? { nil }
    public var capabilities: StopSourceCapabilities { [.vmrunStops, .singleStep, .freeRun] }
    private let target: EmbeddedTarget
    private var script: [ScriptedEvent]
    private var position = 0
    private let endStatus: Int32
    private let interrupted = Mutex<Bool>(false)
    private let wake = DispatchSemaphore(value: 0)
    /// Events played so far (a breakpoint's `c` plays many without returning).
    public private(set) var played = 0

    public init(target: EmbeddedTarget, script: [ScriptedEvent], endStatus: Int32 = 0) {
        self.target = target
        self.script = script
        self.endStatus = endStatus
    }

    /// More events after the current script (a test that goes on).
    public func append(_ events: [ScriptedEvent]) { script += events }

    public func next() throws -> SourceStop {
        while true {
            if takeInterrupt() { return SourceStop(.paused, kvmExit: "none (paused)") }
            if let stop = try play() { return stop }
        }
    }

    /// One L1 instruction: RIP moves on by one byte.
    public func singleStep() throws -> SourceStop {
        var r = try target.generalRegisters()
        r.rip += 1
        try target.setGeneralRegisters(r)
        return SourceStop(.singleStep, kvmExit: "none (scripted single-step)")
    }

    public func interrupt() {
        interrupted.withLock { $0 = true }
        target.kick()
        wake.signal()
    }

    /// Plays events without stops; an interrupt is a sample unless `shouldStop` says so.
    public func runFree(shouldStop: () -> Bool, sample: () throws -> Void) throws -> SourceStop {
        while true {
            if takeInterrupt() {
                if shouldStop() { return SourceStop(.paused, kvmExit: "none (paused)") }
                try sample()
                continue
            }
            if let stop = try play() {
                switch stop.event {
                case .fault, .guestExited: return stop
                default: continue
                }
            }
        }
    }

    public func addL1Breakpoint(_ linear: UInt64) throws {
        throw TargetError.notSupported(operation: "an L1 instruction breakpoint", target: "the scripted stop source")
    }

    public func removeL1Breakpoint(_ linear: UInt64) throws {}

    public func detach() throws {}

    private func takeInterrupt() -> Bool {
        interrupted.withLock { was in
            defer { was = false }
            return was
        }
    }

    /// Applies the next event to the target; its stop, or nil for an event that is none.
    private func play() throws -> SourceStop? {
        guard position < script.count else {
            return SourceStop(.guestExited(status: endStatus), kvmExit: "none (the script ended)")
        }
        let event = script[position]
        if case .runsForever = event {
            // Stays here, as a guest that never exits would, until interrupted.
            while !interrupted.withLock({ $0 }) { _ = wake.wait(timeout: .now() + 1) }
            return nil
        }
        position += 1
        played += 1
        switch event {
        case let .vmrun(gpa):
            var r = try target.generalRegisters()
            r.rax = gpa
            try target.setGeneralRegisters(r)
            target.withState { $0.vmcbPA = gpa }
            return SourceStop(.vmrun, kvmExit: "none (scripted VMRUN)")
        case let .nestedExit(code, info1, info2, l2RIP, synced):
            try exitToL1(code: code, info1: info1, info2: info2, l2RIP: l2RIP, synced: synced)
            return SourceStop(.nestedExit, kvmExit: "none (scripted #VMEXIT)")
        case let .foreignWrite(field, value):
            let gpa = try target.generalRegisters().rax
            var vmcb = try target.readVMCB(at: gpa)
            vmcb[integer: field] = value
            try target.writePhysical(vmcb.bytes, at: gpa)
            return nil
        case let .vmmExit(description):
            return SourceStop(.vmmExit(description: description), kvmExit: "none (scripted)")
        case let .fault(description): return SourceStop(.fault(.other(description)), kvmExit: "none (scripted)")
        case let .guestExited(status): return SourceStop(.guestExited(status: status), kvmExit: "none (scripted)")
        case .runsForever: return nil
        }
    }

    /// What KVM's nested_svm_vmexit leaves: vmcb12's exit fields and L2's synced state, L1 after VMRUN.
    private func exitToL1(code: UInt64, info1: UInt64, info2: UInt64, l2RIP: UInt64, synced: [VMCBField: UInt64]) throws
    {
        var r = try target.generalRegisters()
        var vmcb = try target.readVMCB(at: r.rax)
        vmcb[integer: .exitCode] = code
        vmcb[integer: .exitInfo1] = info1
        vmcb[integer: .exitInfo2] = info2
        vmcb[integer: .saveRIP] = l2RIP
        for (field, value) in synced { vmcb[integer: field] = value }
        try target.writePhysical(vmcb.bytes, at: r.rax)
        r.rip += 3
        try target.setGeneralRegisters(r)
    }
}
