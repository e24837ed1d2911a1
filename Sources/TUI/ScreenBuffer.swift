/// What a cell means; the theme decides how it looks.
public enum Style: String, CaseIterable, Sendable {
    case normal, border, title, label, value, changed, unknown, unexpected, dim, banner, live, selected, error, help,
        key
}

/// An in-memory screen: the renderer draws here, the terminal copies it out,
/// and tests read it back (text and styles).
public struct ScreenBuffer: Sendable {
    public let width: Int, height: Int
    public private(set) var chars: [Character]
    public private(set) var styles: [Style]

    public init(width: Int, height: Int) {
        self.width = max(0, width)
        self.height = max(0, height)
        chars = Array(repeating: " ", count: self.width * self.height)
        styles = Array(repeating: .normal, count: self.width * self.height)
    }

    /// Writes `text` at (row, col), clipped to the screen and to `maxWidth`.
    public mutating func put(_ text: String, row: Int, col: Int, style: Style = .normal, maxWidth: Int = .max) {
        guard row >= 0, row < height else { return }
        var c = col
        let limit = maxWidth >= width ? width : min(width, col + max(0, maxWidth))
        for ch in text {
            if c >= limit { break }
            if c >= 0 {
                chars[row * width + c] = ch
                styles[row * width + c] = style
            }
            c += 1
        }
    }

    public func character(row: Int, col: Int) -> Character { chars[row * width + col] }
    public func style(row: Int, col: Int) -> Style { styles[row * width + col] }

    /// One row as a string (trailing spaces kept).
    public func line(_ row: Int) -> String { String(chars[(row * width)..<((row + 1) * width)]) }
    /// The whole screen as text, one line per row.
    public var text: String { (0..<height).map(line).joined(separator: "\n") }

    /// Where `needle` starts on screen, if anywhere.
    public func find(_ needle: String) -> (row: Int, col: Int)? {
        for r in 0..<height {
            if let range = line(r).range(of: needle) {
                return (r, line(r).distance(from: line(r).startIndex, to: range.lowerBound))
            }
        }
        return nil
    }

    /// Runs of equal style in a row, for the terminal to draw with one call each.
    public func runs(row: Int) -> [(col: Int, text: String, style: Style)] {
        var out: [(Int, String, Style)] = []
        var start = 0
        while start < width {
            let st = styles[row * width + start]
            var end = start
            while end < width && styles[row * width + end] == st { end += 1 }
            out.append((start, String(chars[(row * width + start)..<(row * width + end)]), st))
            start = end
        }
        return out
    }

    /// A box with a title; `unicode` false draws it in ASCII.
    public mutating func box(
        row: Int, col: Int, width w: Int, height h: Int, title: String, unicode: Bool, style: Style = .border
    ) {
        guard w >= 2, h >= 2 else { return }
        let (hz, vt, tl, tr, bl, br) = unicode ? ("─", "│", "┌", "┐", "└", "┘") : ("-", "|", "+", "+", "+", "+")
        put(tl + String(repeating: hz, count: w - 2) + tr, row: row, col: col, style: style)
        for r in (row + 1)..<(row + h - 1) {
            put(vt, row: r, col: col, style: style)
            put(vt, row: r, col: col + w - 1, style: style)
        }
        put(bl + String(repeating: hz, count: w - 2) + br, row: row + h - 1, col: col, style: style)
        put(" \(title) ", row: row, col: col + 2, style: .title, maxWidth: w - 4)
    }
}
