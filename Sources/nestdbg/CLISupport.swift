import ArgumentParser
import DebuggerEngine
import Foundation
import KVMControl
import KernelTrace
import ProcessControl
import SVMModel
import TUI

/// Prints one line on stderr and returns the exit status to throw: every
/// command fails this way (2 = bad input, 1 = a failed check or KVM error).
func fail(_ message: String, status: Int32 = 2) -> ExitCode {
    FileHandle.standardError.write(Data("nestdbg: \(message)\n".utf8))
    return ExitCode(status)
}

/// The one mapping from nestdbg's errors to exit statuses: 2 for what the user
/// gave (an image, a machine, a stop source that cannot stop that target), 1
/// for what the host, KVM or the target did. nil: not one of ours.
func exitStatus(for error: any Error) -> Int32? {
    switch error {
    case let error as StopSourceError:
        if case .restoreFailed = error { return 1 }
        return 2
    case is ImageError, is MachineError, is ThemeError: return 2
    case is TargetError, is KVMError, is TraceError, is ProcessError, is EngineError: return 1
    default: return nil
    }
}

/// Runs `body`; one of nestdbg's errors becomes one line on stderr (`describe` words it) and its exit status.
func reportingErrors<T>(describe: (any Error) -> String = { "\($0)" }, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch {
        guard let status = exitStatus(for: error) else { throw error }
        throw fail(describe(error), status: status)
    }
}

/// Reads a whole input file, or fails with one line naming it.
func readInput(_ path: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else {
        let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
        throw fail("\(path): \(reason)")
    }
    return [UInt8](data)
}

/// Reads a VMCB page, or fails with one line naming the file and the problem.
func readVMCB(_ path: String) throws -> VMCB {
    do {
        return try VMCB(bytes: readInput(path))
    } catch let error as VMCBError {
        throw fail("\(path): \(error)")
    }
}

/// `name  value  meaning` rows with aligned columns.
func table(_ rows: [(String, String, String)]) -> String {
    let w0 = rows.map(\.0.count).max() ?? 0
    let w1 = rows.map(\.1.count).max() ?? 0
    return rows.map { r in
        let line =
            r.0.padding(toLength: w0, withPad: " ", startingAt: 0) + "  "
            + r.1.padding(toLength: w1, withPad: " ", startingAt: 0) + (r.2.isEmpty ? "" : "  " + r.2)
        return line.trimmingCharacters(in: .whitespaces)
    }.joined(separator: "\n")
}

/// The rows of a VMCB: every field (zero ones only with `all`), value and meaning.
func vmcbRows(_ vmcb: VMCB, all: Bool, fields: [VMCBField] = VMCBLayout.fields, nameOf: (VMCBField) -> String = \.name)
    -> [(String, String, String)]
{
    fields.compactMap { f in
        let v = vmcb[f]
        if v.isZero && (!all || f.isReserved) { return nil }
        return (nameOf(f), v.description, f.meaning(of: v, in: vmcb))
    }
}

/// "0x1000", "1000h" or "4096" as an address.
func parseAddress(_ text: String) -> UInt64? {
    let t = text.lowercased()
    if t.hasPrefix("0x") { return UInt64(t.dropFirst(2), radix: 16) }
    if t.hasSuffix("h") { return UInt64(t.dropLast(), radix: 16) }
    return UInt64(t)
}
