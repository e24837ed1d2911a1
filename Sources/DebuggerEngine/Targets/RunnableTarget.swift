import KVMControl

/// A target whose vCPU nestdbg runs itself (KVM_RUN in this process).
public protocol RunnableTarget: DebugTarget {
    func run() throws -> VCPUExit
    func setSingleStep(_ enabled: Bool) throws
    /// Makes a run in progress (or the next one) return `.interrupted`. Any thread.
    func kick()
    /// Makes the calling thread the vCPU's only user from now on (for
    /// another process's vCPU: its tracer).
    func claimVCPU() throws
    /// The kernel thread id of the thread inside KVM_RUN (tracepoints filter on it); nil before one claimed it.
    var vcpuThreadID: Int32? { get }
    /// Readies the thread that runs KVM_RUN for tracepoint SIGTRAPs and
    /// returns its kernel id, which the events are bound to. Called on the claiming thread.
    func prepareForTracepointStops() throws -> Int32
    /// Leaves the vCPU to its owner as nestdbg found it (the claiming thread calls it).
    func release() throws
    /// All-stop: the target's other vCPUs run while the debugger's runs toward a stop (`resume`), and wait
    /// at a stop (`pause`). The engine's thread calls them; a one-vCPU target does nothing.
    func resumeOtherVCPUs()
    func pauseOtherVCPUs()
    /// What the guest wrote to COM1, where nestdbg is its VMM; nil where another process owns the port.
    var serialOutput: [UInt8]? { get }
    /// The target as one whose vCPU can be saved and restored into a clone; nil where it cannot.
    var migratable: (any MigratableTarget)? { get }
    /// The devices behind the vCPU's port I/O where nestdbg is the VMM; nil where another process is.
    var deviceModel: (any DeviceModel)? { get }
}

/// A VMM's devices: what a port I/O exit does (the own VMM's ports, isa-debug-exit, the SMM stub).
public protocol DeviceModel {
    /// Emulates a port I/O exit.
    func handleIO(_ exit: VCPUExit) throws -> IOOutcome
}

extension RunnableTarget {
    public func resumeOtherVCPUs() {}
    public func pauseOtherVCPUs() {}
    public var serialOutput: [UInt8]? { nil }
    public var migratable: (any MigratableTarget)? { nil }
    public var deviceModel: (any DeviceModel)? { nil }
}
