// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "nestdbg",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "nestdbg", targets: ["nestdbg"]),
        .library(name: "KVMControl", targets: ["KVMControl"]),
        .library(name: "SVMModel", targets: ["SVMModel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    ],
    targets: [
        // C shim: only what Swift cannot import from <linux/kvm.h> (the _IO* request
        // macros, the variadic ioctl, a signal handler for kicking a vCPU).
        .target(name: "CKVM"),
        // Typed Swift over the /dev/kvm ioctls. Knows nothing about SVM.
        .target(name: "KVMControl", dependencies: ["CKVM"]),
        // C shim: perf_event_open(2) (no libc wrapper, a bitfield attr), the ring's barriers, the SIGTRAP handler.
        .target(name: "CPerf"),
        // The kernel's tracepoints through perf: tracefs formats parsed at run time, events bound to
        // one thread (optionally stopping it with SIGTRAP), samples from one ring. Knows nothing about KVM.
        .target(name: "KernelTrace", dependencies: ["CPerf"]),
        // C shim: ptrace(2) (variadic), the wait-status macros, signals with a payload, process_vm_readv/writev.
        .target(name: "CProcess"),
        // Another process and its threads: ptrace (seize, stops, syscalls run in the tracee), /proc, its
        // memory, and QEMU's QMP socket. Knows nothing about KVM or SVM.
        .target(name: "ProcessControl", dependencies: ["CProcess"]),
        // Pure values: the VMCB layout, exit codes, checks, sync diff, nested state. Imports nothing of ours.
        .target(name: "SVMModel"),
        // The built-in demo L1 hypervisor and L2 guest, x86-64 assembly built with the package.
        .target(name: "CDemoGuest"),
        // Targets and stop sources behind protocols, the stop assembler, breakpoints, the
        // engine and the session thread that owns it: runs an L1 and stops at its nested exits.
        .target(
            name: "DebuggerEngine",
            dependencies: ["KVMControl", "KernelTrace", "ProcessControl", "SVMModel", "CDemoGuest"]),
        // Recordings: every stop into SQLite (GRDB, WAL, one transaction a stop), read back as a
        // replay session the front end drives like a live one, exported as JSON lines.
        .target(
            name: "Recording",
            dependencies: ["DebuggerEngine", "SVMModel", .product(name: "GRDB", package: "GRDB.swift")]),
        // ncursesw (libncurses-dev) through pkg-config; the shim carries the macros Swift cannot import.
        .systemLibrary(name: "CNcurses", pkgConfig: "ncursesw", providers: [.apt(["libncurses-dev"])]),
        // The front end: a view model rendered into a screen buffer; ncurses calls live in Terminal.swift.
        .target(name: "TUI", dependencies: ["DebuggerEngine", "KVMControl", "SVMModel", "CNcurses"]),
        .executableTarget(
            name: "nestdbg",
            dependencies: [
                "KVMControl", "KernelTrace", "ProcessControl", "SVMModel", "DebuggerEngine", "Recording", "TUI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            // The demo recording (nestdbg replay --demo) is read from the clone, not bundled.
            exclude: ["Recordings"]),
        // What every test target needs: requirements (skip here, fail in CI), folders of a test's own,
        // children run with both pipes read and a deadline, the built nestdbg.
        .target(name: "TestSupport", dependencies: ["SVMModel"], path: "Tests/TestSupport"),
        .testTarget(name: "KVMControlTests", dependencies: ["KVMControl", "CKVM", "TestSupport"]),
        .testTarget(name: "SVMModelTests", dependencies: ["SVMModel", "TestSupport"]),
        // Format parsing; perf SIGTRAP stops on a plain guest of the host's real KVM (kvm:kvm_cpuid).
        .testTarget(name: "KernelTraceTests", dependencies: ["KernelTrace", "KVMControl", "TestSupport"]),
        // The engine on real KVM: sessions and plain guests here; nested SVM where KVM offers it
        // (the sandbox), skipped with the reason elsewhere.
        .testTarget(
            name: "DebuggerEngineTests", dependencies: ["KVMControl", "SVMModel", "DebuggerEngine", "TestSupport"]),
        // ptrace and QMP against real processes (a child of the test, a real QEMU where one is installed).
        .testTarget(name: "ProcessControlTests", dependencies: ["ProcessControl", "TestSupport"]),
        // The built binary run as a user would; its files compared with the engine's.
        .testTarget(name: "NestdbgCLITests", dependencies: ["SVMModel", "DebuggerEngine", "TestSupport"]),
        .testTarget(name: "TUITests", dependencies: ["TUI", "DebuggerEngine", "SVMModel", "TestSupport"]),
        // Recordings written and read back, the shipped demo recording replayed, bad files rejected.
        .testTarget(
            name: "RecordingTests",
            dependencies: ["Recording", "DebuggerEngine", "KVMControl", "SVMModel", "TestSupport"],
            exclude: ["Fixtures"]),
    ]
)
