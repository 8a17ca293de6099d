"""Parse tree of one line (grammar rule ``line``) -> AST statements with spans; bad escapes in strings (VT006).

One branch per grammar rule. The simple clauses (rules ``number`` and ``choice``) need none of their own: their
keyword comes from the clause table (vtc.compiler.clauses).
"""

from __future__ import annotations

import re

from vtc.compiler import ast
from vtc.compiler.clauses import BY_TERMINAL
from vtc.diagnostics import Diagnostic, Span, error

__all__ = ["build", "tokens"]

_ESCAPE_RE = re.compile(r"\\(.)")


def build(tree, number: int, file: str) -> tuple[list, list[Diagnostic]]:
    """The statements of a parse tree of line ``number`` and the problems inside their values."""
    diagnostics: list[Diagnostic] = []
    return [_statement(node, number, file, diagnostics) for node in tree.children], diagnostics


def tokens(node) -> list:
    """Tokens of a subtree, in order; None (an absent optional part) is skipped."""
    if node is None:
        return []
    if hasattr(node, "children"):
        found = []
        for child in node.children:
            found.extend(tokens(child))
        return found
    return [node]


def _statement(node, number: int, file: str, diagnostics: list):
    toks = tokens(node)
    span = Span(file, number, toks[0].column, number, toks[-1].end_column)

    def value(tok) -> ast.Value:
        return _value(tok, number, file, diagnostics)

    kind = node.data
    if kind == "number":
        return ast.Number(BY_TERMINAL[toks[0].type].keyword, value(toks[1]), span)
    if kind == "choice":
        return ast.Choice(BY_TERMINAL[toks[0].type].keyword, value(toks[1]), span)
    if kind == "finetune":
        on = next(i for i, t in enumerate(toks) if t.type == "ON")
        return ast.Finetune(tuple(value(t) for t in toks[1:on]), value(toks[on + 1]), span)
    if kind == "include":
        return ast.Include(value(toks[1]), span)
    if kind == "flags":
        return ast.Flags(toks[0].type == "WITH", tuple(value(t) for t in toks[1:]), span)
    if kind in ("from_", "evaluate_on"):
        split = value(toks[3]) if len(toks) > 3 else None
        cls = ast.From if kind == "from_" else ast.EvaluateOn
        return cls(value(toks[1]), split, span)
    if kind == "holdout":
        return ast.Holdout(value(toks[1]), span)
    if kind == "answer":
        column = value(toks[2]) if len(toks) > 2 else None
        return ast.Answer(value(toks[1]), column, span)
    if kind == "images":
        return ast.Images(value(toks[2]), span)
    if kind == "resize":
        return ast.Resize(value(toks[1]), span)
    if kind == "window":
        return ast.Window(value(toks[1]), value(toks[2]), span)
    if kind == "checkpoint":
        return ast.Checkpoint(value(toks[1]), value(toks[2]), span)
    if kind == "lora":
        settings = tuple(ast.Setting(value(toks[i]), value(toks[i + 1])) for i in range(1, len(toks), 2))
        return ast.Lora(settings, span)
    if kind == "train_for":
        return ast.TrainFor(value(toks[1]), value(toks[2]), span)
    if kind == "warmup":
        if toks[1].type == "PERCENT":
            amount = value(toks[1])
            pct = Span(file, number, amount.span.end_column - 1, number, amount.span.end_column)
            return ast.Warmup(amount, ast.Value("%", pct), span)
        return ast.Warmup(value(toks[1]), value(toks[2]), span)
    if kind == "metric":
        return ast.Metric(tuple(value(t) for t in toks[1:]), span)
    if kind == "export":
        return ast.Export(tuple(value(t) for t in toks[1:]), span)
    raise AssertionError(f"grammar rule without an AST node: {kind}")  # pragma: no cover


def _value(tok, number: int, file: str, diagnostics: list) -> ast.Value:
    span = Span(file, number, tok.column, number, tok.end_column)
    text = str(tok)
    if tok.type == "STRING":
        body = text[1:-1]
        for m in _ESCAPE_RE.finditer(body):
            if m.group(1) not in '"\\':
                col = span.column + 1 + m.start()
                diagnostics.append(error(
                    "VT006",
                    f"`\\{m.group(1)}` is not allowed inside double quotes",
                    Span(file, number, col, number, col + 2),
                    help='inside double quotes write `\\"` for a quote and `\\\\` for a backslash; '
                         "in paths, use forward slashes (`C:/data`)",
                ))
        return ast.Value(_ESCAPE_RE.sub(lambda m: m.group(1), body), span, quoted=True)
    if tok.type == "PERCENT":
        return ast.Value(text[:-1], span)
    return ast.Value(text, span)
