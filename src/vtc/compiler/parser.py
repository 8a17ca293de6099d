"""Recipe text -> ast.Recipe, with every syntax problem as a Diagnostic (codes VT001-VT099). Never raises.

The grammar is src/vtc/grammar/vt.lark (LALR, contextual lexer). A statement never spans lines, so the parser works
one line at a time:

1. the line is split into code and a trailing ``# comment`` (vtc.compiler.lines);
2. the code is parsed with the grammar's ``line`` rule (vtc.compiler.lalr) and the parse tree becomes AST
   statements (vtc.compiler.build);
3. after an error, the statements before the broken clause are kept, the error is explained in plain words
   (vtc.compiler.syntax_errors) and parsing resumes at the next clause keyword on the line, so that one run
   reports every problem.
"""

from __future__ import annotations

import dataclasses

from vtc.compiler import ast, lalr
from vtc.compiler.build import build
from vtc.compiler.clauses import CLAUSE_KEYWORDS, ONE_LINE_EXAMPLE
from vtc.compiler.decode import binary_diagnostic, decode_source
from vtc.compiler.lalr import GRAMMAR_PATH, grammar_sha256
from vtc.compiler.lines import scan_line
from vtc.compiler.syntax_errors import explain
from vtc.diagnostics import Diagnostic, Span, error, note

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
    statements: list = []
    comments: list[ast.Comment] = []
    diagnostics: list[Diagnostic] = []
    for number, raw in enumerate(text.splitlines(), start=1):
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
        line = scan_line(raw, number, file)
        diagnostics.extend(line.diagnostics)
        if line.comment is not None:
            comments.append(line.comment)
        if line.code.strip():
            found, problems = _parse_line(line.code, number, file)
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


def _parse_line(code: str, number: int, file: str) -> tuple[list, list[Diagnostic]]:
    """Parse the code of one line; after an error, keep what parsed and resume at the next clause keyword."""
    errors = lalr.errors()
    statements: list = []
    diagnostics: list[Diagnostic] = []
    start = 0
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
                break
            start = problem.resume
            continue
        found, bad = build(tree, number, file)
        statements.extend(found)
        diagnostics.extend(bad)
        break
    return statements, diagnostics
