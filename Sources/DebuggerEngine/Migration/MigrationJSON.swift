import SVMModel

extension Difference {
    public var json: JSON {
        .object([
            ("part", .string(part)), ("field", .string(field)), ("original", .string(original)),
            ("clone", .string(clone)),
            ("meaning", .string(meaning)), ("expected", .bool(expected)),
        ])
    }
}

extension RestoreStep {
    public var json: JSON {
        let (outcome, detail): (String, String?) = {
            switch self.outcome {
            case .done: return ("done", nil)
            case .omitted: return ("omitted", nil)
            case let .absent(why): return ("absent", why)
            case let .partial(what): return ("partial", what)
            case let .failed(error): return ("failed", error)
            }
        }()
        return .object([
            ("part", .string(part.rawValue)), ("ioctl", .string(ioctl)), ("outcome", .string(outcome)),
            ("detail", detail.map { .string($0) } ?? .null),
        ])
    }
}

extension MigrationReport {
    /// One line of `nestdbg migrate-check --json` (README: "migrate-check JSON").
    public var json: JSON {
        let divergenceJSON: JSON =
            divergence.map { d in
                .object([
                    ("stop", .int(d.stopNumber)), ("differences", .array(d.differences.map(\.json))),
                    ("original", d.original.json), ("clone", d.clone.json),
                ])
            } ?? .null
        return .object([
            ("point", .string(point.description)),
            (
                "saved_at",
                .object([
                    ("kind", .string(savedAt.kind.rawValue)), ("level", .string(savedAt.level.rawValue)),
                    ("reason", .string(savedAt.reason)),
                    ("nested_flags", .string(savedAt.nestedFlags.description)),
                ])
            ),
            (
                "order",
                .object([
                    ("name", .string(plan.order.name)),
                    ("steps", .array(plan.order.steps.map { .string($0.rawValue) })),
                ])
            ),
            ("omitted", .array(plan.omitting.map(\.description).sorted().map { .string($0) })),
            ("restore", .array(restore.map(\.json))),
            ("read_back", .array(readBack.map(\.json))),
            ("compared_stops", .int(comparedStops)),
            ("compared_exits", .int(comparedExits)),
            ("divergence", divergenceJSON),
            (
                "control",
                control.map { c in
                    .object([
                        ("parted_from_clone_at", c.partedFromClone.map { .int($0) } ?? .null),
                        ("matches_original", .bool(c.matchesOriginal)),
                        ("differences", .array(c.differences.map(\.json))),
                    ])
                } ?? .null
            ),
            ("ended_early", endedEarly.map { .string($0) } ?? .null),
            ("verdict", .string(verdict.rawValue)),
        ])
    }
}
