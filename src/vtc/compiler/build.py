"""Parse tree of one line (grammar rule ``line``) -> AST statements with spans; bad escapes in strings (VT006).

One branch per grammar rule. The simple clauses (rules ``number`` and ``choice``) need none of their own: their
keyword comes from the clause table (vtc.compiler.clauses).

Backslashes inside double quotes: `\\"` is a quote and `\\\\` one backslash everywhere. In the text of `ask` and
`system` any other backslash is an error (VT006: `\\n` there was most likely meant as a line break). In a name or a
path (`from`, `evaluate on`, `finetune ... on`, `include`, `save to`, column names) any other backslash stands for
itself, so that a Windows path pasted in double quotes means what it says: `from "C:\\Users\\me\\xrays"`.
"""

from __future__ import annotations

import re
from typing import Callable

from vtc.compiler import ast
from vtc.compiler.clauses import BY_TERMINAL
from vtc.diagnostics import Diagnostic, Span, error

__all__ = ["build", "tokens"]

_ESCAPE_RE = re.compile(r"\\(.)")


# Clauses whose quoted value is text to show the model, where only `\"` and `\\` are escapes.
_TEXT_CLAUSES = ("ASK", "SYSTEM")

Locate = Callable[[object], Span]


def build(tree, number: int, file: str, locate: Locate | None = None) -> tuple[list, list[Diagnostic]]:
    """The statements of a parse tree of line ``number`` and the problems inside their values.

    ``locate(token) -> Span`` places a token when the parsed text is not one line of the file as it stands (a
    clause broken over two lines, parsed joined); by default a token is at its column on line ``number``."""
    diagnostics: list[Diagnostic] = []
    if locate is None:
        def locate(tok) -> Span:
            return Span(file, number, tok.column, number, tok.end_column)
    return [_statement(node, locate, diagnostics) for node in tree.children], diagnostics


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


def _statement(node, locate: Locate, diagnostics: list):
    toks = tokens(node)
    first, last = locate(toks[0]), locate(toks[-1])
    span = Span(first.file, first.line, first.column, last.end_line, last.end_column)
    text_only = toks[0].type in _TEXT_CLAUSES

    def value(tok) -> ast.Value:
        return _value(tok, locate(tok), diagnostics, text_only)

    kind = node.data
    if kind == "number":
        return ast.Number(BY_TERMINAL[toks[0].type].keyword, value(toks[1]), span)
    if kind == "choice":
        return ast.Choice(BY_TERMINAL[toks[0].type].keyword, value(toks[1]), span)
    if kind == "learning_rate":  # LEARNING_RATE NUMBER ("," word NUMBER)*: the commas are not tokens here
        rest = toks[2:]
        return ast.LearningRate(value(toks[1]), tuple((value(rest[i]), value(rest[i + 1]))
                                                      for i in range(0, len(rest) - 1, 2)), span)
    if kind == "finetune":
        on = next(i for i, t in enumerate(toks) if t.type == "ON")
        return ast.Finetune(tuple(value(t) for t in toks[1:on]), value(toks[on + 1]), span)
    if kind == "include":
        return ast.Include(value(toks[1]), span)
    if kind == "flags":
        return ast.Flags(toks[0].type == "WITH", tuple(value(t) for t in toks[1:]), span)
    if kind in ("from_", "evaluate_on"):
        after = {t.type: value(toks[i + 1]) for i, t in enumerate(toks[:-1])
                 if i >= 2 and t.type in ("SPLIT", "FORMAT")}
        cls = ast.From if kind == "from_" else ast.EvaluateOn
        return cls(value(toks[1]), after.get("SPLIT"), span, after.get("FORMAT"))
    if kind == "holdout":
        return ast.Holdout(value(toks[1]), span)
    if kind == "answer":
        column = value(toks[2]) if len(toks) > 2 else None
        return ast.Answer(value(toks[1]), column, span)
    if kind == "images":
        if toks[1].type == "FOLDER":
            return ast.Images(None, span, value(toks[2]))
        return ast.Images(value(toks[2]), span)
    if kind == "resize":
        if toks[1].type == "BETWEEN":  # resize between A and B pixels
            return ast.PixelBudget(value(toks[2]), value(toks[4]), span)
        if toks[1].type == "UP_TO":  # resize up to B pixels
            return ast.PixelBudget(None, value(toks[2]), span)
        return ast.Resize(value(toks[1]), span)
    if kind == "window":
        return ast.Window(value(toks[1]), value(toks[2]), span)
    if kind == "video":
        return ast.Video(tuple(_video_setting(child, locate, value) for child in node.children[1:]
                               if child is not None), span)
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
            pct = Span(amount.span.file, amount.span.line, amount.span.end_column - 1, amount.span.line,
                       amount.span.end_column)
            return ast.Warmup(amount, ast.Value("%", pct), span)
        return ast.Warmup(value(toks[1]), value(toks[2]), span)
    if kind == "metric":
        return ast.Metric(tuple(value(t) for t in toks[1:]), span)
    if kind == "export":
        return ast.Export(tuple(value(t) for t in toks[1:]), span)
    raise AssertionError(f"grammar rule without an AST node: {kind}")  # pragma: no cover


def _video_setting(node, locate: Locate, value) -> ast.VideoSetting:
    """One `video` setting (grammar rule video_setting) -> its name and its numbers as written."""
    toks = tokens(node)
    first, last = locate(toks[0]), locate(toks[-1])
    span = Span(first.file, first.line, first.column, last.end_line, last.end_column)
    kinds = [t.type for t in toks]
    if kinds[-1] == "FPS":
        name, numbers = "fps", toks[:1]
    elif kinds[0] == "AT_MOST":
        name, numbers = "frames", toks[1:2]
    elif kinds[0] == "BETWEEN":
        name, numbers = "between", [toks[1], toks[3]]
    elif kinds[0] == "AFTER":
        name, numbers = "after", toks[1:2]
    elif len(toks) == 2:
        name, numbers = "size", toks[1:2]
    elif kinds[1] == "UP_TO":
        name, numbers = "up to", toks[2:3]
    else:
        name, numbers = "pixels", [toks[2], toks[4]]
    return ast.VideoSetting(name, tuple(value(t) for t in numbers), span)


def _value(tok, span: Span, diagnostics: list, text_only: bool) -> ast.Value:
    text = str(tok)
    if tok.type == "STRING":
        body = text[1:-1]
        if not text_only:  # a name or a path: a backslash before anything but `"` or `\` stands for itself
            return ast.Value(_ESCAPE_RE.sub(lambda m: m.group(1) if m.group(1) in '"\\' else m.group(), body), span,
                             quoted=True)
        for m in _ESCAPE_RE.finditer(body):
            if m.group(1) not in '"\\':
                col = span.column + 1 + m.start()
                diagnostics.append(error(
                    "VT006",
                    f"`\\{m.group(1)}` is not allowed inside double quotes",
                    Span(span.file, span.line, col, span.line, col + 2),
                    help='in text, write `\\"` for a quote and `\\\\` for a backslash; a line break cannot be '
                         "written in a recipe (write the text on one line)",
                ))
        return ast.Value(_ESCAPE_RE.sub(lambda m: m.group(1), body), span, quoted=True)
    if tok.type == "PERCENT":
        return ast.Value(text[:-1], span)
    return ast.Value(text, span)
