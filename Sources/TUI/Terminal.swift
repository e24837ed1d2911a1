import CNcurses
import Foundation
import Glibc

/// The one place nestdbg talks to ncurses: start, draw a ScreenBuffer, read
/// keys, stop. The terminal is restored on every way out: `stop()`, exit,
/// SIGINT/SIGTERM/SIGHUP and crashes (SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGFPE, SIGTRAP).
public final class Terminal {
    public private(set) var width = 0, height = 0
    public let unicode: Bool
    private var theme: Theme
    private var colorPairs: [Style: Int32] = [:]
    private var colorsAvailable = false
    nonisolated(unsafe) private static var active = false

    public init(theme: Theme) {
        setlocale(LC_ALL, "")
        let codeset = String(cString: nl_langinfo(nl_item(CODESET)))
        unicode = codeset.uppercased().contains("UTF-8") || codeset.uppercased().contains("UTF8")
        self.theme = theme
        Terminal.installRestoreHandlers()
        _ = initscr()
        Terminal.active = true
        cbreak()
        noecho()
        nonl()
        keypad(cnc_stdscr(), true)
        curs_set(0)
        set_escdelay(25)
        colorsAvailable = has_colors() && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        if colorsAvailable {
            start_color()
            use_default_colors()
        }
        apply(theme)
        updateSize()
    }

    deinit { stop() }

    /// Puts the terminal back as it was (idempotent).
    public func stop() {
        if Terminal.active {
            endwin()
            Terminal.active = false
        }
    }

    public func apply(_ theme: Theme) {
        self.theme = theme
        colorPairs.removeAll()
        guard colorsAvailable, theme.usesColor else { return }
        var next: Int32 = 1
        for style in Style.allCases {
            let spec = theme[style]
            func number(_ c: ThemeColor) -> Int16 {
                switch c {
                case .default: return -1
                case let .ansi(n): return Int16(n < Int(cnc_colors()) ? n : n % 8)  // 8-colour terminals: bright → base
                }
            }
            init_pair(Int16(next), number(spec.foreground), number(spec.background))
            colorPairs[style] = next
            next += 1
        }
    }

    private func attributes(_ style: Style) -> Int32 {
        let spec = theme[style]
        var a: Int32 = 0
        if let pair = colorPairs[style] { a |= cnc_color_pair(pair) }
        if spec.bold { a |= cnc_attr_bold() }
        if spec.underline { a |= cnc_attr_underline() }
        if spec.reverse { a |= cnc_attr_reverse() }
        if spec.dim { a |= cnc_attr_dim() }
        // Without colour, a few styles still need to stand out.
        if colorPairs.isEmpty, [.changed, .unexpected, .banner, .live, .selected].contains(style), !spec.reverse,
            !spec.bold, !spec.underline
        {
            a |= style == .changed ? cnc_attr_bold() : cnc_attr_reverse()
        }
        return a
    }

    public func updateSize() {
        width = Int(getmaxx(cnc_stdscr()))
        height = Int(getmaxy(cnc_stdscr()))
    }

    /// Copies a screen to the terminal: one ncurses call per run of equal style.
    public func draw(_ screen: ScreenBuffer) {
        erase()
        for row in 0..<min(screen.height, height) {
            for run in screen.runs(row: row) {
                let a = attributes(run.style)
                attrset(a)
                let text =
                    run.col + run.text.count >= width && row == height - 1 ? String(run.text.dropLast()) : run.text
                mvaddstr(Int32(row), Int32(run.col), text)
            }
        }
        attrset(0)
        refresh()
    }

    public enum Key: Equatable, Sendable {
        case char(Character)
        case left, right, up, down, tab, enter, backspace, escape, resize, none
    }

    /// The next key, waiting at most `timeoutMs` (negative: forever).
    public func key(timeoutMs: Int32) -> Key {
        timeout(timeoutMs)
        let k = getch()
        switch k {
        case ERR: return .none
        case cnc_key_resize():
            updateSize()
            return .resize
        case cnc_key_left(): return .left
        case cnc_key_right(): return .right
        case cnc_key_up(): return .up
        case cnc_key_down(): return .down
        case cnc_key_backspace(), 127, 8: return .backspace
        case cnc_key_enter(), 10, 13: return .enter
        case 9: return .tab
        case 27: return .escape
        default:
            if let scalar = Unicode.Scalar(UInt32(k)) { return .char(Character(scalar)) }
            return .none
        }
    }

    /// Leaves curses mode now: for a thread about to end the process on a signal.
    static func restoreForExit() {
        if Terminal.active { endwin() }
    }

    private static func installRestoreHandlers() {
        atexit { if Terminal.active { endwin() } }
        for sig in [SIGINT, SIGTERM, SIGHUP, SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGFPE, SIGTRAP] {
            signal(sig) { s in
                endwin()
                signal(s, SIG_DFL)  // then die the way the signal means
                raise(s)
            }
        }
    }
}
