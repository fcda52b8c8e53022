"""Text from untrusted files made safe for a terminal.

A run directory may come from anyone, and a string in it (a metric name, a task name, a quoted
value in an error line) can hold terminal escape sequences: ``\\x1b[2J`` clears the screen,
``\\x1b]0;...\\x07`` sets the window title, OSC 52 writes the clipboard, and bidirectional
overrides reorder what is shown. Rich's ``escape`` only protects its own markup; every string the
command line prints from a run directory goes through :func:`printable` as well.
"""

from __future__ import annotations

import unicodedata


def printable(text: object) -> str:
    """``text`` with every control and format character (Unicode categories Cc and Cf: ESC, BEL,
    C1 controls, newlines, bidirectional overrides) shown as a visible escape (``\\x1b``), so
    printing it cannot drive the terminal; everything else, non-ASCII letters included, is kept."""
    out = []
    for ch in str(text):
        if unicodedata.category(ch) in ("Cc", "Cf"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)
