import KernelTrace
import SVMModel

/// The exit fields a KVM tracepoint recorded (kvm_nested_vmexit_inject: what
/// KVM wrote into vmcb12; kvm_nested_vmexit: an L2 exit to L0).
public struct KVMExitFields: Equatable, Sendable {
    public var code: UInt64
    public var info1: UInt64
    public var info2: UInt64
    public var intInfo: UInt64
    public var intInfoError: UInt64

    public init(code: UInt64, info1: UInt64 = 0, info2: UInt64 = 0, intInfo: UInt64 = 0, intInfoError: UInt64 = 0) {
        self.code = code
        self.info1 = info1
        self.info2 = info2
        self.intInfo = intInfo
        self.intInfoError = intInfoError
    }
}

/// What KVM said it did, one tracepoint firing, decoded through the format
/// the running kernel published (field names, never offsets, are assumed).
public enum KVMNestedEvent: Equatable, Sendable {
    /// kvm_nested_vmenter: KVM emulated L1's VMRUN (vmcb12 loaded; L2 about to run).
    /// `l1RIP` is where L1 resumes at the #VMEXIT: the instruction after its VMRUN.
    case vmenter(l1RIP: UInt64, vmcb12: UInt64, l2RIP: UInt64, intCtl: UInt64, eventInj: UInt64, nestedPaging: Bool)
    /// kvm_nested_vmexit_inject: KVM wrote this #VMEXIT into vmcb12; L1 resumes after its VMRUN.
    case vmexitInject(KVMExitFields)
    /// kvm_nested_vmenter_failed: one of KVM's consistency checks failed (its own words).
    case vmenterFailed(check: String)
    /// kvm_nested_vmexit: L2 exited to L0 (reflected to L1 or handled by KVM itself).
    case l2Exit(KVMExitFields)

    /// The tracepoint's name.
    public var tracepoint: String {
        switch self {
        case .vmenter: return KVMNestedEvent.vmenterName
        case .vmexitInject: return KVMNestedEvent.vmexitInjectName
        case .vmenterFailed: return KVMNestedEvent.vmenterFailedName
        case .l2Exit: return KVMNestedEvent.l2ExitName
        }
    }

    /// Its place in `requests` (the order the counters come back in).
    var requestIndex: Int {
        switch self {
        case .vmenter: return 0
        case .vmexitInject: return 1
        case .vmenterFailed: return 2
        case .l2Exit: return 3
        }
    }

    /// What KVM_RUN's EINTR at a stop this event caused is recorded as.
    var interruptedRun: String { KVMNestedEvent.interruptedRuns[requestIndex] }
    private static let interruptedRuns = requests.map { "KVM_RUN EINTR (SIGTRAP from \($0.name))" }

    /// One line: "kvm_nested_vmexit_inject CPUID info1 0x0 info2 0x0".
    public var summary: String {
        switch self {
        case let .vmenter(rip, vmcb, l2RIP, _, _, npt):
            return
                "\(tracepoint): L1 resumes at \(hex(rip)), vmcb12 \(hex(vmcb)), L2 RIP \(hex(l2RIP)), nested paging \(npt ? "on" : "off")"
        case let .vmexitInject(f), let .l2Exit(f):
            return
                "\(tracepoint): \(exitName(f.code)) info1 \(hex(f.info1)) info2 \(hex(f.info2)) int_info \(hex(f.intInfo))"
        case let .vmenterFailed(check):
            return "\(tracepoint): \(check)"
        }
    }

    public static let vmenterName = "kvm_nested_vmenter"
    public static let vmexitInjectName = "kvm_nested_vmexit_inject"
    public static let vmenterFailedName = "kvm_nested_vmenter_failed"
    public static let l2ExitName = "kvm_nested_vmexit"

    /// The requests a tracepoint stop source opens: the three that stop the
    /// vCPU, and L2's exits to L0 sampled without stopping (for the count of
    /// exits L1 never saw).
    static let requests = [
        TracepointRequest("kvm", vmenterName, stops: true),
        TracepointRequest("kvm", vmexitInjectName, stops: true),
        TracepointRequest("kvm", vmenterFailedName, stops: true),
        TracepointRequest("kvm", l2ExitName, stops: false),
    ]

    /// Decodes a record; throws when a field this decoder needs is missing
    /// from the kernel's format (a kernel this decoder does not know).
    public init(_ record: TraceRecord) throws {
        self = try KVMEventDecoder(record.format).decode(record.bytes)
    }
}

/// Decodes one nested tracepoint's records: its fields resolved by name once
/// (when the events are opened), then read at their offsets in every record.
struct KVMEventDecoder {
    private enum Kind { case vmenter, vmexitInject, l2Exit, vmenterFailed }
    private let kind: Kind
    private let fields: [TracepointFormat.Field]

    init(_ format: TracepointFormat) throws {
        func field(_ names: String...) throws -> TracepointFormat.Field {
            for name in names {
                if let f = format.field(name) { return f }
            }
            throw TraceError.missingField(event: format.event, field: names.joined(separator: " or "))
        }
        func exitFields() throws -> [TracepointFormat.Field] {
            [
                try field("exit_code", "exit_reason"), try field("exit_info1", "info1"),
                try field("exit_info2", "info2"),
                try field("exit_int_info", "intr_info"), try field("exit_int_info_err", "error_code"),
            ]
        }
        switch format.event {
        case "kvm:" + KVMNestedEvent.vmenterName:
            kind = .vmenter
            fields = [
                try field("rip"), try field("vmcb"), try field("nested_rip"), try field("int_ctl"),
                try field("event_inj"),
                try field("npt", "tdp_enabled"),
            ]
        case "kvm:" + KVMNestedEvent.vmexitInjectName:
            kind = .vmexitInject
            fields = try exitFields()
        case "kvm:" + KVMNestedEvent.l2ExitName:
            kind = .l2Exit
            fields = try exitFields()
        case "kvm:" + KVMNestedEvent.vmenterFailedName:
            kind = .vmenterFailed
            fields = [try field("msg")]
        default:
            throw TraceError.noSuchEvent(format.event)
        }
    }

    func decode(_ bytes: [UInt8]) throws -> KVMNestedEvent {
        func short(_ field: TracepointFormat.Field) -> TraceError {
            .malformedFormat(event: "a record", detail: "field \(field.name) does not fit in \(bytes.count) bytes")
        }
        func integer(_ i: Int) throws -> UInt64 {
            guard let value = fields[i].integer(in: bytes) else { throw short(fields[i]) }
            return value
        }
        switch kind {
        case .vmenter:
            return .vmenter(
                l1RIP: try integer(0), vmcb12: try integer(1), l2RIP: try integer(2), intCtl: try integer(3),
                eventInj: try integer(4), nestedPaging: try integer(5) != 0)
        case .vmexitInject, .l2Exit:
            let exit = KVMExitFields(
                code: try integer(0), info1: try integer(1), info2: try integer(2), intInfo: try integer(3),
                intInfoError: try integer(4))
            return kind == .l2Exit ? .l2Exit(exit) : .vmexitInject(exit)
        case .vmenterFailed:
            guard let message = fields[0].string(in: bytes) else { throw short(fields[0]) }
            return .vmenterFailed(check: message)
        }
    }
}

/// Exits KVM handled itself while L2 ran (never reflected to L1), by reason.
public struct L0ExitCount: Equatable, Sendable {
    public let code: UInt64
    public let count: Int
    public var name: String { exitName(code) }

    public init(code: UInt64, count: Int) {
        self.code = code
        self.count = count
    }
}

/// What KVM's tracepoints said at one stop: the events that stopped the vCPU
/// (more than one when SIGTRAPs merged), the exits L1 never saw since the
/// VMRUN, and the problems the source found with the sequence.
public struct KVMEvidence: Equatable, Sendable {
    public var events: [KVMNestedEvent] = []
    /// nil where unknown (before the first VMRUN of the session).
    public var handledByL0: [L0ExitCount]?
    /// kvm_nested_vmexit samples the ring dropped (full): the L0-handled counts are short by this many.
    public var lost: UInt64 = 0
    /// A missing, extra or late event: the stop is not exact, and says why.
    public var problems: [String] = []
    /// Merged events that are still exact (e.g. KVM reflected an exit before L2 ran).
    public var notes: [String] = []

    public init() {}

    /// The #VMEXIT KVM wrote into vmcb12 at this stop, if it did.
    public var injectedExit: KVMExitFields? {
        events.lazy.compactMap { if case let .vmexitInject(f) = $0 { return f } else { return nil } }.last
    }

    /// The VMRUN KVM emulated at this stop, if it did.
    public var vmenter: (l1RIP: UInt64, vmcb12: UInt64, l2RIP: UInt64)? {
        for case let .vmenter(rip, vmcb, l2RIP, _, _, _) in events.reversed() { return (rip, vmcb, l2RIP) }
        return nil
    }

    /// The failed consistency check KVM named at this stop, if any.
    public var failedCheck: String? {
        for case let .vmenterFailed(check) in events.reversed() { return check }
        return nil
    }

    static func counts(_ exits: [KVMExitFields]) -> [L0ExitCount] {
        var order: [UInt64] = []
        var counts: [UInt64: Int] = [:]
        for exit in exits {
            if counts[exit.code] == nil { order.append(exit.code) }
            counts[exit.code, default: 0] += 1
        }
        return order.map { L0ExitCount(code: $0, count: counts[$0]!) }
    }
}

/// KVM's nested events in the order they fire, checked against the order
/// the architecture allows and turned into what one stop carries. Pure: the
/// tracepoint source feeds it what it drained at each stop; tests feed it by hand.
public struct KVMEventSequence: Sendable {
    /// L2's exits to L0 since the last VMRUN, oldest first.
    private var l2Exits: [KVMExitFields] = []
    /// Whether the last stopping event left the vCPU in L2 (nil: not known yet).
    private var inL2: Bool?

    public init() {}

    /// Nothing is known of the order (after a free run, at attach).
    public mutating func reset() {
        l2Exits = []
        inL2 = nil
    }

    /// The evidence of one stop from the events fired since the last one, and
    /// what the counters say the ring lost: stopping events (a problem: the
    /// stop is not exact) and L2 exits (the L0-handled counts fall short).
    public mutating func evidence(
        for fired: [KVMNestedEvent], missingStops: [String] = [],
        missingL2Exits: UInt64 = 0
    ) -> KVMEvidence {
        var evidence = KVMEvidence()
        evidence.lost = missingL2Exits
        if !missingStops.isEmpty {
            evidence.problems.append(
                "KVM fired \(missingStops.joined(separator: ", ")) that the ring lost: events are missing")
        }
        for event in fired {
            switch event {
            case let .l2Exit(fields):
                l2Exits.append(fields)
            case .vmenter:
                if inL2 == true {
                    evidence.problems.append(
                        "kvm_nested_vmenter while KVM already ran L2: the #VMEXIT before it fired no event")
                }
                inL2 = true
                l2Exits = []
                evidence.events.append(event)
            case let .vmexitInject(fields):
                if inL2 == false {
                    evidence.problems.append(
                        "kvm_nested_vmexit_inject without a VMRUN before it: kvm_nested_vmenter is missing")
                }
                // The last L2 exit with the same code is the one KVM reflected; the rest KVM handled.
                var handled = l2Exits
                if let last = handled.last, last.code == fields.code { handled.removeLast() }
                evidence.handledByL0 = inL2 == nil ? nil : KVMEvidence.counts(handled)
                inL2 = false
                l2Exits = []
                evidence.events.append(event)
            case .vmenterFailed:
                evidence.events.append(event)
            }
        }
        if missingL2Exits > 0 {
            evidence.notes.append(
                "\(missingL2Exits) kvm_nested_vmexit sample(s) lost (ring full): L0-handled counts are short by that many"
            )
        }
        checkMerged(&evidence)
        return evidence
    }

    /// SIGTRAP is not queued: events before it was taken give one stop.
    /// KVM may do several in one KVM_RUN without entering the guest (a VMRUN
    /// whose entry fails, a #VMEXIT KVM synthesises at entry, a failed check
    /// while it restores L1): all exact, all shown. A #VMEXIT followed by a
    /// VMRUN is not: L1 ran between them (it executed that VMRUN) unseen.
    private func checkMerged(_ evidence: inout KVMEvidence) {
        let names = evidence.events.map(\.tracepoint)
        guard names.count > 1 else { return }
        if let firstExit = names.firstIndex(of: KVMNestedEvent.vmexitInjectName),
            names[firstExit...].contains(KVMNestedEvent.vmenterName)
        {
            evidence.problems.append(
                "late stop: \(names.joined(separator: ", ")) fired before the vCPU stopped; L1 ran between a #VMEXIT and the next VMRUN unseen"
            )
        } else {
            let shape =
                names.contains(KVMNestedEvent.vmexitInjectName) ? " (L2 did not run an instruction in between)" : ""
            evidence.notes.append(
                "one KVM_RUN, several events\(shape): \(evidence.events.map(\.summary).joined(separator: "; "))")
        }
    }
}
