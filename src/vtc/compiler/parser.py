"""Recipe text -> ast.Recipe, with every syntax problem as a Diagnostic (codes VT001-VT099). Never raises.

The grammar is src/vtc/grammar/vt.lark (LALR, contextual lexer). A statement never spans lines, so the parser works
one line at a time:

1. the line is split into code and a trailing ``# comment`` (vtc.compiler.lines);
2. the code is parsed with the grammar's ``line`` rule (vtc.compiler.lalr) and the parse tree becomes AST
   statements (vtc.compiler.build);
3. after an error, the statements before the broken clause are kept, the error is explained in plain words
   (vtc.compiler.syntax_errors) and parsing resumes at the next clause keyword on the line, so that one run
   reports every problem;
4. a clause that goes on at the start of the next line(s) (`finetune vision, mlp` / `on qwen2.5-vl`, or
   `from ./x` / `split train`) is one error, VT014, instead of a missing value and an unknown clause: the clause is
   parsed joined (its words keep the lines and columns where they stand) and the next line's parsing starts after
   the words it took.
"""

from __future__ import annotations

import dataclasses

from vtc.compiler import ast, lalr
from vtc.compiler.build import build, tokens
from vtc.compiler.clauses import BY_TERMINAL, CLAUSE_KEYWORDS, ONE_LINE_EXAMPLE
from vtc.compiler.decode import binary_diagnostic, decode_source, surrogate_diagnostic
from vtc.compiler.lalr import GRAMMAR_PATH, grammar_sha256
from vtc.compiler.lines import Line, scan_line
from vtc.compiler.syntax_errors import explain, next_clause_start
from vtc.diagnostics import Diagnostic, Span, error, note
from vtc.records import record

__all__ = ["CLAUSE_KEYWORDS", "parse_source", "decode_source", "ONE_LINE_EXAMPLE", "GRAMMAR_PATH", "grammar_sha256"]

# A 1 MB line of garbage must not produce a million diagnostics. The longest sensible line is a long `system`
# prompt; 20,000 characters is several pages, and Lark needs about 10 us a token, so a line at the limit parses in
# well under 0.1 s.
_MAX_LINE = 20_000
_MAX_ERRORS_PER_LINE = 10
_MAX_ERRORS = 50


def parse_source(text: str, file: str, *, partial: bool = False) -> tuple[ast.Recipe | None, list[Diagnostic]]:
    """Parse one recipe file's text. Returns (Recipe, diagnostics) when there is no syntax error, else
    (None, diagnostics) -- or, with ``partial=True``, the Recipe of the statements that did parse.

    Spans are 1-based, end column exclusive, lines as ``str.splitlines()`` counts them (the renderer's way),
    ``file`` as given. Never raises on any text.
    """
    try:
        return _parse_source(text, file, partial)
    except RecursionError:  # pragma: no cover - no input is known to reach this; kept as a last resort
        return None, [error("VT099", "this recipe is too deeply nested to read", Span(file, 1, 1, 1, 1))]


def _parse_source(text: str, file: str, partial: bool) -> tuple[ast.Recipe | None, list[Diagnostic]]:
    if text.startswith("\ufeff"):
        # A BOM is invisible in editors; columns on line 1 still count it so that carets line up with the text.
        text = " " + text[1:]
    if "\x00" in text:
        return None, [binary_diagnostic(text, file)]
    surrogate = surrogate_diagnostic(text, file)
    if surrogate is not None:  # only through the API: a file's bytes with one are not UTF-8 (VT002 when decoded)
        return None, [surrogate]
    statements: list = []
    comments: list[ast.Comment] = []
    diagnostics: list[Diagnostic] = []
    raws = text.splitlines()
    scanned: dict[int, Line] = {}  # line number -> the line scanned (code and comment), for the look-ahead
    resume_at: dict[int, int] = {}  # line number -> where its parsing starts (after a continuation taken)

    def scan(number: int) -> Line | None:
        if number > len(raws) or len(raws[number - 1]) > _MAX_LINE:
            return None
        if number not in scanned:
            scanned[number] = scan_line(raws[number - 1], number, file)
        return scanned[number]

    for number, raw in enumerate(raws, start=1):
        if len(diagnostics) >= _MAX_ERRORS:
            diagnostics.append(note("VT009", f"stopped after {_MAX_ERRORS} syntax errors",
                                    Span(file, number, 1, number, 1),
                                    help="fix these first, then run `vtc check` again"))
            break
        if len(raw) > _MAX_LINE:
            diagnostics.append(error(
                "VT007",
                f"line {number} is {len(raw):,} characters long; vtc reads lines of up to {_MAX_LINE:,}",
                Span(file, number, _MAX_LINE + 1, number, _MAX_LINE + 2),
                help="one clause takes one line; is this a data file rather than a recipe?",
            ))
            continue
        line = scan(number)
        diagnostics.extend(line.diagnostics)
        if line.comment is not None:
            comments.append(line.comment)
        start = resume_at.pop(number, 0)
        if line.code[start:].strip():
            found, problems, open_at = _parse_line(line.code, number, file, start)
            if open_at is None and not problems and found and start == 0:
                # `from ./x` here and `split train` on the next line: the next line continues this clause.
                last = found[-1]
                if last.span.line == number and not line.code[last.span.end_column - 1:].strip():
                    joined = _continuation(line.code, last.span.column - 1, number, file, scan)
                    if joined is not None:
                        found[-1:] = joined.statements
                        problems = [joined.diagnostic]
                        resume_at.update(joined.consumed)
            elif open_at is not None:
                # `finetune vision, mlp` here and `on qwen2.5-vl` on the next line.
                joined = _continuation(line.code, open_at[0], number, file, scan)
                if joined is not None:
                    found.extend(joined.statements)
                    problems = [d for d in problems if d is not open_at[1]] + [joined.diagnostic]
                    resume_at.update(joined.consumed)
            statements.extend(found)
            # An unterminated string was closed past the end of the line: keep carets on the line itself.
            diagnostics.extend(_within(d, len(raw)) for d in problems)
    if not statements and not diagnostics:
        diagnostics.append(error(
            "VT001",
            "this recipe has only comments" if comments else "this recipe is empty",
            Span(file, 1, 1, 1, 1),
            help=f"a recipe needs at least a `finetune ... on ...` clause and a `from` clause, e.g. "
                 f"`{ONE_LINE_EXAMPLE}`",
        ))
    if any(d.is_error for d in diagnostics) and not partial:
        return None, diagnostics
    return ast.Recipe(file, tuple(statements), tuple(comments)), diagnostics


def _within(diagnostic: Diagnostic, width: int) -> Diagnostic:
    """The diagnostic with its span cut to a line of ``width`` characters (a caret may stand just after it)."""
    span = diagnostic.span
    if span is None or span.end_column <= width + 1:
        return diagnostic
    end = max(width + 1, span.column + 1) if span.column <= width + 1 else span.column + 1
    return dataclasses.replace(diagnostic, span=dataclasses.replace(span, end_column=end))


def _parse_line(code: str, number: int, file: str, start: int = 0) -> tuple[list, list[Diagnostic], tuple | None]:
    """Parse the code of one line from ``start``; after an error, keep what parsed and resume at the next clause
    keyword. Returns (statements, diagnostics, open_at): ``open_at`` is (where a clause starts that the line ends
    before it is complete, the VT011 that says so), else None."""
    errors = lalr.errors()
    statements: list = []
    diagnostics: list[Diagnostic] = []
    open_at = None
    while start < len(code) and len(diagnostics) < _MAX_ERRORS_PER_LINE:
        try:
            tree = lalr.parse(code, start, len(code))
        except errors as exc:
            problem = explain(exc, code, number, file)
            diagnostics.extend(problem.diagnostics)
            if problem.clause_start > start:
                # Everything before the broken clause parsed: keep those statements.
                try:
                    found, bad = build(lalr.parse(code, start, problem.clause_start), number, file)
                except errors:  # pragma: no cover - the parser had accepted this prefix
                    found, bad = [], []
                statements.extend(found)
                diagnostics.extend(bad)
            if problem.resume is None or problem.resume <= start:
                last = problem.diagnostics[-1] if problem.diagnostics else None
                if last is not None and last.code == "VT011" and last.span.column - 1 >= len(code.rstrip()):
                    open_at = (problem.clause_start, last)
                break
            start = problem.resume
            continue
        found, bad = build(tree, number, file)
        statements.extend(found)
        diagnostics.extend(bad)
        break
    return statements, diagnostics, open_at


# --- a clause broken over lines ------------------------------------------------------------------------------------

# The most lines a broken clause is looked for on (`finetune vision,` / `mlp,` / `attention` / `on qwen2.5-vl`).
_MOST_CONTINUATION_LINES = 4


@record
class _Joined:
    statements: tuple  # the clause, parsed joined, with spans on the lines where its words stand
    diagnostic: Diagnostic  # VT014
    consumed: tuple  # (line, index) for each later line it took words from: where parsing of that line goes on


def _continuation(code: str, clause_start: int, number: int, file: str, scan) -> _Joined | None:
    """If the clause at ``code[clause_start:]`` (line ``number``) goes on at the start of the next line(s) -- the
    text there before any clause keyword completes it -- the joined clause and a VT014 saying that a clause stays
    on one line. The clause may be cut short at the end of its line (`finetune vision, mlp`) or complete there and
    go on all the same (`from ./xrays` / `split train`); the continuation is the text before the next clause keyword
    of each following line, up to a blank line."""
    errors = lalr.errors()
    joined = code.rstrip()
    pieces: list[tuple[int, int, int, int]] = []  # (offset in joined, line, offset in that line, length)
    for later in range(number + 1, number + 1 + _MOST_CONTINUATION_LINES):
        line = scan(later)
        if line is None or not line.code.strip():
            return None
        rest = line.code
        begin = len(rest) - len(rest.lstrip())
        end = next_clause_start(rest, begin)
        if end is None:
            end = len(rest.rstrip())
        fragment = rest[begin:end].rstrip()
        if not fragment:
            return None
        pieces.append((len(joined) + 1, later, begin, len(fragment)))
        joined += " " + fragment
        try:
            tree = lalr.parse(joined, clause_start, len(joined))
        except errors as exc:
            token = getattr(exc, "token", None)
            if getattr(token, "type", None) == "$END" and begin + len(fragment) == len(rest.rstrip()):
                continue  # still cut short, at the end of this line too: look at the next one
            return None
        break
    else:
        return None

    def locate(tok) -> Span:
        for at, line_no, offset, length in reversed(pieces):
            if tok.start_pos >= at:
                column = tok.start_pos - at + offset + 1
                return Span(file, line_no, column, line_no, column + len(tok))
        return Span(file, number, tok.start_pos + 1, number, tok.end_pos + 1)

    statements, problems = build(tree, number, file, locate)
    if len(statements) != 1 or problems:
        return None
    keyword = BY_TERMINAL[tokens(tree)[0].type].keyword
    clause = " ".join(joined[clause_start:].split())
    last_line = pieces[-1][1]
    lines = f"lines {number}-{last_line}" if last_line > number + 1 else f"lines {number} and {last_line}"
    related = tuple((Span(file, line_no, offset + 1, line_no, offset + length + 1), "continued here")
                    for _, line_no, offset, length in pieces)
    diagnostic = error(
        "VT014", f"the `{keyword}` clause is broken over {lines}: a clause stays on one line",
        Span(file, number, clause_start + 1, number, len(code.rstrip()) + 1),
        help=f"write it on one line: `{clause if len(clause) <= 100 else clause[:97] + '...'}`",
        related=related)
    return _Joined(tuple(statements), diagnostic, tuple((line_no, offset + length) for _, line_no, offset, length in pieces))
