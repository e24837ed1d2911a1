import SVMModel

extension RegisterSet {
    public var json: JSON {
        var o: [(String, JSON)] = [("source", .string(source))]
        for register in Register.allCases {
            guard let value = values[register] else { continue }
            o.append((register.rawValue, value.value.map { JSON.hex($0) } ?? .null))
        }
        return .object(o)
    }
}

extension Stop {
    /// One stop in the README's schema (one line of `nestdbg run --batch --json`).
    public var json: JSON {
        var o: [(String, JSON)] = [
            ("index", .int(index)), ("kind", .string(kind.rawValue)), ("level", .string(level.rawValue)),
            ("reason", .string(reason)), ("kvm_exit", .string(kvmExit)),
        ]
        if let exit, let v = vmcb12 {
            o.append(("exit", .object([
                ("code", .hex(exit.code)), ("name", .string(exit.name)),
                ("exit_info_1", .hex(v[integer: .exitInfo1])), ("exit_info_2", .hex(v[integer: .exitInfo2])),
                ("exit_int_info", .hex(v[integer: .exitIntInfo])), ("next_rip", .hex(v[integer: .nextRIP])),
                ("decoded", .string(exit.summary)),
            ])))
        }
        o.append(("l1", l1.json))
        o.append(("l2", l2?.json ?? .null))
        if let v = vmcb12 {
            var parts: [(String, JSON)] = [("gpa", vmcb12GPA.map { JSON.hex($0) } ?? .null)]
            if case let .object(halves) = v.json(onlyNonZero: true) { parts += halves }
            o.append(("vmcb12", .object(parts)))
        }
        o.append(("synced", .array(synced.map(\.json))))
        if kind == .nestedExit {
            o.append(("why", why?.json ?? .null))
            o.append(("kvm_wrote", .array(kvmWrote.map(\.json))))
        }
        o.append(("violations", .array(violations.map(\.json))))
        var nested: [(String, JSON)] = [("flags", .hex(UInt64(nestedFlags.rawValue))),
                                         ("flag_names", .string(nestedFlags.description)),
                                         ("vmcb_pa", vmcb12GPA.map { JSON.hex($0) } ?? .null)]
        // While L2 runs: KVM's cache of L1's vmcb12 controls, from the nested-state blob.
        if let cached = cachedControls, case let .object(halves) = cached.json(onlyNonZero: true) {
            nested.append(("cached_controls", halves[0].1))
        }
        o.append(("nested_state", .object(nested)))
        return .object(o)
    }
}
