import Foundation

/// A folder of the calling test's own, made with mkdtemp: tests run in
/// parallel, so no two of them ever share a path.
public struct Scratch: Sendable {
    public let path: String

    public init(_ label: String = "test") throws {
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array("\(base)/nestdbg-\(label)-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw ScratchError(message: "mkdtemp in \(base): \(String(cString: strerror(errno)))")
        }
        path = String(cString: made)
    }

    /// A path in this folder; nothing is created.
    public func path(_ name: String) -> String { path + "/" + name }

    /// Writes `bytes` to `name` in this folder and returns its path.
    @discardableResult
    public func file(_ name: String, _ bytes: [UInt8]) throws -> String {
        let file = path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        return file
    }

    /// Removes the folder and everything in it.
    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}

public struct ScratchError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
