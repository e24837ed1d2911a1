import CDemoGuest

/// The built-in demo (Sources/CDemoGuest/demo.S): an L1 SVM hypervisor and
/// its L2 guest, with the symbols the engine and the tests need.
public struct DemoImage: BuiltInL1, Sendable {
    public static let imageName = "demo"
    /// Where the VMM loads the image (guest-physical = L1-linear, identity-mapped).
    public static let loadAddress: UInt64 = 0x1000
    /// Above the last of L2's GPRs and the counters (0x70000 page).
    public static let memoryEnd: UInt64 = 0x80000
    public static let vmcb12: UInt64 = 0x20000
    public static let exitCounter: UInt64 = 0x70100
    public static let npfPage: UInt64 = 0x60000
    /// The port L1 writes an exit code it cannot handle to.
    public static let panicPort: UInt16 = 0xE1
    /// The timer scenario's INTR #VMEXITs before its L1 ends the run (TM_ROUNDS in demo.S).
    public static let timerRounds = 5
    /// The timer scenario's count of ticks L1 took through its IDT (a qword, TM_TICKS in demo.S).
    public static let timerTicks: UInt64 = 0x70118

    public let bytes: [UInt8]
    /// Symbol → guest address (load address + offset).
    public let symbols: [String: UInt64]

    public init() {
        let image = BuiltInImage(
            loadAddress: DemoImage.loadAddress, image: nestdbg_demo_image, symbolCount: nestdbg_demo_symbol_count,
            symbolName: nestdbg_demo_symbol_name, symbolOffset: nestdbg_demo_symbol_offset)
        bytes = image.bytes
        symbols = image.symbols
    }

    /// L2's program: the instruction symbols in execution order with the exit
    /// each causes. The page fault is a nested one (NPF) when L1 can use nested
    /// paging (KVM offers NPT: kvm_amd npt=1), else L2's own #PF.
    public static func l2Program(nestedPaging: Bool) -> [(symbol: String, exitCode: UInt64)] {
        [
            ("l2_cpuid", 0x72), ("l2_in", 0x7B), ("l2_out", 0x7B), ("l2_rdmsr", 0x7C), ("l2_wrmsr", 0x7C),
            ("l2_ud", 0x46), ("l2_npf", nestedPaging ? 0x400 : 0x4E), ("l2_cr4", 0x14), ("l2_hlt", 0x78),
            ("l2_vmmcall", 0x81),
        ]
    }
}
