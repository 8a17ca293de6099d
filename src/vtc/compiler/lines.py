"""One line of a recipe -> its code and its comment, with the problems a grammar cannot see: an unterminated string
(VT005) and control characters (VT003).

A ``#`` starts a comment unless it stands inside a double-quoted string. An unterminated string is closed at the
end of the line, so that the rest of the clause is still checked.
"""

from __future__ import annotations

import re

from vtc.compiler import ast
from vtc.diagnostics import Diagnostic, Span, error
from vtc.records import record

__all__ = ["Line", "scan_line", "STRING_RE"]

# A closed double-quoted string (STRING in vt.lark).
STRING_RE = re.compile(r'"(?:\\.|[^"\\])*"')
# Splits a line into strings (closed or not), comment starts and the rest.
_SCAN_RE = re.compile(r'"(?:\\.|[^"\\])*"?|#|[^"#]+')
# Control characters that can sit inside a line (str.splitlines() already splits at \n, \r, \v, \f, \x1c-\x1e,
# \x85, \u2028 and \u2029). Tab is allowed.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f]")


@record
class Line:
    code: str  # the line without its comment, control characters as blanks; an unterminated string closed
    comment: ast.Comment | None
    diagnostics: tuple[Diagnostic, ...]


def scan_line(raw: str, number: int, file: str) -> Line:
    """Split a line into code and comment; report control characters (VT003) and an unterminated string (VT005)."""
    diagnostics = []
    code_end = len(raw)
    comment = None
    for m in _SCAN_RE.finditer(raw):
        piece = m.group()
        if piece == "#":
            code_end = m.start()
            comment = ast.Comment(raw[m.end():], Span(file, number, m.start() + 1, number, len(raw) + 1),
                                  own_line=not raw[: m.start()].strip())
            break
        if piece.startswith('"') and (len(piece) == 1 or not STRING_RE.fullmatch(piece)):
            col = m.start() + 1
            if '\\"' in piece:
                # `from "C:\data\"`: the backslash before the quote made it part of the text.
                help = ('a backslash just before `"` makes the quote part of the text: end a path without it '
                        '(`"C:\\data"`) or with a forward slash (`"C:/data/"`)')
            else:
                help = ('end it with `"` on the same line (a clause never spans lines); to put a quote inside the '
                        'text write `\\"`')
            diagnostics.append(error(
                "VT005",
                "this text in double quotes is never closed",
                Span(file, number, col, number, col + 1),
                help=help,
            ))
            # Close it; a trailing backslash would escape the closing quote, so it is doubled.
            code_end = len(raw)
            raw += '\\"' if (len(raw) - len(raw.rstrip("\\"))) % 2 else '"'
            break
    code = raw[:code_end] if comment is not None else raw
    # Control characters are harmless in a comment; in the code they are reported once a line and read as blanks.
    control = _CONTROL_RE.search(code)
    if control:
        col = control.start() + 1
        diagnostics.append(error(
            "VT003",
            f"invisible control character U+{ord(control.group()):04X} in the recipe",
            Span(file, number, col, number, col + 1),
            help="delete it (retype the line if you cannot see it)",
        ))
        code = _CONTROL_RE.sub(" ", code)
    return Line(code, comment, tuple(diagnostics))
