import SVMModel

extension MigrationReport {
    /// The report as `nestdbg migrate-check` prints it and the front end's `:migrate` shows it.
    public var lines: [String] {
        let omitted =
            plan.omitting.isEmpty
            ? "" : ", without " + plan.omitting.map(\.description).sorted().joined(separator: ", ")
        let flags = savedAt.nestedFlags.description.isEmpty ? "none" : savedAt.nestedFlags.description
        var lines = [
            "\(point) — saved at \(savedAt.kind.rawValue) (\(savedAt.level.rawValue), nested flags \(flags)): \(savedAt.reason)"
        ]
        lines.append(
            "  restore in order \(plan.order.name)\(omitted): "
                + restore.map { step -> String in
                    switch step.outcome {
                    case .done: return step.ioctl
                    case .omitted: return "(\(step.part.rawValue) omitted)"
                    case let .absent(why): return "(\(step.part.rawValue): \(why))"
                    case let .partial(what): return "\(step.ioctl) [\(what)]"
                    case let .failed(error): return "\(step.ioctl) FAILED: \(error)"
                    }
                }.joined(separator: ", "))
        let unexpected = unexpectedReadBack
        let expected = readBack.count - unexpected.count
        lines.append(
            "  read back: "
                + (unexpected.isEmpty
                    ? "the same" : "\(unexpected.count) difference\(unexpected.count == 1 ? "" : "s")")
                + (expected > 0
                    ? " (\(expected) expected: " + readBack.filter(\.expected).map(\.field).joined(separator: ", ")
                        + ")" : ""))
        for d in unexpected.prefix(12) { lines.append("    \(d)") }
        if unexpected.count > 12 { lines.append("    … \(unexpected.count - 12) more (--json has all)") }
        if let d = divergence {
            lines.append(
                "  run: DIVERGED at stop \(d.stopNumber) after the save (\(comparedExits) nested exits alike before it)"
            )
            lines.append("    original: \(d.original.reason)")
            lines.append("    clone:    \(d.clone.reason)")
            for x in d.differences.prefix(12) { lines.append("    \(x)") }
            if d.differences.count > 12 { lines.append("    … \(d.differences.count - 12) more (--json has all)") }
            for side in [("original", d.original), ("clone", d.clone)] {
                let l0 = side.1.kvm?.handledByL0.map { $0.map { "\($0.name) ×\($0.count)" }.joined(separator: ", ") }
                lines.append(
                    "    \(side.0) came by \(side.1.kvmExit)"
                        + (l0.map { "; L0 handled \($0.isEmpty ? "nothing" : $0)" } ?? ""))
            }
            if d.lostInterruptShadow {
                lines.append(
                    "  timing: an STI interrupt shadow lost across L0's host-interrupt exit: the run where L0 took"
                        + " the interrupt took the pending V_IRQ one instruction early (VINTR at the instruction after"
                        + " STI). KVM keeps the shadow in vmcb02's int_state; the CPU under L0 must honour it at"
                        + " VMRUN; the sandbox's TCG CPU evidently does not (older QEMUs' VMRUN loads no int_state)."
                        + " Not the restore's doing.")
            } else if d.l0InterruptsDiffer {
                lines.append(
                    "  timing: L0 took host interrupts in one run and not the other before this stop (INTR/NMI/SMI"
                        + " handled by L0): where they land moves what L2 and KVM do next")
            }
            if let c = control {
                if let at = c.partedFromClone {
                    lines.append(
                        "  control: a second restore of the same saved state parted from the first clone at stop \(at)"
                            + (c.matchesOriginal ? " and ran as the original did" : "")
                            + ": the platform's timing (host interrupts, L0 exits under TCG) decides this run, not the restore"
                    )
                    for x in c.differences.prefix(6) { lines.append("    \(x)") }
                } else {
                    lines.append(
                        "  control: a second restore of the same saved state ran exactly as the first clone: the difference is the restore's"
                    )
                }
            }
        } else if failedStep == nil {
            lines.append(
                "  run: \(comparedExits) nested exits (\(comparedStops) stops) alike"
                    + (endedEarly.map { "; \($0)" } ?? ""))
        }
        lines.append("  verdict: \(verdict.rawValue)")
        return lines
    }
}
