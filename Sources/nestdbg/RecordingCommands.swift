import ArgumentParser
import DebuggerEngine
import Foundation
import Recording
import SVMModel
import TUI

/// `--record FILE` on run and attach: every stop from the start on also goes into a new recording.
func startRecording(to path: String?, engine: Engine, image: [UInt8]?) throws {
    guard let path else { return }
    engine.recorder = try makeRecorder(path, engine: engine, image: image)
}

/// `--record` never overwrites: said before anything runs (bad input, status 2).
func refuseExistingRecording(_ path: String?) throws {
    guard let path, FileManager.default.fileExists(atPath: path) else { return }
    throw fail(RecordingError.exists(path).description, status: 2)
}

/// The session row for a recording of this engine's target, here and now.
private func recordingSession(_ engine: Engine, image: [UInt8]?) -> RecordingSession {
    .here(
        nestdbgVersion: NestdbgVersion.string, target: engine.target.name, image: image, stopSource: engine.source.name)
}

/// A recorder for this engine's target, or one line saying why not (status 2: the file exists).
func makeRecorder(_ path: String, engine: Engine, image: [UInt8]?) throws -> Recorder {
    do {
        return try Recorder(path: path, session: recordingSession(engine, image: image))
    } catch {
        if case .exists = error { throw fail(error.description, status: 2) }
        throw fail(error.description, status: 1)
    }
}

/// The front end's `R` and `:record`: a recorder the engine's thread takes over.
func recorderFactory(engine: Engine, image: [UInt8]?) -> App.RecorderFactory {
    { path in try Recorder(path: path, session: recordingSession(engine, image: image)) }
}

/// Opens a recording, or fails with one line (status 2: bad input).
func openRecording(_ path: String) throws -> (RecordingFile, [Stop]) {
    do {
        let file = try RecordingFile(path: path)
        return (file, try file.stops())
    } catch {
        throw fail(error.description, status: 2)
    }
}

/// `nestdbg replay FILE`: a recording in the front end, or printed as the live run printed it.
struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract:
            "Open a recording (run/attach --record) in the front end, without KVM; step it forwards and backwards.",
        discussion: """
            n e c go forwards as in a live session; N (previous nested exit), E (previous VMRUN), S (previous stop) \
            and C (reverse-continue to a breakpoint) go backwards; goto N jumps; / searches the whole recording \
            ("exit NPF", "save.cr4 changed", "l2-rip 0x401000", "kind fault", or text in a stop's reason). \
            --batch --json prints the stops the live run printed, line for line.
            """)

    @Argument(help: "The recording (omit with --demo).") var file: String?
    @Flag(help: "The demo recording that ships with nestdbg (made by nestdbg in the sandbox).") var demo = false
    @Flag(help: "Print the stops instead of opening the front end.") var batch = false
    @Flag(help: "One JSON object per stop (the README's schema).") var json = false
    @Option(help: "Batch: stop after this many nested exits.") var exits = Int.max
    @Option(name: .customLong("break"), help: "Exit code or name to stop at (batch). Repeatable.") var breakAt:
        [String] = []
    @Flag(help: "Print who recorded it, where and with what (the session row), and how many stops.") var info = false
    @Option(help: "Theme name (Themes/NAME.theme) or path, for the front end.") var theme = "default"

    func run() throws {
        let path = try recordingPath(file, demo: demo)
        let batchRun = try BatchRun(exits: exits, json: json, timeout: 30, breakAt: breakAt)
        let (recording, stops) = try openRecording(path)
        if info {
            print(Self.describe(recording, stops: stops))
            return
        }
        let session: ReplaySession
        do { session = try ReplaySession(stops: stops, name: "replay of \(recording.session.target)") } catch {
            throw fail("\(path): \(error)", status: 2)
        }
        if batch {
            try batchRun.run(session)
            return
        }
        let t: Theme
        do { t = try Theme.load(theme) } catch let error as ThemeError { throw fail(error.description, status: 2) }
        guard isatty(0) == 1, isatty(1) == 1 else {
            throw fail("the front end needs a terminal; use replay --batch", status: 2)
        }
        App(session: session, theme: t).run()
    }

    static func describe(_ recording: RecordingFile, stops: [Stop]) -> String {
        let s = recording.session
        let nested = stops.filter { $0.kind == .nestedExit }.count
        let parameters = s.kvmAMD.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        return """
            recording: \(recording.path) (schema version \(recording.schemaVersion))
            recorded by: nestdbg \(s.nestdbgVersion) at \(s.startedAt): \(s.commandLine)
            kernel: \(s.kernel)
            kvm_amd: \(parameters.isEmpty ? "not loaded" : parameters)
            cpu: \(s.cpuModel)
            target: \(s.target)\(s.imageSHA256.map { " (image sha256 \($0))" } ?? "")
            stops: \(stops.count) (#\(stops.first?.index ?? 0) to #\(stops.last?.index ?? 0)), \(nested) nested exits, taken by \(s.stopSource)
            """
    }
}

/// `nestdbg export FILE --jsonl`: a recording as JSON lines for other tools.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract:
            "Print a recording as JSON lines: every stop (the start and VMRUN stops too) in the README's stop schema.")

    @Argument(help: "The recording.") var file: String
    @Flag(help: "One JSON object per stop, one per line (the only format).") var jsonl = false

    func run() throws {
        guard jsonl else { throw fail("export needs a format: --jsonl", status: 2) }
        let (_, stops) = try openRecording(file)
        for stop in stops { print(stop.json.serialized()) }
    }
}

/// FILE, or the shipped demo recording (found beside nestdbg's sources: a clone has it).
func recordingPath(_ file: String?, demo: Bool) throws -> String {
    switch (file, demo) {
    case let (file?, false): return file
    case (nil, true):
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        let path = sources.appendingPathComponent("Recordings/demo.nestdbg").path
        guard FileManager.default.fileExists(atPath: path) else {
            throw fail("the demo recording is not at \(path)", status: 2)
        }
        return path
    default: throw fail("give a recording FILE or --demo", status: 2)
    }
}
