/// What a built-in image (assembled into nestdbg by CDemoGuest) offers: its
/// bytes, and its symbols as guest addresses once loaded at `loadAddress`.
struct BuiltInImage {
    let bytes: [UInt8]
    let symbols: [String: UInt64]

    /// Reads an image through its four C accessors.
    init(
        loadAddress: UInt64, image: (UnsafeMutablePointer<Int>) -> UnsafePointer<UInt8>?, symbolCount: () -> Int,
        symbolName: (Int) -> UnsafePointer<CChar>?, symbolOffset: (Int) -> Int
    ) {
        var length = 0
        let start = image(&length)!
        bytes = Array(UnsafeBufferPointer(start: start, count: length))
        var s: [String: UInt64] = [:]
        for i in 0..<symbolCount() {
            guard let name = symbolName(i) else { continue }
            s[String(cString: name)] = loadAddress + UInt64(symbolOffset(i))
        }
        symbols = s
    }
}

/// A built-in L1 (the demo, selfcheck): its bytes and symbols, and the
/// address of a symbol the tests and the engine rely on.
public protocol BuiltInL1 {
    /// "demo", "selfcheck": for messages.
    static var imageName: String { get }
    /// Where the VMM loads the image (guest-physical = L1-linear, identity-mapped).
    static var loadAddress: UInt64 { get }
    /// The L1 and its L2 use guest-physical memory below this only: image,
    /// stack, tables, logs (a Multiboot start zeroes it all).
    static var memoryEnd: UInt64 { get }
    var bytes: [UInt8] { get }
    var symbols: [String: UInt64] { get }
}

extension BuiltInL1 {
    /// A symbol's guest address; a symbol the image lacks is a programming error.
    public func address(_ symbol: String) -> UInt64 {
        guard let a = symbols[symbol] else { preconditionFailure("\(Self.imageName) has no symbol \(symbol)") }
        return a
    }
}
