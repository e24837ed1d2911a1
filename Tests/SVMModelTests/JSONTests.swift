import SVMModel
import Testing

@Suite("the JSON serializer")
struct JSONTests {
    @Test("values: hex strings without leading zeros, integers, booleans, null, escapes as JSON requires")
    func values() {
        #expect(JSON.hex(0).serialized() == #""0x0""#)
        #expect(JSON.hex(0xABC).serialized() == #""0xabc""#)
        #expect(JSON.hex(.max).serialized() == #""0xffffffffffffffff""#)
        #expect(JSON.int(-42).serialized() == "-42")
        #expect(JSON.array([.bool(true), .bool(false), .null]).serialized() == "[true,false,null]")
        let tricky = "a\"b\\c\nd\te\r\u{01}é"
        #expect(JSON.string(tricky).serialized() == #""a\"b\\c\nd\te\r\u0001é""#)
        #expect(JSON.object([("k\"ey", .string("v"))]).serialized() == #"{"k\"ey":"v"}"#)
    }

    @Test("a line longer than the first buffer comes out whole")
    func growth() {
        let long = JSON.array((0..<5000).map { JSON.hex(UInt64($0)) })
        let text = long.serialized()
        #expect(text.utf8.count > 8192 * 3)
        #expect(text.hasPrefix(#"["0x0","0x1","#) && text.hasSuffix(#","0x1387"]"#))
        #expect(long.serializedBytes() == Array(text.utf8))
    }
}
