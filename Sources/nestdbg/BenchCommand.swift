import ArgumentParser
import DebuggerEngine
import Foundation
import KVMControl
import SVMModel
import TUI

/// `nestdbg bench`: what stopping at every nested exit costs, measured on the demo.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the demo's free-running nested exit rate against nestdbg's stop rate, and where a stop's time goes.",
        discussion: "Needs nested SVM: scripts/sandbox -- nestdbg bench")

    @Option(help: "Seconds per measurement.") var seconds = 2.0
    @Flag(help: "Measure the front end's full redraw of a 200×60 screen instead (no KVM needed).") var render = false

    func run() throws {
        if render { return renderBench() }
        do {
            try measure()
        } catch let error as TargetError {
            throw fail(error.description, status: 1)
        } catch let error as KVMError {
            throw fail(error.description, status: 1)
        }
    }

    private func measure() throws {
        let kvm = try KVM()
        let window = Duration.milliseconds(Int64(seconds * 1000))

        // 1. Free-running: no patches; only L2's passthrough OUT comes to userspace.
        let free = try OwnVMTarget.demo(kvm: kvm)
        let clock = ContinuousClock()
        var start = clock.now
        var userspaceExits = 0
        while clock.now - start < window {
            _ = try free.run()
            userspaceExits += 1
        }
        let freeElapsed = clock.now - start
        let freeExits = try free.vm.readInteger(UInt64.self, at: DemoImage.exitCounter)
        let freeRate = Double(freeExits) / freeElapsed.seconds

        // 2. Stepping exit by exit through the engine.
        let engine = try Engine(ownVM: OwnVMTarget.demo(kvm: kvm))
        start = clock.now
        while clock.now - start < window { _ = try engine.next() }
        let stepElapsed = clock.now - start
        let stops = engine.nestedExitCount
        let stepRate = Double(stops) / stepElapsed.seconds
        let t = engine.timings

        // 3. Decode + diff alone, on the pages of the last real stop.
        let last = engine.history.last { $0.kind == .nestedExit }
        let before = last?.vmcb12AtVMRUN ?? VMCB(), after = last?.vmcb12 ?? VMCB()
        let n = 20_000
        start = clock.now
        var sink = 0
        for _ in 0..<n {
            sink &+= DecodedExit(vmcb: after).summary.count
            sink &+= SyncDiff.changes(before: before, after: after).count
        }
        let decodeDiff = (clock.now - start) / n

        func us(_ d: Duration) -> String { String(format: "%.1f µs", d.seconds * 1e6) }
        func perStop(_ d: Duration) -> Duration { stops > 0 ? d / stops : .zero }
        let roundTripsPerStop = stops > 0 ? Double(t.kvmRoundTrips) / Double(stops) : 0
        let kvmPerRoundTrip = t.kvmRoundTrips > 0 ? t.kvmRun / t.kvmRoundTrips : .zero
        print("nestdbg bench (demo, \(seconds) s per measurement)\(sink == -1 ? "" : "")")
        print(String(format: "free-running nested exits:   %10.0f /s  (%d exits, %d userspace exits in %.2f s)",
                     freeRate, freeExits, userspaceExits, freeElapsed.seconds))
        print(String(format: "stepping exit by exit:       %10.0f /s  (%d stops in %.2f s)", stepRate, stops, stepElapsed.seconds))
        print(String(format: "overhead ratio:              %10.1f x  (free-running rate / stepping rate)", freeRate / max(stepRate, 1e-9)))
        print("one stop, broken down (mean per nested exit):")
        print("  KVM_RUN round trips          \(us(perStop(t.kvmRun)))  (\(String(format: "%.1f", roundTripsPerStop)) per exit: VMRUN patch, post-VMRUN patch, single-step; \(us(kvmPerRoundTrip)) each, guest time included)")
        print("  register ioctls (REGS, SREGS2, DEBUGREGS, SET_REGS)  \(us(perStop(t.registerIoctls)))")
        print("  KVM_GET_NESTED_STATE         \(us(perStop(t.nestedStateIoctls)))")
        print("  vmcb12 reads (2 × 4 KiB)     \(us(perStop(t.vmcb12Reads)))")
        print("  patching (HLT in/out)        \(us(perStop(t.patching)))")
        print("  decode + diff + checks       \(us(perStop(t.decodeAndDiff)))")
        print("decode + diff alone:           \(us(decodeDiff)) per stop, "
              + String(format: "%.1f%% of one KVM_RUN round trip", kvmPerRoundTrip > .zero ? decodeDiff / kvmPerRoundTrip * 100 : 0))
    }
}

extension BenchCommand {
    /// Full redraws of a 200×60 screen from a realistic session (real VMCB pages, 300 stops of history).
    func renderBench() {
        var before = VMCB()
        before[integer: .intercepts4] = 1
        before[integer: .saveRIP] = 0x14F0
        before[integer: .saveCR0] = 0x8000_0011
        var after = before
        after[integer: .exitCode] = 0x7B
        after[integer: .exitInfo1] = 0x0080_0090
        after[integer: .saveRIP] = 0x14F4
        let regs = Dictionary(uniqueKeysWithValues: Register.allCases.map { ($0, RegisterValue.known(0x1234)) })
        let stops = (0..<300).map { Stop.synthetic(index: $0, before: before, after: after, l1: regs, l2: regs) }
        let view = SessionView(target: "demo", stops: stops)
        let clock = ContinuousClock()
        var screen = ScreenBuffer(width: 200, height: 60)
        let n = 2000
        // Baseline in the same run: allocating and clearing the buffer alone.
        var start = clock.now
        for _ in 0..<n { screen = ScreenBuffer(width: 200, height: 60) }
        let baseline = (clock.now - start) / n
        start = clock.now
        for _ in 0..<n { Renderer.render(view, into: &screen) }
        let frame = (clock.now - start) / n
        print("nestdbg bench --render (200×60, 300 stops of history)")
        print(String(format: "full redraw into the screen buffer: %8.1f µs", frame.seconds * 1e6))
        print(String(format: "baseline (clearing the buffer):     %8.1f µs  (redraw = %.1f× baseline)", baseline.seconds * 1e6, frame / baseline))
        print(String(format: "share of a 60 Hz frame (16.7 ms):   %8.2f %%", frame.seconds / (1.0 / 60) * 100))
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
