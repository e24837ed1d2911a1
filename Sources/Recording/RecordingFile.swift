import DebuggerEngine
import Foundation
import GRDB
import SVMModel

/// A recording opened for replay, export and SQL: checked to be a whole
/// nestdbg recording of a schema this nestdbg reads before anything is used.
public final class RecordingFile {
    public let path: String
    public let schemaVersion: Int
    public let session: RecordingSession
    private let queue: DatabaseQueue

    /// Opens and checks the file: SQLite's header, SQLite's own integrity
    /// check, the format and schema version, the session row. A recording
    /// left in WAL mode (its recorder killed) is opened with its WAL.
    public init(path: String) throws(RecordingError) {
        self.path = path
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw FileManager.default.fileExists(atPath: path) ? .notRecording(path, why: "it cannot be read") : .notFound(path)
        }
        let header = (try? handle.read(upToCount: 100)) ?? Data()
        try? handle.close()
        let magic = Data("SQLite format 3\0".utf8)
        guard header.count >= magic.count, header.prefix(magic.count) == magic else {
            throw .notRecording(path, why: header.isEmpty ? "the file is empty" : "not an SQLite database (no 'SQLite format 3' header)")
        }
        guard header.count == 100 else { throw .damaged(path, why: "truncated inside SQLite's 100-byte header") }
        do {
            var configuration = Configuration()
            configuration.readonly = !FileManager.default.isWritableFile(atPath: path)
            queue = try DatabaseQueue(path: path, configuration: configuration)
        } catch {
            throw .damaged(path, why: "SQLite cannot open it: \(error)")
        }
        let found: (format: String?, version: String?, check: String?, hasMeta: Bool)
        do {
            found = try queue.read { db in
                let check = try String.fetchOne(db, sql: "PRAGMA quick_check")
                guard try db.tableExists("meta") else { return (nil, nil, check, false) }
                return (try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'format'"),
                        try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'schema_version'"), check, true)
            }
        } catch {
            throw .damaged(path, why: "\(error)")
        }
        guard found.check == "ok" else { throw .damaged(path, why: "SQLite's integrity check says: \(found.check ?? "nothing")") }
        guard found.hasMeta, found.format == Schema.format else {
            throw .notRecording(path, why: found.hasMeta ? "its meta table names format \(found.format ?? "none")"
                                                          : "an SQLite database without nestdbg's meta table")
        }
        guard let version = found.version.flatMap(Int.init) else { throw .damaged(path, why: "no schema version in its meta table") }
        guard version <= Schema.version else { throw .newerSchema(path, version: version, supported: Schema.version) }
        schemaVersion = version
        do {
            session = try queue.read { db in
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM session WHERE id = 1") else {
                    throw StoredStopError(description: "no session row")
                }
                let kvmAMD = try JSONDecoder().decode([String: String].self, from: Data((row["kvm_amd"] as String).utf8))
                return RecordingSession(nestdbgVersion: row["nestdbg_version"], startedAt: row["started_at"],
                                        commandLine: row["command_line"], kernel: row["kernel"], kvmAMD: kvmAMD,
                                        cpuModel: row["cpu_model"], target: row["target"], imageSHA256: row["image_sha256"],
                                        stopSource: row["stop_source"])
            }
        } catch {
            throw .damaged(path, why: "its session row: \(error)")
        }
    }

    /// Every stop, in order, as the live engine had it.
    public func stops() throws(RecordingError) -> [Stop] {
        do {
            return try queue.read { db in
                var blobs: [Int64: [UInt8]] = [:]
                for row in try Row.fetchAll(db, sql: "SELECT id, bytes FROM blobs") {
                    blobs[row["id"]] = [UInt8](row["bytes"] as Data)
                }
                let decoder = JSONDecoder()
                return try Row.fetchAll(db, sql: "SELECT * FROM stops ORDER BY idx").map { row in
                    let index: Int = row["idx"]
                    do {
                        return try Self.stop(row, blobs: blobs, decoder: decoder)
                    } catch {
                        throw StoredStopError(description: "stop #\(index): \(error)")
                    }
                }
            }
        } catch {
            throw .damaged(path, why: "\(error)")
        }
    }

    /// What the guest wrote to COM1 over the whole recording.
    public func serialOutput() throws(RecordingError) -> [UInt8] {
        do {
            return try queue.read { db in
                try Data.fetchAll(db, sql: "SELECT bytes FROM serial ORDER BY idx").flatMap { [UInt8]($0) }
            }
        } catch {
            throw .damaged(path, why: "\(error)")
        }
    }

    private static func stop(_ row: Row, blobs: [Int64: [UInt8]], decoder: JSONDecoder) throws -> Stop {
        func blob(_ column: String) throws -> [UInt8]? {
            guard let id: Int64 = row[column] else { return nil }
            guard let bytes = blobs[id] else { throw StoredStopError(description: "\(column) names blob \(id), which is missing") }
            return bytes
        }
        func vmcb(_ column: String) throws -> VMCB? { try blob(column).map { try VMCB(bytes: $0) } }
        func registers(_ column: String, source: String?) throws -> RegisterSet? {
            guard let text: String = row[column], let source else { return nil }
            return try RegisterSet(source: source, valuesJSON: text)
        }
        let kindName: String = row["kind"], levelName: String = row["level"]
        guard let kind = StopKind(rawValue: kindName) else { throw StoredStopError(description: "unknown kind \(kindName)") }
        guard let level = Level(rawValue: levelName) else { throw StoredStopError(description: "unknown level \(levelName)") }
        guard let l1 = try registers("l1", source: row["l1_source"]) else { throw StoredStopError(description: "no L1 registers") }
        let detail = try decoder.decode(StoredDetail.self, from: Data((row["detail"] as String).utf8))
        let flags: Int64 = row["nested_flags"]
        let gpa: Int64? = row["vmcb12_gpa"]
        var stop = Stop(index: row["idx"], kind: kind, level: level, reason: row["reason"], exit: detail.exit, l1: l1,
                        l2: try registers("l2", source: row["l2_source"]), vmcb12GPA: gpa.map(UInt64.init(stored:)),
                        vmcb12AtVMRUN: try vmcb("vmcb12_before"), vmcb12: try vmcb("vmcb12_after"), synced: detail.synced,
                        violations: detail.violations, nestedFlags: NestedStateFlags(rawValue: UInt16(truncatingIfNeeded: flags)),
                        cachedControls: try vmcb("cached_controls"), kvmExit: row["kvm_exit"])
        let status: Int64? = row["exit_status"]
        stop.exitStatus = status.map { Int32(truncatingIfNeeded: $0) }
        stop.hit = detail.hit
        stop.kvm = detail.kvm
        stop.kvmDisagreements = detail.kvmVsVMCB12
        stop.why = detail.why
        stop.nestedState = try blob("nested_state").map { try SVMNestedState(bytes: $0) }
        return stop
    }
}
