"""`vtc fmt`: rewrite a recipe in the canonical layout without changing what it means.

The layout: the comment block at the top of the file stays at the top; then the includes, the `finetune ... on ...`
header and the other clauses one a line, in the order of the clause table (vtc.compiler.clauses), with normalised
spacing (`finetune vision, mlp on qwen2.5-vl`, `with responses_only, rslora`) and strings re-quoted; a trailing
newline. Comments are kept: an own-line comment stays right before the statement that follows it, a trailing
comment stays on the line of the (first) statement it trailed, comments after the last statement stay at the end.
Blank lines between groups are kept (several become one).

Order only changes where it cannot change meaning. Clauses of the same kind keep their relative order (a later
clause overrides an earlier one). If every include comes before the other clauses, includes go first and the rest
is sorted; otherwise includes stay where they are and only the clauses between two includes are sorted, since a
clause before an include may be overridden by it and one after it overrides it.

A file with syntax errors is not formatted: (None, diagnostics).
"""

from __future__ import annotations

import os
import re

from vtc.compiler import ast
from vtc.compiler.clauses import CLAUSE_KEYWORDS
from vtc.compiler.decode import decode_source
from vtc.compiler.parser import parse_source
from vtc.diagnostics import Diagnostic, Span, error

__all__ = ["format_source", "format_file", "render_statement"]

# The canonical order: the clause table's.
_RANK = {keyword: i for i, keyword in enumerate(CLAUSE_KEYWORDS)}
_RANK["without"] = _RANK["with"]  # `with x` and `without x` keep their relative order


def _rank(statement) -> int:
    return _RANK[statement.keyword]


# In a quoted name or path a backslash stands for itself unless another backslash or a quote follows it
# (vtc.compiler.build): only those, and one at the end, are doubled, so that a pasted Windows path stays as pasted.
_PATH_BACKSLASH_RE = re.compile(r'\\(?=[\\"]|$)')


def _value(value: ast.Value, text: bool = False) -> str:
    """A value as written canonically; ``text``: the value of `ask` or `system`, where every backslash is doubled."""
    if value.quoted:
        body = value.text.replace("\\", "\\\\") if text else _PATH_BACKSLASH_RE.sub(r"\\\\", value.text)
        return '"' + body.replace('"', '\\"') + '"'
    return value.text


def _values(values) -> str:
    return ", ".join(_value(v) for v in values)


def render_video_setting(setting) -> str:
    """One setting of `video` as written canonically: `2 fps`, `at most 16 frames`, `between 1.5 and 8 seconds`,
    `after 2 seconds`, `frame size 336`, `frame size up to 200k pixels`, `frame size between 50k and 150k pixels`."""
    v = [value.text for value in setting.values]
    return {"fps": lambda: f"{v[0]} fps", "frames": lambda: f"at most {v[0]} frames",
            "between": lambda: f"between {v[0]} and {v[1]} seconds", "after": lambda: f"after {v[0]} seconds",
            "size": lambda: f"frame size {v[0]}", "up to": lambda: f"frame size up to {v[0]} pixels",
            "pixels": lambda: f"frame size between {v[0]} and {v[1]} pixels"}[setting.name]()


def render_statement(st) -> str:
    """One statement in canonical form, e.g. `finetune vision, mlp on qwen2.5-vl`."""
    if isinstance(st, (ast.Number, ast.Choice)):
        return f"{st.name} {_value(st.value, text=st.name in ('ask', 'system'))}"
    if isinstance(st, ast.LearningRate):
        return "learning rate " + ", ".join([_value(st.value)] + [f"{_value(p)} {_value(r)}" for p, r in st.parts])
    if isinstance(st, ast.Finetune):
        return f"finetune {_values(st.parts)} on {_value(st.model)}"
    if isinstance(st, ast.Include):
        return f"include {_value(st.path)}"
    if isinstance(st, ast.Flags):
        return f"{'with' if st.enabled else 'without'} {_values(st.flags)}"
    if isinstance(st, (ast.From, ast.EvaluateOn)):
        split = f" split {_value(st.split)}" if st.split is not None else ""
        split += f" format {_value(st.format)}" if st.format is not None else ""
        return f"{st.keyword} {_value(st.source)}{split}"
    if isinstance(st, ast.Holdout):
        return f"holdout {st.share.text}%"
    if isinstance(st, ast.Answer):
        column = f" {_value(st.column)}" if st.column is not None else ""
        return f"answer from {st.source.text}{column}"
    if isinstance(st, ast.Images):
        if st.folder is not None:
            return f"images from folder {_value(st.folder)}"
        return f"images from column {_value(st.column)}"
    if isinstance(st, ast.Resize):
        return f"resize {st.size.text}"
    if isinstance(st, ast.PixelBudget):
        if st.low is None:
            return f"resize up to {st.high.text} pixels"
        return f"resize between {st.low.text} and {st.high.text} pixels"
    if isinstance(st, ast.Window):
        return f"window {st.center.text} {st.width.text}"
    if isinstance(st, ast.Video):
        return ", ".join(["video" + (" " + render_video_setting(st.settings[0]) if st.settings else "")]
                         + [render_video_setting(s) for s in st.settings[1:]])
    if isinstance(st, ast.Checkpoint):
        return f"checkpoint every {st.every.text} {st.unit.text}"
    if isinstance(st, ast.Lora):
        return " ".join(["lora"] + [f"{s.name.text} {s.value.text}" for s in st.settings])
    if isinstance(st, ast.TrainFor):
        return f"train for {st.amount.text} {st.unit.text}"
    if isinstance(st, ast.Warmup):
        if st.unit.text == "%":
            return f"warmup {st.amount.text}%"
        return f"warmup {st.amount.text} {st.unit.text}"
    if isinstance(st, ast.Metric):
        return f"metric {_values(st.names)}"
    if isinstance(st, ast.Export):
        return f"export {_values(st.kinds)}"
    raise TypeError(f"not a statement: {st!r}")  # pragma: no cover


def _canonical_order(statements: list) -> list:
    """Includes first and the rest in table order, or, if a clause comes before an include, sort only between
    includes. Python's sort is stable, so clauses of one kind keep their order."""
    first_other = next((i for i, s in enumerate(statements) if not isinstance(s, ast.Include)), len(statements))
    if not any(isinstance(s, ast.Include) for s in statements[first_other:]):
        return statements[:first_other] + sorted(statements[first_other:], key=_rank)
    ordered, segment = [], []
    for st in statements:
        if isinstance(st, ast.Include):
            ordered.extend(sorted(segment, key=_rank))
            ordered.append(st)
            segment = []
        else:
            segment.append(st)
    return ordered + sorted(segment, key=_rank)


def format_source(text: str, file: str) -> tuple[str | None, list[Diagnostic]]:
    """Canonical text of one recipe, or (None, diagnostics) if it has syntax errors. Never raises."""
    recipe, diagnostics = parse_source(text, file)
    if recipe is None:
        return None, diagnostics
    return _layout(recipe, text), diagnostics


def _layout(recipe: ast.Recipe, text: str) -> str:
    lines = text.splitlines()
    by_line: dict[int, list] = {}
    for st in recipe.statements:
        by_line.setdefault(st.span.line, []).append(st)
    own = {c.span.line: c for c in recipe.comments if c.own_line}
    trailing = {c.span.line: c for c in recipe.comments if not c.own_line}

    header: list[str] = []  # comment lines ("" for a blank line) before the first statement
    header_gap = False  # a blank line between the header and the first statement
    before: dict[int, tuple[bool, list[str]]] = {}  # id(statement) -> (blank line before, comment lines)
    after_comment: dict[int, str] = {}  # id(statement) -> its trailing comment
    pending: list[str] = []
    gap = False  # a blank line before the pending comments
    seen_statement = False
    for number in range(1, len(lines) + 1):
        if number in by_line:
            first = by_line[number][0]
            if not seen_statement:
                header_gap = bool(pending) and pending[-1] == ""
                header = _trim(pending)
                before[id(first)] = (False, [])
                seen_statement = True
            else:
                before[id(first)] = (gap, pending)
            if number in trailing:
                after_comment[id(first)] = "#" + trailing[number].text.rstrip()
            pending, gap = [], False
        elif number in own:
            pending.append("#" + own[number].text.rstrip())
        elif not lines[number - 1].strip():
            if pending and pending[-1] != "":
                pending.append("")
            elif not pending:
                gap = True
    footer_gap = gap or (bool(pending) and pending[0] == "")
    footer = _trim(pending)

    out: list[str] = list(header)
    if header and header_gap:
        out.append("")
    for st in _canonical_order(list(recipe.statements)):
        blank, comments = before.get(id(st), (False, []))
        if blank and out and out[-1] != "":
            out.append("")
        out.extend(comments)
        line = render_statement(st)
        if id(st) in after_comment:
            line += "  " + after_comment[id(st)]
        out.append(line)
    if footer:
        if footer_gap and out and out[-1] != "":
            out.append("")
        out.extend(footer)
    return "\n".join(out) + "\n"


def _trim(block: list[str]) -> list[str]:
    """A comment block without blank lines at its ends."""
    start, end = 0, len(block)
    while start < end and block[start] == "":
        start += 1
    while end > start and block[end - 1] == "":
        end -= 1
    return block[start:end]


def format_file(path: str) -> tuple[str | None, list[Diagnostic], dict[str, str]]:
    """Read and format one recipe file: (canonical text or None, diagnostics, {file name: original text}).

    A missing file is VT301, an unreadable one VT303; nothing raises. The original text is the file decoded as
    UTF-8 (without a byte-order mark), line endings as they were, so that a CRLF file counts as not formatted.
    """
    from vtc.compiler.pipeline import RECIPE_LIMIT
    from vtc.confine import Refused, read_confined

    # As `vtc check` reads a recipe: a regular file (a FIFO would block, a device never end), of RECIPE_LIMIT bytes
    # at most.
    try:
        if os.path.isdir(path):
            raise Refused("it is a folder")
        data = read_confined(path, None, RECIPE_LIMIT)
    except Refused as exc:
        if exc.kind == "missing":
            return None, [error("VT301", f"the file `{path}` does not exist", Span(path),
                                help="check the name and the folder you run vtc from")], {}
        if exc.kind == "too_large":
            return None, [error("VT307", f"the file `{path}` is larger than {RECIPE_LIMIT // 1024} KB: too large "
                                         "for a recipe", Span(path),
                                help="a recipe is a short text file of clauses; is this a data file?")], {}
        return None, [error("VT303", f"cannot read the file `{path}`: {exc.reason}", Span(path),
                            help="give the path of a recipe file (a .vt text file) that you may read")], {}
    text, diagnostics = decode_source(data, path)
    if text is None:
        return None, diagnostics, {path: ""}
    original = data.decode("utf-8")
    if original.startswith("\ufeff"):
        original = original[1:]
    formatted, more = format_source(text, path)
    return formatted, diagnostics + more, {path: original}
