import ArgumentParser
import SVMModel

struct VMCBCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmcb",
        abstract: "Decode, check and diff raw 4096-byte VMCB pages.",
        subcommands: [Decode.self, Check.self, Diff.self])

    struct Decode: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every field of a VMCB with its meaning.")
        @Argument(help: "A raw 4096-byte VMCB page (e.g. dumped from guest memory).") var file: String
        @Flag(help: "Emit the documented JSON schema instead of text.") var json = false
        @Flag(help: "Also list fields that are zero (text; JSON always lists them).") var all = false

        func run() throws {
            let vmcb = try readVMCB(file)
            if json {
                print(JSON.object([("vmcb", vmcb.json()), ("exit", DecodedExit(vmcb: vmcb).json)]).serialized())
                return
            }
            let exit = DecodedExit(vmcb: vmcb)
            if vmcb.exitCode != 0 || vmcb[integer: .exitInfo1] != 0 {
                print("exit: \(exit.name) (\(exit.summary))\n")
            }
            print(table(vmcbRows(vmcb, all: all)))
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run VMRUN's consistency checks: exit 0 when VMRUN would accept the VMCB, 1 with the violations.")
        @Argument(help: "A raw 4096-byte VMCB page.") var file: String
        @Option(help: "L1's MAXPHYADDR in bits (QEMU's qemu64 has 40).") var physBits = 48
        @Flag(help: "Emit JSON.") var json = false

        func run() throws {
            let vmcb = try readVMCB(file)
            guard (32...64).contains(physBits) else { throw fail("--phys-bits must be between 32 and 64") }
            let violations = ConsistencyChecks.check(vmcb, environment: CheckEnvironment(physicalAddressBits: physBits))
            if json {
                print(
                    JSON.object([
                        ("accepted", .bool(violations.isEmpty)),
                        ("violations", .array(violations.map(\.json))),
                    ]).serialized())
            } else if violations.isEmpty {
                print("VMRUN would accept this VMCB (\(ConsistencyChecks.ruleIDs.count) rules checked)")
            } else {
                print(
                    "VMRUN would fail with VMEXIT_INVALID: \(violations.count) violation\(violations.count == 1 ? "" : "s")"
                )
                for v in violations { print("  \(v)") }
            }
            if !violations.isEmpty { throw ExitCode(1) }
        }
    }

    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "The sync diff: what changed in vmcb12 between VMRUN and the nested #VMEXIT, classed by KVM's write rules."
        )
        @Argument(help: "vmcb12 as L1 prepared it before VMRUN.") var before: String
        @Argument(help: "vmcb12 as KVM left it after the nested #VMEXIT.") var after: String
        @Flag(help: "Emit JSON.") var json = false

        func run() throws {
            let old = try readVMCB(before)
            let new = try readVMCB(after)
            let changes = SyncDiff.changes(before: old, after: new)
            let exit = DecodedExit(vmcb: new)
            if json {
                print(JSON.object([("exit", exit.json), ("synced", .array(changes.map(\.json)))]).serialized())
                return
            }
            print("exit: \(exit.name) (\(exit.summary))")
            if changes.isEmpty {
                print("no field changed")
                return
            }
            let unexpected = changes.filter { $0.sync == .unexpected }.count
            print(
                "\(changes.count) field\(changes.count == 1 ? "" : "s") changed\(unexpected > 0 ? ", \(unexpected) UNEXPECTED" : "")\n"
            )
            print(
                table(
                    changes.map { c in
                        let mark = c.sync == .unexpected ? "!! UNEXPECTED" : c.sync.rawValue
                        return (c.field.name, "\(c.before) -> \(c.after)", mark + (c.note.map { " (\($0))" } ?? ""))
                    }))
        }
    }
}

struct NestedStateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nested-state",
        abstract: "Decode KVM_GET_NESTED_STATE blobs (SVM format).",
        subcommands: [Decode.self, Diff.self])

    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Two blobs field by field: the header, the cached vmcb12 controls, L1's parked state. Exit 1 when they differ."
        )
        @Argument(help: "A blob (e.g. saved on the source).") var first: String
        @Argument(help: "Another (e.g. read back on the destination).") var second: String
        @Flag(help: "Emit JSON.") var json = false

        func run() throws {
            let a = try blob(first)
            let b = try blob(second)
            let differences = a.differences(from: b)
            if json {
                print(
                    JSON.object([
                        ("same", .bool(differences.isEmpty)),
                        (
                            "differences",
                            .array(
                                differences.map { d in
                                    .object([
                                        ("field", .string(d.field)), ("first", .string(d.first)),
                                        ("second", .string(d.second)),
                                        ("meaning", .string(d.meaning)),
                                    ])
                                })
                        ),
                    ]).serialized())
            } else if differences.isEmpty {
                print(
                    "the same: flags \(a.flags.description.isEmpty ? "none" : a.flags.description), \(a.bytes.count) bytes"
                )
            } else {
                print("\(differences.count) field\(differences.count == 1 ? "" : "s") differ\n")
                print(table(differences.map { ($0.field, "\($0.first) -> \($0.second)", $0.meaning) }))
            }
            if !differences.isEmpty { throw ExitCode(1) }
        }

        private func blob(_ file: String) throws -> SVMNestedState {
            do {
                return try SVMNestedState(bytes: readInput(file))
            } catch let error as NestedStateError {
                throw fail("\(file): \(error)")
            }
        }
    }

    struct Decode: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Header flags, vmcb12 address, cached controls and L1's parked state.")
        @Argument(help: "A blob as KVM_GET_NESTED_STATE returned it (128-byte header + data).") var file: String
        @Flag(help: "Emit JSON.") var json = false
        @Flag(help: "Also list fields that are zero.") var all = false

        func run() throws {
            let state: SVMNestedState
            do {
                state = try SVMNestedState(bytes: readInput(file))
            } catch let error as NestedStateError {
                throw fail("\(file): \(error)")
            }
            if json {
                print(state.json.serialized())
                return
            }
            print(
                "flags:   \(String(state.flags.rawValue, radix: 16, uppercase: false)) (\(state.flags.description.isEmpty ? "none" : state.flags.description))"
            )
            print("format:  \(SVMNestedState.formatSVM) (SVM)")
            print("size:    \(state.bytes.count)")
            print("vmcb_pa: 0x\(String(state.vmcbPA, radix: 16))")
            guard let data = state.data else {
                print("\nno data: the vCPU was not in guest mode")
                return
            }
            print("\ncontrol: \(SVMNestedState.controlMeaning)")
            print(table(vmcbRows(data, all: all, fields: VMCBLayout.fields.filter { $0.area == .control })))
            print("\nsave: \(SVMNestedState.saveMeaning)")
            print(table(vmcbRows(data, all: all, fields: VMCBLayout.fields.filter { $0.area == .save })))
        }
    }
}
