import DebuggerEngine
import Foundation
import Recording
import SVMModel
import Testing

/// A replay of the shipped demo at its first stop (the start event taken).
func demoReplay() throws -> (ReplaySession, [Stop]) {
    let stops = try ShippedDemo.stops()
    let session = try ReplaySession(stops: stops, name: "demo")
    _ = session.takeEvents()
    return (session, stops)
}

/// The stop the next command leaves the replay at (a refusal fails the test).
func moved(_ session: ReplaySession, _ command: EngineCommand) throws -> Stop {
    try session.send(command)
    for case let .stopped(stop, _) in session.takeEvents() { return stop }
    throw CommandRefusal(description: "\(command) posted no stop")
}

@Suite("replaying the shipped demo recording (made by nestdbg in the sandbox on real nested KVM): no KVM needed")
struct ReplayTests {
    @Test("replay --batch --json prints what the live run printed in the sandbox, line for line")
    func sameJSONAsLive() throws {
        let live = try String(contentsOfFile: ShippedDemo.liveJSON, encoding: .utf8).split(separator: "\n").map(
            String.init)
        let (session, _) = try demoReplay()
        var printed: [String] = []
        // As batch mode does: `next` until the recording ends.
        while (try? session.send(.next)) != nil {
            for case let .stopped(stop, _) in session.takeEvents() { printed.append(stop.json.serialized()) }
        }
        #expect(live.count > 20)
        #expect(printed.count == live.count)
        let differing = zip(printed, live).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(differing == nil, "the first line that differs")
    }

    @Test("reverse-continue finds the previous hit of a breakpoint, then the one before it")
    func reverseContinue() throws {
        let (session, stops) = try demoReplay()
        let last = try #require(stops.last)
        _ = try moved(session, .goto(last.index))
        try session.send(.addBreakpoint(.exit(0x72)))  // CPUID
        _ = session.takeEvents()
        let cpuidExits = stops.filter { $0.kind == .nestedExit && $0.exit?.code == 0x72 }.map(\.index)
        #expect(cpuidExits.count >= 2)
        let first = try moved(session, .reverseContinue)
        #expect(first.index == cpuidExits.last && first.hit == .exit(0x72))
        let second = try moved(session, .reverseContinue)
        #expect(second.index == cpuidExits.dropLast().last)
        // Forwards again: continue stops at the hit it came from.
        #expect(try moved(session, .continueRunning).index == cpuidExits.last)
    }

    @Test("N E S go back to the previous nested exit, VMRUN and stop; n e forwards; the edges say so")
    func stepping() throws {
        let (session, stops) = try demoReplay()
        #expect(throws: CommandRefusal.self, "nothing before the first stop") { try session.send(.previousStop) }
        let exit = try moved(session, .next)
        #expect(exit.kind == .nestedExit)
        let vmrun = try moved(session, .previousVMRUN)
        #expect(
            vmrun.kind == .vmrun
                && vmrun.index == stops.last(where: { $0.kind == .vmrun && $0.index < exit.index })?.index)
        #expect(try moved(session, .nextStop).index == vmrun.index + 1)
        let later = try moved(session, .next)
        let back = try moved(session, .previous)
        #expect(back.kind == .nestedExit && back.index < later.index)
        #expect(back.index == stops.last(where: { $0.kind == .nestedExit && $0.index < later.index })?.index)
        #expect(try moved(session, .previousStop).index == back.index - 1)
        _ = try moved(session, .goto(stops[stops.count - 1].index))
        #expect(throws: CommandRefusal.self, "nothing after the last stop") { try session.send(.nextStop) }
        #expect(throws: CommandRefusal.self, "a recording does not run") { try session.send(.stepInstruction) }
    }

    @Test("/ searches the whole recording: an exit, a changed vmcb12 field, an L2 RIP, text; wrapping")
    func search() throws {
        let (session, stops) = try demoReplay()
        let npf = try moved(session, .search("exit NPF"))
        #expect(npf.exit?.name == "NPF" && npf.index == stops.first(where: { $0.exit?.name == "NPF" })?.index)
        let rax = try moved(session, .search("save.rax changed"))
        let previous = stops[..<rax.index].last(where: { $0.vmcb12 != nil })?.vmcb12
        #expect(rax.index > npf.index && rax.vmcb12?[integer: .saveRAX] != previous?[integer: .saveRAX])
        let rip = try #require(npf.vmcb12?[integer: .saveRIP])
        _ = try moved(session, .goto(stops[stops.count - 1].index))
        try session.send(.search("l2-rip 0x\(String(rip, radix: 16))"))
        let events = session.takeEvents()
        let wrapped = try #require(
            events.compactMap { event -> Stop? in
                if case let .stopped(stop, _) = event { return stop } else { return nil }
            }.first)
        #expect(wrapped.index == npf.index, "from the end the search wraps to the first NPF's RIP")
        #expect(
            events.contains {
                if case let .notice(text) = $0 { return text.contains("wrapped to the start") } else { return false }
            })
        #expect(try moved(session, .search("kind vmrun")).kind == .vmrun)
        #expect(throws: CommandRefusal.self) { try session.send(.search("no stop says this")) }
    }
}

@Suite("bad recording files get one clear error, never a crash")
struct BadRecordingTests {
    /// A copy of the shipped demo to damage.
    func copy() throws -> String {
        let path = try temporaryPath("copy.nestdbg")
        try FileManager.default.copyItem(atPath: ShippedDemo.path, toPath: path)
        return path
    }

    func sqlite(_ path: String, _ sql: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        p.arguments = [path, sql]
        try p.run()
        p.waitUntilExit()
        try #require(p.terminationStatus == 0, "sqlite3 \(sql)")
    }

    func error(opening path: String) -> RecordingError? {
        do {
            _ = try RecordingFile(path: path).stops()
            return nil
        } catch {
            return error
        }
    }

    @Test("missing, empty, not SQLite, truncated")
    func notRecordings() throws {
        #expect(error(opening: "/nonexistent.nestdbg") == .notFound("/nonexistent.nestdbg"))
        let empty = try temporaryPath("empty.nestdbg")
        try #require(FileManager.default.createFile(atPath: empty, contents: Data()))
        #expect(error(opening: empty) == .notRecording(empty, why: "the file is empty"))
        let text = try temporaryPath("text.nestdbg")
        try #require(FileManager.default.createFile(atPath: text, contents: Data(repeating: 0x41, count: 5000)))
        #expect(error(opening: text)?.description.contains("not an SQLite database") == true)
        let whole = try Data(contentsOf: URL(fileURLWithPath: ShippedDemo.path))
        for keep in [50, 4096 + 100, whole.count / 2] {
            let cut = try temporaryPath("cut-\(keep).nestdbg")
            try #require(FileManager.default.createFile(atPath: cut, contents: whole.prefix(keep)))
            let failure = error(opening: cut)
            guard case .damaged? = failure else {
                Issue.record("truncated to \(keep) bytes: \(failure.map { "\($0)" } ?? "opened")")
                continue
            }
        }
    }

    @Test("a foreign SQLite database, a newer schema, a damaged row")
    func foreignAndNewer() throws {
        let foreign = try temporaryPath("foreign.sqlite")
        try sqlite(foreign, "CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('hello');")
        #expect(
            error(opening: foreign) == .notRecording(foreign, why: "an SQLite database without nestdbg's meta table"))
        let newer = try copy()
        try sqlite(newer, "UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        #expect(error(opening: newer) == .newerSchema(newer, version: 2, supported: 1))
        #expect(error(opening: newer)?.description.contains("needs a newer nestdbg") == true)
        let row = try copy()
        try sqlite(row, "UPDATE stops SET l1 = x'0102' WHERE idx = 3")
        let failure = try #require(error(opening: row))
        #expect(failure.description.contains("stop #3"), "\(failure)")
        let blob = try copy()
        try sqlite(blob, "UPDATE blobs SET bytes = x'00' WHERE id = 1")
        #expect(error(opening: blob)?.description.contains("damaged") == true)
    }
}
