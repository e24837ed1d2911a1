import Foundation
import TestSupport
import Testing

/// The shipped demo recording and the README, found from this file (a clone has both).
enum Repository {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let demo = root.appendingPathComponent("Sources/nestdbg/Recordings/demo.nestdbg").path
    static let demoLive = root.appendingPathComponent("Tests/RecordingTests/Fixtures/demo-live.jsonl").path

    /// The SQL queries of the README's recordings section: indented blocks from SELECT to `;`.
    static func readmeQueries() throws -> [String] {
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        var queries: [String] = []
        var current: String?
        for line in readme.split(separator: "\n", omittingEmptySubsequences: false) {
            let text = line.trimmingCharacters(in: .whitespaces)
            if current == nil, line.hasPrefix("    SELECT") { current = "" }
            guard current != nil else { continue }
            current! += text + " "
            if text.hasSuffix(";") {
                queries.append(current!)
                current = nil
            }
        }
        return queries
    }
}

func sqlite3(_ path: String, _ sql: String) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
    p.arguments = ["-bail", "-header", path, sql]
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    return (p.terminationStatus, text)
}

@Suite("recordings on the command line: replay, export, the README's SQL, bad files, SIGKILL", .serialized)
struct RecordingCLITests {
    @Test("replay --demo --batch --json prints what the live run printed in the sandbox; export prints every stop")
    func replayAndExport() throws {
        let replay = try CLI.run("replay", "--demo", "--batch", "--json")
        #expect(replay.status == 0, "\(replay.stderr)")
        #expect(replay.stdout == (try String(contentsOfFile: Repository.demoLive, encoding: .utf8)))
        let export = try CLI.run("export", Repository.demo, "--jsonl")
        let lines = export.stdout.split(separator: "\n")
        #expect(export.status == 0 && lines.count == 63)
        #expect(lines.first?.contains(#""index":0,"kind":"start""#) == true)
        #expect(
            lines.filter { $0.contains(#""kind":"vmrun""#) }.count == 30,
            "export keeps the VMRUN stops batch mode does not print")
        let info = try CLI.run("replay", Repository.demo, "--info")
        #expect(info.stdout.contains("kernel: 6.1.0-57-cloud-amd64") && info.stdout.contains("nested=1"))
        #expect(info.stdout.contains("stops: 63 (#0 to #62), 30 nested exits"))
        let broken = try CLI.run("replay", Repository.demo, "--batch", "--break", "NPF")
        #expect(broken.status == 0 && broken.stdout.hasSuffix("breakpoint: exit NPF\n"), "\(broken.stdout.suffix(200))")
    }

    @Test("the README's SQL queries run on the demo recording and answer")
    func readmeQueries() throws {
        let queries = try Repository.readmeQueries()
        #expect(queries.count == 4)
        for query in queries {
            let (status, output) = try sqlite3(Repository.demo, query)
            #expect(status == 0, "\(query): \(output)")
            #expect(output.split(separator: "\n").count >= 2, "\(query) found nothing")
        }
        let (_, npf) = try sqlite3(Repository.demo, queries[1])
        #expect(npf.split(separator: "\n").count == 4 && npf.contains("0x1501"), "three NPFs at GPA 0x60000: \(npf)")
    }

    @Test("bad recordings: one line, status 2")
    func badFiles() throws {
        let garbage = try CLI.file(Array(repeating: 0x5A, count: 3000), "garbage.nestdbg")
        for args in [
            ["replay", garbage, "--batch"], ["export", garbage, "--jsonl"], ["replay", "/nonexistent.nestdbg"],
        ] {
            let r = try CLI.run(arguments: args)
            #expect(r.status == 2 && r.stderr.split(separator: "\n").count == 1, "\(args): \(r.stderr)")
            #expect(r.stderr.hasPrefix("nestdbg: "))
        }
        let newer = try CLI.file(Array(try Data(contentsOf: URL(fileURLWithPath: Repository.demo))), "newer.nestdbg")
        #expect(try sqlite3(newer, "UPDATE meta SET value = '7' WHERE key = 'schema_version'").status == 0)
        let r = try CLI.run("replay", newer, "--batch")
        #expect(
            r.status == 2 && r.stderr.contains("its schema is version 7, this nestdbg reads version 1"), "\(r.stderr)")
        let exists = try CLI.run("run", "--batch", "--record", Repository.demo)
        #expect(exists.status == 2 && exists.stderr.contains("never overwrites"), "\(exists.stderr)")
    }

    @Test("SIGKILL while recording: the file opens with every stop committed before the kill (real /dev/kvm)")
    func killedWhileRecording() throws {
        try Requirement.kvm()
        // out 0x80, al; jmp $-2: a stop at every OUT, forever.
        let image = try CLI.file([0xE6, 0x80, 0xEB, 0xFC], "loop.bin")
        let recording = (image as NSString).deletingLastPathComponent + "/killed-\(UUID().uuidString).nestdbg"
        let printed = (image as NSString).deletingLastPathComponent + "/killed-\(UUID().uuidString).txt"
        FileManager.default.createFile(atPath: printed, contents: nil)
        let p = Process()
        p.executableURL = CLI.executable
        p.arguments = [
            "run", "--batch", "--image", image, "--load-at", "0x100000", "--stops", "patch", "--no-irqchip", "--record",
            recording,
            "--timeout", "120",
        ]
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: printed))
        try p.run()
        let deadline = Date().addingTimeInterval(30)
        var lines: [Substring] = []
        while Date() < deadline {
            lines = (try String(contentsOfFile: printed, encoding: .utf8)).split(separator: "\n")
            if lines.count >= 300 { break }
            usleep(20_000)
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(p.terminationReason == .uncaughtSignal)
        let all = try String(contentsOfFile: printed, encoding: .utf8)
        #expect(
            FileManager.default.fileExists(atPath: recording + "-wal"),
            "killed mid-recording: the WAL is still beside the file")
        // A stop is printed once the recorder has it; at most 64 (Recorder.maxInFlight) are ever
        // uncommitted, so the file holds at least every stop up to 64 before the last one printed.
        let whole = all.hasSuffix("\n") ? all.split(separator: "\n") : all.split(separator: "\n").dropLast()
        let last = try #require(whole.last.flatMap { Int($0.dropFirst().prefix(while: \.isNumber)) }, "no stop printed")
        #expect(last >= 300)
        let info = try CLI.run("replay", recording, "--info")
        #expect(info.status == 0, "\(info.stderr)")
        let count = info.stdout.split(separator: "\n").first { $0.hasPrefix("stops: ") }
            .flatMap { Int($0.dropFirst(7).prefix(while: \.isNumber)) }
        let stops = try #require(count)
        #expect(stops >= last + 1 - 64, "\(stops) stops recorded, #\(last) printed last")
        let export = try CLI.run("export", recording, "--jsonl")
        let indices = export.stdout.split(separator: "\n").map { Int($0.dropFirst(9).prefix(while: \.isNumber)) }
        #expect(indices == Array(0..<stops).map { Optional($0) }, "every stop from #0 on, none missing")
    }
}
