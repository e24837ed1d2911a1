/// What the front end and batch mode drive: a live vCPU (`EngineSession`)
/// or a recording (`ReplaySession`). Commands are typed; answers come back
/// as events.
/// What a session can do beyond running forwards, so that callers ask rather than cast.
public struct SessionCapabilities: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// A recording: it moves backwards and jumps, and ends where the recording ends.
    public static let replaysRecording = SessionCapabilities(rawValue: 1 << 0)
    /// A live vCPU that can be saved and restored into a clone (`captureState`, the migration check).
    public static let savesVCPU = SessionCapabilities(rawValue: 1 << 1)
}

public protocol DebugSession: AnyObject {
    var state: SessionState { get }
    var capabilities: SessionCapabilities { get }
    /// The mechanism that stops a live vCPU; nil for a recording.
    var stopSourceKind: StopSourceKind? { get }
    /// For the banner.
    var targetName: String { get }
    /// What the banner says while stopped ("stopped", QEMU's vCPU held, the replay's place).
    var stoppedDescription: String { get }
    /// The kernel thread inside KVM_RUN (live watch filters on it); 0 for a recording.
    var vcpuThreadID: Int32 { get }
    /// Whether the vCPU belongs to another process (QEMU), which waits while nestdbg holds it.
    var isAttached: Bool { get }
    /// What the guest wrote to COM1 so far; nil where the session cannot know (another process's serial port).
    var serialOutput: [UInt8]? { get }
    /// Sends a command, or says why it does not fit.
    func send(_ command: EngineCommand) throws(CommandRefusal)
    /// Live watch: asks for a snapshot of the running guest.
    func requestSample()
    /// The events since the last call; waits up to `timeout` for one when there are none.
    func takeEvents(waitingUpTo timeout: Duration) -> [SessionEvent]
    /// Ends the session (a live one releases its vCPU); false if that did not finish in `timeout`.
    @discardableResult func shutdown(timeout: Duration) -> Bool
}

extension DebugSession {
    public var serialOutput: [UInt8]? { nil }
    public func takeEvents() -> [SessionEvent] { takeEvents(waitingUpTo: .zero) }
    @discardableResult public func shutdown() -> Bool { shutdown(timeout: .seconds(5)) }
}

/// How a command sent to a session ended.
public enum CommandOutcome: Sendable {
    /// At this stop (the history is the session's up to it).
    case stopped(Stop, history: ArraySlice<Stop>)
    /// A command that ends without a stop: breakpoints changed, a recording started or ended, a vCPU saved.
    case done(SessionEvent)
    case failed(SessionFailure)
    /// No answer within the time: the guest still runs.
    case noAnswer
}

extension DebugSession {
    /// The one wait for a command's end: the start stop, live-watch samples and notices are passed over.
    public func awaitOutcome(timeout: Duration) -> CommandOutcome {
        let deadline = ContinuousClock.now + timeout
        repeat {
            let left = deadline - ContinuousClock.now
            for event in takeEvents(waitingUpTo: max(.zero, min(.milliseconds(200), left))) {
                switch event {
                case let .stopped(stop, history) where stop.kind != .start: return .stopped(stop, history: history)
                case let .failed(failure): return .failed(failure)
                case .breakpoints, .captured, .recording: return .done(event)
                case .stopped, .sample, .notice: continue
                }
            }
        } while ContinuousClock.now < deadline
        return .noAnswer
    }
}
