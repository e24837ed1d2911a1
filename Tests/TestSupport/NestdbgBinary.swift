import Foundation

/// The built `nestdbg`, which sits next to the test bundle, run as a user would.
public enum NestdbgBinary {
    public static let url: URL = {
        let me =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: me).deletingLastPathComponent().appendingPathComponent("nestdbg")
    }()

    /// Runs it to its end (killed after `timeout`).
    public static func run(_ arguments: [String], timeout: Duration = .seconds(300)) throws -> ChildResult {
        try Child.run(url, arguments, timeout: timeout)
    }
}
