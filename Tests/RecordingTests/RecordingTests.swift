import DebuggerEngine
import Foundation
import KVMControl
import Recording
import SVMModel
import TestSupport
import Testing

/// A path in a fresh temporary folder (the recorder refuses existing files).
func temporaryPath(_ name: String) throws -> String {
    try Scratch("recording").path(name)
}

/// The demo recording that ships with nestdbg (made by nestdbg in the sandbox), and the JSON its live run printed.
enum ShippedDemo {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources")
    static let path = sources.appendingPathComponent("nestdbg/Recordings/demo.nestdbg").path
    static let liveJSON = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
        "Fixtures/demo-live.jsonl"
    ).path

    static func stops() throws -> [Stop] { try RecordingFile(path: path).stops() }
}

func requireKVM(sourceLocation: SourceLocation = #_sourceLocation) throws {
    try Requirement.kvm(sourceLocation: sourceLocation)
}

@Suite("a recording holds every stop as the engine had it (real /dev/kvm, a plain guest)", .serialized)
struct RecordAndReadBackTests {
    /// 32-bit code at 1 MiB: "hi" to COM1, OUT 0x80 twice (stops), then status 7 to isa-debug-exit.
    static let guest: [UInt8] = [
        0x66, 0xBA, 0xF8, 0x03, 0xB0, 0x68, 0xEE, 0xB0, 0x69, 0xEE, 0xE6, 0x80, 0xE6, 0x80,
        0xB0, 0x07, 0xE6, 0xF4, 0xF4,
    ]

    /// Runs the guest to its end through a session recording to `path`; the stops the session reported.
    static func recordedRun(to path: String) throws -> [Stop] {
        try requireKVM()
        let image = try GuestImage.flat(guest, loadAddress: 0x10_0000, entry: nil)
        let engine = try Engine(ownVM: try OwnVMTarget.image(kvm: KVM(), image: image, name: "serial guest"))
        engine.recorder = try Recorder(
            path: path,
            session: .here(
                nestdbgVersion: "test", target: "serial guest",
                image: guest, stopSource: engine.source.name))
        let session = EngineSession(engine: engine)
        defer { session.shutdown() }
        var stops: [Stop] = []
        while stops.last?.endsRun != true {
            if !stops.isEmpty { try session.send(.nextStop) }
            let stop = try #require(nextStop(session), "no stop within 5 s after #\(stops.count)")
            stops.append(stop)
        }
        return stops
    }

    @Test("every stop reads back with the same JSON, the COM1 output and the session; the file is one file")
    func roundTrip() throws {
        let path = try temporaryPath("run.nestdbg")
        let live = try Self.recordedRun(to: path)
        #expect(live.map(\.kind) == [.start, .l1UserspaceExit, .l1UserspaceExit, .exited])
        #expect(!FileManager.default.fileExists(atPath: path + "-wal"), "finished: the WAL is folded into the file")
        let file = try RecordingFile(path: path)
        let replayed = try file.stops()
        #expect(replayed.map { $0.json.serialized() } == live.map { $0.json.serialized() })
        #expect(replayed.map(\.index) == Array(0..<live.count))
        #expect(replayed.map(\.l1) == live.map(\.l1), "registers with their provenance")
        #expect(replayed.last?.exitStatus == 7)
        #expect(try file.serialOutput() == Array("hi".utf8))
        #expect(file.session.target == "serial guest")
        #expect(file.session.imageSHA256 == (try SHA256Vector.hex(of: Self.guest)))
        #expect(!file.session.kernel.isEmpty && file.session.kernel != "unknown")
    }

    @Test("a file that exists is never overwritten")
    func neverOverwrites() throws {
        let path = try temporaryPath("exists.nestdbg")
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: RecordingError.exists(path)) {
            try Recorder(path: path, session: .here(nestdbgVersion: "test", target: "t", image: nil, stopSource: "s"))
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "keep me")
    }
}

/// Waits for the session's next stop (nil: none within `seconds`).
func nextStop(_ session: EngineSession, within seconds: Int64 = 5) -> Stop? {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        for case let .stopped(stop, _) in session.takeEvents(waitingUpTo: .milliseconds(100)) { return stop }
    }
    return nil
}

/// SHA-256 through sha256sum, to check the recording's own digest against the system's.
enum SHA256Vector {
    static func hex(of bytes: [UInt8]) throws -> String {
        let path = try temporaryPath("digest.bin")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        p.arguments = [path]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return String(text.prefix(64))
    }
}
