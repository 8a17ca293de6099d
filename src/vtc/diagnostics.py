"""One diagnostic type for every stage: parser, schema, semantic checks, data validation, runtime.

A Diagnostic has a code (``VT012``), a severity, a one-sentence message, a span (file, line, column) and a help
line that says what to write instead. It renders like rustc::

    error[VT012]: unknown option `respones_only`
     --> xray.vt:1:47
      |
    1 | finetune vision,mlp on qwen2.5-vl with respones_only from ./xrays
      |                                        ^^^^^^^^^^^^^
      = help: did you mean `responses_only`?

and as JSON for editors and CI. Code ranges: VT0xx syntax, VT1xx values (schema), VT2xx semantic checks,
VT3xx includes and files, VT4xx data, VT5xx model and runtime.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Mapping, Sequence


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True, order=True)
class Span:
    """A region of a file. Lines and columns are 1-based; end_column is exclusive.

    For a data file, ``line`` is the row (or line) number and the columns may be 0 (no column).
    """

    file: str
    line: int = 0
    column: int = 0
    end_line: int = 0
    end_column: int = 0

    def __post_init__(self) -> None:
        if self.end_line < self.line:
            object.__setattr__(self, "end_line", self.line)
        if self.end_line == self.line and self.end_column < self.column:
            object.__setattr__(self, "end_column", self.column)

    @property
    def location(self) -> str:
        """``file:line:col`` (or ``file:line`` / ``file`` when the finer parts are unknown)."""
        if self.line and self.column:
            return f"{self.file}:{self.line}:{self.column}"
        if self.line:
            return f"{self.file}:{self.line}"
        return self.file

    def to_json(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
        }


@dataclass(frozen=True)
class Diagnostic:
    """A problem (or a warning, or a note) found at a place in a recipe or a data file."""

    code: str
    severity: Severity
    message: str
    span: Span | None = None
    help: str | None = None
    # Further places worth showing (e.g. the first of two conflicting clauses), each with a short label.
    related: tuple[tuple[Span, str], ...] = field(default=())

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_json(self) -> dict:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "span": self.span.to_json() if self.span else None,
            "help": self.help,
            "related": [{"span": s.to_json(), "message": m} for s, m in self.related],
        }

    def render(self, sources: Mapping[str, str] | None = None) -> str:
        """Render for a terminal: header, location, the source line with a caret, help. Control characters from
        files (a recipe's text, a data file's name, an answer) are shown escaped (see ``printable``)."""
        sources = sources or {}
        out = [f"{self.severity.value}[{self.code}]: {printable(self.message)}"]
        if self.span is not None:
            out.append(f" --> {printable(self.span.location)}")
            out.extend(_excerpt(self.span, sources.get(self.span.file)))
        for span, label in self.related:
            out.append(f" --> {printable(span.location)}: {printable(label)}")
            out.extend(_excerpt(span, sources.get(span.file)))
        if self.help:
            out.append(f"  = help: {printable(self.help)}")
        return "\n".join(out)


# Characters a terminal acts on instead of showing: C0 controls but tab and newline, DEL, C1 controls (ESC's 8-bit
# forms: a file name holding "\x1b[2K\x1b[1A" erases a line and could print a fake "ok"), and the bidirectional
# overrides and isolates that reorder what is shown (the "Trojan Source" characters).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, newlines: bool = True) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\u202e``), for text output; JSON
    output keeps the exact text. With ``newlines`` False, newlines are escaped too (one value, one line)."""
    if not isinstance(text, str):
        text = str(text)
    out = _CONTROL.sub(_escape, text)
    return out if newlines else out.replace("\n", "\\n")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def error(code: str, message: str, span: Span | None = None, help: str | None = None, **kw) -> Diagnostic:
    return Diagnostic(code, Severity.ERROR, message, span, help, **kw)


def warning(code: str, message: str, span: Span | None = None, help: str | None = None, **kw) -> Diagnostic:
    return Diagnostic(code, Severity.WARNING, message, span, help, **kw)


def note(code: str, message: str, span: Span | None = None, help: str | None = None, **kw) -> Diagnostic:
    return Diagnostic(code, Severity.NOTE, message, span, help, **kw)


# Lines longer than this are cut around the caret so that a 1 MB line never floods the terminal.
_MAX_SHOWN = 120


def _excerpt(span: Span, source: str | None) -> list[str]:
    if not source or span.line <= 0:
        return []
    lines = source.splitlines()
    if span.line > len(lines):
        return []
    raw = lines[span.line - 1].replace("\t", " ")
    start = max(span.column - 1, 0)
    if span.end_line == span.line and span.end_column > span.column:
        width = span.end_column - span.column
    else:
        width = max(len(raw) - start, 1) if span.end_line > span.line else 1
    # Escaped control characters are wider than one column: measure the caret in the shown text.
    text = printable(raw)
    if text != raw:
        start, width = len(printable(raw[:start])), max(len(printable(raw[start:start + width])), 1)
    offset = 0
    if len(text) > _MAX_SHOWN:
        offset = max(0, start - _MAX_SHOWN // 2)
        text = ("..." if offset else "") + text[offset : offset + _MAX_SHOWN] + "..."
        start = start - offset + (3 if offset else 0)
        width = min(width, _MAX_SHOWN)
    gutter = " " * len(str(span.line))
    return [
        f"{gutter} |",
        f"{span.line} | {text}",
        f"{gutter} | {' ' * start}{'^' * max(width, 1)}",
    ]


def suggest(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The closest choice to a misspelled word, or None."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    if word.lower() in lowered:
        return lowered[word.lower()]
    found = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[found[0]] if found else None


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """A help sentence "did you mean `x`?" for a misspelled word, or None."""
    best = suggest(word, choices, cutoff)
    return f"did you mean `{best}`?" if best else None


def has_errors(diagnostics: Sequence[Diagnostic]) -> bool:
    return any(d.is_error for d in diagnostics)


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Stable order: by file, line, column, then code."""

    def key(d: Diagnostic):
        s = d.span
        return (s.file, s.line, s.column, d.code) if s else ("", 0, 0, d.code)

    return sorted(diagnostics, key=key)


def render_all(diagnostics: Sequence[Diagnostic], sources: Mapping[str, str] | None = None) -> str:
    """All diagnostics, then a one-line summary."""
    parts = [d.render(sources) for d in diagnostics]
    errors = sum(d.is_error for d in diagnostics)
    warnings = sum(d.severity is Severity.WARNING for d in diagnostics)
    if errors or warnings:
        parts.append(f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}")
    return "\n\n".join(parts)


def to_json(diagnostics: Sequence[Diagnostic]) -> str:
    return json.dumps([d.to_json() for d in diagnostics], indent=2, sort_keys=True)


class VtcError(Exception):
    """Raised by the runtime to stop with diagnostics; the CLI renders them and exits 1, never a traceback."""

    def __init__(self, diagnostics: Diagnostic | Sequence[Diagnostic]):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__("; ".join(d.message for d in self.diagnostics))
