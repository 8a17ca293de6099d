"""Bytes of a recipe file -> text, or the reason it is not a text file (VT002 not UTF-8, VT003 NUL bytes)."""

from __future__ import annotations

import re

from vtc.compiler.clauses import ONE_LINE_EXAMPLE
from vtc.diagnostics import Diagnostic, Span, error

__all__ = ["decode_source", "binary_diagnostic", "surrogate_diagnostic"]


def decode_source(data: bytes, file: str) -> tuple[str | None, list[Diagnostic]]:
    """Bytes of a recipe file -> text: drops a UTF-8 BOM, turns CRLF and CR into LF, reports invalid UTF-8 (VT002)
    at its line and column, and NUL bytes (VT003, a binary file). Returns (None, diagnostics) on failure."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data:
        text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
        return None, [binary_diagnostic(text, file)]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
        line = good.count("\n") + 1
        column = len(good) - (good.rfind("\n") + 1) + 1
        bad = data[exc.start : exc.end]
        return None, [error(
            "VT002",
            f"this file is not valid UTF-8 text (byte {bad.hex(' ')} at line {line}, column {column})",
            Span(file, line, column, line, column + 1),
            help="save the recipe as UTF-8 text (most editors offer 'UTF-8' in their 'Save as' dialog)",
        )]
    return text.replace("\r\n", "\n").replace("\r", "\n"), []


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def surrogate_diagnostic(text: str, file: str) -> Diagnostic | None:
    """VT002 at the first lone surrogate of a text, or None. A file read from disk cannot hold one (its bytes are
    not UTF-8, VT002 above); text handed to the compiler through the API can, and no file name or value may."""
    found = _SURROGATE_RE.search(text)
    if found is None:
        return None
    line, column = _position(text, found.start())
    return error(
        "VT002",
        f"this text is not valid Unicode: it holds a lone surrogate U+{ord(found.group()):04X} at line {line}, "
        f"column {column}",
        Span(file, line, column, line, column + 1),
        help="pass the recipe as proper text (decode its bytes as UTF-8 with errors reported, not 'surrogateescape')",
    )


def binary_diagnostic(text: str, file: str) -> Diagnostic:
    """VT003 at the first NUL character of the text."""
    line, column = _position(text, text.index("\x00"))
    return error(
        "VT003",
        "this file contains null bytes: it looks like a binary file, not a recipe",
        Span(file, line, column, line, column + 1),
        help=f"a recipe is a text file with clauses such as `{ONE_LINE_EXAMPLE}`",
    )


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based (line, column) of text[index], counting lines as str.splitlines() does."""
    start = 0
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if index < start + len(line):
            return number, index - start + 1
        start += len(line)
    return max(1, len(text.splitlines())), 1  # pragma: no cover - index is inside text
