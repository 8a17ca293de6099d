"""AST -> recipe document: a plain JSON dict of what the user wrote, plus {JSON pointer: Span}.

Includes are resolved here, through a loader passed in (no file I/O of our own):

    load(path_as_written, including_file) -> (resolved_name, text)   # raises FileNotFoundError when missing

A loader may also raise IsADirectoryError / OSError (reported as VT303), vtc.diagnostics.VtcError carrying
diagnostics (e.g. the file is not UTF-8), which are kept, or IncludeRefused (a file it will not read: outside the
repository, not a .vt file, too large; reported at the include's path). The pipeline's loader (pipeline.FileLoader)
applies the confinement rule of vtc.confine.

Includes are a graph, not a tree of copies: each file is parsed and lowered once, and each `include` of it applies
that result (see _State), so a file included twice by each of 31 files costs 31 lowerings, not 2**31.

Rules:
* Statements apply in order; ``include "x.vt"`` applies the included file at its position, so clauses after it
  override it and clauses before it are overridden by it ("later clauses override earlier ones, across files").
* Within ONE file the same clause twice is an error (VT210), with the first one shown; so are `train for N steps`
  with `train for N epochs` (VT211) and `holdout` with `evaluate on` (VT212).
* Across files, `holdout` and `evaluate on` replace each other (they are two ways of saying what to evaluate on).
* `video` is one clause: a later file's `video` replaces the whole of an earlier one's; a setting given twice in
  one `video` clause is VT120, a window that ends before it starts VT121.

The document's keys (docs/plan.md and schema.json describe them): model, parts, method, precision, flags,
train_data, eval_data, holdout, instruction, system, answer, image_column, resize, bad_rows, window, tiff_pages,
video, lora, train_for, batch, micro_batch, accumulate, learning_rate, warmup, schedule, optimizer, weight_decay,
max_length, seed, metrics, save_to, exports, gpus, checkpoint_every. A simple clause (ast.Number, ast.Choice) sets
the key that the clause table (vtc.compiler.clauses) names. Numbers are converted where the text is a number;
anything else stays text so that the schema can say what was expected. ``spans`` maps every pointer that was set (and its parents) to
the span of the value or clause. A number of more than MOST_DIGITS digits is reported (VT115) before any
conversion, and its clause left out.
"""

from __future__ import annotations

import copy
import math
import os
import re
from typing import Callable

from vtc.compiler import ast
from vtc.compiler.clauses import BY_KEYWORD
from vtc.diagnostics import Diagnostic, Span, VtcError, error, warning

Loader = Callable[[str, str], tuple[str, str]]

_INT_RE = re.compile(r"^[+-]?\d+$")
_SIZE_RE = re.compile(r"^(\d+)x(\d+)$")
_PIXEL_PRODUCT_RE = re.compile(r"^\d+(x\d+)*$")
_PIXEL_SCALED_RE = re.compile(r"^(\d+)(?:\.(\d+))?([km])$")
_MAX_INCLUDE_DEPTH = 32


# The help of VT212, whichever of the two clauses comes second.
_ONE_EVALUATION = ("keep one: `holdout 10%` sets aside part of the training data, `evaluate on` names other "
                   "data")


def escape(token: str) -> str:
    """RFC 6901 escaping of one reference token."""
    return token.replace("~", "~0").replace("/", "~1")


# The most digits a number in a recipe may have. The largest value any clause takes is `seed`'s 4294967295 (10
# digits); a learning rate written out in full (0.000000000002) has 13. Python refuses to convert more than 4,300
# digits to an int (a traceback), and a float of thousands of digits means nothing: longer numbers are reported
# (VT115) before any conversion.
MOST_DIGITS = 40
_DIGIT_RE = re.compile(r"[0-9]")


def digits(text: str) -> int:
    """How many digits a number as written has (both sides of `640x480`, the exponent's included)."""
    return len(_DIGIT_RE.findall(text))


def number(text: str):
    """The int or float a text means, or the text itself when it is not a number (or has more than MOST_DIGITS
    digits: never converted; lowering reports those, VT115)."""
    if digits(text) > MOST_DIGITS:
        return text
    if _INT_RE.match(text):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return text
    if value != value or value in (float("inf"), float("-inf")):  # nan / inf are not numbers a recipe means
        return text
    return value


class _State:
    """The document one file builds (its includes applied), and what it changed, so that an including file can
    apply it again without lowering the file again.

    Each file is lowered once, into a state of its own that starts empty; an `include` then applies that state to
    the including file's (``merge``): the top-level keys the file removed are removed, then the values it set are
    set, its spans and setters taken over. Since a removal takes away every value set before it, that replays the
    file's statements exactly, in the time of its result rather than of its include tree: a graph where each of 31
    files includes the next twice is 31 files lowered and 62 merges, not 2**31 copies."""

    def __init__(self, shared: "_State | None" = None) -> None:
        self.doc: dict = {}
        self.spans: dict[str, Span] = {}
        self.clause = None  # the statement being lowered
        # What set each setting last: identity (see _identity) -> (the statement, the value, or None when it was
        # removed). An include compares it before and after, to warn of the clauses it overrides.
        self.setters: dict[str, tuple[object, object]] = {}
        self.drops: dict[str, object] = {}  # top-level key this file removed -> the statement that first did
        self.values: dict[str, None] = {}  # pointers this file set a value at, in order
        self.assigned: dict[str, None] = {}  # pointers whose span this file set (a parent's span is only a default)
        # One compile's shared record: diagnostics, texts and names of the files read, each file's finished state.
        self.diagnostics: list[Diagnostic] = shared.diagnostics if shared else []
        self.sources: dict[str, str] = shared.sources if shared else {}
        self.files: list[str] = shared.files if shared else []
        self.lowered: dict[str, _State] = shared.lowered if shared else {}

    def set(self, pointer: str, value, span: Span) -> None:
        """Set a value at a pointer (creating parent objects) and remember its span."""
        if self.clause is not None:
            self.setters[_identity(pointer)] = (self.clause, value)
        self._put(pointer, value, span)
        self.values.pop(pointer, None)
        self.values[pointer] = None
        self.span(pointer, span)

    def _put(self, pointer: str, value, span: Span | None) -> None:
        """Set the value, creating parent objects; their spans default to ``span`` (None: leave spans alone)."""
        parts = pointer.strip("/").split("/")
        node = self.doc
        for i, token in enumerate(parts[:-1]):
            key = token.replace("~1", "/").replace("~0", "~")
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
            if span is not None:
                self.spans.setdefault("/" + "/".join(parts[: i + 1]), span)
        node[parts[-1].replace("~1", "/").replace("~0", "~")] = value

    def span(self, pointer: str, span: Span) -> None:
        self.spans[pointer] = span
        self.assigned[pointer] = None

    def drop(self, key: str) -> None:
        """Remove a top-level key and every span under it."""
        if key in self.doc and self.clause is not None:
            for identity in [i for i in self.setters if i == key or i.startswith(key + "/")]:
                self.setters[identity] = (self.clause, None)
        # The first removal is the one that removes what an including file had set (a later one finds nothing).
        self.drops.setdefault(key, self.clause)
        self.doc.pop(key, None)
        prefix = "/" + escape(key)
        for pointer in [p for p in self.spans if p == prefix or p.startswith(prefix + "/")]:
            del self.spans[pointer]

    def merge(self, child: "_State") -> None:
        """Apply an included file's finished state at this point of this file (see the class docstring)."""
        clause = self.clause
        for key, dropped_by in child.drops.items():
            self.clause = dropped_by
            self.drop(key)
        self.clause = clause
        # Spans first: a parent object's span is the first one set anywhere (setdefault), as if lowered in place.
        for pointer, span in child.spans.items():
            if pointer in child.assigned:
                self.span(pointer, span)
            elif pointer:
                self.spans.setdefault(pointer, span)
        for pointer in child.values:
            found, value = _lookup(child.doc, pointer)
            if found:
                self._put(pointer, copy.deepcopy(value), None)
                self.values.pop(pointer, None)
                self.values[pointer] = None
        self.setters.update(child.setters)


def _lookup(doc: dict, pointer: str) -> tuple[bool, object]:
    node = doc
    for token in pointer.strip("/").split("/"):
        key = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def lower(recipe: ast.Recipe, load: Loader | None = None) -> tuple[dict, dict[str, Span], list[Diagnostic]]:
    """Turn a parsed recipe (and the files it includes) into the recipe document and its span map.

    Never raises on user input. Included files are parsed with parser.parse_source; their diagnostics are kept.
    ``spans[""]`` is a span at the start of the main file (for "missing clause" errors).
    """
    doc, spans, diagnostics, _, _ = lower_with_sources(recipe, load)
    return doc, spans, diagnostics


def lower_with_sources(recipe: ast.Recipe, load: Loader | None = None):
    """Like lower, and also the texts of the included files and the list of files used (main first)."""
    state = _State()
    state.spans[""] = Span(recipe.file, 0, 0)
    state.files.append(recipe.file)
    _lower_file(recipe, load, state, chain=(recipe.file,))
    return state.doc, state.spans, state.diagnostics, state.sources, state.files


def _lower_file(recipe: ast.Recipe, load: Loader | None, state: _State, chain: tuple[str, ...]) -> None:
    seen: dict[str, Span] = {}  # clause identity -> span of its first occurrence in this file

    def claim(identity: str, span: Span, what: str, code: str = "VT210", help: str | None = None) -> bool:
        first = seen.get(identity)
        if first is None:
            seen[identity] = span
            return True
        state.diagnostics.append(error(
            code, what, span,
            help or "keep one of them; to change a value from an included file, write the clause once here",
            related=((first, "first written here"),),
        ))
        return False

    for st in recipe.statements:
        state.clause = st
        huge = _huge_numbers(st)
        if huge:
            state.diagnostics.extend(huge)  # the clause is left out, as if unwritten: the rest is still checked
            continue
        if isinstance(st, ast.Include):
            before = dict(state.setters)
            _include(st, load, state, chain)
            _overridden(st, before, state)
            continue
        if isinstance(st, (ast.Number, ast.Choice)):
            # A simple clause: the clause table names its document key, which is also its identity for conflicts.
            key = BY_KEYWORD[st.name].key
            if claim(key, st.span, f"`{st.name}` is written twice in this file"):
                value = number(st.value.text) if isinstance(st, ast.Number) else st.value.text
                state.set(f"/{key}", value, st.value.span)
        elif isinstance(st, ast.LearningRate):
            if claim("learning_rate", st.span, "`learning rate` is written twice in this file"):
                state.drop("part_learning_rates")
                state.set("/learning_rate", number(st.value.text), st.value.span)
                if st.parts:
                    state.set("/part_learning_rates", [{"part": p.text, "learning_rate": number(r.text)}
                                                       for p, r in st.parts], st.span)
                    for i, (p, r) in enumerate(st.parts):
                        state.span(f"/part_learning_rates/{i}", Span(p.span.file, p.span.line, p.span.column,
                                                                     r.span.end_line, r.span.end_column))
                        state.span(f"/part_learning_rates/{i}/part", p.span)
                        state.span(f"/part_learning_rates/{i}/learning_rate", r.span)
        elif isinstance(st, ast.Finetune):
            if not claim("finetune", st.span, "`finetune ... on ...` is written twice in this file"):
                continue
            state.drop("parts")
            state.set("/model", st.model.text, st.model.span)
            state.set("/parts", [p.text for p in st.parts], st.span)
            for i, p in enumerate(st.parts):
                state.span(f"/parts/{i}", p.span)
        elif isinstance(st, ast.Flags):
            for flag in st.flags:
                word = "with" if st.enabled else "without"
                if claim(f"flag:{flag.text}", flag.span,
                         f"the option `{flag.text}` is set twice in this file ({word} `{flag.text}` here)"):
                    state.set(f"/flags/{escape(flag.text)}", st.enabled, flag.span)
        elif isinstance(st, (ast.From, ast.EvaluateOn)):
            key = "train_data" if isinstance(st, ast.From) else "eval_data"
            name = "from" if key == "train_data" else "evaluate on"
            if not claim(key, st.span, f"`{name}` is written twice in this file"):
                continue
            if key == "eval_data" and "holdout" in seen:
                claim("holdout", st.span, "`evaluate on` and `holdout` both say what to evaluate on", "VT212",
                      _ONE_EVALUATION)
                continue
            state.drop(key)
            if key == "eval_data":
                state.drop("holdout")
            state.set(f"/{key}/source", st.source.text, st.source.span)
            state.span(f"/{key}", st.span)
            if st.split is not None:
                state.set(f"/{key}/split", st.split.text, st.split.span)
            if st.format is not None:
                state.set(f"/{key}/format", st.format.text, st.format.span)
        elif isinstance(st, ast.Holdout):
            if "eval_data" in seen:
                claim("eval_data", st.span, "`holdout` and `evaluate on` both say what to evaluate on", "VT212",
                      _ONE_EVALUATION)
                continue
            if claim("holdout", st.span, "`holdout` is written twice in this file"):
                state.drop("eval_data")
                state.set("/holdout", number(st.share.text.rstrip("%")), st.share.span)
        elif isinstance(st, ast.Answer):
            if claim("answer", st.span, "`answer from` is written twice in this file"):
                state.drop("answer")
                state.set("/answer/from", st.source.text, st.source.span)
                state.span("/answer", st.span)
                if st.column is not None:
                    state.set("/answer/column", st.column.text, st.column.span)
        elif isinstance(st, ast.Images):
            if st.folder is not None:
                if claim("images_folder", st.span, "`images from folder` is written twice in this file"):
                    state.set("/images_folder", st.folder.text, st.folder.span)
            elif claim("images", st.span, "`images from column` is written twice in this file"):
                state.set("/image_column", st.column.text, st.column.span)
        elif isinstance(st, ast.Resize):
            if claim("resize", st.span, "`resize` is written twice in this file"):
                state.set("/resize", _resize_value(st.size.text), st.size.span)
        elif isinstance(st, ast.PixelBudget):
            if claim("resize", st.span, "`resize` is written twice in this file"):
                _pixel_budget(st, state)
        elif isinstance(st, ast.Window):
            if claim("window", st.span, "`window` is written twice in this file"):
                state.drop("window")
                state.set("/window/center", number(st.center.text), st.center.span)
                state.set("/window/width", number(st.width.text), st.width.span)
                state.span("/window", st.span)
        elif isinstance(st, ast.Video):
            if claim("video", st.span, "`video` is written twice in this file"):
                _video(st, state)
        elif isinstance(st, ast.Checkpoint):
            if claim("checkpoint_every", st.span, "`checkpoint every` is written twice in this file"):
                state.set("/checkpoint_every", number(st.every.text), st.every.span)
        elif isinstance(st, ast.Lora):
            for setting in st.settings:
                name = setting.name.text
                if claim(f"lora:{name}", setting.name.span, f"`lora {name}` is set twice in this file"):
                    state.set(f"/lora/{escape(name)}", number(setting.value.text), setting.value.span)
        elif isinstance(st, ast.TrainFor):
            unit = _unit(st.unit.text, {"epoch": "epochs", "epochs": "epochs", "step": "steps", "steps": "steps"})
            first = seen.get("train_for")
            if first is not None and seen.get("train_for_unit") != unit:
                claim("train_for", st.span, "`train for` gives both a number of steps and a number of epochs",
                      "VT211", "keep one: `train for 60 steps` or `train for 1 epoch`")
                continue
            if claim("train_for", st.span, "`train for` is written twice in this file"):
                seen["train_for_unit"] = unit  # type: ignore[assignment]
                state.drop("train_for")
                state.set("/train_for/amount", number(st.amount.text), st.amount.span)
                state.set("/train_for/unit", unit, st.unit.span)
                state.span("/train_for", st.span)
        elif isinstance(st, ast.Warmup):
            if claim("warmup", st.span, "`warmup` is written twice in this file"):
                unit = _unit(st.unit.text, {"%": "percent", "step": "steps", "steps": "steps"})
                state.drop("warmup")
                state.set("/warmup/amount", number(st.amount.text.rstrip("%")), st.amount.span)
                state.set("/warmup/unit", unit, st.unit.span)
                state.span("/warmup", st.span)
        elif isinstance(st, (ast.Metric, ast.Export)):
            key, word = ("metrics", "metric") if isinstance(st, ast.Metric) else ("exports", "export")
            items = st.names if isinstance(st, ast.Metric) else st.kinds
            if claim(key, st.span, f"`{word}` is written twice in this file",
                     help=f"list them in one clause: `{word} a, b`"):
                state.drop(key)
                state.set(f"/{key}", [v.text for v in items], st.span)
                for i, v in enumerate(items):
                    state.span(f"/{key}/{i}", v.span)


def _numbers(st) -> list[tuple[ast.Value, str, str]]:
    """The numbers of a statement: (value, the clause as users name it, the document pointer it sets)."""
    if isinstance(st, ast.Number):
        return [(st.value, st.name, f"/{BY_KEYWORD[st.name].key}")]
    if isinstance(st, ast.LearningRate):
        return [(st.value, "learning rate", "/learning_rate")] + [
            (r, f"learning rate, {p.text}", f"/part_learning_rates/{i}/learning_rate")
            for i, (p, r) in enumerate(st.parts)]
    if isinstance(st, ast.Holdout):
        return [(st.share, "holdout", "/holdout")]
    if isinstance(st, ast.Window):
        return [(st.center, "window", "/window/center"), (st.width, "window", "/window/width")]
    if isinstance(st, ast.Checkpoint):
        return [(st.every, "checkpoint every", "/checkpoint_every")]
    if isinstance(st, ast.Lora):
        return [(s.value, f"lora {s.name.text}", f"/lora/{escape(s.name.text)}") for s in st.settings]
    if isinstance(st, (ast.TrainFor, ast.Warmup)):
        name = "train for" if isinstance(st, ast.TrainFor) else "warmup"
        return [(st.amount, name, f"/{'train_for' if name == 'train for' else 'warmup'}/amount")]
    if isinstance(st, ast.Resize):
        pointer = "/resize/width" if _SIZE_RE.match(st.size.text) else "/resize"
        return [(st.size, "resize", pointer)]
    if isinstance(st, ast.Video):
        pointers = {"fps": [("video fps", "/video/fps")], "frames": [("video at most N frames", "/video/max_frames")],
                    "size": [("video frame size", "/video/resize")],
                    "between": [("video between", "/video/window/start"), ("video between", "/video/window/end")],
                    "after": [("video after", "/video/window/start")]}
        return [(value, label, pointer) for s in st.settings
                for value, (label, pointer) in zip(s.values, pointers.get(s.name, []))]
    return []


def _huge_numbers(st) -> list[Diagnostic]:
    """VT115 for each number of a statement that has more than MOST_DIGITS digits, naming the clause and the range
    it takes (from schema.json). Checked on the text, before anything converts it."""
    found = []
    for value, clause, pointer in _numbers(st):
        count = digits(value.text)
        if count <= MOST_DIGITS:
            continue
        from vtc.compiler.validate import value_range

        low, high = value_range(pointer)
        takes = f"`{clause}` takes values from {low} to {high}" if low is not None and high is not None else \
            f"write `{clause}` with a number of at most {MOST_DIGITS} digits"
        shown = value.text if len(value.text) <= 20 else f"{value.text[:8]}...{value.text[-8:]}"
        found.append(error(
            "VT115", f"the number `{shown}` after `{clause}` has {count:,} digits; vtc reads numbers of at most "
                     f"{MOST_DIGITS} digits", value.span, takes))
    return found


def _identity(pointer: str) -> str:
    """The setting a pointer belongs to, for override warnings: a clause's key (`/train_data/split` ->
    `train_data`), or one option (`/flags/rslora`, `/lora/rank`)."""
    parts = pointer.strip("/").split("/")
    return "/".join(parts[:2]) if parts[0] in ("flags", "lora") else parts[0]


def _unit(text: str, table: dict[str, str]) -> str:
    return table.get(text.lower(), text)


def pixel_amount(text: str) -> int | None:
    """A number of pixels as a pixel budget takes it: 200000, 200k, 1.2m (k = thousand, m = million, either case)
    or a product of whole numbers (256x28x28, 448x448); None when the text is none of these or not whole, or has
    more than MOST_DIGITS digits (never converted: Python refuses ints of more than 4,300 digits)."""
    t = text.lower()
    if digits(t) > MOST_DIGITS:
        return None
    if _PIXEL_PRODUCT_RE.match(t):
        total = 1
        for factor in t.split("x"):
            total *= int(factor)
        return total
    match = _PIXEL_SCALED_RE.match(t)
    if match:
        whole, fraction, unit = match.group(1), match.group(2) or "", match.group(3)
        scale = 1000 if unit == "k" else 1_000_000
        numerator = int(whole + fraction) * scale  # exact: no float rounding in 1.2m
        denominator = 10 ** len(fraction)
        return numerator // denominator if numerator % denominator == 0 else None
    return None


def amount_text(pixels: int) -> str:
    """The shortest form a pixel budget takes for a number: 1m, 200k, 1.25m, 3136."""
    for unit, scale in (("m", 1_000_000), ("k", 1000)):
        if pixels >= scale:
            whole, rest = divmod(pixels, scale)
            if rest == 0:
                return f"{whole}{unit}"
            if unit == "m" and rest % 10_000 == 0:
                return f"{whole}.{rest // 10_000:02d}".rstrip("0") + unit
            if unit == "m" and rest % 100_000 == 0:
                return f"{whole}.{rest // 100_000}{unit}"
    return str(pixels)


def _shown_amount(text: str) -> str:
    """An amount as a message shows it: whole, or its ends when it is long (a pasted run of digits)."""
    return text if len(text) <= 20 else f"{text[:8]}...{text[-8:]}"


def _pixel_amounts(state, named: list) -> dict | None:
    """{name: pixels} of (name, value token) pairs (`resize between A and B pixels`, `frame size up to B pixels`),
    or None after a VT208 for each malformed amount."""
    amounts, bad = {}, False
    for name, value in named:
        pixels = pixel_amount(value.text)
        if pixels is None:
            bad = True
            close = _amount_suggestion(value.text)
            forms = "a whole number (200000), with k or m (200k, 1.2m), or a product (256x28x28)"
            state.diagnostics.append(error(
                "VT208", f"`{_shown_amount(value.text)}` is not a number of pixels", value.span,
                f"did you mean `{close}`? A pixel amount is {forms}" if close else f"write {forms}", suggestion=close))
        amounts[name] = pixels
    return None if bad else amounts


def _amount_suggestion(text: str) -> str | None:
    """What a malformed amount most likely meant: `1mb`/`1MP`/`1million` -> 1m, `256*28*28` -> 256x28x28,
    `1e6` -> 1m; None when nothing close."""
    t = text.lower().replace("*", "x")
    if pixel_amount(t) is not None:
        return t
    match = re.match(r"^(\d+(?:\.\d+)?)([km])", t)
    if match and pixel_amount(match.group(1) + match.group(2)) is not None:
        return match.group(1) + match.group(2)
    try:
        value = float(t)
    except ValueError:
        return None
    if math.isfinite(value) and value >= 1 and value == int(value) and digits(t) <= MOST_DIGITS:
        return amount_text(int(value))
    return None


def _pixel_budget(st: ast.PixelBudget, state: "_State") -> None:
    """`resize between A and B pixels` / `resize up to B pixels` -> /resize {"min_pixels"?, "max_pixels"}; an amount
    in none of the accepted forms is VT208, and the clause is left out (as if unwritten)."""
    amounts = _pixel_amounts(state, [(name, value) for name, value in (("min_pixels", st.low),
                                                                       ("max_pixels", st.high)) if value is not None])
    if amounts is None:
        return
    state.drop("resize")
    state.set("/resize", amounts, st.span)
    for name, value in (("min_pixels", st.low), ("max_pixels", st.high)):
        if value is not None:
            state.span(f"/resize/{name}", value.span)


# A `video` setting -> the document key it sets (two settings setting one key are one setting given twice).
_VIDEO_KEYS = {"fps": "fps", "frames": "max_frames", "between": "window", "after": "window", "size": "resize",
               "up to": "resize", "pixels": "resize"}
_VIDEO_WORDS = {"fps": "the frames per second (`2 fps`)", "max_frames": "the cap on frames (`at most 16 frames`)",
                "window": "the window (`between 1.5 and 8 seconds`)", "resize": "the frame size (`frame size 336`)"}


def _video(st: ast.Video, state: "_State") -> None:
    """`video ...` -> /video {fps?, max_frames?, window?: {start, end?}, resize?: N | {min_pixels?, max_pixels}}.
    A setting given twice is VT120 (the first kept); a window whose start is not before its end VT121; a pixel
    amount in none of the accepted forms VT208 (that setting left out)."""
    state.drop("video")
    state.set("/video", {}, st.span)
    first: dict[str, ast.VideoSetting] = {}
    for setting in st.settings:
        key = _VIDEO_KEYS[setting.name]
        if key in first:
            from vtc.compiler.fmt import render_video_setting

            state.diagnostics.append(error(
                "VT120", f"`video` gives {_VIDEO_WORDS[key]} twice", setting.span,
                f"keep one of them: `{render_video_setting(first[key])}` or `{render_video_setting(setting)}`",
                related=((first[key].span, "first given here"),)))
            continue
        first[key] = setting
        values = setting.values
        if key in ("fps", "max_frames"):
            state.set(f"/video/{key}", number(values[0].text), values[0].span)
        elif key == "window":
            start = number(values[0].text)
            end = number(values[1].text) if len(values) > 1 else None
            if isinstance(start, (int, float)) and isinstance(end, (int, float)) and start >= end:
                state.diagnostics.append(error(
                    "VT121", f"the window `between {values[0].text} and {values[1].text} seconds` ends before it "
                             "starts", setting.span,
                    f"write the start first: `between {values[1].text} and {values[0].text} seconds`"
                    if end < start else f"a window is at least a frame long: write an end after {values[0].text} "
                                        f"(`between {values[0].text} and {start + 1:g} seconds`), or `after "
                                        f"{values[0].text} seconds` for the rest of the clip"))
                continue
            state.set("/video/window/start", start, values[0].span)
            if end is not None:
                state.set("/video/window/end", end, values[1].span)
            state.span("/video/window", setting.span)
        elif setting.name == "size":
            state.set("/video/resize", number(values[0].text), values[0].span)
        else:
            names = ("max_pixels",) if setting.name == "up to" else ("min_pixels", "max_pixels")
            amounts = _pixel_amounts(state, list(zip(names, values)))
            if amounts is None:
                continue
            state.set("/video/resize", amounts, setting.span)
            for name, value in zip(names, values):
                state.span(f"/video/resize/{name}", value.span)


def _resize_value(text: str):
    if text.lower() == "none":
        return "none"
    match = _SIZE_RE.match(text)
    if match:
        return {"width": int(match.group(1)), "height": int(match.group(2))}
    return number(text)


def _overridden(include: ast.Include, before: dict, state: _State) -> None:
    """VT305: a clause written before ``include`` in the same file, that the included file overrides with another
    value (clauses apply in order, so the included file's wins): one warning per clause, naming both lines."""
    from vtc.compiler.fmt import render_statement

    warned: set = set()
    for identity, (earlier, value) in before.items():
        now = state.setters.get(identity)
        if now is None or now[0] is earlier or earlier.span.file != include.span.file or now[1] == value:
            continue
        later = now[0]
        if (earlier.span, later.span) in warned:
            continue
        warned.add((earlier.span, later.span))
        line = earlier.span.line
        state.diagnostics.append(warning(
            "VT305",
            f"`{_short(render_statement(earlier))}` on line {line} is overridden by "
            f"`{_short(render_statement(later))}` in {os.path.basename(later.span.file)} (line {later.span.line}), "
            f"which the `include` on line {include.span.line} brings in after it",
            earlier.span,
            help=f"clauses apply in order, so the included file's value wins; to keep line {line}'s value, move "
                 f"the `include` above line {line} (includes first, then what this recipe changes)",
            related=((later.span, "the value that applies"), (include.span, "included here")),
        ))


def _short(text: str) -> str:
    return text if len(text) <= 50 else text[:47] + "..."


class IncludeRefused(Exception):
    """Raised by a loader for an include it will not read (outside the allowed root, not a .vt file, too large, too
    many files): reported with ``code``, ``message`` and ``help`` at the include's path. The message never quotes
    the refused file's content (the loader has not read it)."""

    def __init__(self, code: str, message: str, help: str):
        super().__init__(message)
        self.code, self.message, self.help = code, message, help


def _include(st: ast.Include, load: Loader | None, state: _State, chain: tuple[str, ...]) -> None:
    from vtc.compiler.parser import parse_source  # the parser is only needed when a recipe includes another

    written = st.path.text
    including = st.span.file
    if load is None:
        state.diagnostics.append(error("VT301", f"cannot read the included file `{written}`", st.path.span,
                                       "includes are not available here (no file loader was given)"))
        return
    try:
        name, text = load(written, including)
    except IncludeRefused as exc:
        state.diagnostics.append(error(exc.code, exc.message, st.path.span, exc.help))
        return
    except VtcError as exc:
        state.diagnostics.extend(exc.diagnostics)
        return
    except FileNotFoundError:
        state.diagnostics.append(error(
            "VT301", f"the included file `{written}` does not exist", st.path.span,
            f"paths in `include` are relative to the folder of {including}; check the spelling"))
        return
    except (IsADirectoryError, PermissionError, OSError, UnicodeDecodeError, ValueError) as exc:
        reason = "it is a folder" if isinstance(exc, IsADirectoryError) else type(exc).__name__
        state.diagnostics.append(error(
            "VT303", f"cannot read the included file `{written}` ({reason})", st.path.span,
            "include a .vt recipe file"))
        return
    if name in chain:
        shown = " -> ".join(list(chain) + [name])
        state.diagnostics.append(error(
            "VT302", f"include cycle: {shown}", st.path.span,
            "a recipe cannot include itself, directly or through other files; remove one of these includes"))
        return
    if len(chain) >= _MAX_INCLUDE_DEPTH:
        state.diagnostics.append(error(
            "VT304", f"includes nest deeper than {_MAX_INCLUDE_DEPTH} files", st.path.span,
            "flatten the chain of includes"))
        return
    done = state.lowered.get(name)
    if done is None:
        # The first include of this file: parse and lower it once; later includes of it apply the same result.
        state.sources[name] = text
        if name not in state.files:
            state.files.append(name)
        done = _State(shared=state)
        recipe, diagnostics = parse_source(text, name)
        state.diagnostics.extend(diagnostics)
        if recipe is not None:
            _lower_file(recipe, load, done, chain + (name,))
        state.lowered[name] = done
    state.merge(done)
