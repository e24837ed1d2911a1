import ArgumentParser
import DebuggerEngine
import Foundation
import KVMControl
import SVMModel

/// `nestdbg migrate-check`: does everything L1 and L2 need survive a save and
/// restore? One fresh run of the L1 per check point and order, so each check
/// starts from the same guest.
struct MigrateCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate-check",
        abstract:
            "Save the vCPU at a stop as a migrating VMM would, restore it into a fresh VM, compare, run both side by side.",
        discussion: """
            Needs nested SVM and KVM's tracepoints (nothing is patched into guest memory): \
            scripts/sandbox -- nestdbg migrate-check --scenario demo --at-exit 1-20. \
            Windows: \(MigrationWindow.allCases.map { "\($0.rawValue) (\($0.summary))" }.joined(separator: "; ")). \
            Orders: \(RestoreOrder.variants.map(\.name).joined(separator: ", ")), or a comma list of parts (those first). \
            Exit status 0 when every check found the clone the same, 1 when one differed, 2 on bad input.
            """)

    @OptionGroup var target: TargetOptions
    @Option(help: "Check at these nested #VMEXITs: N, A-B or a comma list (L1 right after the exit, GIF clear).")
    var atExit: String?
    @Option(help: "Check at these VMRUNs KVM emulated: N, A-B or a comma list (L2 about to run, RUN_PENDING).")
    var atVmrun: String?
    @Option(help: "Check at the first stop in this window (repeatable; 'all' for every one).") var window: [String] = []
    @Option(help: "Check at every Kth nested #VMEXIT, up to --until.") var every: Int?
    @Option(help: "The last exit --every goes to.") var until = 20
    @Option(help: "Nested #VMEXITs to run the original and the clone side by side.") var exits = 50
    @Option(help: "Restore order: a named variant or a comma list of parts.") var order = "qemu"
    @Option(help: "'all': try every named order and print a table.") var orders: String?
    @Option(help: "Leave a part out of the restore (repeatable): \(Omission.help).") var omit: [String] = []
    @Flag(help: "One JSON object per check (README: migrate-check JSON).") var json = false
    @Option(
        help:
            "Write each check's nested-state blobs, as saved and as read back, into this folder (for nested-state diff)."
    )
    var saveBlobs: String?
    @Option(help: "Seconds the original or the clone may take to reach a stop.") var timeout = 20.0

    func run() throws {
        let points = try checkPoints()
        let plans = try makePlans()
        var isFolder: ObjCBool = false
        if let saveBlobs,
            !FileManager.default.fileExists(atPath: saveBlobs, isDirectory: &isFolder) || !isFolder.boolValue
        {
            throw fail("--save-blobs \(saveBlobs): not a folder", status: 2)
        }
        if case let .unavailable(why) = StopSourceKind.tracepoint.availability {
            throw fail(
                "migrate-check stops on KVM's tracepoints (nothing patched into the guest), unavailable here: \(why)",
                status: 1)
        }
        var reports: [MigrationReport] = []
        for point in points {
            for plan in plans {
                let report: MigrationReport
                do {
                    report = try check(at: point, plan: plan)
                } catch let skipped as WindowNotReached where window.contains("all") {
                    FileHandle.standardError.write(Data("nestdbg: \(skipped.description); skipped\n".utf8))
                    break
                }
                reports.append(report)
                try writeBlobs(of: report)
                if json {
                    print(report.json.serialized())
                } else if orders == nil {
                    print(report.lines.joined(separator: "\n"))
                }
            }
        }
        if orders != nil, !json { print(orderTable(reports)) }
        if reports.contains(where: { $0.verdict != .same }) { throw ExitCode(1) }
    }

    private func check(at point: MigrationPoint, plan: MigrationPlan) throws -> MigrationReport {
        let engine = try target.reportingErrors { try Engine(ownVM: try target.makeTarget(), stops: .tracepoint) }
        engine.checkEnvironment = CheckEnvironment(physicalAddressBits: target.physBits)
        let session = EngineSession(engine: engine)
        defer { session.shutdown() }
        do {
            if let failure = session.startFailure(waitingUpTo: .seconds(10)) { throw fail(failure, status: 1) }
            _ = session.takeEvents()
            do {
                // A window a scenario never opens is given up on sooner than a numbered exit.
                _ = try MigrationCheck.run(
                    session, to: point, timeout: timeout, maxStops: isWindow(point) ? 2000 : 20_000)
            } catch let error as MigrationCheckError where isWindow(point) {
                throw WindowNotReached(description: "\(point) (\(target.name)): \(error)")
            }
            return try MigrationCheck.check(session, at: point, plan: plan)
        } catch let error as WindowNotReached {
            if window.contains("all") { throw error }
            throw fail(error.description, status: 1)
        } catch let error as MigrationCheckError {
            throw fail("\(point): \(error)", status: 1)
        } catch let error as KVMError {
            throw fail("\(point): \(error)", status: 1)
        } catch let error as TargetError {
            throw fail("\(point): \(error)", status: 1)
        } catch let error as CommandRefusal {
            throw fail("\(point): \(error)", status: 1)
        }
    }

    /// DIR/POINT-ORDER.saved.nested and .restored.nested ("exit-3-qemu.saved.nested").
    private func writeBlobs(of report: MigrationReport) throws {
        guard let dir = saveBlobs else { return }
        let stem = "\(report.point)-\(report.plan.order.name)".map {
            $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "-"
        }
        for (suffix, blob) in [("saved", report.savedNestedState), ("restored", report.readBackNestedState)] {
            guard let blob else { continue }
            let path = "\(dir)/\(String(stem)).\(suffix).nested"
            guard FileManager.default.createFile(atPath: path, contents: Data(blob.bytes)) else {
                throw fail("\(path): cannot be written", status: 2)
            }
        }
    }

    private func isWindow(_ point: MigrationPoint) -> Bool {
        if case .window = point { return true }
        return false
    }

    private struct WindowNotReached: Error, CustomStringConvertible { let description: String }

    // MARK: options

    private func checkPoints() throws -> [MigrationPoint] {
        var points: [MigrationPoint] = []
        if let atExit { points += try numbers(atExit, "--at-exit").map { .nestedExit($0) } }
        if let atVmrun { points += try numbers(atVmrun, "--at-vmrun").map { .vmrun($0) } }
        for name in window {
            if name == "all" {
                points += MigrationWindow.allCases.map { .window($0, occurrence: 1) }
                continue
            }
            guard let w = MigrationWindow(rawValue: name) else {
                throw fail(
                    "--window \(name): one of \(MigrationWindow.allCases.map(\.rawValue).joined(separator: ", ")), all",
                    status: 2)
            }
            points.append(.window(w, occurrence: 1))
        }
        if let every {
            guard every > 0, until >= every else {
                throw fail("--every must be positive and at most --until", status: 2)
            }
            points += stride(from: every, through: until, by: every).map { .nestedExit($0) }
        }
        return points.isEmpty ? [.nestedExit(1)] : points
    }

    /// "5", "1-20", "1,4,9".
    private func numbers(_ text: String, _ option: String) throws -> [Int] {
        var out: [Int] = []
        for item in text.split(separator: ",") {
            let bounds = item.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
            switch bounds.count {
            case 1:
                if let n = bounds[0], n > 0 {
                    out.append(n)
                    continue
                }
            case 2:
                if let a = bounds[0], let b = bounds[1], a > 0, a <= b, b - a < 10_000 {
                    out += Array(a...b)
                    continue
                }
            default: break
            }
            throw fail("\(option) \(text): a positive number, a range A-B or a comma list of them", status: 2)
        }
        return out
    }

    private func makePlans() throws -> [MigrationPlan] {
        guard exits > 0 else { throw fail("--exits must be positive", status: 2) }
        guard timeout > 0 else { throw fail("--timeout must be positive", status: 2) }
        var omissions: Set<Omission> = []
        for word in omit {
            guard let o = Omission(word) else { throw fail("--omit \(word): one of \(Omission.help)", status: 2) }
            omissions.insert(o)
        }
        let chosen: [RestoreOrder]
        if let orders {
            guard orders == "all" else { throw fail("--orders \(orders): only 'all' (or --order NAME)", status: 2) }
            chosen = RestoreOrder.variants
        } else {
            do { chosen = [try RestoreOrder.parse(order)] } catch { throw fail("--order: \(error)", status: 2) }
        }
        return chosen.map { MigrationPlan(order: $0, omitting: omissions, exits: exits, stopTimeout: timeout) }
    }

    // MARK: text

    /// `--orders all`: one row per order and check point.
    private func orderTable(_ reports: [MigrationReport]) -> String {
        var rows = [("order", "restore", "read back", "run")]
        for r in reports {
            let restore = r.failedStep.map { "\($0.ioctl) failed: \(shortError($0.outcome))" } ?? "ok"
            let readBack =
                r.failedStep != nil
                ? "-"
                : r.unexpectedReadBack.isEmpty
                    ? "same"
                    : "\(r.unexpectedReadBack.count) differ (\(r.unexpectedReadBack.first.map { "\($0.part): \($0.field)" } ?? ""))"
            let run =
                r.failedStep != nil
                ? "-"
                : r.divergence.map { d in
                    "diverged at stop \(d.stopNumber): "
                        + (d.differences.first.map { "\($0.field) \($0.original) -> \($0.clone)" } ?? "")
                } ?? "same for \(r.comparedExits) exits"
            let name = r.plan.order.name + (reports.contains { $0.point != r.point } ? " @\(r.point)" : "")
            rows.append((name, restore, readBack, run))
        }
        let widths = [rows.map(\.0.count).max() ?? 0, rows.map(\.1.count).max() ?? 0, rows.map(\.2.count).max() ?? 0]
        let pad = { (text: String, width: Int) in text.padding(toLength: width, withPad: " ", startingAt: 0) }
        return rows.map { r in
            [pad(r.0, widths[0]), pad(r.1, widths[1]), pad(r.2, widths[2]), r.3].joined(separator: "  ")
        }
        .joined(separator: "\n")
    }

    private func shortError(_ outcome: RestoreOutcome) -> String {
        if case let .failed(error) = outcome { return error.components(separatedBy: ": ").dropFirst().first ?? error }
        return ""
    }
}
