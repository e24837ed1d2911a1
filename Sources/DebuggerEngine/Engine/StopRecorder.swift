/// Where the engine also sends every stop it records: a recording file
/// (the Recording module's `Recorder`). Called on the engine's thread only.
public protocol StopRecorder: AnyObject {
    /// The file, for messages.
    var path: String { get }
    /// Stores one stop, committed before it returns, with what the guest has
    /// written to COM1 so far (the recorder keeps what it already stored).
    func record(_ stop: Stop, serialOutput: [UInt8]) throws
    /// Ends the recording: the file is complete and self-contained.
    func finish()
}

/// A recorder handed to the engine's thread in a command.
public struct RecorderHandle: Equatable, @unchecked Sendable {
    public let recorder: any StopRecorder
    public init(_ recorder: any StopRecorder) { self.recorder = recorder }
    public static func == (a: RecorderHandle, b: RecorderHandle) -> Bool { a.recorder === b.recorder }
}

/// The recording failed (a full disk, a removed file): it stops, what was committed stays.
public struct RecordingFailure: Error, CustomStringConvertible {
    public let path: String
    /// The recorder's own error (SQLite's, the disk's), kept typed for whoever wants to tell them apart.
    public let underlying: any Error
    public var description: String {
        "recording to \(path) stopped: \(underlying) (what was committed before stays in the file)"
    }
}
