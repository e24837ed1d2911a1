/// A vCPU of QEMU and the host thread that runs it (KVM_RUN is called there).
public struct VCPUThread: Sendable, Equatable {
    /// QEMU's cpu-index, the N of `anon_inode:kvm-vcpu:N`.
    public let index: Int
    public let threadID: Int32

    public init(index: Int, threadID: Int32) {
        self.index = index
        self.threadID = threadID
    }
}

/// `query-status`: whether the vCPUs run, and why not.
public struct VMStatus: Sendable, Equatable {
    public let isRunning: Bool
    public let state: RunState

    public init(isRunning: Bool, state: RunState) {
        self.isRunning = isRunning
        self.state = state
    }
}

/// QEMU's RunState (QAPI), the states nestdbg meets by name; any other as it is spelled.
public enum RunState: Sendable, Equatable, CustomStringConvertible {
    /// Started with -S and never continued.
    case prelaunch
    /// Stopped by `stop` (or a monitor) after running.
    case paused
    case running
    /// Stopped by QEMU's gdbstub.
    case debug
    case shutdown
    case suspended
    case guestPanicked
    case internalError
    case ioError
    case inMigrate
    case postMigrate
    case finishMigrate
    case other(String)

    private static let named: [(RunState, String)] = [
        (.prelaunch, "prelaunch"), (.paused, "paused"), (.running, "running"), (.debug, "debug"),
        (.shutdown, "shutdown"), (.suspended, "suspended"), (.guestPanicked, "guest-panicked"),
        (.internalError, "internal-error"), (.ioError, "io-error"), (.inMigrate, "inmigrate"),
        (.postMigrate, "postmigrate"), (.finishMigrate, "finish-migrate"),
    ]

    /// The state QMP spells `name`.
    public init(_ name: String) {
        self = Self.named.first { $0.1 == name }?.0 ?? .other(name)
    }

    /// QMP's spelling.
    public var description: String {
        if case let .other(name) = self { return name }
        return Self.named.first { $0.0 == self }?.1 ?? "?"
    }
}
