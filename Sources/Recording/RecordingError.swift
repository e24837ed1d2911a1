/// Why a recording cannot be written or read: one line, naming the file.
public enum RecordingError: Error, Equatable, CustomStringConvertible {
    case notFound(String)
    /// Not an SQLite file, or an SQLite file that is not a nestdbg recording.
    case notRecording(String, why: String)
    /// Made by a newer nestdbg.
    case newerSchema(String, version: Int, supported: Int)
    /// An SQLite recording whose pages or rows do not read back.
    case damaged(String, why: String)
    /// `--record` never overwrites.
    case exists(String)
    case cannotWrite(String, why: String)

    public var description: String {
        switch self {
        case let .notFound(path): return "\(path): no such file"
        case let .notRecording(path, why): return "\(path) is not a nestdbg recording: \(why)"
        case let .newerSchema(path, version, supported):
            return
                "\(path) needs a newer nestdbg: its schema is version \(version), this nestdbg reads version \(supported) and older"
        case let .damaged(path, why):
            return "\(path) is damaged: \(why) (sqlite3 \(path) .recover may save what is left)"
        case let .exists(path):
            return "\(path) exists: a recording never overwrites a file (remove it or choose another name)"
        case let .cannotWrite(path, why): return "cannot record to \(path): \(why)"
        }
    }
}
