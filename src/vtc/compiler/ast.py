"""The recipe's abstract syntax tree: typed, frozen nodes, each carrying its source span.

The parser (vtc.compiler.parser) builds these from Lark's parse tree; lowering (vtc.compiler.lower) turns them into
the JSON document that the schema validates. Every value a user wrote is a ``Value``: its text exactly as written
(quotes removed from strings) and its span, so that any later stage can point at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from vtc.diagnostics import Span


@dataclass(frozen=True)
class Value:
    """A word, number, size, percentage, path or string as written (strings unquoted and unescaped)."""

    text: str
    span: Span
    quoted: bool = False


@dataclass(frozen=True)
class Comment:
    text: str  # without the leading '#'
    span: Span
    own_line: bool  # True: the comment stands alone on its line; False: it trails a statement


# --- statements -------------------------------------------------------------------------------------------------
# Each statement is one clause of the language. ``keyword`` is the clause's name as docs/language.md lists it.


@dataclass(frozen=True)
class Finetune:
    """finetune <parts> on <model>"""

    parts: tuple[Value, ...]
    model: Value
    span: Span
    keyword = "finetune"


@dataclass(frozen=True)
class Include:
    """include "base.vt" """

    path: Value
    span: Span
    keyword = "include"


@dataclass(frozen=True)
class Using:
    """using qlora | lora | full"""

    method: Value
    span: Span
    keyword = "using"


@dataclass(frozen=True)
class Precision:
    """precision auto | bf16 | fp16"""

    dtype: Value
    span: Span
    keyword = "precision"


@dataclass(frozen=True)
class Flags:
    """with responses_only, rslora  /  without responses_only"""

    enabled: bool
    flags: tuple[Value, ...]
    span: Span
    keyword = "with"


@dataclass(frozen=True)
class From:
    """from <path or hub dataset> [split <name>]"""

    source: Value
    split: Value | None
    span: Span
    keyword = "from"


@dataclass(frozen=True)
class EvaluateOn:
    """evaluate on <path or hub dataset> [split <name>]"""

    source: Value
    split: Value | None
    span: Span
    keyword = "evaluate on"


@dataclass(frozen=True)
class Holdout:
    """holdout 10%"""

    share: Value  # the number without the '%'
    span: Span
    keyword = "holdout"


@dataclass(frozen=True)
class Ask:
    """ask "Describe this X-ray." (the instruction sent with every image)"""

    text: Value
    span: Span
    keyword = "ask"


@dataclass(frozen=True)
class System:
    """system "You are an expert radiographer." """

    text: Value
    span: Span
    keyword = "system"


@dataclass(frozen=True)
class Answer:
    """answer from captions | folders | column <name>"""

    source: Value  # captions | folders | column
    column: Value | None
    span: Span
    keyword = "answer from"


@dataclass(frozen=True)
class Images:
    """images from column <name>"""

    column: Value
    span: Span
    keyword = "images from"


@dataclass(frozen=True)
class Resize:
    """resize 512 (longest side) | resize 640x480 (exact) | resize none"""

    size: Value
    span: Span
    keyword = "resize"


@dataclass(frozen=True)
class BadRows:
    """bad rows skip | bad rows stop (what a run does with rows that fail the data check)"""

    action: Value
    span: Span
    keyword = "bad rows"


@dataclass(frozen=True)
class Window:
    """window <centre> <width>: the DICOM display window (in the image's rescaled units, e.g. Hounsfield)"""

    center: Value
    width: Value
    span: Span
    keyword = "window"


@dataclass(frozen=True)
class TiffPages:
    """tiff pages all | tiff pages first (a multi-page TIFF gives one sample a page, or its first page only)"""

    mode: Value
    span: Span
    keyword = "tiff pages"


@dataclass(frozen=True)
class Setting:
    name: Value
    value: Value


@dataclass(frozen=True)
class Lora:
    """lora rank 16 alpha 16 dropout 0"""

    settings: tuple[Setting, ...]
    span: Span
    keyword = "lora"


@dataclass(frozen=True)
class TrainFor:
    """train for 1 epoch | train for 60 steps"""

    amount: Value
    unit: Value  # epoch | epochs | step | steps
    span: Span
    keyword = "train for"


@dataclass(frozen=True)
class Number:
    """A clause with one numeric value: batch, accumulate, learning rate, weight decay, max length, seed, gpus."""

    name: str  # batch | accumulate | learning rate | weight decay | max length | seed | gpus
    value: Value
    span: Span

    @property
    def keyword(self) -> str:
        return self.name


@dataclass(frozen=True)
class Warmup:
    """warmup 5 steps | warmup 3%"""

    amount: Value
    unit: Value  # steps | step | %
    span: Span
    keyword = "warmup"


@dataclass(frozen=True)
class Choice:
    """A clause that names one option: schedule, optimizer."""

    name: str  # schedule | optimizer
    value: Value
    span: Span

    @property
    def keyword(self) -> str:
        return self.name


@dataclass(frozen=True)
class Metric:
    """metric exact_match, cer"""

    names: tuple[Value, ...]
    span: Span
    keyword = "metric"


@dataclass(frozen=True)
class SaveTo:
    """save to ./runs/xray"""

    path: Value
    span: Span
    keyword = "save to"


@dataclass(frozen=True)
class Export:
    """export adapter, merged"""

    kinds: tuple[Value, ...]
    span: Span
    keyword = "export"


@dataclass(frozen=True)
class Checkpoint:
    """checkpoint every 50 steps (0: only when interrupted and at the end)"""

    every: Value
    unit: Value  # step | steps
    span: Span
    keyword = "checkpoint every"


Statement = Union[
    Finetune, Include, Using, Precision, Flags, From, EvaluateOn, Holdout, Ask, System, Answer, Images, Resize,
    BadRows, Window, TiffPages, Lora, TrainFor, Number, Warmup, Choice, Metric, SaveTo, Export, Checkpoint,
]


@dataclass(frozen=True)
class Recipe:
    """One parsed file: its statements in source order and its comments."""

    file: str
    statements: tuple[Statement, ...]
    comments: tuple[Comment, ...]
