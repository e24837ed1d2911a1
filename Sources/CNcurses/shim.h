// ncursesw from Swift: the feature macros SwiftPM drops from pkg-config, and
// the attribute macros and key codes Swift cannot import.
#ifndef CNCURSES_SHIM_H
#define CNCURSES_SHIM_H
#define _XOPEN_SOURCE_EXTENDED 1
#include <locale.h>
#include <ncurses.h>
#include <signal.h>

static inline int cnc_attr_bold(void) { return A_BOLD; }
static inline int cnc_attr_reverse(void) { return A_REVERSE; }
static inline int cnc_attr_underline(void) { return A_UNDERLINE; }
static inline int cnc_attr_dim(void) { return A_DIM; }
static inline int cnc_color_pair(int n) { return COLOR_PAIR(n); }
static inline int cnc_key_resize(void) { return KEY_RESIZE; }
static inline int cnc_key_left(void) { return KEY_LEFT; }
static inline int cnc_key_right(void) { return KEY_RIGHT; }
static inline int cnc_key_up(void) { return KEY_UP; }
static inline int cnc_key_down(void) { return KEY_DOWN; }
static inline int cnc_key_backspace(void) { return KEY_BACKSPACE; }
static inline int cnc_key_enter(void) { return KEY_ENTER; }
// ncurses keeps stdscr and COLORS in C globals, which Swift 6 sees as shared mutable
// state: read through functions, on the one thread that drives the terminal.
static inline WINDOW *cnc_stdscr(void) { return stdscr; }
static inline int cnc_colors(void) { return COLORS; }
#endif
