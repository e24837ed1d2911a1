/// What a built-in image (assembled into nestdbg by CDemoGuest) offers: its
/// bytes, and its symbols as guest addresses once loaded at `loadAddress`.
struct BuiltInImage {
    let bytes: [UInt8]
    let symbols: [String: UInt64]

    /// Reads an image through its four C accessors.
    init(loadAddress: UInt64, image: (UnsafeMutablePointer<Int>) -> UnsafePointer<UInt8>?, symbolCount: () -> Int,
         symbolName: (Int) -> UnsafePointer<CChar>?, symbolOffset: (Int) -> Int) {
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
