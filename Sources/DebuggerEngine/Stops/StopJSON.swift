import SVMModel

extension RegisterSet {
    public var json: JSON {
        guard case let .object(values) = valuesJSON else { return valuesJSON }
        return .object([("source", .string(source))] + values)
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
            o.append(
                (
                    "exit",
                    .object([
                        ("code", .hex(exit.code)), ("name", .string(exit.name)),
                        ("exit_info_1", .hex(v[integer: .exitInfo1])), ("exit_info_2", .hex(v[integer: .exitInfo2])),
                        ("exit_int_info", .hex(v[integer: .exitIntInfo])), ("next_rip", .hex(v[integer: .nextRIP])),
                        ("decoded", .string(exit.summary)),
                    ])
                ))
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
            o.append(("kvm_wrote", FieldWrite.json(kvmWrote)))
        }
        o.append(("violations", .array(violations.map(\.json))))
        var nested: [(String, JSON)] = [
            ("flags", .hex(UInt64(nestedFlags.rawValue))),
            ("flag_names", .string(nestedFlags.description)),
            ("vmcb_pa", vmcb12GPA.map { JSON.hex($0) } ?? .null),
        ]
        // While L2 runs: KVM's cache of L1's vmcb12 controls, from the nested-state blob.
        if let cached = cachedControls, case let .object(halves) = cached.json(onlyNonZero: true) {
            nested.append(("cached_controls", halves[0].1))
        }
        o.append(("nested_state", .object(nested)))
        if let kvm {
            // What KVM's tracepoints said (tracepoint stops): the events, the exits L1 never saw.
            o.append(("kvm_events", .array(kvm.events.map(\.json))))
            o.append(
                (
                    "handled_by_l0",
                    kvm.handledByL0.map { counts in
                        .array(
                            counts.map {
                                .object([
                                    ("reason", .string($0.name)), ("code", .hex($0.code)), ("count", .int($0.count)),
                                ])
                            })
                    } ?? .null
                ))
            o.append(("kvm_vs_vmcb12", .array(kvmDisagreements.map { .string($0) })))
            if kvm.lost > 0 { o.append(("tracepoint_samples_lost", .int(Int(kvm.lost)))) }
            if !kvm.notes.isEmpty { o.append(("kvm_notes", .array(kvm.notes.map { .string($0) }))) }
        }
        return .object(o)
    }
}

extension KVMNestedEvent {
    public var json: JSON {
        var o: [(String, JSON)] = [("tracepoint", .string(tracepoint))]
        switch self {
        case let .vmenter(rip, vmcb, l2RIP, intCtl, eventInj, npt):
            o += [
                ("l1_rip", .hex(rip)), ("vmcb12", .hex(vmcb)), ("l2_rip", .hex(l2RIP)), ("int_ctl", .hex(intCtl)),
                ("event_inj", .hex(eventInj)), ("nested_paging", .bool(npt)),
            ]
        case let .vmexitInject(f), let .l2Exit(f):
            o += [
                ("exit_code", .hex(f.code)), ("name", .string(exitName(f.code))), ("exit_info_1", .hex(f.info1)),
                ("exit_info_2", .hex(f.info2)), ("exit_int_info", .hex(f.intInfo)),
                ("exit_int_info_err", .hex(f.intInfoError)),
            ]
        case let .vmenterFailed(check):
            o.append(("check", .string(check)))
        }
        return .object(o)
    }
}
