import DebuggerEngine
import Foundation
import GRDB
import SVMModel

/// Writes every stop into a new recording as it happens: one transaction a
/// stop in SQLite's WAL mode, so a crash or SIGKILL loses at most the stop
/// in flight and the file always opens. `finish` folds the WAL back in:
/// the file alone is the recording, to attach to a bug report.
public final class Recorder: StopRecorder {
    public let path: String
    private let queue: DatabaseQueue
    /// Blobs stored so far by hash (vmcb12 pages repeat from stop to stop).
    private var blobs: [UInt64: [(id: Int64, bytes: [UInt8])]] = [:]
    private var serialStored = 0
    private let encoder = JSONEncoder()
    private var finished = false

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
            let kvmAMD = String(decoding: try encoder.encode(session.kvmAMD), as: UTF8.self)
            try queue.write { db in
                for sql in Schema.tables + Schema.views { try db.execute(sql: sql) }
                try db.execute(sql: "INSERT INTO meta (key, value) VALUES ('format', ?), ('schema_version', ?)",
                               arguments: [Schema.format, String(Schema.version)])
                try db.execute(sql: """
                    INSERT INTO session (id, nestdbg_version, started_at, command_line, kernel, kvm_amd, cpu_model, target,
                                         image_sha256, stop_source)
                    VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [session.nestdbgVersion, session.startedAt, session.commandLine, session.kernel, kvmAMD,
                                     session.cpuModel, session.target, session.imageSHA256, session.stopSource])
            }
        } catch {
            throw .cannotWrite(path, why: "\(error)")
        }
    }

    deinit { finish() }

    public func record(_ stop: Stop, serialOutput: [UInt8]) throws {
        var added: [(hash: UInt64, id: Int64, bytes: [UInt8])] = []
        let detail = String(decoding: try encoder.encode(StoredDetail(stop)), as: UTF8.self)
        let l1 = stop.l1.valuesJSON.serialized()
        let l2 = stop.l2?.valuesJSON.serialized()
        let exitFields: [UInt64?] = stop.exit.map { _ in
            [VMCBField.exitInfo1, .exitInfo2, .exitIntInfo, .nextRIP].map { stop.vmcb12?[integer: $0] }
        } ?? [nil, nil, nil, nil]
        let newSerial = serialOutput.count > serialStored ? Array(serialOutput[serialStored...]) : []
        try queue.write { db in
            func blob(_ bytes: [UInt8]?) throws -> Int64? {
                guard let bytes else { return nil }
                let hash = blobHash(bytes)
                if let id = (blobs[hash] ?? []).first(where: { $0.bytes == bytes })?.id { return id }
                if let id = added.first(where: { $0.hash == hash && $0.bytes == bytes })?.id { return id }
                try db.execute(sql: "INSERT INTO blobs (hash, bytes) VALUES (?, ?)", arguments: [hash.stored, Data(bytes)])
                added.append((hash, db.lastInsertedRowID, bytes))
                return db.lastInsertedRowID
            }
            let arguments: [(any DatabaseValueConvertible)?] = [
                stop.index, Date().timeIntervalSince1970, stop.kind.rawValue, stop.level.rawValue, stop.reason, stop.kvmExit,
                stop.exit?.code.stored, stop.exit?.name, exitFields[0]?.stored, exitFields[1]?.stored, exitFields[2]?.stored,
                exitFields[3]?.stored, stop.why?.description,
                stop.l1[.rip]?.stored, stop.l2?[.rip]?.stored, stop.vmcb12GPA?.stored, Int64(stop.nestedFlags.rawValue),
                stop.exitStatus.map { Int64($0) }, stop.l1.source, l1, stop.l2?.source, l2,
                try blob(stop.vmcb12AtVMRUN?.bytes), try blob(stop.vmcb12?.bytes), try blob(stop.cachedControls?.bytes),
                try blob(stop.nestedState?.bytes), detail,
            ]
            let statement = try db.cachedStatement(sql: """
                INSERT INTO stops (idx, recorded_at, kind, level, reason, kvm_exit, exit_code, exit_name, exit_info_1,
                                   exit_info_2, exit_int_info, next_rip, why, l1_rip, l2_rip, vmcb12_gpa, nested_flags,
                                   exit_status, l1_source, l1, l2_source, l2, vmcb12_before, vmcb12_after, cached_controls,
                                   nested_state, detail)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            try statement.execute(arguments: StatementArguments(arguments))
            if !newSerial.isEmpty {
                try db.execute(sql: "INSERT INTO serial (idx, bytes) VALUES (?, ?)", arguments: [stop.index, Data(newSerial)])
            }
        }
        // Committed: only now are the new blobs known to be in the file.
        for entry in added { blobs[entry.hash, default: []].append((entry.id, entry.bytes)) }
        serialStored = max(serialStored, serialOutput.count)
    }

    /// Folds the WAL into the file and leaves WAL mode: one self-contained file.
    public func finish() {
        guard !finished else { return }
        finished = true
        try? queue.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
            try db.execute(sql: "PRAGMA journal_mode = DELETE")
        }
        try? queue.close()
    }
}
