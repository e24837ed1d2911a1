import KVMControl
import SVMModel
import Synchronization

/// What an embedded vCPU holds: the registers KVM would report, MSRs, guest
/// RAM, and KVM's nested state (nil: a KVM without nested state).
public struct EmbeddedVCPUState: Sendable {
    public var registers = GeneralRegisters()
    public var special = SpecialRegisters()
    public var debug = DebugRegisters()
    public var msrs: [UInt32: UInt64] = [:]
    public var memory: [UInt8]
    public var nestedFlags: NestedStateFlags = []
    /// vmcb12's address while L1 has one (KVM_GET_NESTED_STATE's vmcb_pa).
    public var vmcbPA: UInt64 = 0
    /// The nested state's data half (KVM's cached controls and L1's parked save area).
    public var nestedData: VMCB?
    public var hasNestedState = true
    public var singleStep = false
    /// What L1 wrote to COM1.
    public var serial: [UInt8] = []

    public init(memorySize: Int) { memory = [UInt8](repeating: 0, count: memorySize) }
}

/// A vCPU that lives in memory: the engine, the session, breakpoints, the stop
/// assembler's checks and the front end run on it exactly as on KVM, on any
/// machine, in microseconds. It runs no instructions itself: a
/// `ScriptedStopSource` says what happened and leaves the state KVM would.
/// Like swift-nio's EmbeddedChannel, a real implementation below the engine,
/// made to be the tests' fixture; it is never what a feature is shown with.
///
/// One thread owns it once `claimVCPU()` ran (as with KVM's vCPUs): a read or
/// write from another thread throws `wrongThread`. `withState` is the
/// fixture's own door, for a test to set the scene or look afterwards.
public final class EmbeddedTarget: RunnableTarget, Sendable {
    public let name: String
    public let symbols: [String: UInt64]
    public var capabilities: TargetCapabilities { [.ownsVM, .canWrite, .canSingleStep] }
    private let state: Mutex<EmbeddedVCPUState>
    private let owner = Mutex<Int32?>(nil)
    private let kicked = Atomic<Bool>(false)

    public init(name: String = "embedded", memorySize: Int = 1 << 20, symbols: [String: UInt64] = [:]) {
        self.name = name
        self.symbols = symbols
        state = Mutex(EmbeddedVCPUState(memorySize: memorySize))
    }

    /// The fixture's access to everything, from any thread (no owner check).
    public func withState<T>(_ body: (inout EmbeddedVCPUState) throws -> T) rethrows -> T {
        try state.withLock { try body(&$0) }
    }

    private func checked<T>(_ operation: String, _ body: (inout EmbeddedVCPUState) throws -> T) throws -> T {
        let caller = VCPU.currentThreadID()
        if let owner = owner.withLock({ $0 }), owner != caller {
            throw TargetError.wrongThread(operation: operation, owner: owner, caller: caller)
        }
        return try state.withLock { try body(&$0) }
    }

    // MARK: DebugTarget

    public func generalRegisters() throws -> GeneralRegisters { try checked("KVM_GET_REGS") { $0.registers } }

    public func setGeneralRegisters(_ registers: GeneralRegisters) throws {
        try checked("KVM_SET_REGS") { $0.registers = registers }
    }

    public func specialRegisters() throws -> SpecialRegisters { try checked("KVM_GET_SREGS2") { $0.special } }

    public func debugRegisters() throws -> DebugRegisters { try checked("KVM_GET_DEBUGREGS") { $0.debug } }

    public func msrs(_ indices: [UInt32]) throws -> [UInt64] {
        try checked("KVM_GET_MSRS") { s in indices.map { s.msrs[$0] ?? 0 } }
    }

    public func nestedState() throws -> SVMNestedState? {
        try checked("KVM_GET_NESTED_STATE") { s in
            guard s.hasNestedState else { return nil }
            let bytes = SVMNestedState.make(flags: s.nestedFlags, vmcbPA: s.vmcbPA, data: s.nestedData)
            return try SVMNestedState(bytes: bytes)
        }
    }

    public func isInGuestMode() throws -> Bool {
        try checked("KVM_GET_NESTED_STATE") { $0.nestedFlags.contains(.guestMode) }
    }

    public func readPhysical(_ address: UInt64, count: Int) throws -> [UInt8] {
        try checked("reading guest memory") { s in
            let range = try Self.range(address, count, in: s.memory)
            return Array(s.memory[range])
        }
    }

    public func writePhysical(_ bytes: [UInt8], at address: UInt64) throws {
        try checked("writing guest memory") { s in
            let range = try Self.range(address, bytes.count, in: s.memory)
            s.memory.replaceSubrange(range, with: bytes)
        }
    }

    /// L1 runs with paging off or identity-mapped: linear is physical inside RAM.
    public func translate(_ linear: UInt64) throws -> UInt64? {
        try checked("KVM_TRANSLATE") { s in linear < UInt64(s.memory.count) ? linear : nil }
    }

    private static func range(_ address: UInt64, _ count: Int, in memory: [UInt8]) throws -> Range<Int> {
        guard count >= 0, address <= UInt64(memory.count), UInt64(count) <= UInt64(memory.count) - address else {
            throw KVMError.guestMemoryOutOfRange(address: address, length: count)
        }
        return Int(address)..<Int(address) + count
    }

    // MARK: RunnableTarget

    /// Nothing executes here: a `ScriptedStopSource` stands where KVM_RUN would.
    public func run() throws -> VCPUExit {
        throw TargetError.notSupported(operation: "KVM_RUN (a scripted stop source runs it)", target: name)
    }

    public func setSingleStep(_ enabled: Bool) throws { try checked("KVM_SET_GUEST_DEBUG") { $0.singleStep = enabled } }

    public func kick() { kicked.store(true, ordering: .releasing) }

    /// Whether `kick()` came since the last look (and forgets it).
    public func takeKick() -> Bool { kicked.exchange(false, ordering: .acquiringAndReleasing) }

    public func claimVCPU() throws { owner.withLock { $0 = VCPU.currentThreadID() } }

    public var vcpuThreadID: Int32? { owner.withLock { $0 } }

    public func prepareForTracepointStops() throws -> Int32 {
        throw TargetError.notSupported(operation: "KVM's tracepoints", target: name)
    }

    public func release() throws { owner.withLock { $0 = nil } }

    public var serialOutput: [UInt8]? { state.withLock { $0.serial } }
}
