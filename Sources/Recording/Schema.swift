/// The recording's SQLite schema, declared once: the writer creates it, the
/// reader checks its version, the README documents it, and the views make
/// it readable from the `sqlite3` shell. Numbers are INTEGER (64-bit, as
/// two's complement above 2^63: `printf('0x%x', col)` shows them); register
/// values and vmcb12 fields are hex text as in `--json`; structured parts
/// are JSON text in the stop JSON's shapes, which the views unfold.
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
        // vmcb12 pages and nested-state blobs, each stored once (many stops share one).
        "CREATE TABLE blobs (id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, bytes BLOB NOT NULL)",
        "CREATE INDEX blobs_by_hash ON blobs (hash)",
        """
        CREATE TABLE stops (
            idx INTEGER PRIMARY KEY,
            recorded_at REAL NOT NULL,
            kind TEXT NOT NULL, level TEXT NOT NULL, reason TEXT NOT NULL, kvm_exit TEXT NOT NULL,
            exit_code INTEGER, exit_name TEXT, exit_info_1 INTEGER, exit_info_2 INTEGER, exit_int_info INTEGER,
            next_rip INTEGER, why TEXT,
            l1_rip INTEGER, l2_rip INTEGER, vmcb12_gpa INTEGER, nested_flags INTEGER NOT NULL, exit_status INTEGER,
            l1_source TEXT NOT NULL, l1 TEXT NOT NULL, l2_source TEXT, l2 TEXT,
            vmcb12_before INTEGER REFERENCES blobs (id), vmcb12_after INTEGER REFERENCES blobs (id),
            cached_controls INTEGER REFERENCES blobs (id), nested_state INTEGER REFERENCES blobs (id),
            detail TEXT NOT NULL)
        """,
        // What the guest wrote to COM1 before each stop.
        "CREATE TABLE serial (idx INTEGER PRIMARY KEY REFERENCES stops (idx), bytes BLOB NOT NULL)",
    ]

    static let views = [
        """
        CREATE VIEW exits AS
            SELECT idx, exit_name AS name, exit_code AS code, exit_info_1, exit_info_2, exit_int_info, next_rip,
                   l2_rip, l1_rip, why, reason
            FROM stops WHERE kind = 'nested_exit'
        """,
        """
        CREATE VIEW synced AS
            SELECT s.idx, json_extract(c.value, '$.field') AS field, json_extract(c.value, '$.before') AS before,
                   json_extract(c.value, '$.after') AS after, json_extract(c.value, '$.class') AS class,
                   json_extract(c.value, '$.note') AS note
            FROM stops s, json_each(s.detail, '$.synced') c
        """,
        """
        CREATE VIEW registers AS
            SELECT s.idx, 'L1' AS level, r.key AS name, r.value AS value FROM stops s, json_each(s.l1) r
            UNION ALL
            SELECT s.idx, 'L2', r.key, r.value FROM stops s, json_each(s.l2) r WHERE s.l2 IS NOT NULL
        """,
        """
        CREATE VIEW violations AS
            SELECT s.idx, json_extract(v.value, '$.rule') AS rule, json_extract(v.value, '$.field') AS field,
                   json_extract(v.value, '$.message') AS message, json_extract(v.value, '$.enforced_by') AS enforced_by
            FROM stops s, json_each(s.detail, '$.violations') v
        """,
        """
        CREATE VIEW kvm_events AS
            SELECT s.idx, e.key AS seq, json_extract(e.value, '$.tracepoint') AS tracepoint, e.value AS fields
            FROM stops s, json_each(s.detail, '$.kvm.events') e
        """,
        """
        CREATE VIEW handled_by_l0 AS
            SELECT s.idx, json_extract(h.value, '$.reason') AS reason, json_extract(h.value, '$.code') AS code,
                   json_extract(h.value, '$.count') AS count
            FROM stops s, json_each(s.detail, '$.kvm.handled_by_l0') h
        """,
    ]
}
