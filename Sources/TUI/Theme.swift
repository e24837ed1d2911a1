import Foundation

/// A terminal colour: one of the eight ANSI colours, their bright variants, or
/// the terminal's default.
public enum ThemeColor: Equatable, Sendable {
    case `default`
    case ansi(Int)  // 0…15

    static let names = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"]

    static func parse(_ word: String) -> ThemeColor? {
        if word == "default" { return .default }
        if let i = names.firstIndex(of: word) { return .ansi(i) }
        if word.hasPrefix("bright-"), let i = names.firstIndex(of: String(word.dropFirst(7))) { return .ansi(i + 8) }
        return nil
    }
}

/// How one style looks.
public struct StyleSpec: Equatable, Sendable {
    public var foreground: ThemeColor = .default
    public var background: ThemeColor = .default
    public var bold = false, underline = false, reverse = false, dim = false
}

/// A malformed theme: the file, the line, what is wrong.
public struct ThemeError: Error, Equatable, CustomStringConvertible {
    public let source: String, line: Int, message: String
    public var description: String { "\(source):\(line): \(message)" }
}

/// A colour theme (Themes/*.theme): one `style = fg [on bg] [, attribute…]` line per
/// style; `#` starts a comment; `name = …` and `colors = none` are allowed.
/// Styles not given fall back to `normal`.
public struct Theme: Equatable, Sendable {
    public var name: String
    public var specs: [Style: StyleSpec]
    /// `colors = none`: attributes only (a monochrome theme).
    public var usesColor: Bool

    public subscript(style: Style) -> StyleSpec { specs[style] ?? specs[.normal] ?? StyleSpec() }

    /// Parses theme text; every error names its line.
    public static func parse(_ text: String, source: String) throws -> Theme {
        var theme = Theme(name: source, specs: [:], usesColor: true)
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let n = i + 1
            let line =
                raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)?
                .trimmingCharacters(in: .whitespaces) ?? ""
            if line.isEmpty { continue }
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, !parts[0].isEmpty else {
                throw ThemeError(
                    source: source, line: n, message: "expected `style = colour [on colour] [, attribute…]`")
            }
            let key = parts[0]
            let value = parts[1].lowercased()
            if key == "name" {
                theme.name = parts[1]
                continue
            }
            if key == "colors" {
                guard ["none", "ansi"].contains(value) else {
                    throw ThemeError(source: source, line: n, message: "colors is `none` or `ansi`")
                }
                theme.usesColor = value == "ansi"
                continue
            }
            guard let style = Style(rawValue: key) else {
                throw ThemeError(
                    source: source, line: n,
                    message:
                        "unknown style `\(key)` (styles: \(Style.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            var spec = StyleSpec()
            let pieces = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            let colours = pieces.first?.split(separator: " ").map(String.init) ?? []
            if !colours.isEmpty && colours != ["none"] {
                guard let fg = ThemeColor.parse(colours[0]) else {
                    throw ThemeError(source: source, line: n, message: "unknown colour `\(colours[0])`")
                }
                spec.foreground = fg
                if colours.count == 3, colours[1] == "on" {
                    guard let bg = ThemeColor.parse(colours[2]) else {
                        throw ThemeError(source: source, line: n, message: "unknown colour `\(colours[2])`")
                    }
                    spec.background = bg
                } else if colours.count != 1 {
                    throw ThemeError(source: source, line: n, message: "expected `colour` or `colour on colour`")
                }
            }
            for attr in pieces.dropFirst() {
                switch attr {
                case "bold": spec.bold = true
                case "underline": spec.underline = true
                case "reverse": spec.reverse = true
                case "dim": spec.dim = true
                default:
                    throw ThemeError(
                        source: source, line: n, message: "unknown attribute `\(attr)` (bold, underline, reverse, dim)")
                }
            }
            theme.specs[style] = spec
        }
        return theme
    }

    /// Finds a theme by name in the theme folders (`$NESTDBG_THEMES`, ./Themes,
    /// next to the executable) or reads it from a path.
    public static func load(_ nameOrPath: String) throws -> Theme {
        let fm = FileManager.default
        var candidates = [nameOrPath]
        if !nameOrPath.contains("/") {
            var dirs = [ProcessInfo.processInfo.environment["NESTDBG_THEMES"], fm.currentDirectoryPath + "/Themes"]
                .compactMap { $0 }
            let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
                .deletingLastPathComponent()
            dirs += [
                exe.appendingPathComponent("Themes").path,
                exe.appendingPathComponent("../../../Themes").standardized.path,
            ]
            candidates = dirs.map { "\($0)/\(nameOrPath).theme" } + candidates
        }
        for path in candidates {
            if let data = fm.contents(atPath: path) {
                return try parse(String(decoding: data, as: UTF8.self), source: path)
            }
        }
        if nameOrPath == "default" { return .builtIn }
        throw ThemeError(
            source: nameOrPath, line: 0, message: "no such theme (looked in \(candidates.joined(separator: ", ")))")
    }

    /// Used when no Themes folder is found: the default dark theme's essentials.
    public static let builtIn: Theme = {
        var t = Theme(name: "built-in", specs: [:], usesColor: true)
        t.specs[.border] = StyleSpec(foreground: .ansi(4))
        t.specs[.title] = StyleSpec(foreground: .ansi(6), bold: true)
        t.specs[.label] = StyleSpec(foreground: .ansi(6))
        t.specs[.changed] = StyleSpec(foreground: .ansi(3), bold: true)
        t.specs[.unknown] = StyleSpec(foreground: .ansi(8), dim: true)
        t.specs[.unexpected] = StyleSpec(foreground: .ansi(15), background: .ansi(1), bold: true)
        t.specs[.banner] = StyleSpec(foreground: .ansi(0), background: .ansi(6))
        t.specs[.live] = StyleSpec(foreground: .ansi(0), background: .ansi(2), bold: true)
        t.specs[.selected] = StyleSpec(reverse: true)
        t.specs[.error] = StyleSpec(foreground: .ansi(1), bold: true)
        t.specs[.key] = StyleSpec(foreground: .ansi(3), bold: true)
        t.specs[.dim] = StyleSpec(dim: true)
        return t
    }()

    /// A theme for a terminal without colour: every style by attributes alone.
    public var monochrome: Theme {
        var t = self
        t.usesColor = false
        return t
    }
}
