import DebuggerEngine
import Foundation
import GRDB
import SVMModel

/// Writes every stop into a new recording as it happens, in SQLite's WAL
/// mode. The engine hands a stop over and goes on; the recorder's own thread
/// commits what it was handed as soon as it can: one stop a transaction
/// while it keeps up (a stepping user, a live session), the stops that queued
/// meanwhile in one transaction when the engine is faster (a batch run), so
/// recording costs the engine a hand-over, not a commit. At most
/// `Recorder.maxInFlight` stops are ever uncommitted (the hand-over waits
/// beyond that): a crash or SIGKILL loses at most those, and the file always
/// opens with everything committed before. `finish` commits the rest and
/// folds the WAL back in: the file alone is the recording, for a bug report.
public final class Recorder: StopRecorder, @unchecked Sendable {
    /// How far the file may fall behind the engine (stops handed over, not yet committed).
    public static let maxInFlight = 64
    public let path: String
    private let queue: DatabaseQueue
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var pending: [(stop: Stop, serial: [UInt8])] = []
    private var writing = 0
    private var failure: String?
    private var finished = false
    private var writerEnded = false
    // The writer thread's own:
    /// The last blobs stored (a vmcb12 page repeats from stop to stop), newest last.
    private var recentBlobs: [(id: Int64, bytes: [UInt8])] = []
    private static let recentLimit = 6
    private let encoder = JSONEncoder()
    /// How many COM1 bytes the file holds (the engine's thread's).
    private var serialHanded = 0

    /// Creates the file (never over an existing one) with the schema and the session row.
    public init(path: String, session: RecordingSession) throws(RecordingError) {
        guard !FileManager.default.fileExists(atPath: path) else { throw .exists(path) }
        self.path = path
        do {
            var configuration = Configuration()
            configuration.prepareDatabase { db in
                try db.execute(sql: "PRAGMA journal_mode = WAL")
                // With WAL, NORMAL keeps every commit through a process crash (only power loss can cost the last ones).
                try db.execute(sql: "PRAGMA synchronous = NORMAL")
            }
            queue = try DatabaseQueue(path: path, configuration: configuration)
            let kvmAMD = JSON.object(session.kvmAMD.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })
                .serialized()
            try queue.write { db in
                for sql in Schema.tables + Schema.views { try db.execute(sql: sql) }
                try db.execute(
                    sql: "INSERT INTO meta (key, value) VALUES ('format', ?), ('schema_version', ?)",
                    arguments: [Schema.format, String(Schema.version)])
                for (pos, name) in Schema.registerNames {
                    try db.execute(sql: "INSERT INTO register_names (pos, name) VALUES (?, ?)", arguments: [pos, name])
                }
                try db.execute(
                    sql: """
                        INSERT INTO session (id, nestdbg_version, started_at, command_line, kernel, kvm_amd, cpu_model, target,
                                             image_sha256, stop_source)
                        VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        session.nestdbgVersion, session.startedAt, session.commandLine, session.kernel, kvmAMD,
                        session.cpuModel, session.target, session.imageSHA256, session.stopSource,
                    ])
            }
        } catch {
            throw .cannotWrite(path, why: "\(error)")
        }
        let thread = Thread { [self] in self.writeStops() }
        thread.name = "nestdbg-recorder"
        thread.start()
    }

    /// Hands the stop over (waiting only while `maxInFlight` are uncommitted); a failed commit is thrown here.
    public func record(_ stop: Stop, serialOutput: [UInt8]) throws {
        let serial = serialOutput.count > serialHanded ? Array(serialOutput[serialHanded...]) : []
        condition.lock()
        defer { condition.unlock() }
        while pending.count + writing >= Self.maxInFlight, failure == nil { condition.wait() }
        if let failure { throw CommitFailure(description: failure) }
        pending.append((stop, serial))
        serialHanded = max(serialHanded, serialOutput.count)
        condition.broadcast()
    }

    /// Waits until every stop handed over is committed (tests; the SIGKILL guarantee is `maxInFlight`).
    public func waitUntilCommitted() {
        condition.lock()
        while !pending.isEmpty || writing > 0 { condition.wait() }
        condition.unlock()
    }

    /// Commits what was handed over, ends the writer thread, folds the WAL into
    /// the file and leaves WAL mode: one self-contained file. Whoever made the
    /// recorder calls it (the engine does when its recorder is replaced or the session ends).
    public func finish() {
        condition.lock()
        guard !finished else {
            condition.unlock()
            return
        }
        finished = true
        condition.broadcast()
        while !writerEnded { condition.wait() }
        let lost = failure
        condition.unlock()
        if let lost {
            FileHandle.standardError.write(
                Data("nestdbg: recording to \(path): the last stops were not stored: \(lost)\n".utf8))
        }
        try? queue.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
            try db.execute(sql: "PRAGMA journal_mode = DELETE")
        }
        try? queue.close()
    }

    // MARK: the writer thread

    private func writeStops() {
        // Behind the engine's thread on a busy CPU: the writer then runs when the engine waits (for a
        // key, or for the in-flight bound), and commits what queued in one transaction. (Linux keeps
        // the nice value per thread: who = 0 is this thread.)
        setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
        condition.lock()
        while true {
            while pending.isEmpty && !finished { condition.wait() }
            guard !pending.isEmpty else { break }
            let batch = pending
            pending = []
            writing = batch.count
            condition.unlock()
            var failed: String?
            if failure == nil {
                do { try write(batch) } catch { failed = "\(error)" }
            }
            condition.lock()
            writing = 0
            if let failed, failure == nil { failure = failed }
            condition.broadcast()
        }
        writerEnded = true
        condition.broadcast()
        condition.unlock()
    }

    /// Commits the stops in one transaction.
    private func write(_ batch: [(stop: Stop, serial: [UInt8])]) throws {
        var added: [(id: Int64, bytes: [UInt8])] = []
        try queue.write { db in
            for (stop, serial) in batch { try insert(stop, serial: serial, db, added: &added) }
        }
        // Committed: only now are the new blobs known to be in the file.
        recentBlobs = Array((recentBlobs + added).suffix(Self.recentLimit))
    }

    private func insert(_ stop: Stop, serial: [UInt8], _ db: Database, added: inout [(id: Int64, bytes: [UInt8])])
        throws
    {
        func blob(_ bytes: [UInt8]?) throws -> Int64? {
            guard let bytes else { return nil }
            // Array == returns at once for the same storage: a page carried from stop to stop is not compared byte by byte.
            if let id = added.last(where: { $0.bytes == bytes })?.id
                ?? recentBlobs.last(where: { $0.bytes == bytes })?.id
            {
                return id
            }
            // Stored without its trailing zero bytes (a VMCB's last ~2.4 KiB are zero): see Schema.
            let end = (bytes.lastIndex { $0 != 0 } ?? -1) + 1
            try db.cachedStatement(sql: "INSERT INTO blobs (bytes, size) VALUES (?, ?)")
                .execute(arguments: [Data(bytes[..<end]), bytes.count])
            added.append((db.lastInsertedRowID, bytes))
            return db.lastInsertedRowID
        }
        let vmcb = stop.vmcb12
        let exitFields: [Int64?] =
            stop.exit == nil
            ? [nil, nil, nil, nil]
            : [VMCBField.exitInfo1, .exitInfo2, .exitIntInfo, .nextRIP].map { vmcb?[integer: $0].stored }
        let kvm = stop.kvm
        let arguments: [(any DatabaseValueConvertible)?] = [
            stop.index, Date().timeIntervalSince1970, stop.kind.rawValue, stop.level.rawValue, stop.reason,
            stop.kvmExit,
            stop.exit?.code.stored, stop.exit?.name, exitFields[0], exitFields[1], exitFields[2], exitFields[3],
            stop.why?.description, try stop.why.map { String(decoding: try encoder.encode($0), as: UTF8.self) },
            stop.l1[.rip]?.stored, stop.l2?[.rip]?.stored, stop.vmcb12GPA?.stored, Int64(stop.nestedFlags.rawValue),
            stop.exitStatus.map { Int64($0) },
            try stop.hit.map { String(decoding: try encoder.encode($0), as: UTF8.self) },
            stop.l1.source, Data(stop.l1.packed), stop.l2?.source, stop.l2.map { Data($0.packed) },
            try blob(stop.vmcb12AtVMRUN?.bytes), try blob(vmcb?.bytes), try blob(stop.cachedControls?.bytes),
            try blob(stop.nestedState?.bytes),
            kvm == nil ? 0 : 1, kvm?.handledByL0 == nil ? 0 : 1, Int64(kvm?.lost ?? 0),
            Self.strings(kvm?.problems), Self.strings(kvm?.notes), Self.strings(stop.kvmDisagreements),
        ]
        try db.cachedStatement(
            sql: """
                INSERT INTO stops (idx, recorded_at, kind, level, reason, kvm_exit, exit_code, exit_name, exit_info_1,
                                   exit_info_2, exit_int_info, next_rip, why, cause, l1_rip, l2_rip, vmcb12_gpa,
                                   nested_flags, exit_status, hit, l1_source, l1, l2_source, l2, vmcb12_before,
                                   vmcb12_after, cached_controls, nested_state, kvm, kvm_handled_known, kvm_lost,
                                   kvm_problems, kvm_notes, kvm_vs_vmcb12)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
        ).execute(arguments: StatementArguments(arguments))
        for change in stop.synced {
            try db.cachedStatement(
                sql: "INSERT INTO synced (idx, field, before, after, class, note) VALUES (?, ?, ?, ?, ?, ?)"
            )
            .execute(arguments: [
                stop.index, change.field.name, change.before.description, change.after.description,
                change.sync.rawValue, change.note,
            ])
        }
        for v in stop.violations {
            try db.cachedStatement(
                sql: "INSERT INTO violations (idx, rule, field, message, enforced_by) VALUES (?, ?, ?, ?, ?)"
            )
            .execute(arguments: [stop.index, v.rule, v.field, v.message, v.enforcedBy])
        }
        for (seq, event) in (kvm?.events ?? []).enumerated() { try Self.insert(event, seq: seq, stop: stop.index, db) }
        for count in kvm?.handledByL0 ?? [] {
            try db.cachedStatement(sql: "INSERT INTO handled_by_l0 (idx, reason, code, count) VALUES (?, ?, ?, ?)")
                .execute(arguments: [stop.index, count.name, count.code.stored, count.count])
        }
        if !serial.isEmpty {
            try db.execute(sql: "INSERT INTO serial (idx, bytes) VALUES (?, ?)", arguments: [stop.index, Data(serial)])
        }
    }

    private static func insert(_ event: KVMNestedEvent, seq: Int, stop: Int, _ db: Database) throws {
        var exit: [(any DatabaseValueConvertible)?] = [nil, nil, nil, nil, nil, nil]
        var enter: [(any DatabaseValueConvertible)?] = [nil, nil, nil, nil, nil, nil]
        var check: String?
        switch event {
        case let .vmexitInject(f), let .l2Exit(f):
            exit = [
                f.code.stored, SVMExit.name(of: f.code), f.info1.stored, f.info2.stored, f.intInfo.stored,
                f.intInfoError.stored,
            ]
        case let .vmenter(rip, vmcb, l2RIP, intCtl, eventInj, npt):
            enter = [rip.stored, vmcb.stored, l2RIP.stored, intCtl.stored, eventInj.stored, npt ? 1 : 0]
        case let .vmenterFailed(failed):
            check = failed
        }
        try db.cachedStatement(
            sql: """
                INSERT INTO kvm_events (idx, seq, tracepoint, exit_code, exit_name, exit_info_1, exit_info_2, exit_int_info,
                                        exit_int_info_err, l1_rip, vmcb12, l2_rip, int_ctl, event_inj, nested_paging, check_failed)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
        ).execute(arguments: StatementArguments([stop, seq, event.tracepoint] + exit + enter + [check]))
    }

    /// A list of lines as a JSON array (rare: only when there is one).
    private static func strings(_ lines: [String]?) -> String? {
        guard let lines, !lines.isEmpty else { return nil }
        return JSON.array(lines.map { .string($0) }).serialized()
    }
}

/// Why the writer thread could not commit a stop (the engine names the file).
private struct CommitFailure: Error, CustomStringConvertible {
    let description: String
}

/// SQLite's INTEGER is signed: 64-bit values are stored as their bit pattern.
extension UInt64 {
    var stored: Int64 { Int64(bitPattern: self) }
    init(stored: Int64) { self.init(bitPattern: stored) }
}
