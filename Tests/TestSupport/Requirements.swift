import Foundation
import Testing

/// What a test needs from this machine. In CI a missing requirement fails the
/// test; elsewhere the test is reported as skipped with the reason.
public enum Requirement {
    public static let isCI = ProcessInfo.processInfo.environment["CI"] != nil

    /// The requirement is not met: fails in CI, skips (cancels) elsewhere. Never returns.
    public static func missing(_ reason: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Never {
        if isCI {
            Issue.record("CI must provide this: \(reason)", sourceLocation: sourceLocation)
            throw RequirementMissing(reason: reason)
        }
        try Test.cancel(Comment(rawValue: reason), sourceLocation: sourceLocation)
    }

    /// /dev/kvm, read and write.
    public static func kvm(sourceLocation: SourceLocation = #_sourceLocation) throws {
        guard access("/dev/kvm", R_OK | W_OK) != 0 else { return }
        try missing("/dev/kvm is not accessible: \(String(cString: strerror(errno)))", sourceLocation: sourceLocation)
    }

    /// Root, for perf on another context's tracepoints, tracefs and ptrace.
    public static func root(for what: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        guard geteuid() != 0 else { return }
        try missing("\(what) needs root", sourceLocation: sourceLocation)
    }
}

/// Thrown after recording the issue in CI, so the test ends there.
public struct RequirementMissing: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "missing: \(reason)" }
}
