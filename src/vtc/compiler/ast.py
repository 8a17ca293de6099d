"""The recipe's abstract syntax tree: typed, frozen nodes, each carrying its source span.

The parser builds these from Lark's parse tree (vtc.compiler.build); lowering (vtc.compiler.lower) turns them into
the JSON document that the schema validates. Every value a user wrote is a ``Value``: its text exactly as written
(quotes removed from strings) and its span, so that any later stage can point at it.
"""

from __future__ import annotations

from typing import Union

from vtc.diagnostics import Span
from vtc.records import fields, record as node


@node
class Value:
    """A word, number, size, percentage, path or string as written (strings unquoted and unescaped)."""

    text: str
    span: Span
    quoted: bool = False


@node
class Comment:
    text: str  # without the leading '#'
    span: Span
    own_line: bool  # True: the comment stands alone on its line; False: it trails a statement


# --- statements -------------------------------------------------------------------------------------------------
# Each statement is one clause of the language. ``keyword`` is the clause's name as docs/language.md lists it. The
# simple clauses (a keyword and one value) share two nodes, Number and Choice, named by their keyword; the others
# have a node each.


@node
class Finetune:
    """finetune <parts> on <model>"""

    parts: tuple[Value, ...]
    model: Value
    span: Span
    keyword = "finetune"


@node
class Include:
    """include "base.vt" """

    path: Value
    span: Span
    keyword = "include"


@node
class Flags:
    """with responses_only, rslora  /  without responses_only"""

    enabled: bool
    flags: tuple[Value, ...]
    span: Span
    keyword = "with"


@node
class From:
    """from <path or hub dataset> [split <name>] [format <name>]"""

    source: Value
    split: Value | None
    span: Span
    format: Value | None = None  # `format sharegpt`: the data file's format, pinned
    keyword = "from"


@node
class EvaluateOn:
    """evaluate on <path or hub dataset> [split <name>] [format <name>]"""

    source: Value
    split: Value | None
    span: Span
    format: Value | None = None  # `format sharegpt`: the data file's format, pinned
    keyword = "evaluate on"


@node
class Holdout:
    """holdout 10%"""

    share: Value  # the number without the '%'
    span: Span
    keyword = "holdout"


@node
class Answer:
    """answer from captions | folders | column <name>"""

    source: Value  # captions | folders | column
    column: Value | None
    span: Span
    keyword = "answer from"


@node
class Images:
    """images from column <name> | images from folder <path>"""

    column: Value | None  # None for `images from folder`
    span: Span
    folder: Value | None = None  # `images from folder ./media`: where the rows' image paths start
    keyword = "images from"


@node
class Resize:
    """resize 512 (longest side) | resize 640x480 (exact) | resize none"""

    size: Value
    span: Span
    keyword = "resize"


@node
class PixelBudget:
    """resize between 200k and 1m pixels | resize up to 1m pixels: each image keeps its aspect, its area within the
    budget (``low`` None: the model's own minimum). The amounts as written (200000, 200k, 1.2m, 256x28x28)."""

    low: Value | None
    high: Value
    span: Span
    keyword = "resize"


@node
class Window:
    """window <centre> <width>: the DICOM display window (in the image's rescaled units, e.g. Hounsfield)"""

    center: Value
    width: Value
    span: Span
    keyword = "window"


@node
class VideoSetting:
    """One setting of `video`: ``name`` says which, ``values`` are its numbers as written.

    fps: (2,) `2 fps` | frames: (16,) `at most 16 frames` | between: (1.5, 8) `between 1.5 and 8 seconds` |
    after: (1.5,) `after 1.5 seconds` | size: (336,) `frame size 336` | up to: (200k,) `frame size up to 200k pixels`
    | pixels: (50k, 150k) `frame size between 50k and 150k pixels`"""

    name: str
    values: tuple[Value, ...]
    span: Span


@node
class Video:
    """video [settings]: how clips are read (docs/language.md, video)"""

    settings: tuple[VideoSetting, ...]
    span: Span
    keyword = "video"


@node
class Setting:
    name: Value
    value: Value


@node
class Lora:
    """lora rank 16 alpha 16 dropout 0"""

    settings: tuple[Setting, ...]
    span: Span
    keyword = "lora"


@node
class TrainFor:
    """train for 1 epoch | train for 60 steps"""

    amount: Value
    unit: Value  # epoch | epochs | step | steps
    span: Span
    keyword = "train for"


@node
class Number:
    """A simple clause whose one value is a number (grammar rule `number`): batch 2, learning rate 2e-4, seed 42."""

    name: str  # the clause keyword as the clause table spells it: batch | learning rate | max length | ...
    value: Value
    span: Span

    @property
    def keyword(self) -> str:
        return self.name


@node
class LearningRate:
    """learning rate 2e-4 | learning rate 2e-4, vision 2e-5, projector 1e-4 (the base rate, then per-part rates)"""

    value: Value
    parts: tuple[tuple[Value, Value], ...]  # (part word, its rate), as written
    span: Span
    keyword = "learning rate"


@node
class Warmup:
    """warmup 5 steps | warmup 3%"""

    amount: Value
    unit: Value  # steps | step | %
    span: Span
    keyword = "warmup"


@node
class Choice:
    """A simple clause whose one value stays text (grammar rule `choice`): using lora, schedule cosine,
    ask "Describe this X-ray.", save to ./runs/xray."""

    name: str  # the clause keyword as the clause table spells it: using | schedule | ask | save to | ...
    value: Value
    span: Span

    @property
    def keyword(self) -> str:
        return self.name


@node
class Metric:
    """metric exact_match, cer"""

    names: tuple[Value, ...]
    span: Span
    keyword = "metric"


@node
class Export:
    """export adapter, merged"""

    kinds: tuple[Value, ...]
    span: Span
    keyword = "export"


@node
class Checkpoint:
    """checkpoint every 50 steps (0: only when interrupted and at the end)"""

    every: Value
    unit: Value  # step | steps
    span: Span
    keyword = "checkpoint every"


Statement = Union[
    Finetune, Include, Flags, From, EvaluateOn, Holdout, Answer, Images, Resize, PixelBudget, Window, Video, Lora, TrainFor,
    Warmup,
    Metric, Export, Checkpoint, LearningRate, Number, Choice,
]


@node
class Recipe:
    """One parsed file: its statements in source order and its comments."""

    file: str
    statements: tuple[Statement, ...]
    comments: tuple[Comment, ...]


def without_spans(value):
    """A span-free, comparable form of an AST node (or a tuple of nodes): class names and values as written.

    Two recipes that say the same thing in a different layout have equal forms; `vtc fmt` is tested with it.
    """
    if isinstance(value, Value):
        return (value.text, value.quoted)
    if isinstance(value, tuple):
        return tuple(without_spans(v) for v in value)
    if fields(value):
        return (type(value).__name__, *(without_spans(getattr(value, n)) for n in fields(value) if n != "span"))
    return value
