import KVMControl
import SVMModel

/// The one place a `Stop` is built: an event from a stop source plus what
/// the target says now. It remembers vmcb12 as L1 prepared it at the last
/// VMRUN, which the next #VMEXIT's sync diff is taken against.
struct StopAssembler {
    var checkEnvironment = CheckEnvironment(physicalAddressBits: 40)
    let timings: StopTimings
    /// vmcb12 at the last VMRUN stop, and its consistency check.
    private(set) var atVMRUN: (gpa: UInt64, vmcb: VMCB, violations: [Violation])?
    /// The previous stop the engine recorded, for the triple-fault diagnosis.
    var previous: Stop?
    /// Where L1 resumes after the VMRUN KVM last emulated (its kvm_nested_vmenter).
    private var resumeRIP: UInt64?

    init(timings: StopTimings) { self.timings = timings }

    /// Takes over what `other` remembers (vmcb12 at the last VMRUN, where L1
    /// resumes, the last stop): a clone of its vCPU goes on from the same point.
    mutating func continueFrom(_ other: StopAssembler) {
        checkEnvironment = other.checkEnvironment
        atVMRUN = other.atVMRUN
        previous = other.previous
        resumeRIP = other.resumeRIP
    }

    /// VMRUNs happened unseen (free running): no "before" page to diff against.
    mutating func forgetVMRUN() {
        atVMRUN = nil
        resumeRIP = nil
    }

    mutating func assemble(_ source: SourceStop, from target: any DebugTarget) throws -> Stop {
        if case let .processEnded(description, guestStatus) = source.event {
            return endStop(description, guestStatus: guestStatus, kvmExit: source.kvmExit)
        }
        let r = try timings.timed(\.registerIoctls) { try target.generalRegisters() }
        let s = try timings.timed(\.registerIoctls) { try target.specialRegisters() }
        let d = try timings.timed(\.registerIoctls) { try target.debugRegisters() }
        var stop: Stop
        switch source.event {
        case .vmrun:
            stop = try vmrunStop(
                r, l1: .fromVCPU(r, s, d, source: "vCPU registers"), target: target, kvmExit: source.kvmExit)
        case .vmrunEmulated:
            stop = try vmrunEmulatedStop(r, s, d, evidence: source.evidence, target: target, kvmExit: source.kvmExit)
        case .nestedExit:
            // VMRUN and #VMEXIT in one stop: this VMRUN's vmcb12 was never seen, so no "before" page.
            if let vmenter = source.evidence?.vmenter {
                forgetVMRUN()
                resumeRIP = vmenter.l1RIP
            }
            stop = try nestedExitStop(r, s, d, target: target, kvmExit: source.kvmExit)
        case let .vmmExit(description):
            stop = try levelStop(kind: nil, reason: description, r, s, d, target: target, kvmExit: source.kvmExit)
        case .paused:
            stop = try levelStop(kind: .paused, reason: "paused", r, s, d, target: target, kvmExit: source.kvmExit)
        case let .fault(fault):
            let reason = fault.description + (fault == .tripleFault ? shutdownDiagnosis() : "")
            stop = try levelStop(kind: .fault, reason: reason, r, s, d, target: target, kvmExit: source.kvmExit)
        case let .guestExited(status):
            stop = try levelStop(
                kind: .exited, reason: "the guest wrote \(status) to the debug-exit port 0xF4",
                r, s, d, target: target, kvmExit: source.kvmExit)
            stop.exitStatus = status
        case .processEnded:
            preconditionFailure("handled above: nothing can be read from an ended process")
        case .singleStep:
            stop = try levelStop(
                kind: .singleStep, reason: "single-step in L1 to \(hex(r.rip))", r, s, d,
                target: target, kvmExit: source.kvmExit)
        case let .l1Breakpoint(address):
            stop = try levelStop(
                kind: .breakpoint, reason: "L1 breakpoint at \(hex(address))", r, s, d,
                target: target, kvmExit: source.kvmExit)
        }
        if let evidence = source.evidence { try verify(&stop, against: evidence, rip: r.rip, target: target) }
        return stop
    }

    /// Holds a tracepoint stop against the architecture and against vmcb12:
    /// a stop that is not where KVM's event says becomes a fault that says
    /// why; KVM's own exit fields are compared with what vmcb12 holds.
    private mutating func verify(
        _ stop: inout Stop, against evidence: KVMEvidence, rip: UInt64, target: any DebugTarget
    ) throws {
        var evidence = evidence
        switch stop.kind {
        case .vmrun:
            if !stop.nestedFlags.contains(.guestMode) || !stop.nestedFlags.contains(.runPending) {
                evidence.problems.append(
                    "at kvm_nested_vmenter the vCPU is not in guest mode with RUN_PENDING (flags \(stop.nestedFlags))")
            }
            if let vmcb = stop.vmcb12, vmcb[integer: .saveRIP] != rip {
                evidence.problems.append(
                    "L2's RIP \(hex(rip)) is not vmcb12's save.rip \(hex(vmcb[integer: .saveRIP]))")
            }
        case .nestedExit:
            if stop.nestedFlags.contains(.guestMode) {
                evidence.problems.append("at a #VMEXIT stop the vCPU is still in guest mode")
            }
            if let injected = evidence.injectedExit {
                // Where KVM said L1 would resume when it emulated the VMRUN; without that event, the bytes before RIP.
                if let resume = resumeRIP {
                    if rip != resume {
                        evidence.problems.append(
                            "L1's RIP \(hex(rip)) is not after its VMRUN (KVM said L1 resumes at \(hex(resume)))")
                    }
                } else if let gpa = try target.translate(rip &- 3),
                    try target.readPhysical(gpa, count: 3) != [0x0F, 0x01, 0xD8]
                {
                    evidence.problems.append("L1's RIP \(hex(rip)) is not just after a VMRUN")
                }
                if let vmcb = stop.vmcb12 { stop.kvmDisagreements = disagreements(injected, vmcb) }
                if let check = evidence.failedCheck { stop.reason += "; KVM's failed check: \(check)" }
                if injected.code == SVMExit.software {  // KVM's SMM entry from L2 fires kvm_nested_vmexit_inject too
                    stop.reason =
                        "KVM entered SMM from L2 (exit code 0xf0000000, SVM_EXIT_SW, is KVM's own: no #VMEXIT reaches L1)"
                }
            } else if let check = evidence.failedCheck {
                stop.reason = "VMRUN failed KVM's check \(check)"
            }
        default:
            break
        }
        stop.kvm = evidence
        if !evidence.problems.isEmpty {
            stop.reason = "inexact stop: \(evidence.problems.joined(separator: "; ")) (\(stop.reason))"
            stop.kind = .fault
        }
    }

    /// Where KVM's tracepoint and vmcb12 in memory disagree about the exit.
    private func disagreements(_ kvm: KVMExitFields, _ vmcb: VMCB) -> [String] {
        let pairs: [(String, UInt64, VMCBField)] = [
            ("exit_code", kvm.code, .exitCode), ("exit_info1", kvm.info1, .exitInfo1),
            ("exit_info2", kvm.info2, .exitInfo2),
            ("exit_int_info", kvm.intInfo, .exitIntInfo),
        ]
        return pairs.compactMap { name, said, field in
            // The tracepoint's exit code is 32 bits on some kernels: compare what both hold.
            let held = vmcb[integer: field]
            let agree =
                name == "exit_code"
                ? UInt32(truncatingIfNeeded: said) == UInt32(truncatingIfNeeded: held) : said == held
            return agree ? nil : "\(name): KVM's tracepoint says \(hex(said)), vmcb12 holds \(hex(held))"
        }
    }

    /// KVM emulated VMRUN: the vCPU already runs L2 (its registers are L2's),
    /// L1 is parked in the nested state's save half, vmcb12 is as L1 prepared it.
    private mutating func vmrunEmulatedStop(
        _ r: GeneralRegisters, _ s: SpecialRegisters, _ d: DebugRegisters,
        evidence: KVMEvidence?, target: any DebugTarget, kvmExit: String
    ) throws -> Stop {
        let state = try nestedState(target)
        guard let gpa = evidence?.vmenter?.vmcb12 ?? state?.vmcbPA else {
            throw TargetError.notSupported(operation: "a VMRUN stop without vmcb12's address", target: target.name)
        }
        let vmcb = try readVMCB12(gpa, from: target)
        let environment = checkEnvironment
        let violations = timings.timed(\.decodeAndDiff) { ConsistencyChecks.check(vmcb, environment: environment) }
        atVMRUN = (gpa, vmcb, violations)
        resumeRIP = evidence?.vmenter?.l1RIP
        let l1 =
            state?.data.map {
                RegisterSet.fromVMCBSave(
                    $0, gprs: nil, source: "nested-state save half (L1 parked after its VMRUN); RBX-R15 are L2's now")
            } ?? RegisterSet(source: "not available (no nested state)", values: [:])
        let at = evidence?.vmenter.map { " (L1 resumes at \(hex($0.l1RIP)))" } ?? ""
        let verdict =
            violations.isEmpty
            ? "consistency checks pass"
            : "KVM accepted what nestdbg's checks call \(violations.count) violation(s)"
        var stop = Stop(
            kind: .vmrun, level: .l2,
            reason:
                "KVM emulated L1's VMRUN\(at): vmcb12 at \(hex(gpa)) loaded, L2 about to run at \(hex(r.rip)); \(verdict)",
            l1: l1, l2: .fromVCPU(r, s, d, source: "vCPU registers (L2, loaded from vmcb12)"), vmcb12GPA: gpa,
            vmcb12AtVMRUN: vmcb, vmcb12: vmcb, violations: violations, nestedFlags: state?.flags ?? [],
            cachedControls: state?.data, kvmExit: kvmExit)
        stop.nestedState = state
        return stop
    }

    /// The target as found, before anything ran: the first screen.
    mutating func startStop(from target: any DebugTarget) throws -> Stop {
        let r = try target.generalRegisters()
        let s = try target.specialRegisters()
        let d = try target.debugRegisters()
        return try levelStop(
            kind: .start, reason: "\(target.name): the vCPU as loaded, before its first instruction",
            r, s, d, target: target, kvmExit: "none (not run yet)")
    }

    private func readVMCB12(_ gpa: UInt64, from target: any DebugTarget) throws -> VMCB {
        try timings.timed(\.vmcb12Reads) { try target.readVMCB(at: gpa) }
    }

    private func nestedState(_ target: any DebugTarget) throws -> SVMNestedState? {
        try timings.timed(\.nestedStateIoctls) { try target.nestedState() }
    }

    private mutating func vmrunStop(_ r: GeneralRegisters, l1: RegisterSet, target: any DebugTarget, kvmExit: String)
        throws -> Stop
    {
        let gpa = r.rax
        let vmcb = try readVMCB12(gpa, from: target)
        let environment = checkEnvironment
        let violations = timings.timed(\.decodeAndDiff) { ConsistencyChecks.check(vmcb, environment: environment) }
        atVMRUN = (gpa, vmcb, violations)
        let l2 = RegisterSet.fromVMCBSave(
            vmcb, gprs: r,
            source: "vmcb12 save area as L1 prepared it; RBX-R15 are the vCPU's (VMRUN does not switch them)")
        let verdict =
            violations.isEmpty
            ? "consistency checks pass" : "\(violations.count) consistency violation(s): VMRUN will fail"
        return Stop(
            kind: .vmrun, level: .l1, reason: "L1 at VMRUN, vmcb12 at \(hex(gpa)); \(verdict)", l1: l1, l2: l2,
            vmcb12GPA: gpa, vmcb12AtVMRUN: vmcb, vmcb12: vmcb, violations: violations, kvmExit: kvmExit)
    }

    private func nestedExitStop(
        _ r: GeneralRegisters, _ s: SpecialRegisters, _ d: DebugRegisters,
        target: any DebugTarget, kvmExit: String
    ) throws -> Stop {
        let gpa = atVMRUN?.gpa ?? r.rax
        let after = try readVMCB12(gpa, from: target)
        let state = try nestedState(target)
        let flags = state?.flags ?? []
        let before = atVMRUN?.vmcb
        let (exit, changes) = timings.timed(\.decodeAndDiff) { () -> (DecodedExit, [FieldChange]) in
            let context = ExitContext(l2RCX: r.rcx, l2RAX: after[integer: .saveRAX], l2RDX: r.rdx)
            let exit = DecodedExit(vmcb: after, context: context)
            return (exit, before.map { SyncDiff.changes(before: $0, after: after) } ?? [])
        }
        // L1 runs now, with the vCPU's RBX-R15 as L2 left them (VMRUN switches neither way): they are
        // the live values, not unknown; the pane's source says whose they are.
        let l1 = RegisterSet.fromVCPU(
            r, s, d, source: "vCPU registers, live; RBX-R15 not switched by VMRUN: L2's values, which L1 now runs with")
        let l2 = RegisterSet.fromVMCBSave(
            after, gprs: r,
            source: "vmcb12 save area as KVM synced it + vCPU GPRs (L2's: not switched by VMRUN)")
        let reason =
            SVMExit.isInvalid(exit.code)
            ? "VMRUN failed: VMEXIT_INVALID" : "nested #VMEXIT \(exit.name): \(exit.summary)"
        var stop = Stop(
            kind: .nestedExit, level: .l1, reason: reason, exit: exit, l1: l1, l2: l2, vmcb12GPA: gpa,
            vmcb12AtVMRUN: before, vmcb12: after, synced: changes, violations: atVMRUN?.violations ?? [],
            nestedFlags: flags, kvmExit: kvmExit)
        stop.nestedState = state
        // KVM judges by the controls of the VMRUN (it does not write them at the exit, so the page now
        // serves when no VMRUN was seen) and reads L1's permission maps now, as we do. RCX is L2's.
        stop.why = ExitCause(
            code: exit.code, exitInfo1: after[integer: .exitInfo1], exitInfo2: after[integer: .exitInfo2],
            msr: UInt32(truncatingIfNeeded: r.rcx), controls: before ?? after,
            readL1: { gpa, count in try? target.readPhysical(gpa, count: count) })
        return stop
    }

    /// A stop that is not a nested event: the level the vCPU is at decides
    /// where each pane comes from. `kind` nil: an exit to the VMM at that level.
    private func levelStop(
        kind: StopKind?, reason: String, _ r: GeneralRegisters, _ s: SpecialRegisters,
        _ d: DebugRegisters, target: any DebugTarget, kvmExit: String
    ) throws -> Stop {
        let state = try nestedState(target)
        if let state, state.flags.contains(.guestMode), let data = state.data {
            let l1 = RegisterSet.fromVMCBSave(
                data, gprs: nil,
                source: "nested-state save half (L1 parked at VMRUN); RBX-R15 are not held by KVM")
            // An unreadable vmcb12 (L1 pointed VMRUN outside RAM) is said in the reason, never dropped silently.
            let vmcb: VMCB?
            var unreadable = ""
            do {
                vmcb = try readVMCB12(state.vmcbPA, from: target)
            } catch {
                vmcb = nil
                unreadable = "; vmcb12 at 0x\(String(state.vmcbPA, radix: 16)) could not be read: \(error)"
            }
            var stop = Stop(
                kind: kind ?? .l2UserspaceExit, level: .l2, reason: "\(reason) while L2 runs\(unreadable)", l1: l1,
                l2: .fromVCPU(r, s, d, source: "vCPU registers (guest mode: L2)"), vmcb12GPA: state.vmcbPA,
                vmcb12AtVMRUN: atVMRUN?.vmcb, vmcb12: vmcb, violations: atVMRUN?.violations ?? [],
                nestedFlags: state.flags, cachedControls: data, kvmExit: kvmExit)
            stop.nestedState = state
            return stop
        }
        var stop = Stop(
            kind: kind ?? .l1UserspaceExit, level: .l1, reason: kind == nil ? "\(reason) from L1" : reason,
            l1: .fromVCPU(r, s, d, source: "vCPU registers"), vmcb12GPA: atVMRUN?.gpa,
            vmcb12AtVMRUN: atVMRUN?.vmcb, nestedFlags: state?.flags ?? [], kvmExit: kvmExit)
        stop.nestedState = state
        return stop
    }

    /// The process that ran the vCPU is gone: the last stop's registers,
    /// said to be that, are all there is.
    private func endStop(_ description: String, guestStatus: Int32?, kvmExit: String) -> Stop {
        var l1 = previous?.l1 ?? RegisterSet(source: "none", values: [:])
        l1.source = "the last stop's (the process has ended)"
        var stop = Stop(
            kind: guestStatus == nil ? .fault : .exited, level: previous?.level ?? .l1, reason: description,
            l1: l1, vmcb12GPA: previous?.vmcb12GPA, kvmExit: kvmExit)
        stop.exitStatus = guestStatus
        return stop
    }

    /// A triple fault between a VMRUN and the #VMEXIT L1 should have seen is
    /// KVM failing to restore L1, not L1's own doing: say so, with L1's paging.
    private func shutdownDiagnosis() -> String {
        guard let last = previous else { return "" }
        let cr0 = last.l1[.cr0] ?? 0
        let cr4 = last.l1[.cr4] ?? 0
        let efer = last.l1[.efer] ?? 0
        let paging =
            cr0 & (1 << 31) == 0
            ? "paging off"
            : efer & (1 << 10) != 0
                ? "long mode"
                : cr4 & (1 << 5) != 0
                    ? "32-bit PAE paging" : cr4 & (1 << 4) != 0 ? "32-bit paging with CR4.PSE" : "32-bit paging"
        if let check = last.kvm?.failedCheck {
            // KVM's own word (tracepoint stops): the check it failed on the way back to L1.
            return
                " after KVM failed \(check) in its nested #VMEXIT path at stop #\(last.index): it could not restore L1;"
                + " L1 ran with \(paging), CR3 \(hex(last.l1[.cr3] ?? 0))"
        }
        guard last.kind == .vmrun || last.kind == .l2UserspaceExit else { return "" }
        return " after L1's VMRUN (stop #\(last.index)), before L1 saw any #VMEXIT: KVM's nested #VMEXIT path"
            + " could not restore L1 (it reloads L1's CR3 and, for PAE, its PDPTRs: a failure there traces"
            + " kvm_nested_vmenter_failed !load_pdptrs; scripts/sandbox --trace shows KVM's side);"
            + " L1 ran with \(paging), CR3 \(hex(last.l1[.cr3] ?? 0))"
    }
}

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// An exit code's name, or its number where SVM has no name for it.
func exitName(_ code: UInt64) -> String { SVMExit.name(of: code) ?? hex(code) }
