import DebuggerEngine
import Foundation
import SVMModel
import TestSupport
import Testing

/// Runs the built `nestdbg` as a user would and captures its output.
struct CLI {
    static var executable: URL { NestdbgBinary.url }

    typealias Result = ChildResult

    static func run(_ args: String...) throws -> Result { try run(arguments: args) }

    /// Both pipes read at once; a command that does not end in 5 minutes is killed and fails the test.
    static func run(arguments args: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> Result {
        let result = try NestdbgBinary.run(args)
        if result.timedOut {
            Issue.record("nestdbg \(args) did not end within 5 minutes: killed", sourceLocation: sourceLocation)
        }
        return result
    }

    /// Writes bytes to `name` in a folder of its own (tests run in parallel).
    static func file(_ bytes: [UInt8], _ name: String) throws -> String {
        try Scratch("cli").file(name, bytes)
    }

    /// A path for `name` in a folder of its own; nothing is created.
    static func path(_ name: String) throws -> String { try Scratch("cli").path(name) }
}

/// A vmcb12 as a long-mode L1 prepares it, and the same page after an IOIO #VMEXIT.
func samplePages() -> (before: VMCB, after: VMCB) { (SampleVMCB.prepared(), SampleVMCB.afterIOIO()) }

@Suite("nestdbg command line", .serialized)
struct CLITests {
    @Test("--help and version work")
    func helpAndVersion() throws {
        let help = try CLI.run("--help")
        #expect(help.status == 0)
        #expect(help.stdout.contains("vmcb") && help.stdout.contains("nested-state"))
        let v = try CLI.run("version")
        #expect(v.status == 0 && v.stdout.hasPrefix("nestdbg "))
    }

    @Test("vmcb decode: text lists non-zero fields with meanings; JSON uses the schema")
    func decode() throws {
        let path = try CLI.file(samplePages().after.bytes, "after.vmcb")
        let text = try CLI.run("vmcb", "decode", path)
        #expect(text.status == 0)
        #expect(text.stdout.contains("exit: IOIO (OUT 0x80, 1 byte)"))
        #expect(text.stdout.contains("save.cr0"))
        #expect(text.stdout.contains("PE ET PG"))
        #expect(!text.stdout.contains("save.cr2"), "zero fields are left out by default")
        #expect(try CLI.run("vmcb", "decode", "--all", path).stdout.contains("save.cr2"))
        let json = try CLI.run("vmcb", "decode", "--json", path)
        #expect(json.status == 0)
        let obj = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let control = (obj?["vmcb"] as? [String: Any])?["control"] as? [String: Any]
        #expect(control?["exit_code"] as? String == "0x7b")
        #expect((obj?["exit"] as? [String: Any])?["name"] as? String == "IOIO")
    }

    @Test("vmcb check: exit 0 when accepted, 1 with the violations")
    func check() throws {
        let good = try CLI.file(samplePages().before.bytes, "good.vmcb")
        let ok = try CLI.run("vmcb", "check", good)
        #expect(ok.status == 0, "\(ok.stdout)")
        var bad = samplePages().before
        bad[integer: .asid] = 0
        bad[integer: .saveEFER] = 0x500
        let r = try CLI.run("vmcb", "check", try CLI.file(bad.bytes, "bad.vmcb"))
        #expect(r.status == 1)
        #expect(r.stdout.contains("asid.zero") && r.stdout.contains("efer.svme"))
    }

    @Test("vmcb diff: the sync diff with classes, text and JSON")
    func diff() throws {
        let (b, a) = samplePages()
        var odd = a
        odd[integer: .asid] = 9
        let before = try CLI.file(b.bytes, "before.vmcb")
        let after = try CLI.file(odd.bytes, "odd.vmcb")
        let text = try CLI.run("vmcb", "diff", before, after)
        #expect(text.status == 0)
        #expect(text.stdout.contains("save.rip") && text.stdout.contains("0x400000 -> 0x401000"))
        #expect(text.stdout.contains("!! UNEXPECTED"))
        let json = try CLI.run("vmcb", "diff", "--json", before, after)
        let obj = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let synced = obj?["synced"] as? [[String: String]] ?? []
        #expect(synced.first { $0["field"] == "save.rip" }?["class"] == "l2_state_synced")
        #expect(synced.first { $0["field"] == "control.asid" }?["class"] == "unexpected")
    }

    @Test("nested-state decode: header and both halves")
    func nestedState() throws {
        var data = VMCB()
        data[integer: .saveRIP] = 0x20_0105
        let blob = SVMNestedState.make(flags: [.guestMode, .gifSet], vmcbPA: 0x10_2000, data: data)
        let path = try CLI.file(blob, "state.bin")
        let r = try CLI.run("nested-state", "decode", path)
        #expect(r.status == 0)
        #expect(r.stdout.contains("GUEST_MODE|GIF_SET") && r.stdout.contains("vmcb_pa: 0x102000"))
        #expect(r.stdout.contains("L1's state") && r.stdout.contains("save.rip"))
        let j = try CLI.run("nested-state", "decode", "--json", path)
        #expect(j.stdout.contains("\"vmcb_pa\":\"0x102000\""))
    }

    @Test("bad input: one clear line on stderr, exit status 2, never a crash")
    func badInput() throws {
        let short = try CLI.file([1, 2, 3], "short.bin")
        let garbage = try CLI.file((0..<5000).map { UInt8($0 % 251) }, "garbage.bin")
        for args in [
            ["vmcb", "decode", short], ["vmcb", "check", garbage], ["vmcb", "diff", short, garbage],
            ["nested-state", "decode", short], ["nested-state", "decode", garbage],
            ["vmcb", "decode", "/nonexistent/file"],
        ] {
            let r = try CLI.run(args[0], args[1], args[2], args.count > 3 ? args[3] : "--json")
            #expect(r.status == 2, "\(args): status \(r.status)")
            #expect(r.stderr.split(separator: "\n").count == 1, "\(args): \(r.stderr)")
            #expect(r.stderr.hasPrefix("nestdbg: "))
        }
    }

    @Test(
        "kvm-info names each stop source and whether this host can use it; --stops takes only the sources nestdbg has")
    func stopSources() throws {
        try Requirement.kvm()
        let info = try CLI.run("kvm-info")
        #expect(info.status == 0, "\(info.stderr)")
        let lines = info.stdout.split(separator: "\n").filter { $0.hasPrefix("stop source ") }
        #expect(
            lines.count == 2 && lines[0].hasPrefix("stop source tracepoint: ")
                && lines[1].hasPrefix("stop source patch: available"),
            "\(lines)")
        if geteuid() == 0 {
            #expect(lines[0].contains(": available: perf SIGTRAP"), "root here: perf and tracefs are there")
        }
        let bad = try CLI.run("run", "--batch", "--stops", "hardware")
        #expect(
            bad.status == 2 && bad.stderr == "nestdbg: --stops hardware: tracepoint or patch\n",
            "\(bad.status) \(bad.stderr)")
    }

    @Test(
        "run --batch on a guest that never exits gives up after --timeout with a clear line and status 1 (real /dev/kvm)"
    )
    func batchTimeout() throws {
        try Requirement.kvm()
        let spin = try CLI.file([0xEB, 0xFE], "spin.bin")  // jmp $: no exit, ever
        let start = ContinuousClock.now
        let r = try CLI.run("run", "--batch", "--image", spin, "--load-at", "0x100000", "--timeout", "1")
        let took = ContinuousClock.now - start
        #expect(r.status == 1, "status \(r.status): \(r.stderr)")
        #expect(
            r.stderr.hasPrefix("nestdbg: no stop within 1 s") && r.stderr.contains("paused in L1 at rip 0x100000"),
            "\(r.stderr)")
        #expect(took < .seconds(15), "gave up after \(took)")
    }

    @Test("write-image: the engine's Multiboot file, byte for byte; bad counts and scenarios get one line and status 2")
    func writeImage() throws {
        let dir = URL(fileURLWithPath: try Scratch("cli").path)
        let path = dir.appendingPathComponent("selfcheck.elf").path
        let written = try CLI.run("write-image", "--scenario", "selfcheck", "--iterations", "5000", path)
        #expect(
            written.status == 0 && written.stdout.contains("5000 iterations"), "\(written.status) \(written.stderr)")
        #expect(
            FileManager.default.contents(atPath: path).map { [UInt8]($0) }
                == (try MultibootImage.selfCheck(iterations: 5000).encoded()))
        let demo = dir.appendingPathComponent("demo.elf").path
        #expect(try CLI.run("write-image", "--scenario", "demo", demo).status == 0)
        #expect(FileManager.default.contents(atPath: demo).map { [UInt8]($0) } == (try MultibootImage.demo().encoded()))
        let bad: [([String], String)] = [
            (["--iterations", "0"], "nestdbg: --iterations 0: the selfcheck L1 takes 1 to 10000000\n"),
            (["--iterations", "-3"], "nestdbg: --iterations -3: the selfcheck L1 takes 1 to 10000000\n"),
            (["--iterations", "many"], "nestdbg: --iterations many: not a whole number\n"),
            (["--scenario", "pae"], "nestdbg: write-image: unknown scenario pae: selfcheck, demo or vmmcheck\n"),
            (
                ["--scenario", "demo", "--iterations", "5"],
                "nestdbg: --iterations applies to the selfcheck scenario only\n"
            ),
        ]
        for (args, message) in bad {
            let out = dir.appendingPathComponent("bad.elf").path
            let r = try CLI.run(arguments: ["write-image"] + args + [out])
            #expect(r.status == 2 && r.stderr == message, "\(args): \(r.status) \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out), "\(args): nothing written")
        }
        let nowhere = try CLI.run("write-image", dir.appendingPathComponent("no/such/dir/x.elf").path)
        #expect(nowhere.status == 2 && nowhere.stderr.hasSuffix("x.elf: cannot be written\n"), "\(nowhere.stderr)")
    }

    @Test("migrate-check: bad points, orders, omissions and windows get one line and status 2 before any VM is made")
    func migrateCheckBadInput() throws {
        let bad: [([String], String)] = [
            (["--at-exit", "0"], "nestdbg: --at-exit 0: a positive number, a range A-B or a comma list of them\n"),
            (["--at-exit", "5-2"], "nestdbg: --at-exit 5-2: a positive number, a range A-B or a comma list of them\n"),
            (
                ["--window", "nope"],
                "nestdbg: --window nope: one of run-pending, event-injection, gif-clear, interrupt-pending, in-l2, all\n"
            ),
            (["--omit", "memory"], "nestdbg: --omit memory: one of \(Omission.help)\n"),
            (["--orders", "some"], "nestdbg: --orders some: only 'all' (or --order NAME)\n"),
            (["--exits", "0"], "nestdbg: --exits must be positive\n"),
            (["--every", "0"], "nestdbg: --every must be positive and at most --until\n"),
        ]
        for (args, message) in bad {
            let r = try CLI.run(arguments: ["migrate-check"] + args)
            #expect(r.status == 2 && r.stderr == message, "\(args): \(r.status) \(r.stderr)")
        }
        let order = try CLI.run("migrate-check", "--order", "sregs,sregs")
        #expect(
            order.status == 2 && order.stderr == "nestdbg: --order: 'sregs' appears twice in the order\n",
            "\(order.stderr)")
    }

    @Test("nested-state diff: the same blob is status 0; a changed one lists each field with whose it is, status 1")
    func nestedStateDiff() throws {
        var data = VMCB()
        data[integer: .saveRIP] = 0x12a8
        let a = SVMNestedState.make(flags: [.guestMode, .gifSet], vmcbPA: 0x20000, data: data)
        data[integer: .saveDR6] = 0xFFFF_0FF0
        let b = SVMNestedState.make(flags: [.guestMode, .gifSet], vmcbPA: 0x20000, data: data)
        let fa = try CLI.file(a, "a.bin")
        let fb = try CLI.file(b, "b.bin")
        let same = try CLI.run("nested-state", "diff", fa, fa)
        #expect(same.status == 0 && same.stdout == "the same: flags GUEST_MODE|GIF_SET, 4224 bytes\n", "\(same.stdout)")
        let differ = try CLI.run("nested-state", "diff", fa, fb)
        #expect(differ.status == 1 && differ.stdout.hasPrefix("1 field differ\n"), "\(differ.stdout)")
        #expect(differ.stdout.contains("save.dr6") && differ.stdout.contains("0x0 -> 0xffff0ff0"), "\(differ.stdout)")
        let json = try CLI.run("nested-state", "diff", "--json", fa, fb)
        #expect(
            json.status == 1 && json.stdout.hasPrefix("{\"same\":false,\"differences\":[{\"field\":\"save.dr6\""),
            "\(json.stdout)")
        let short = try CLI.file([1, 2, 3], "short.bin")
        let bad = try CLI.run("nested-state", "diff", fa, short)
        #expect(
            bad.status == 2
                && bad.stderr == "nestdbg: \(short): a nested-state blob has a 128-byte header; this is 3 bytes\n",
            "\(bad.stderr)")
    }
}
