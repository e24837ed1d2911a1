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
            throw FileManager.default.fileExists(atPath: path)
                ? .notRecording(path, why: "it cannot be read") : .notFound(path)
        }
        let header = (try? handle.read(upToCount: 100)) ?? Data()
        try? handle.close()
        let magic = Data("SQLite format 3\0".utf8)
        guard header.count >= magic.count, header.prefix(magic.count) == magic else {
            throw .notRecording(
                path, why: header.isEmpty ? "the file is empty" : "not an SQLite database (no 'SQLite format 3' header)"
            )
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
                return (
                    try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'format'"),
                    try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'schema_version'"), check, true
                )
            }
        } catch {
            throw .damaged(path, why: "\(error)")
        }
        guard found.check == "ok" else {
            throw .damaged(path, why: "SQLite's integrity check says: \(found.check ?? "nothing")")
        }
        guard found.hasMeta, found.format == Schema.format else {
            throw .notRecording(
                path,
                why: found.hasMeta
                    ? "its meta table names format \(found.format ?? "none")"
                    : "an SQLite database without nestdbg's meta table")
        }
        guard let version = found.version.flatMap(Int.init) else {
            throw .damaged(path, why: "no schema version in its meta table")
        }
        guard version <= Schema.version else { throw .newerSchema(path, version: version, supported: Schema.version) }
        schemaVersion = version
        do {
            session = try queue.read { db in
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM session WHERE id = 1") else {
                    throw StoredStopError(description: "no session row")
                }
                let parameters: String = try row.value("kvm_amd")
                let kvmAMD = try JSONDecoder().decode([String: String].self, from: Data(parameters.utf8))
                let version: String = try row.value("nestdbg_version")
                let started: String = try row.value("started_at")
                let command: String = try row.value("command_line")
                let kernel: String = try row.value("kernel")
                let cpu: String = try row.value("cpu_model")
                let target: String = try row.value("target")
                let image: String? = try row.value("image_sha256")
                let source: String = try row.value("stop_source")
                return RecordingSession(
                    nestdbgVersion: version, startedAt: started, commandLine: command, kernel: kernel,
                    kvmAMD: kvmAMD, cpuModel: cpu, target: target, imageSHA256: image, stopSource: source)
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
                for row in try Row.fetchAll(db, sql: "SELECT id, bytes, size FROM blobs") {
                    let id: Int64 = try row.value("id")
                    let stored: Data = try row.value("bytes")
                    let size: Int = try row.value("size")
                    guard size >= stored.count, size <= 1 << 20 else {
                        throw StoredStopError(description: "blob \(id): \(stored.count) bytes stored of \(size)")
                    }
                    blobs[id] = [UInt8](stored) + [UInt8](repeating: 0, count: size - stored.count)
                }
                var parts = StopParts()
                for row in try Row.fetchAll(db, sql: "SELECT * FROM synced ORDER BY rowid") { try parts.addSynced(row) }
                for row in try Row.fetchAll(db, sql: "SELECT * FROM violations ORDER BY rowid") {
                    try parts.addViolation(row)
                }
                for row in try Row.fetchAll(db, sql: "SELECT * FROM kvm_events ORDER BY idx, seq") {
                    try parts.addEvent(row)
                }
                for row in try Row.fetchAll(db, sql: "SELECT * FROM handled_by_l0 ORDER BY rowid") {
                    try parts.addHandled(row)
                }
                return try Row.fetchAll(db, sql: "SELECT * FROM stops ORDER BY idx").map { row in
                    let index: Int = try row.value("idx")
                    do {
                        return try Self.stop(row, blobs: blobs, parts: parts)
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

    private static func stop(_ row: Row, blobs: [Int64: [UInt8]], parts: StopParts) throws -> Stop {
        func blob(_ column: String) throws -> [UInt8]? {
            let stored: Int64? = try row.value(column)
            guard let id = stored else { return nil }
            guard let bytes = blobs[id] else {
                throw StoredStopError(description: "\(column) names blob \(id), which is missing")
            }
            return bytes
        }
        func vmcb(_ column: String) throws -> VMCB? { try blob(column).map { try VMCB(bytes: $0) } }
        func registers(_ column: String, source: String?) throws -> RegisterSet? {
            let stored: Data? = try row.value(column)
            guard let packed = stored, let source else { return nil }
            return try RegisterSet(source: source, packed: [UInt8](packed))
        }
        func lines(_ column: String) throws -> [String] {
            let stored: String? = try row.value(column)
            guard let text = stored else { return [] }
            guard let lines = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String] else {
                throw StoredStopError(description: "\(column) is not a list of lines")
            }
            return lines
        }
        let index: Int = try row.value("idx")
        let kindName: String = try row.value("kind")
        let levelName: String = try row.value("level")
        guard let kind = StopKind(rawValue: kindName) else {
            throw StoredStopError(description: "unknown kind \(kindName)")
        }
        guard let level = Level(rawValue: levelName) else {
            throw StoredStopError(description: "unknown level \(levelName)")
        }
        let l1Source: String = try row.value("l1_source")
        let l2Source: String? = try row.value("l2_source")
        guard let l1 = try registers("l1", source: l1Source) else {
            throw StoredStopError(description: "no L1 registers")
        }
        let l2 = try registers("l2", source: l2Source)
        let after = try vmcb("vmcb12_after")
        // The decoded exit is what the engine derived from the page and L2's registers: derived again.
        let exitCode: Int64? = try row.value("exit_code")
        var exit: DecodedExit?
        if exitCode != nil {
            guard let after else { throw StoredStopError(description: "an exit without vmcb12") }
            let context = ExitContext(l2RCX: l2?[.rcx], l2RAX: after[integer: .saveRAX], l2RDX: l2?[.rdx])
            exit = DecodedExit(vmcb: after, context: context)
        }
        let flags: Int64 = try row.value("nested_flags")
        let gpa: Int64? = try row.value("vmcb12_gpa")
        let reason: String = try row.value("reason")
        let kvmExit: String = try row.value("kvm_exit")
        var stop = Stop(
            index: index, kind: kind, level: level, reason: reason, exit: exit, l1: l1, l2: l2,
            vmcb12GPA: gpa.map(UInt64.init(stored:)), vmcb12AtVMRUN: try vmcb("vmcb12_before"), vmcb12: after,
            synced: parts.synced[index] ?? [], violations: parts.violations[index] ?? [],
            nestedFlags: NestedStateFlags(rawValue: UInt16(truncatingIfNeeded: flags)),
            cachedControls: try vmcb("cached_controls"), kvmExit: kvmExit)
        let status: Int64? = try row.value("exit_status")
        stop.exitStatus = status.map { Int32(truncatingIfNeeded: $0) }
        let hit: String? = try row.value("hit")
        let cause: String? = try row.value("cause")
        if let hit { stop.hit = try JSONDecoder().decode(Breakpoint.self, from: Data(hit.utf8)) }
        if let cause { stop.why = try JSONDecoder().decode(ExitCause.self, from: Data(cause.utf8)) }
        let kvm: Int64 = try row.value("kvm")
        let handledKnown: Int64 = try row.value("kvm_handled_known")
        if kvm != 0 {
            var evidence = KVMEvidence()
            evidence.events = parts.events[index] ?? []
            evidence.handledByL0 = handledKnown != 0 ? parts.handled[index] ?? [] : nil
            let lost: Int64 = try row.value("kvm_lost")
            evidence.lost = UInt64(stored: lost)
            evidence.problems = try lines("kvm_problems")
            evidence.notes = try lines("kvm_notes")
            stop.kvm = evidence
        }
        stop.kvmDisagreements = try lines("kvm_vs_vmcb12")
        stop.nestedState = try blob("nested_state").map { try SVMNestedState(bytes: $0) }
        return stop
    }
}

/// The rows of the per-stop tables, by stop.
private struct StopParts {
    var synced: [Int: [FieldChange]] = [:]
    var violations: [Int: [Violation]] = [:]
    var events: [Int: [KVMNestedEvent]] = [:]
    var handled: [Int: [L0ExitCount]] = [:]

    mutating func addSynced(_ row: Row) throws {
        let index: Int = try row.value("idx")
        let name: String = try row.value("field")
        let before: String = try row.value("before")
        let after: String = try row.value("after")
        let sync: String = try row.value("class")
        let note: String? = try row.value("note")
        guard let field = VMCBLayout.field(named: name) else {
            throw StoredStopError(description: "synced: no VMCB field \(name)")
        }
        guard let b = FieldValue(shown: before), let a = FieldValue(shown: after),
            let syncClass = SyncClass(rawValue: sync)
        else {
            throw StoredStopError(description: "synced \(name): \(before) -> \(after) (\(sync)) does not read back")
        }
        synced[index, default: []].append(
            FieldChange(field: field, before: b, after: a, sync: syncClass, storedNote: note))
    }

    mutating func addViolation(_ row: Row) throws {
        let index: Int = try row.value("idx")
        let rule: String = try row.value("rule")
        let field: String = try row.value("field")
        let message: String = try row.value("message")
        let enforcedBy: String = try row.value("enforced_by")
        violations[index, default: []].append(
            Violation(rule: rule, field: field, message: message, enforcedBy: enforcedBy))
    }

    mutating func addEvent(_ row: Row) throws {
        let tracepoint: String = try row.value("tracepoint")
        func number(_ column: String) throws -> UInt64 {
            let stored: Int64? = try row.value(column)
            guard let v = stored else { throw StoredStopError(description: "\(tracepoint) without \(column)") }
            return UInt64(stored: v)
        }
        func exit() throws -> KVMExitFields {
            KVMExitFields(
                code: try number("exit_code"), info1: try number("exit_info_1"), info2: try number("exit_info_2"),
                intInfo: try number("exit_int_info"), intInfoError: try number("exit_int_info_err"))
        }
        let event: KVMNestedEvent
        switch tracepoint {
        case KVMNestedEvent.vmenterName:
            event = .vmenter(
                l1RIP: try number("l1_rip"), vmcb12: try number("vmcb12"), l2RIP: try number("l2_rip"),
                intCtl: try number("int_ctl"), eventInj: try number("event_inj"),
                nestedPaging: try number("nested_paging") != 0)
        case KVMNestedEvent.vmexitInjectName: event = .vmexitInject(try exit())
        case KVMNestedEvent.l2ExitName: event = .l2Exit(try exit())
        case KVMNestedEvent.vmenterFailedName:
            let check: String? = try row.value("check_failed")
            event = .vmenterFailed(check: check ?? "")
        default: throw StoredStopError(description: "unknown tracepoint \(tracepoint)")
        }
        let index: Int = try row.value("idx")
        events[index, default: []].append(event)
    }

    mutating func addHandled(_ row: Row) throws {
        let index: Int = try row.value("idx")
        let code: Int64 = try row.value("code")
        let count: Int = try row.value("count")
        handled[index, default: []].append(L0ExitCount(code: UInt64(stored: code), count: count))
    }
}

extension Row {
    /// A column's value, or an error naming the column (never GRDB's fatal error on NULL, a missing column or a
    /// value of another type: a damaged or crafted file is bad input).
    fileprivate func value<Value: DatabaseValueConvertible>(_ column: String) throws -> Value {
        do {
            return try decode(Value.self, forColumn: column)
        } catch {
            throw StoredStopError(description: "column \(column): not a \(Value.self)")
        }
    }
}
