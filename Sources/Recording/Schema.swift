import DebuggerEngine

/// The recording's SQLite schema, declared once: the writer creates it, the
/// reader checks its version, the README documents it, and the views make
/// it readable from the `sqlite3` shell. Numbers are INTEGER (64-bit, as
/// two's complement above 2^63: `printf('0x%x', col)` shows them). What is
/// written at every stop is typed columns and packed registers, no JSON:
/// recording has to cost little next to taking the stop.
enum Schema {
    /// `meta.format`: what makes an SQLite file a nestdbg recording.
    static let format = "nestdbg-recording"
    /// `meta.schema_version`: bumped on any change a reader must know about.
    static let version = 1

    static let tables = [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        // One row: who recorded what, where.
        """
        CREATE TABLE session (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            nestdbg_version TEXT NOT NULL, started_at TEXT NOT NULL, command_line TEXT NOT NULL,
            kernel TEXT NOT NULL, kvm_amd TEXT NOT NULL, cpu_model TEXT NOT NULL,
            target TEXT NOT NULL, image_sha256 TEXT, stop_source TEXT NOT NULL)
        """,
        // vmcb12 pages and nested-state blobs; a page the previous stops stored already is not stored again.
        // `bytes` without the trailing zero bytes: the whole blob is bytes || zeroblob(size - length(bytes)).
        "CREATE TABLE blobs (id INTEGER PRIMARY KEY, bytes BLOB NOT NULL, size INTEGER NOT NULL)",
        // l1/l2: 9 bytes a register in register_names order: a state (0 absent, 1 unknown, 2 known), the value big-endian.
        """
        CREATE TABLE stops (
            idx INTEGER PRIMARY KEY,
            recorded_at REAL NOT NULL,
            kind TEXT NOT NULL, level TEXT NOT NULL, reason TEXT NOT NULL, kvm_exit TEXT NOT NULL,
            exit_code INTEGER, exit_name TEXT, exit_info_1 INTEGER, exit_info_2 INTEGER, exit_int_info INTEGER,
            next_rip INTEGER, why TEXT, cause TEXT,
            l1_rip INTEGER, l2_rip INTEGER, vmcb12_gpa INTEGER, nested_flags INTEGER NOT NULL, exit_status INTEGER,
            hit TEXT,
            l1_source TEXT NOT NULL, l1 BLOB NOT NULL, l2_source TEXT, l2 BLOB,
            vmcb12_before INTEGER REFERENCES blobs (id), vmcb12_after INTEGER REFERENCES blobs (id),
            cached_controls INTEGER REFERENCES blobs (id), nested_state INTEGER REFERENCES blobs (id),
            kvm INTEGER NOT NULL, kvm_handled_known INTEGER NOT NULL, kvm_lost INTEGER NOT NULL,
            kvm_problems TEXT, kvm_notes TEXT, kvm_vs_vmcb12 TEXT)
        """,
        "CREATE TABLE synced (idx INTEGER NOT NULL, field TEXT NOT NULL, before TEXT NOT NULL, after TEXT NOT NULL, class TEXT NOT NULL, note TEXT)",
        "CREATE TABLE violations (idx INTEGER NOT NULL, rule TEXT NOT NULL, field TEXT NOT NULL, message TEXT NOT NULL, enforced_by TEXT NOT NULL)",
        """
        CREATE TABLE kvm_events (
            idx INTEGER NOT NULL, seq INTEGER NOT NULL, tracepoint TEXT NOT NULL,
            exit_code INTEGER, exit_name TEXT, exit_info_1 INTEGER, exit_info_2 INTEGER, exit_int_info INTEGER,
            exit_int_info_err INTEGER,
            l1_rip INTEGER, vmcb12 INTEGER, l2_rip INTEGER, int_ctl INTEGER, event_inj INTEGER, nested_paging INTEGER,
            check_failed TEXT)
        """,
        "CREATE TABLE handled_by_l0 (idx INTEGER NOT NULL, reason TEXT NOT NULL, code INTEGER NOT NULL, count INTEGER NOT NULL)",
        // What the guest wrote to COM1 before each stop.
        "CREATE TABLE serial (idx INTEGER PRIMARY KEY, bytes BLOB NOT NULL)",
        // The packed register sets' layout, for the registers view.
        "CREATE TABLE register_names (pos INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    ]

    /// Register values as `--json` shows them: "0x1f", null when unknown.
    private static func value(_ column: String) -> String {
        """
        CASE substr(s.\(column), n.pos * 9 + 1, 1) WHEN x'01' THEN NULL
             ELSE '0x' || coalesce(nullif(ltrim(lower(hex(substr(s.\(column), n.pos * 9 + 2, 8))), '0'), ''), '0') END
        """
    }

    static let views = [
        """
        CREATE VIEW exits AS
            SELECT idx, exit_name AS name, exit_code AS code, exit_info_1, exit_info_2, exit_int_info, next_rip,
                   l2_rip, l1_rip, why, reason
            FROM stops WHERE kind = 'nested_exit'
        """,
        """
        CREATE VIEW registers AS
            SELECT s.idx, 'L1' AS level, n.name, \(value("l1")) AS value
                FROM stops s JOIN register_names n ON substr(s.l1, n.pos * 9 + 1, 1) != x'00'
            UNION ALL
            SELECT s.idx, 'L2', n.name, \(value("l2"))
                FROM stops s JOIN register_names n ON substr(s.l2, n.pos * 9 + 1, 1) != x'00'
        """,
    ]

    /// The rows of `register_names`.
    static let registerNames: [(Int, String)] = Register.allCases.enumerated().map { ($0.offset, $0.element.name) }
}
