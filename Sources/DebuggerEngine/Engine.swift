import KVMControl
import SVMModel

/// What the user asked the engine to stop on.
public enum Breakpoint: Equatable, Sendable, CustomStringConvertible {
    /// A nested #VMEXIT with this exit code.
    case exit(UInt64)
    /// A nested #VMEXIT caused by the L2 instruction at this address (vmcb12 save.rip).
    case l2RIP(UInt64)
    /// A VMCB12 field whose value differs from the last one seen at a stop.
    case watch(VMCBField)
    /// An L1 instruction (set with `Engine.addL1Breakpoint`).
    case l1RIP(UInt64)

    public var description: String {
        switch self {
        case let .exit(code): return "exit \(SVMExit.name(of: code) ?? "0x" + String(code, radix: 16))"
        case let .l2RIP(rip): return "l2 rip 0x\(String(rip, radix: 16))"
        case let .watch(field): return "watch \(field.name)"
        case let .l1RIP(rip): return "l1 rip 0x\(String(rip, radix: 16))"
        }
    }
}

/// Why a command could not be carried out.
public enum EngineError: Error, Equatable, CustomStringConvertible {
    case notVMRUN(UInt64)
    case cannotStepL2
    case cannotStepVMRUN
    case breakpointOnVMRUNSite
    case breakpointNeedsL1
    case notMapped(UInt64)
    public var description: String {
        switch self {
        case let .notVMRUN(a): return "no VMRUN (0F 01 D8) at L1 address 0x\(String(a, radix: 16))"
        case .cannotStepL2:
            return "single-step in L2 is refused: re-arming it on an instruction L1 intercepts makes KVM inject #DB into L1; use n (next exit)"
        case .cannotStepVMRUN: return "L1 is at VMRUN: use n (next exit) or e (next VMRUN) to run L2"
        case .breakpointOnVMRUNSite: return "VMRUN and the instruction after it are stops already: use e and n"
        case .breakpointNeedsL1: return "set L1 breakpoints while stopped in L1 (its paging translates the address)"
        case let .notMapped(a): return "L1 address 0x\(String(a, radix: 16)) is not mapped"
        }
    }
}

/// Where the time of stops goes (for the benchmark). Durations are totals.
public struct EngineTimings: Sendable {
    public var kvmRun: Duration = .zero
    public var kvmRoundTrips = 0
    public var registerIoctls: Duration = .zero
    public var nestedStateIoctls: Duration = .zero
    public var vmcb12Reads: Duration = .zero
    public var decodeAndDiff: Duration = .zero
    public var patching: Duration = .zero
}

/// Runs an L1 hypervisor and stops at its nested exits.
///
/// Stop mechanism (the one the sandbox notes found exact under TCG, where
/// hardware breakpoints never fire and int3 goes to L1's IDT): a one-byte HLT
/// is patched over each VMRUN and over the L1 instruction after it; KVM_EXIT_HLT
/// at a patch is a stop. At a stop the byte is restored and RIP rewound, so the
/// guest never sees the patch; to resume past the post-VMRUN instruction the
/// engine single-steps it in L1 (never in L2) and patches again.
public final class Engine: @unchecked Sendable {
    public let target: NestedTarget
    private var vcpu: VCPU { target.vcpu }

    private struct Site { let vmrun: UInt64, after: UInt64, vmrunGPA: UInt64, afterGPA: UInt64 }
    private let sites: [Site]
    private var original: [UInt64: UInt8] = [:]      // GPA -> the byte under a patch
    /// Resume must first single-step the instruction under this patch (its byte is
    /// back in place), then patch again: the post-VMRUN site or an L1 breakpoint.
    private var stepOverPatch: UInt64?
    /// L1 breakpoints: L1 address → guest-physical address of the patch.
    private var l1Breakpoints: [UInt64: UInt64] = [:]
    private var atVMRUN: (gpa: UInt64, vmcb: VMCB, violations: [Violation])?
    private var watched: [VMCBField: FieldValue] = [:]
    public private(set) var history: [Stop] = []
    public static let historyLimit = 5000
    public private(set) var stopCount = 0
    public private(set) var nestedExitCount = 0
    public var breakpoints: [Breakpoint] = []
    public var checkEnvironment = CheckEnvironment(physicalAddressBits: 40)
    public private(set) var timings = EngineTimings()
    /// What the guest wrote to COM1 (port 0x3F8), all of it.
    public private(set) var serialOutput: [UInt8] = []
    public static let com1: UInt16 = 0x3F8
    public static let debugExitPort: UInt16 = 0xF4

    public init(target: NestedTarget) throws {
        self.target = target
        var s: [Site] = []
        for site in target.vmrunSites {
            guard let gpa = try target.vcpu.translate(site), try target.vm.read(at: gpa, count: 3) == [0x0F, 0x01, 0xD8] else {
                throw EngineError.notVMRUN(site)
            }
            guard let afterGPA = try target.vcpu.translate(site + 3) else { throw EngineError.notVMRUN(site) }
            s.append(Site(vmrun: site, after: site + 3, vmrunGPA: gpa, afterGPA: afterGPA))
        }
        sites = s
        try patchAll()
    }

    /// Puts every stop patch in place: the VMRUN sites, their next instructions, L1 breakpoints.
    private func patchAll() throws {
        for site in sites {
            try patch(site.vmrunGPA)
            try patch(site.afterGPA)
        }
        for gpa in l1Breakpoints.values { try patch(gpa) }
    }

    /// Sets a breakpoint on an L1 instruction: a HLT patch like the VMRUN ones.
    /// Only for code that L1 alone executes (L2 would see the HLT). Set it while
    /// stopped in L1: the address is translated through L1's paging.
    public func addL1Breakpoint(_ address: UInt64) throws {
        if sites.contains(where: { $0.vmrun == address || $0.after == address }) { throw EngineError.breakpointOnVMRUNSite }
        guard try !currentlyInGuestMode() else { throw EngineError.breakpointNeedsL1 }
        guard let gpa = try vcpu.translate(address) else { throw EngineError.notMapped(address) }
        l1Breakpoints[address] = gpa
        // Stopped on that very instruction: patch it once it has executed.
        if try vcpu.registers().rip == address, stepOverPatch == nil { stepOverPatch = gpa } else if stepOverPatch != gpa { try patch(gpa) }
        breakpoints.append(.l1RIP(address))
    }

    /// Removes breakpoints (all when `index` is nil), taking L1 patches out.
    public func deleteBreakpoints(at index: Int? = nil) throws {
        let removed = index.map { breakpoints.indices.contains($0) ? [breakpoints.remove(at: $0)] : [] } ?? breakpoints
        if index == nil { breakpoints.removeAll() }
        for case let .l1RIP(address) in removed {
            if let gpa = l1Breakpoints.removeValue(forKey: address) {
                try unpatch(gpa)
                if stepOverPatch == gpa { stepOverPatch = nil }
            }
        }
    }

    /// Puts every patched byte back (the guest's memory as it was).
    public func detach() throws {
        for (gpa, byte) in original { try target.vm.write([byte], at: gpa) }
        original.removeAll()
    }

    private func patch(_ gpa: UInt64) throws {
        guard original[gpa] == nil else { return }
        original[gpa] = try target.vm.read(at: gpa, count: 1)[0]
        try target.vm.write([0xF4], at: gpa)
    }

    private func unpatch(_ gpa: UInt64) throws {
        guard let byte = original.removeValue(forKey: gpa) else { return }
        try target.vm.write([byte], at: gpa)
    }

    private func timed<T>(_ slot: WritableKeyPath<EngineTimings, Duration>, _ body: () throws -> T) rethrows -> T {
        let start = ContinuousClock.now
        defer { timings[keyPath: slot] += ContinuousClock.now - start }
        return try body()
    }

    private func runVCPU() throws -> VCPUExit {
        timings.kvmRoundTrips += 1
        return try timed(\.kvmRun) { try vcpu.run() }
    }

    // MARK: Commands

    /// Runs to the next stop of any kind (VMRUN stops included).
    public func step() throws -> Stop {
        while true {
            if let stop = try advance() { return record(stop) }
        }
    }

    /// Runs to the next nested #VMEXIT (or any stop that is not a VMRUN).
    public func next() throws -> Stop {
        while true {
            let s = try step()
            if s.kind != .vmrun { return s }
        }
    }

    /// Runs to the next VMRUN (or a stop that needs the user: a fault, a pause, a userspace exit).
    public func nextVMRUN() throws -> Stop {
        while true {
            let s = try step()
            if s.kind != .nestedExit { return s }
        }
    }

    /// Runs until a breakpoint matches, L1 faults, or the user pauses. `limit` bounds the stops taken.
    public func continueRunning(limit: Int = .max) throws -> (stop: Stop, hit: Breakpoint?) {
        var taken = 0
        while true {
            let s = try step()
            taken += 1
            if let hit = breakpointHit(s) { return (s, hit) }
            if s.kind == .fault || s.kind == .paused || s.kind == .exited || taken >= limit { return (s, nil) }
        }
    }

    /// Executes one L1 instruction (L2 single-step is refused: see `EngineError.cannotStepL2`).
    public func stepInstruction() throws -> Stop {
        if let exit = try stepOverPendingPatch() { return record(try classify(exit) ?? singleStepStop()) }
        if try currentlyInGuestMode() { throw EngineError.cannotStepL2 }
        let rip = try vcpu.registers().rip
        if sites.contains(where: { $0.vmrun == rip }) { throw EngineError.cannotStepVMRUN }
        let exit = try stepOneInstruction()
        return record(try classify(exit) ?? singleStepStop())
    }

    /// Makes a running `step`/`next`/`continueRunning` on another thread stop with `.paused`
    /// (during `runFree`: take a sample).
    public func pause() { vcpu.kick() }

    /// Lets the guest run freely: no patches, no stops. Each kick (`pause()`
    /// from another thread) hands `sample` a snapshot, then the guest goes on,
    /// until `shouldStop` says so at a kick. Returns the fault or guest exit
    /// that ended it early, else nil. The stop patches are back afterwards.
    public func runFree(shouldStop: () -> Bool, sample: (Stop) -> Void) throws -> Stop? {
        try detach()
        stepOverPatch = nil
        defer {
            try? patchAll()
            atVMRUN = nil   // VMRUNs happened unseen: no "before" page to diff against
        }
        while true {
            let exit = try runVCPU()
            if case .interrupted = exit {
                if shouldStop() { return nil }
                sample(try userspaceStop(kind: .paused, reason: "live sample", kvmExit: exit.kvmName))
                continue
            }
            // An I/O exit that is not COM1 or the debug-exit port (L2's passthrough OUT) is part of free running.
            if case let .io(port, direction, size, count, _) = exit, !(Engine.com1...Engine.com1 + 7).contains(port),
               port != Engine.debugExitPort {
                if direction == .in { try vcpu.completeIn([UInt8](repeating: 0xFF, count: size * count)) }
                continue
            }
            if let stop = try classify(exit), stop.kind == .fault || stop.kind == .exited { return record(stop) }
        }
    }

    // MARK: The stop machinery

    private func stepOneInstruction() throws -> VCPUExit {
        try vcpu.setGuestDebug(GuestDebug(singleStep: true))
        defer { try? vcpu.setGuestDebug(GuestDebug()) }
        return try runVCPU()
    }

    /// One KVM_RUN (after finishing a pending step-over) and its classification; nil for no stop.
    private func advance() throws -> Stop? {
        if let exit = try stepOverPendingPatch() {
            if case .debug = exit { return nil }
            return try classify(exit)
        }
        return try classify(try runVCPU())
    }

    /// Executes the instruction under a patch taken out at the last stop, then
    /// puts the patch back; nil when there is none.
    private func stepOverPendingPatch() throws -> VCPUExit? {
        guard let gpa = stepOverPatch else { return nil }
        stepOverPatch = nil
        let exit = try stepOneInstruction()
        try timed(\.patching) { try patch(gpa) }
        return exit
    }

    private func currentlyInGuestMode() throws -> Bool {
        if vcpu.reportsGuestMode { return vcpu.lastRunFlags.contains(.guestMode) }
        return try nestedState()?.flags.contains(.guestMode) ?? false
    }

    /// KVM_GET_NESTED_STATE, or nil on a KVM without nested state (a plain guest runs there too).
    private func nestedState() throws -> NestedState? {
        guard vcpu.nestedStateMaxSize > 0 else { return nil }
        return try timed(\.nestedStateIoctls) { try vcpu.nestedState() }
    }

    private func record(_ stop: Stop) -> Stop {
        var s = stop
        s.index = stopCount
        stopCount += 1
        if s.kind == .nestedExit { nestedExitCount += 1 }
        history.append(s)
        // Trim in batches: removing from the front of an array is O(n).
        if history.count > Engine.historyLimit + 500 { history.removeFirst(history.count - Engine.historyLimit) }
        return s
    }

    private func breakpointHit(_ s: Stop) -> Breakpoint? {
        var hit: Breakpoint?
        for bp in breakpoints {
            if case let .l1RIP(rip) = bp, s.kind == .breakpoint, s.l1["rip"] == rip { hit = hit ?? bp }
            guard let v = s.vmcb12 else { continue }
            switch bp {
            case let .exit(code):
                if s.kind == .nestedExit, let e = s.exit,
                   e.code == code || (SVMExit.isInvalid(code) && SVMExit.isInvalid(e.code)) { hit = hit ?? bp }
            case let .l2RIP(rip):
                if s.kind == .nestedExit, v["save.rip"] == rip { hit = hit ?? bp }
            case .l1RIP: break
            case let .watch(field):
                let value = v[field]
                if let old = watched[field], old != value { hit = hit ?? bp }
                watched[field] = value
            }
        }
        return hit
    }

    private func vcpuRegisters() throws -> (GeneralRegisters, SpecialRegisters, DebugRegisters) {
        try timed(\.registerIoctls) { (try vcpu.registers(), try vcpu.specialRegisters(), try vcpu.debugRegisters()) }
    }

    private func readVMCB12(_ gpa: UInt64) throws -> VMCB {
        try timed(\.vmcb12Reads) { try VMCB(bytes: target.vm.read(at: gpa, count: VMCBLayout.size)) }
    }

    private func singleStepStop() throws -> Stop {
        let (r, s, d) = try vcpuRegisters()
        return Stop(index: 0, kind: .singleStep, level: .l1, reason: "single-step in L1 to 0x\(String(r.rip, radix: 16))",
                    exit: nil, l1: .fromVCPU(r, s, d, source: "vCPU registers"), l2: nil, vmcb12GPA: atVMRUN?.gpa,
                    vmcb12AtVMRUN: atVMRUN?.vmcb, vmcb12: nil, synced: [], violations: [], nestedFlags: [],
                    cachedControls: nil, kvmExit: "KVM_EXIT_DEBUG")
    }

    /// Turns a KVM exit into a stop (nil: nothing for the user).
    private func classify(_ exit: VCPUExit) throws -> Stop? {
        switch exit {
        case .hlt:
            var (r, s, d) = try vcpuRegisters()
            let at = r.rip &- 1
            // A HLT of ours: rewind RIP onto the instruction and put its byte back.
            func rewind(_ gpa: UInt64) throws {
                r.rip = at
                try timed(\.registerIoctls) { try vcpu.setRegisters(r) }
                try timed(\.patching) { try unpatch(gpa) }
            }
            if let site = sites.first(where: { $0.vmrun == at }), original[site.vmrunGPA] != nil {
                try rewind(site.vmrunGPA)
                return try vmrunStop(r, s, d)
            }
            if let site = sites.first(where: { $0.after == at }), original[site.afterGPA] != nil {
                try rewind(site.afterGPA)
                try timed(\.patching) { try patch(site.vmrunGPA) }   // VMRUN has run: arm it again
                stepOverPatch = site.afterGPA
                return try nestedExitStop(r, s, d)
            }
            if let gpa = l1Breakpoints[at], original[gpa] != nil {
                try rewind(gpa)
                stepOverPatch = gpa
                return Stop(index: 0, kind: .breakpoint, level: .l1, reason: "L1 breakpoint at 0x\(String(at, radix: 16))",
                            exit: nil, l1: .fromVCPU(r, s, d, source: "vCPU registers"), l2: nil, vmcb12GPA: atVMRUN?.gpa,
                            vmcb12AtVMRUN: atVMRUN?.vmcb, vmcb12: nil, synced: [], violations: [], nestedFlags: [],
                            cachedControls: nil, kvmExit: "KVM_EXIT_HLT (patch at an L1 breakpoint)")
            }
            return try userspaceStop(kind: nil, reason: "HLT", kvmExit: exit.kvmName)
        case let .io(port, direction, size, count, data):
            // COM1: collect output, report an always-ready transmitter; no stop.
            if (Engine.com1...Engine.com1 + 7).contains(port) {
                if direction == .out, port == Engine.com1 { serialOutput += data }
                if direction == .in { try vcpu.completeIn([UInt8](repeating: port == Engine.com1 + 5 ? 0x60 : 0, count: size * count)) }
                return nil
            }
            if port == Engine.debugExitPort, direction == .out {
                var stop = try userspaceStop(kind: .exited, reason: "the guest wrote \(data.first ?? 0) to the debug-exit port 0xF4", kvmExit: exit.kvmName)
                stop.exitStatus = Int32(data.first ?? 0)
                return stop
            }
            if direction == .in { try vcpu.completeIn([UInt8](repeating: 0xFF, count: size * count)) }
            let what = "\(direction == .in ? "IN" : "OUT") port 0x\(String(port, radix: 16)), \(size) byte\(size == 1 ? "" : "s")"
                + (direction == .out ? " = " + data.map { String($0, radix: 16) }.joined(separator: " ") : "")
            if port == DemoImage.panicPort, target.name == "demo", try !currentlyInGuestMode() {
                let code = data.prefix(4).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
                return try userspaceStop(kind: .fault, reason: "L1 reported an exit it does not handle: \(SVMExit.name(of: code) ?? "0x" + String(code, radix: 16))", kvmExit: "KVM_EXIT_IO")
            }
            return try userspaceStop(kind: nil, reason: what, kvmExit: exit.kvmName)
        case let .mmio(address, isWrite, length, _):
            return try userspaceStop(kind: nil, reason: "MMIO \(isWrite ? "write" : "read") at 0x\(String(address, radix: 16)), \(length) bytes", kvmExit: exit.kvmName)
        case .interrupted:
            return try userspaceStop(kind: .paused, reason: "paused", kvmExit: exit.kvmName)
        case .shutdown:
            return try userspaceStop(kind: .fault, reason: "triple fault (KVM_EXIT_SHUTDOWN)" + shutdownDiagnosis(), kvmExit: exit.kvmName)
        case let .failEntry(reason, _):
            return try userspaceStop(kind: .fault, reason: "KVM_EXIT_FAIL_ENTRY, hardware reason 0x\(String(reason, radix: 16))", kvmExit: exit.kvmName)
        case let .internalError(suberror, data):
            return try userspaceStop(kind: .fault, reason: "KVM internal error \(suberror) \(data.map { "0x" + String($0, radix: 16) })", kvmExit: exit.kvmName)
        case let .debug(exception, pc, _, _):
            return try userspaceStop(kind: .singleStep, reason: "#\(exception == 1 ? "DB" : "BP") at 0x\(String(pc, radix: 16))", kvmExit: exit.kvmName)
        case let .systemEvent(type, _):
            return try userspaceStop(kind: .fault, reason: "system event \(type)", kvmExit: exit.kvmName)
        case let .unknown(reason):
            return try userspaceStop(kind: .fault, reason: "unhandled KVM exit reason \(reason)", kvmExit: exit.kvmName)
        }
    }

    /// A triple fault between a VMRUN and the #VMEXIT L1 should have seen is
    /// KVM failing to restore L1, not L1's own doing: say so, with L1's paging.
    private func shutdownDiagnosis() -> String {
        guard let last = history.last, last.kind == .vmrun || last.kind == .l2UserspaceExit else { return "" }
        let cr0 = last.l1["cr0"] ?? 0, cr4 = last.l1["cr4"] ?? 0, efer = last.l1["efer"] ?? 0
        let paging = cr0 & (1 << 31) == 0 ? "paging off" : efer & (1 << 10) != 0 ? "long mode"
            : cr4 & (1 << 5) != 0 ? "32-bit PAE paging" : cr4 & (1 << 4) != 0 ? "32-bit paging with CR4.PSE" : "32-bit paging"
        return " after L1's VMRUN (stop #\(last.index)), before L1 saw any #VMEXIT: KVM's nested #VMEXIT path"
            + " could not restore L1 (it reloads L1's CR3 and, for PAE, its PDPTRs: a failure there traces"
            + " kvm_nested_vmenter_failed !load_pdptrs; scripts/sandbox --trace shows KVM's side);"
            + " L1 ran with \(paging), CR3 0x\(String(last.l1["cr3"] ?? 0, radix: 16))"
    }

    private func vmrunStop(_ r: GeneralRegisters, _ s: SpecialRegisters, _ d: DebugRegisters) throws -> Stop {
        let gpa = r.rax
        let vmcb = try readVMCB12(gpa)
        let violations = timed(\.decodeAndDiff) { ConsistencyChecks.check(vmcb, environment: checkEnvironment) }
        atVMRUN = (gpa, vmcb, violations)
        let l2 = RegisterSet.fromVMCBSave(vmcb, gprs: r, source: "vmcb12 save area as L1 prepared it; RBX-R15 are the vCPU's (VMRUN does not switch them)")
        let verdict = violations.isEmpty ? "consistency checks pass" : "\(violations.count) consistency violation(s): VMRUN will fail"
        return Stop(index: 0, kind: .vmrun, level: .l1, reason: "L1 at VMRUN, vmcb12 at 0x\(String(gpa, radix: 16)); \(verdict)",
                    exit: nil, l1: .fromVCPU(r, s, d, source: "vCPU registers"), l2: l2, vmcb12GPA: gpa,
                    vmcb12AtVMRUN: vmcb, vmcb12: vmcb, synced: [], violations: violations, nestedFlags: [],
                    cachedControls: nil, kvmExit: "KVM_EXIT_HLT (patch at VMRUN)")
    }

    private func nestedExitStop(_ r: GeneralRegisters, _ s: SpecialRegisters, _ d: DebugRegisters) throws -> Stop {
        let gpa = atVMRUN?.gpa ?? r.rax
        let after = try readVMCB12(gpa)
        let flags = try nestedState()?.flags ?? []
        let (exit, changes) = timed(\.decodeAndDiff) { () -> (DecodedExit, [FieldChange]) in
            let exit = DecodedExit(vmcb: after, context: ExitContext(l2RCX: r.rcx, l2RAX: after["save.rax"], l2RDX: r.rdx))
            let changes = atVMRUN.map { SyncDiff.changes(before: $0.vmcb, after: after) } ?? []
            return (exit, changes)
        }
        var l1 = RegisterSet.fromVCPU(r, s, d, source: "vCPU registers; RBX-R15 are L2's now (VMRUN does not switch them)")
        for n in RegisterSet.gprNames { l1.values[n] = .some(nil) }
        let l2 = RegisterSet.fromVMCBSave(after, gprs: r, source: "vmcb12 save area as KVM synced it + vCPU GPRs (L2's: not switched by VMRUN)")
        let reason = SVMExit.isInvalid(exit.code) ? "VMRUN failed: VMEXIT_INVALID" : "nested #VMEXIT \(exit.name): \(exit.summary)"
        return Stop(index: 0, kind: .nestedExit, level: .l1, reason: reason, exit: exit, l1: l1, l2: l2, vmcb12GPA: gpa,
                    vmcb12AtVMRUN: atVMRUN?.vmcb, vmcb12: after, synced: changes, violations: atVMRUN?.violations ?? [],
                    nestedFlags: flags, cachedControls: nil, kvmExit: "KVM_EXIT_HLT (patch after VMRUN)")
    }

    /// A stop at an exit that is not one of the patches; the level decides where each pane comes from.
    private func userspaceStop(kind: StopKind?, reason: String, kvmExit: String) throws -> Stop {
        let (r, s, d) = try vcpuRegisters()
        let state = try nestedState()
        if let state, state.flags.contains(.guestMode), let nested = try? SVMNestedState(state), let data = nested.data {
            let l1 = RegisterSet.fromVMCBSave(data, gprs: nil, source: "nested-state save half (L1 parked at VMRUN); RBX-R15 are not held by KVM")
            let vmcb = try? readVMCB12(nested.vmcbPA)
            return Stop(index: 0, kind: kind ?? .l2UserspaceExit, level: .l2, reason: "\(reason) while L2 runs", exit: nil,
                        l1: l1, l2: .fromVCPU(r, s, d, source: "vCPU registers (guest mode: L2)"), vmcb12GPA: nested.vmcbPA,
                        vmcb12AtVMRUN: atVMRUN?.vmcb, vmcb12: vmcb, synced: [], violations: atVMRUN?.violations ?? [],
                        nestedFlags: nested.flags, cachedControls: data, kvmExit: kvmExit)
        }
        return Stop(index: 0, kind: kind ?? .l1UserspaceExit, level: .l1, reason: "\(reason) from L1", exit: nil,
                    l1: .fromVCPU(r, s, d, source: "vCPU registers"), l2: nil, vmcb12GPA: atVMRUN?.gpa,
                    vmcb12AtVMRUN: atVMRUN?.vmcb, vmcb12: nil, synced: [], violations: [], nestedFlags: state?.flags ?? [],
                    cachedControls: nil, kvmExit: kvmExit)
    }
}
