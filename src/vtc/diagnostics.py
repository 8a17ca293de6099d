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
import functools
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
    # The word that should replace the text at ``span`` when the help says "did you mean `x`?" (x), for an editor's
    # quick fix (vtc lsp); None when there is no one-word fix. Not part of the JSON form.
    suggestion: str | None = None

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
# Lone surrogates (a file name that is not UTF-8 arrives as U+DC80-U+DCFF) are escaped too: a terminal cannot
# show them, and writing one to a strict UTF-8 stream would fail.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


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


@functools.lru_cache(maxsize=16)
def _lines(source: str) -> list[str]:
    """A source split into lines once, however many diagnostics point into it (a 1 MB file with 50 diagnostics
    was split 50 times). Cached by the text itself: the same string object is looked up by identity first."""
    return source.splitlines()


def _excerpt(span: Span, source: str | None) -> list[str]:
    if not source or span.line <= 0:
        return []
    lines = _lines(source)
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


# The most diagnostics kept for one file (errors first): a file of 10,000 repeated clauses gives 50 and a note.
MAX_PER_FILE = 50
# The note that says how many were left out (codes.py, VT308).
CAPPED = "VT308"


def cap_per_file(diagnostics: Sequence[Diagnostic], limit: int = MAX_PER_FILE) -> list[Diagnostic]:
    """At most ``limit`` diagnostics a file (errors kept before warnings, warnings before notes, then the first
    in the file), in their order, and for each file that had more, one final note (VT308) that counts the rest
    (a file with just one more than ``limit`` keeps it: the note would take its place and say less).
    Applying it twice changes nothing; a file never loses its last error to the cap, so the exit code stays."""
    rank = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.NOTE: 2}
    by_file: dict[str, list[int]] = {}
    for i, d in enumerate(diagnostics):
        if d.code != CAPPED:
            by_file.setdefault(d.span.file if d.span else "", []).append(i)
    dropped: set[int] = set()
    notes: list[Diagnostic] = []
    for file, indexes in by_file.items():
        if len(indexes) <= limit + 1:  # a note in place of the one left out would say no less
            continue
        ordered = sorted(indexes, key=lambda i: (rank[diagnostics[i].severity], i))
        left_out = ordered[limit:]
        dropped.update(left_out)
        errors = sum(diagnostics[i].is_error for i in left_out)
        warnings = sum(diagnostics[i].severity is Severity.WARNING for i in left_out)
        kinds = ", ".join(f"{n:,} {word}{'s' * (n != 1)}" for n, word in
                          ((errors, "error"), (warnings, "warning"), (len(left_out) - errors - warnings, "note")) if n)
        notes.append(note(CAPPED, f"{len(left_out):,} more problems in this file are not shown ({kinds})",
                          Span(file) if file else None,
                          help=f"vtc shows {limit} a file; fix these (a repeated clause is often one mistake "
                               "repeated), then run `vtc check` again"))
    kept = [d for i, d in enumerate(diagnostics) if i not in dropped]
    # The notes last (one sorted in among the others by a later sort_diagnostics goes back to the end here).
    return [d for d in kept if d.code != CAPPED] + [d for d in kept if d.code == CAPPED] + notes


def render_all(diagnostics: Sequence[Diagnostic], sources: Mapping[str, str] | None = None) -> str:
    """All diagnostics, then a one-line summary."""
    parts = [d.render(sources) for d in diagnostics]
    errors = sum(d.is_error for d in diagnostics)
    warnings = sum(d.severity is Severity.WARNING for d in diagnostics)
    if errors or warnings:
        capped = any(d.code == CAPPED for d in diagnostics)
        parts.append(f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
                     + (" shown; the notes above count the rest" if capped else ""))
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
