import Foundation

/// What the front end needs of a terminal: its size, keys, a screen to show.
/// `Terminal` is ncurses; `EmbeddedTerminal` is the in-memory one the front
/// end's keys and commands are tested with.
public protocol TerminalDevice: AnyObject {
    var width: Int { get }
    var height: Int { get }
    var unicode: Bool { get }
    /// The next key, waiting at most `timeoutMs` (negative: as long as it takes).
    func key(timeoutMs: Int32) -> Terminal.Key
    func draw(_ screen: ScreenBuffer)
    func updateSize()
    func apply(_ theme: Theme)
    func stop()
}

extension Terminal: TerminalDevice {}

/// A terminal in memory: it types a script of keys, each after what the
/// screen must show first, and keeps every screen the front end drew. When
/// the script ends, or a wait is not met within `patience` (a failure), it
/// asks the front end to end through `quit` (pass it to `App.run`). Like swift-nio's EmbeddedChannel: a
/// real implementation below the front end, the tests' fixture.
public final class EmbeddedTerminal: TerminalDevice {
    public enum Input: Sendable {
        case key(Terminal.Key)
        /// Each character as a key.
        case type(String)
        /// Nothing more is typed until the screen shows this text.
        case waitFor(String)
        /// The window takes this size (the front end sees `.resize`).
        case resize(width: Int, height: Int)
    }

    public private(set) var width: Int
    public private(set) var height: Int
    public let unicode = false
    /// The last screen drawn.
    public private(set) var screen: ScreenBuffer
    public private(set) var screensDrawn = 0
    /// Why the script did not play to its end (a wait that timed out), nil when it did.
    public private(set) var failure: String?
    public private(set) var stopped = false
    private var inputs: [Input]
    private let patience: Duration
    private var waitingSince: ContinuousClock.Instant?
    /// Requested when the script is done; `App.run(quit:)` ends on it.
    public let quit = QuitRequest()

    public init(width: Int = 160, height: Int = 50, script: [Input], patience: Duration = .seconds(10)) {
        self.width = width
        self.height = height
        inputs = script
        self.patience = patience
        screen = ScreenBuffer(width: width, height: height)
    }

    public func key(timeoutMs: Int32) -> Terminal.Key {
        while let next = inputs.first {
            switch next {
            case let .key(key):
                inputs.removeFirst()
                return key
            case let .resize(width, height):
                inputs.removeFirst()
                self.width = width
                self.height = height
                return .resize
            case let .type(text):
                inputs.removeFirst()
                guard let first = text.first else { continue }
                if text.count > 1 { inputs.insert(.type(String(text.dropFirst())), at: 0) }
                return first == "\n" ? .enter : .char(first)
            case let .waitFor(text):
                if screen.text.contains(text) {
                    inputs.removeFirst()
                    waitingSince = nil
                    continue
                }
                let since = waitingSince ?? .now
                waitingSince = since
                if ContinuousClock.now - since > patience {
                    failure = "'\(text)' did not appear within \(patience); the screen:\n\(screen.text)"
                    inputs = []
                    quit.request()
                    return .none
                }
                // Give the engine's thread time to answer, then let the front end look again.
                usleep(UInt32(max(1, min(timeoutMs < 0 ? 20 : timeoutMs, 20))) * 1000)
                return .none
            }
        }
        quit.request()
        return .none
    }

    public func draw(_ screen: ScreenBuffer) {
        self.screen = screen
        screensDrawn += 1
    }

    public func updateSize() {}

    public func apply(_ theme: Theme) {}

    public func stop() { stopped = true }
}
