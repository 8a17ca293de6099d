"""The dataset formatter: a data source -> rows of conversations in Unsloth's format, images opened lazily.

Sources, detected automatically (``detect_source``; ``vtc plan`` shows the detection):

1. ``imagefolder``: a folder with ``metadata.jsonl``, ``metadata.csv`` or ``metadata.parquet`` (Hugging Face's
   imagefolder convention: a ``file_name`` column, or ``<name>_file_name`` / ``file_names`` for several images,
   paths relative to the metadata file, plus other columns). Rows come in the same order as
   ``datasets.load_dataset("imagefolder", data_dir=..., split=...)``: the metadata file's order.
2. ``captions``: images with a same-named ``.txt`` caption beside each (``cat.png`` + ``cat.txt``).
3. ``classes``: one sub-folder per class, the answer is the folder's name.
4. ``conversations``: a ``.jsonl`` or ``.json`` file of ``{"messages": [...]}`` rows with typed content parts
   (``{"type": "image", "image": "img/1.png"}``, paths relative to the file; several images a row allowed; also
   TRL's form: ``{"type": "image"}`` placeholders filled from a row-level ``"images": [...]`` list). A ``.jsonl``,
   ``.json`` or ``.csv`` file of flat rows (``file_name`` / ``image`` + an answer column) works too (``table``).
5. ``saved`` / ``parquet``: a dataset saved with ``datasets``' ``save_to_disk``, or parquet file(s); ``hub``: a
   Hugging Face dataset id (needs the network or the local cache). Only these import ``datasets``.

Split folders: a folder whose top level holds ``train/`` (or ``training``), ``validation/`` (``valid``, ``dev``,
``val``) or ``test/`` (``testing``, ``eval``, ``evaluation``) sub-folders is split as Hugging Face splits it: the
plan's split picks the folder (``train`` by default), and evaluation uses ``test`` (else ``validation``) when the
recipe names no evaluation source and no hold-out.

The answer column, when the recipe does not name it (``answer from column X``), is the first of ``ANSWER_COLUMNS``
present. The instruction (``ask``) and system prompt come from the plan; conversation rows bring their own.

Hold-out: with ``plan.data.holdout`` = share s of n rows, round(n * s) rows (at least 1, at most n - 1) are held out
for evaluation: ``random.Random(plan.sft.seed)`` shuffles the indices 0..n-1 and the first ones are held out. Both
parts keep the source's order. The same plan always holds out the same rows.
"""

from __future__ import annotations

import contextvars
import csv
import io
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from vtc.diagnostics import Diagnostic, Span, VtcError, did_you_mean, error, warning
from vtc.runtime.images import IMAGE_EXTENSIONS, TIFF_EXTENSIONS, frame_count, is_image_file, open_image, standardise

# Tried in this order when the recipe does not say which column holds the answer.
ANSWER_COLUMNS = ("text", "caption", "answer", "label", "labels", "report", "description", "output", "response",
                  "target", "ground_truth", "transcription", "latex", "formula", "class", "category", "solution")
# Tried in this order for the image column of a `datasets` dataset (an Image feature wins over any name).
IMAGE_COLUMNS = ("image", "images", "img", "picture", "photo", "file_name", "image_path", "path")
METADATA_FILES = ("metadata.jsonl", "metadata.csv", "metadata.parquet")
SPLIT_NAMES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "dev", "val"),
    "test": ("test", "testing", "eval", "evaluation"),
}
# How many row problems one error lists before "and N more".
MAX_ROW_DIAGNOSTICS = 20
# While load_rows(..., problems=[...]) runs: the list that collects row problems instead of raising them.
_COLLECT: contextvars.ContextVar[list | None] = contextvars.ContextVar("vtc_collect_row_problems", default=None)


@dataclass(frozen=True)
class SourceInfo:
    """What a data source is and how vtc reads it. ``description`` is the sentence ``vtc plan`` shows."""

    kind: str  # imagefolder | captions | classes | conversations | table | saved | parquet | hub
    path: Path | None  # the folder or file (None for hub)
    description: str
    splits: tuple[str, ...] = ()  # split folders found (imagefolder-style), or the dataset's splits
    root: Path | None = None  # the folder actually read (the split folder when splits exist)
    metadata: Path | None = None  # imagefolder: the metadata file


@dataclass(frozen=True)
class _Record:
    """One row before its images are opened."""

    origin: Span
    answer: str
    images: tuple[Path, ...] = ()  # image files, in the order the row uses them
    messages: tuple | None = None  # conversation rows: messages with image parts holding Paths (or indices)
    index: int | None = None  # datasets-backed rows: the row's index in the dataset
    frames: tuple[int, ...] = ()  # the page of each image (multi-page TIFF with `tiff pages all`); () = first pages

    def frame(self, k: int) -> int:
        return self.frames[k] if k < len(self.frames) else 0


class Rows(Sequence):
    """Rows of a data source: ``rows[i]`` is ``{"messages": [...]}`` with the images opened and standardised.

    Images are opened on each access (never the whole dataset in RAM). With ``rows.cache`` set (an
    vtc.runtime.cache.ImageCache, as validate.validate_for_run sets it), an image that preparation already
    standardised comes from the cache instead of being decoded and resized again.
    """

    def __init__(self, records: Sequence[_Record], *, description: str, instruction: str, system: str | None,
                 resize: dict | None, image_getter: Callable[[int], list] | None = None,
                 messages_getter: Callable[[int], list] | None = None, source: SourceInfo | None = None,
                 window: dict | None = None, cache=None):
        self._records = list(records)
        self.description = description
        self.instruction = instruction
        self.system = system
        self.resize = resize
        self.source = source
        self.window = window  # DICOM window from the plan (images.window), or None
        self.cache = cache
        self._image_getter = image_getter  # datasets-backed sources: dataset index -> PIL images
        self._messages_getter = messages_getter  # datasets-backed conversation rows

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.subset(range(len(self))[i], self.description)
        rec = self._records[i]
        if rec.messages is not None or (self._messages_getter is not None and rec.index is not None):
            return {"messages": self._conversation(rec)}
        images = self._open_images(rec)
        user = [{"type": "text", "text": self.instruction}] + [{"type": "image", "image": im} for im in images]
        messages = []
        if self.system:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": rec.answer}]})
        return {"messages": messages}

    def __iter__(self) -> Iterator[dict]:
        for i in range(len(self)):
            yield self[i]

    def origin(self, i: int) -> Span:
        """Where row i comes from: the data file and its line/row number, or the image file."""
        return self._records[i].origin

    def answer(self, i: int) -> str:
        """The expected answer of row i (the last assistant turn's text for conversations)."""
        return self._records[i].answer

    def images(self, i: int) -> list[Path]:
        """The image files of row i (for a `datasets` row: the stored file names, which may not exist here)."""
        rec = self._records[i]
        if rec.images:
            return list(rec.images)
        return []

    def frames(self, i: int) -> list[int]:
        """The page of each of row i's images (0 = the first page; only multi-page TIFFs have others)."""
        rec = self._records[i]
        return [rec.frame(k) for k in range(len(rec.images))]

    def key(self, i: int) -> tuple:
        """Row i's identity (data file, row/line, pages): the same row loaded again has the same key."""
        rec = self._records[i]
        return (rec.origin, rec.frames)

    def prompt(self, i: int) -> list[dict]:
        """Row i's messages without the final assistant answer (what generation starts from)."""
        messages = self[i]["messages"]
        last = max(j for j, m in enumerate(messages) if m["role"] == "assistant")
        return messages[:last]

    def subset(self, indices, description: str | None = None) -> "Rows":
        """The rows at ``indices`` (in that order), sharing everything else."""
        out = Rows([self._records[j] for j in indices], description=description or self.description,
                   instruction=self.instruction, system=self.system, resize=self.resize,
                   image_getter=self._image_getter, messages_getter=self._messages_getter, source=self.source,
                   window=self.window, cache=self.cache)
        return out

    # --- internals --------------------------------------------------------------------------------------------

    def _open_file(self, rec: _Record, k: int):
        """Image k of a record, standardised: from the cache when preparation stored it, else decoded now."""
        path, frame = rec.images[k], rec.frame(k)
        if self.cache is not None:
            image = _cached_image(self.cache, path, frame, self.resize, self.window)
            if image is not None:
                return image
        return standardise(open_image(path, rec.origin, frame=frame, window=self.window), self.resize)

    def _open_images(self, rec: _Record) -> list:
        if rec.images:
            return [self._open_file(rec, k) for k in range(len(rec.images))]
        if self._image_getter is not None and rec.index is not None:
            return [standardise(_rgb(im, rec.origin), self.resize) for im in self._image_getter(rec.index)]
        return []

    def _conversation(self, rec: _Record) -> list[dict]:
        if rec.messages is not None:
            raw = rec.messages
            files = list(rec.images)
        else:
            raw = self._messages_getter(rec.index)
            files = None
        opened: list = []
        if files is None and self._image_getter is not None:
            opened = [standardise(_rgb(im, rec.origin), self.resize) for im in self._image_getter(rec.index)]
        out = []
        has_system = any(m["role"] == "system" for m in raw)
        if self.system and not has_system:
            out.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        for m in raw:
            parts = []
            for part in m["content"]:
                if part["type"] == "image":
                    k = part["image"]
                    im = self._open_file(rec, k) if files is not None else opened[k]
                    parts.append({"type": "image", "image": im})
                else:
                    parts.append({"type": "text", "text": part["text"]})
            out.append({"role": m["role"], "content": parts})
        return out


# (path, size, mtime) -> content digest, so that a training epoch hashes each file once per process.
_DIGESTS: dict[tuple, str] = {}


def _cached_image(cache, path: Path, frame: int, resize: dict | None, window: dict | None):
    from vtc.runtime.cache import digest_file, entry_key
    from vtc.runtime.prepare import settings_for

    try:
        st = path.stat()
        memo = (str(path), st.st_size, st.st_mtime_ns)
        digest = _DIGESTS.get(memo)
        if digest is None:
            digest = _DIGESTS[memo] = digest_file(path)
    except OSError:
        return None
    key = entry_key(digest, frame, settings_for(path, resize, window))
    meta = cache.meta(key)
    return cache.load(key) if meta and meta.get("ok") else None


def _rgb(im, span: Span):
    """A PIL image from a `datasets` value (PIL image, {"bytes", "path"} dict, or a path), RGB, EXIF applied."""
    from PIL import Image, ImageOps

    if isinstance(im, dict):
        if im.get("bytes"):
            try:
                im = Image.open(io.BytesIO(im["bytes"]))
                im.load()
            except (OSError, ValueError, SyntaxError) as exc:
                raise VtcError(error("VT411", f"cannot read the image of this row: {exc}", span,
                                     help="fix or remove the row")) from None
        elif im.get("path"):
            return open_image(im["path"], span)
    if isinstance(im, (str, Path)):
        return open_image(im, span)
    if not isinstance(im, Image.Image):
        raise VtcError(error("VT411", f"the image of this row is not an image ({type(im).__name__})", span,
                             help="name the column that holds the images with `images from column <name>`"))
    im = ImageOps.exif_transpose(im)
    from vtc.runtime.images import _to_rgb

    return im if im.mode == "RGB" else _to_rgb(im)


# --- the public entry points -------------------------------------------------------------------------------------


def load_rows(plan: dict, which: str = "train", *, problems: list | None = None) -> Rows:
    """The train or eval rows of a plan (``which`` = "train" | "eval").

    Eval rows: the plan's evaluation source, else the hold-out share of the training source, else the training
    folder's test/validation split folder; no evaluation data gives an empty Rows (len 0).
    Raises VtcError (VT4xx) naming the file and row for every problem it finds without opening images. With
    ``problems`` (a list), row-level problems (a missing file, an empty answer, a bad line) are appended to it
    instead and those rows are left out; problems with the whole source still raise.
    """
    if which not in ("train", "eval"):
        raise ValueError(f"which must be 'train' or 'eval', not {which!r}")
    token = _COLLECT.set(problems)
    try:
        return _load_rows(plan, which)
    finally:
        _COLLECT.reset(token)


def describe_sources(plan: dict) -> list[tuple[str, str]]:
    """(label, sentence) for each data source of the plan as `vtc plan` shows it: the kind detected (without reading
    rows or opening images), or the problem `vtc run` would stop at. Never raises on user data."""
    data = plan.get("data") or {}
    base = Path(plan.get("base_dir") or ".")
    out = []
    for label, src in (("train", data.get("train")), ("evaluation", data.get("eval"))):
        if not src:
            continue
        if src.get("kind") == "hub":
            out.append((label, f"Hugging Face Hub dataset {src['source']} (split {src.get('split') or 'train'}), "
                               "downloaded or read from the Hugging Face cache when the run starts"))
            continue
        try:
            info = detect_source(_resolve(base, src["source"]), src.get("split"))
        except VtcError as exc:
            out.append((label, f"problem: {exc.diagnostics[0].message}"))
            continue
        splits = f"; split folders: {', '.join(info.splits)}" if info.splits else ""
        out.append((label, f"{info.description}{splits}"))
    if data.get("holdout") and not data.get("eval"):
        out.append(("evaluation", f"{float(data['holdout']):.0%} of the training rows, held out "
                                  f"(a seeded shuffle, seed {plan['training']['seed']})"))
    return out


def _load_rows(plan: dict, which: str) -> Rows:
    data = plan["data"]
    base = Path(plan["base_dir"])
    resize = plan["images"]["resize"]
    instruction, system = data["instruction"], data["system"]
    seed = plan["training"]["seed"]
    holdout = data["holdout"]
    train = data["train"]

    def build(src: dict, split: str | None) -> Rows:
        return _load_source(src, split, base=base, data=data, instruction=instruction, system=system, resize=resize,
                            images=plan["images"])

    if which == "eval" and data["eval"]:
        return build(data["eval"], data["eval"]["split"])
    # Evaluation rows without a hold-out never need the training rows themselves (a large source is read once).
    rows = build(train, train["split"]) if which == "train" or holdout else None
    if holdout:
        n = len(rows)
        k = min(max(round(n * float(holdout)), 1), n - 1)
        if n < 2:
            raise VtcError(error(
                "VT418", f"cannot hold out {float(holdout):.0%} of {n} row{'s' * (n != 1)} for evaluation",
                Span(rows.description), help="add rows, or name a separate evaluation source with `evaluate on`",
            ))
        order = list(range(n))
        random.Random(seed).shuffle(order)
        held = sorted(order[:k])
        if which == "eval":
            return rows.subset(held, f"{k} of {rows.description}, held out (seed {seed})")
        held_set = set(held)
        return rows.subset([i for i in range(n) if i not in held_set],
                           f"{n - k} of {rows.description}, {k} held out (seed {seed})")
    if which == "train":
        return rows
    # No evaluation source and no hold-out: a test (or validation) split folder next to the training split.
    if train["kind"] == "path" and train["split"] in (None, "train"):
        info = detect_source(_resolve(base, train["source"]))
        for split in ("test", "validation"):
            if split in info.splits:
                return build(train, split)
    return Rows([], description="no evaluation data", instruction=instruction, system=system, resize=resize)


def detect_source(path: str | Path, split: str | None = None) -> SourceInfo:
    """What kind of source ``path`` is (see the module docstring), with a description for ``vtc plan``.

    Raises VtcError VT401 (missing), VT402 (empty), VT403 (images but no answers), VT404 (unknown split).
    """
    path = Path(path)
    if not path.exists():
        raise VtcError(error("VT401", f"data folder or file not found: {path}", Span(str(path)),
                             help="check the path in `from` (relative paths start at the recipe's folder)"))
    if path.is_file():
        return _detect_file(path)
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return SourceInfo("saved", path, f"a dataset saved with `datasets` ({path.name})", root=path,
                          splits=_saved_splits(path))
    splits = _split_dirs(path)
    root = path
    if splits:
        want = split or "train"
        if want not in splits:
            raise VtcError(error(
                "VT404", f"no `{want}` split in {path}: it has {', '.join(splits)}", Span(str(path)),
                help=f"write `split {next(iter(splits))}` or put the rows in a `{want}/` folder",
            ))
        root = splits[want]
    elif split not in (None, "train"):
        raise VtcError(error("VT404", f"{path} has no split folders, so it has no `{split}` split",
                             Span(str(path)), help="remove `split ...`, or make train/ and test/ folders"))
    found = tuple(splits)
    where = f"{path.name}/{root.name}" if root != path else path.name
    for name in METADATA_FILES:
        if (root / name).is_file():
            return SourceInfo("imagefolder", path, f"imagefolder {where} with {name}", found, root, root / name)
    parquet = sorted(root.glob("*.parquet")) or sorted((root / "data").glob("*.parquet"))
    if parquet:
        return SourceInfo("parquet", path, f"{len(parquet)} parquet file{'s' * (len(parquet) != 1)} in {where}",
                          found, root)
    images = [p for p in _list_files(root) if is_image_file(p)]
    if not images:
        nested = [p for p in _walk_images(root)]
        if nested:
            classes = sorted({p.relative_to(root).parts[0] for p in nested})
            return SourceInfo("classes", path, f"{len(classes)} class folders in {where} "
                              f"({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})", found, root)
        raise VtcError(error(
            "VT402", f"no images in {root}", Span(str(root)),
            help=f"put image files ({', '.join(IMAGE_EXTENSIONS[:4])}, ...) in the folder, with metadata.jsonl, "
                 ".txt captions or class sub-folders for the answers",
        ))
    if any(p.with_suffix(".txt").is_file() for p in images):
        return SourceInfo("captions", path, f"images with .txt captions in {where}", found, root)
    if any(p.is_dir() and any(is_image_file(q) for q in _list_files(p)) for p in root.iterdir()):
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        return SourceInfo("classes", path, f"class folders in {where} ({', '.join(classes[:5])})", found, root)
    raise VtcError(error(
        "VT403", f"{root} holds {len(images)} images but no answers", Span(str(root)),
        help="add metadata.jsonl (file_name + text columns), a .txt caption beside each image, "
             "or sort the images into one sub-folder per class",
    ))


def _detect_file(path: Path) -> SourceInfo:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return SourceInfo("parquet", path, f"parquet file {path.name}", root=path.parent)
    if suffix in (".jsonl", ".json"):
        first = _first_json_row(path)
        if isinstance(first, dict) and ("messages" in first or "conversations" in first):
            return SourceInfo("conversations", path, f"conversations in {path.name}", root=path.parent)
        return SourceInfo("table", path, f"rows of {path.name}", root=path.parent)
    if suffix == ".csv":
        return SourceInfo("table", path, f"rows of {path.name}", root=path.parent)
    if is_image_file(path):
        raise VtcError(error("VT403", f"{path} is a single image, not a dataset", Span(str(path)),
                             help="point `from` at the folder that holds the images"))
    raise VtcError(error("VT403", f"cannot read {path} as data: unknown file type `{suffix or path.name}`",
                         Span(str(path)), help="use a folder of images, a .jsonl/.json/.csv file or parquet"))


# --- loading each kind -------------------------------------------------------------------------------------------


def _resolve(base: Path, source: str) -> Path:
    p = Path(os.path.expanduser(str(source)))
    return p if p.is_absolute() else base / p


def _load_source(src: dict, split: str | None, *, base: Path, data: dict, instruction: str, system: str | None,
                 resize: dict | None, images: dict | None = None) -> Rows:
    answer = data.get("answer") or {"from": "auto", "column": None}
    image_column = data.get("image_column")
    common = dict(instruction=instruction, system=system, resize=resize)
    if src.get("kind") == "hub":
        ds = _load_hub(src["source"], split)
        return _rows_from_dataset(ds, f"{src['source']} ({split or 'train'})", Span(src["source"]), answer,
                                  image_column, None, common)
    path = _resolve(base, src["source"])
    info = detect_source(path, split)
    mode = answer.get("from") or "auto"
    if mode == "captions" and info.kind not in ("captions",):
        raise VtcError(error("VT413", f"`answer from captions` needs a .txt file beside each image; {path} is "
                             f"{info.description}", Span(str(path)), help=_answer_help(info)))
    if mode == "folders" and info.kind != "classes":
        raise VtcError(error("VT413", f"`answer from folders` needs one sub-folder per class; {path} is "
                             f"{info.description}", Span(str(path)), help=_answer_help(info)))
    if info.kind == "imagefolder":
        records, desc = _imagefolder(info, answer, image_column)
    elif info.kind == "captions":
        records, desc = _captions(info)
    elif info.kind == "classes":
        records, desc = _classes(info)
    elif info.kind == "conversations":
        records, desc = _conversations(info)
    elif info.kind == "table":
        records, desc = _table(info, answer, image_column)
    else:  # saved / parquet
        ds = _load_local_dataset(info, split)
        return _rows_from_dataset(ds, info.description, Span(str(path)), answer, image_column, info, common)
    if not records and _COLLECT.get() is None:
        raise VtcError(error("VT402", f"the dataset is empty: {desc}", Span(str(info.metadata or path)),
                             help="add rows (images with their answers)"))
    images = images or {}
    if images.get("tiff_pages") == "all":
        records = _tiff_pages(records)
    return Rows(records, description=f"{desc} ({len(records)} row{'s' * (len(records) != 1)})", source=info,
                window=images.get("window"), **common)


def _tiff_pages(records: list[_Record]) -> list[_Record]:
    """`tiff pages all`: a row whose one image is a multi-page TIFF becomes one row a page (same answer)."""
    out = []
    for rec in records:
        if len(rec.images) == 1 and rec.images[0].suffix.lower() in TIFF_EXTENSIONS:
            n = frame_count(rec.images[0])
            if n > 1:
                out.extend(_Record(rec.origin, rec.answer, rec.images, rec.messages, rec.index, (k,))
                           for k in range(n))
                continue
        out.append(rec)
    return out


def _answer_help(info: SourceInfo) -> str:
    if info.kind in ("imagefolder", "table"):
        return "write `answer from column <name>` (or leave `answer from` out to detect it)"
    if info.kind == "classes":
        return "write `answer from folders` (or leave `answer from` out)"
    if info.kind == "captions":
        return "write `answer from captions` (or leave `answer from` out)"
    return "leave `answer from` out: the answers come from the data"


def _raise_rows(problems: list[Diagnostic]) -> None:
    if not problems:
        return
    sink = _COLLECT.get()
    if sink is not None:
        sink.extend(problems)
        return
    shown = problems[:MAX_ROW_DIAGNOSTICS]
    if len(problems) > len(shown):
        shown.append(error("VT400", f"... and {len(problems) - len(shown)} more problem rows",
                           help="run `vtc check --data` on the recipe for the full list"))
    raise VtcError(shown)


def _pick_column(columns: Sequence[str], answer: dict, where: Span, exclude: Sequence[str] = ()) -> str:
    """The answer column: the recipe's, else the first of ANSWER_COLUMNS present."""
    cols = [c for c in columns if c not in exclude]
    if answer.get("from") == "column" and answer.get("column"):
        name = answer["column"]
        if name in cols:
            return name
        raise VtcError(error(
            "VT405", f"no column `{name}` in {where.file}; its columns are {', '.join(cols) or '(none)'}", where,
            help=did_you_mean(name, cols) or f"write `answer from column <name>` with one of: {', '.join(cols)}",
        ))
    lowered = {c.lower(): c for c in cols}
    for name in ANSWER_COLUMNS:
        if name in lowered:
            return lowered[name]
    raise VtcError(error(
        "VT406", f"cannot tell which column of {where.file} holds the answers: "
                 f"{', '.join(cols) or 'it has no columns besides the images'}", where,
        help=(f"write `answer from column {cols[0]}`" if cols else "add a `text` column with the answers")
        + f" (vtc looks for {', '.join(ANSWER_COLUMNS[:5])}, ...)",
    ))


def _answer_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from an empty CSV cell
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = str(value)
    return text if text.strip() else None


def _imagefolder(info: SourceInfo, answer: dict, image_column: str | None) -> tuple[list[_Record], str]:
    meta = info.metadata
    assert meta is not None and info.root is not None
    table = list(_read_table(meta))
    if not table:
        raise VtcError(error("VT402", f"the dataset is empty: {meta} has no rows", Span(str(meta)),
                             help='add one row a line: {"file_name": "1.png", "text": "the answer"}'))
    columns = _columns(table)
    image_cols = [c for c in columns if c == "file_name" or c.endswith("_file_name") or c == "file_names"
                  or c.endswith("_file_names")]
    if image_column:
        wanted = [c for c in image_cols if c in (image_column, f"{image_column}_file_name",
                                                 f"{image_column}_file_names")
                  or (image_column in ("image", "images") and c in ("file_name", "file_names"))]
        if not wanted:
            raise VtcError(error(
                "VT407", f"no image column `{image_column}` in {meta}", Span(str(meta)),
                help=did_you_mean(image_column, image_cols) or
                f"imagefolder image columns are named file_name or <name>_file_name; {meta.name} has "
                f"{', '.join(image_cols) or 'none'}",
            ))
        image_cols = wanted[:1]
    if not image_cols:
        raise VtcError(error(
            "VT408", f"{meta} has no `file_name` column", Span(str(meta), 1),
            help=f"name the column that holds the image file names `file_name` (it has {', '.join(columns)})",
        ))
    image_col = image_cols[0]
    others = [c for c in columns if c not in image_cols]
    col = _pick_column(others, answer, Span(str(meta), 1))
    records = _table_records(table, meta, image_col, col, info.root.resolve(), lambda name: meta.parent / name,
                             row_help='write one object a line: {"file_name": "1.png", "text": "..."}',
                             image_help="give every row the file name of its image",
                             missing_help=f"add the file to {meta.parent}, or remove the row")
    where = f"{info.path.name}/{info.root.name}" if info.root != info.path else info.path.name
    return records, f"imagefolder {where} with {meta.name}, answers from `{col}`"


def _table_records(table, source: Path, image_col: str, col: str, root: Path, resolve, *, row_help: str,
                   image_help: str, missing_help: str) -> list[_Record]:
    """The records of a metadata or table file's rows: every row's images (``resolve`` turns a written name into a
    path; one leaving ``root`` is refused, never opened) and its answer from ``col``. Every bad row is reported, all
    at once (VtcError), with its line."""
    records, problems = [], []
    for line, row in table:
        span = Span(str(source), line)
        if isinstance(row, _BadLine):
            problems.append(row.diagnostic)
            continue
        if not isinstance(row, dict):
            problems.append(error("VT408", f"line {line} of {source.name} is not a JSON object", span,
                                  help=row_help))
            continue
        before = len(problems)
        names = row.get(image_col)
        paths = []
        for name in names if isinstance(names, list) else [names]:
            if not isinstance(name, str) or not name.strip():
                problems.append(error("VT408", f"row {line} of {source.name} has no `{image_col}`", span,
                                      help=image_help))
                continue
            p = resolve(name)
            where = _locate(p, root)
            if where == "outside":
                problems.append(error("VT415", f"row {line} of {source.name} points outside the dataset folder: "
                                      f"{name}", span, help=f"keep the images inside {root}"))
            elif where != "file":
                problems.append(error("VT409", f"row {line} of {source.name} lists {name}, which does not exist",
                                      span, help=missing_help))
            else:
                paths.append(p)
        text = _answer_text(row.get(col))
        if text is None:
            problems.append(error("VT412", f"row {line} of {source.name} has no answer (column `{col}` is empty)",
                                  span, help=f"fill in `{col}`, or remove the row"))
            continue
        if paths and len(problems) == before:
            records.append(_Record(span, text, tuple(paths)))
    _raise_rows(problems)
    return records


def _inside(p: Path, root: Path) -> bool:
    """Whether p, symlinks followed, is inside root (an already resolved folder). Nothing is opened."""
    return _locate(p, root) != "outside"


def _locate(p: Path, root: Path) -> str:
    """"outside" (p, symlinks followed, leaves root, an already resolved folder), "file" or "missing".

    Nothing is opened. Path.resolve() costs an lstat per path component, seconds for 100,000 rows: here the folder
    part is resolved once per folder (cached) and the file costs one lstat (plus a resolve if it is a symlink).
    """
    import stat

    text = str(p)
    full = os.path.normpath(text if os.path.isabs(text) else os.path.join(str(root), text))
    folder, name = os.path.split(full)
    real = _realdir(folder) + os.sep + name
    top = str(root).rstrip(os.sep) + os.sep
    if not real.startswith(top):
        return "outside"
    try:
        st = os.lstat(real)
    except OSError:
        return "missing"
    if stat.S_ISLNK(st.st_mode):
        real = os.path.realpath(real)
        if not real.startswith(top):
            return "outside"
        return "file" if os.path.isfile(real) else "missing"
    return "file" if stat.S_ISREG(st.st_mode) else "missing"


_REALDIRS: dict[str, str] = {}


def _realdir(folder: str) -> str:
    real = _REALDIRS.get(folder)
    if real is None:
        if len(_REALDIRS) > 100_000:
            _REALDIRS.clear()
        real = _REALDIRS[folder] = os.path.realpath(folder)
    return real


def _captions(info: SourceInfo) -> tuple[list[_Record], str]:
    root = info.root
    records, problems = [], []
    for img in sorted(p for p in _list_files(root) if is_image_file(p)):
        txt = img.with_suffix(".txt")
        span = Span(str(img))
        if not txt.is_file():
            problems.append(error("VT412", f"{img.name} has no caption file {txt.name}", span,
                                  help=f"write the answer into {txt.name} beside the image, or remove the image"))
            continue
        try:
            text = txt.read_text(encoding="utf-8-sig").strip()
        except UnicodeDecodeError:
            problems.append(error("VT419", f"{txt.name} is not UTF-8 text", Span(str(txt)),
                                  help="save the caption as UTF-8"))
            continue
        if not text:
            problems.append(error("VT412", f"the caption {txt.name} is empty", Span(str(txt)),
                                  help="write the answer into it, or remove the image"))
            continue
        records.append(_Record(Span(str(txt), 1), text, (img,)))
    _raise_rows(problems)
    return records, f"images with .txt captions in {_where(info)}"


def _classes(info: SourceInfo) -> tuple[list[_Record], str]:
    # Like imagefolder's labels: every image under <root>/<class>/, classes and files in sorted order.
    root = info.root
    records = []
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for cls in classes:
        for img in sorted(_walk_images(cls)):
            records.append(_Record(Span(str(img)), cls.name, (img,)))
    return records, f"{len(classes)} class folders in {_where(info)}"


def _where(info: SourceInfo) -> str:
    return f"{info.path.name}/{info.root.name}" if info.root != info.path else info.path.name


def _conversations(info: SourceInfo) -> tuple[list[_Record], str]:
    path = info.path
    records, problems = [], []
    for line, row in _read_json_rows(path):
        span = Span(str(path), line)
        if isinstance(row, _BadLine):
            problems.append(row.diagnostic)
            continue
        try:
            records.append(_conversation_record(row, path.parent, span))
        except VtcError as exc:
            problems.extend(exc.diagnostics)
    _raise_rows(problems)
    return records, f"conversations in {path.name}"


def _conversation_record(row: Any, folder: Path, span: Span) -> _Record:
    """Validate one conversation row; image parts become indices into the record's image files."""
    def bad(msg: str, hint: str) -> VtcError:
        return VtcError(error("VT414", f"line {span.line} of {Path(span.file).name}: {msg}", span, help=hint))

    fmt = ('{"messages": [{"role": "user", "content": [{"type": "text", "text": "..."}, '
           '{"type": "image", "image": "img.png"}]}, {"role": "assistant", "content": [{"type": "text", '
           '"text": "..."}]}]}')
    if not isinstance(row, dict):
        raise bad("a row must be a JSON object", f"write rows like {fmt}")
    messages = row.get("messages", row.get("conversations"))
    if not isinstance(messages, list) or not messages:
        raise bad("the row has no `messages` list", f"write rows like {fmt}")
    extra = row.get("images") or []
    if isinstance(extra, str):
        extra = [extra]
    files: list[Path] = []
    placeholders = 0
    out = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise bad("every message needs a role: system, user or assistant", f"write rows like {fmt}")
        content = m.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise bad(f"the content of a {m['role']} message must be a list of parts", f"write rows like {fmt}")
        parts = []
        for part in content:
            if isinstance(part, str):
                part = {"type": "text", "text": part}
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append({"type": "text", "text": part["text"]})
            elif kind == "image" or (isinstance(part, dict) and "image" in part and kind is None):
                ref = part.get("image") or part.get("path") or part.get("url")
                if ref is None:
                    if placeholders >= len(extra):
                        raise bad("an image part names no image, and the row's `images` list has no more",
                                  'give the part an image: {"type": "image", "image": "img.png"}')
                    ref = extra[placeholders]
                    placeholders += 1
                if not isinstance(ref, str):
                    raise bad("an image part's image must be a file path", 'write {"type": "image", '
                              '"image": "img.png"} (paths relative to the file)')
                if ref.startswith(("http://", "https://")):
                    raise bad(f"image URLs are not downloaded: {ref}", "download the image and give its path")
                p = Path(os.path.expanduser(ref))
                p = p if p.is_absolute() else folder / p
                if not _inside(p, folder.resolve()):
                    raise VtcError(error("VT415", f"line {span.line} of {Path(span.file).name} points outside "
                                         f"the dataset folder: {ref}", span,
                                         help=f"keep the images inside {folder} (the file's folder)"))
                if not p.is_file():
                    raise VtcError(error("VT409", f"line {span.line} of {Path(span.file).name} names {ref}, "
                                         "which does not exist", span, help=f"add {ref} beside the file, or fix "
                                         "the path (relative to the file)"))
                parts.append({"type": "image", "image": len(files)})
                files.append(p)
            else:
                raise bad(f"unknown content part {json.dumps(part)[:60]}", 'parts are {"type": "text", '
                          '"text": ...} or {"type": "image", "image": ...}')
        out.append({"role": m["role"], "content": parts})
    answers = [m for m in out if m["role"] == "assistant"]
    if not answers:
        raise VtcError(error("VT412", f"line {span.line} of {Path(span.file).name} has no assistant answer",
                             span, help="end the conversation with an assistant message holding the answer"))
    text = "".join(p["text"] for p in answers[-1]["content"] if p["type"] == "text")
    if not text.strip():
        raise VtcError(error("VT412", f"line {span.line} of {Path(span.file).name}: the assistant answer is "
                             "empty", span, help="write the answer into the assistant message"))
    if out[-1]["role"] != "assistant":
        raise bad("the last message must be the assistant's answer", "end each row with the assistant message")
    return _Record(span, text, tuple(files), messages=tuple(out))


def _table(info: SourceInfo, answer: dict, image_column: str | None) -> tuple[list[_Record], str]:
    path = info.path
    table = list(_read_table(path))
    if not table:
        raise VtcError(error("VT402", f"the dataset is empty: {path} has no rows", Span(str(path)),
                             help="add rows (an image path and its answer on each)"))
    columns = _columns(table)
    candidates = [image_column] if image_column else [c for c in ("file_name", "image", "images", "image_path",
                                                                     "path", "file") if c in columns]
    if not candidates or candidates[0] not in columns:
        raise VtcError(error(
            "VT407", f"cannot tell which column of {path.name} holds the image paths "
                     f"(columns: {', '.join(columns)})", Span(str(path), 1),
            help=(did_you_mean(image_column, columns) if image_column else None)
            or "name it file_name, or write `images from column <name>`",
        ))
    image_col = candidates[0]
    col = _pick_column([c for c in columns if c != image_col], answer, Span(str(path), 1))

    def resolve(name: str) -> Path:
        p = Path(os.path.expanduser(name))
        return p if p.is_absolute() else path.parent / p

    records = _table_records(table, path, image_col, col, path.parent.resolve(), resolve,
                             row_help="write one object a line", image_help="give every row its image path",
                             missing_help="fix the path (relative to the file), or remove the row")
    return records, f"rows of {path.name}, answers from `{col}`"


# --- datasets-backed sources (imports `datasets` lazily) ---------------------------------------------------------


def _load_hub(name: str, split: str | None):
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import datasets
    except ImportError:
        raise VtcError(error("VT417", "reading a Hugging Face dataset needs the `datasets` package",
                             Span(name), help="pip install 'vtc[train]'")) from None
    try:
        return datasets.load_dataset(name, split=split or "train")
    except Exception as exc:  # datasets raises many types for "offline" and "not found"
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or \
            os.environ.get("HF_DATASETS_OFFLINE", "0").lower() in ("1", "true", "yes")
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if "split" in str(exc).lower() and "unknown split" in str(exc).lower():
            raise VtcError(error("VT404", f"dataset {name} has no split `{split}`", Span(name),
                                 help=f"check the split name ({text})")) from None
        reason = "the network is off (HF_HUB_OFFLINE is set) and it is not in the local cache" if offline else \
            "no network, a wrong name, or a private dataset without a login"
        raise VtcError(error(
            "VT416", f"cannot download dataset {name}: {reason}", Span(name),
            help="connect to the network once (the dataset is then cached), download it and point `from` at the "
                 f"folder, or check the name ({text})",
        )) from None


def _load_local_dataset(info: SourceInfo, split: str | None):
    try:
        import datasets
    except ImportError:
        raise VtcError(error("VT417", f"reading {info.description} needs the `datasets` package",
                             Span(str(info.path)), help="pip install 'vtc[train]'")) from None
    try:
        if info.kind == "saved":
            ds = datasets.load_from_disk(str(info.path))
            if isinstance(ds, datasets.DatasetDict):
                want = split or "train"
                if want not in ds:
                    raise VtcError(error("VT404", f"no `{want}` split in {info.path}: it has {', '.join(ds)}",
                                         Span(str(info.path)), help=f"write `split {next(iter(ds))}`"))
                ds = ds[want]
            return ds
        files = [str(info.path)] if info.path.is_file() else [
            str(p) for p in (sorted(info.root.glob("*.parquet")) or sorted((info.root / "data").glob("*.parquet")))]
        return datasets.load_dataset("parquet", data_files={"train": files}, split="train")
    except VtcError:
        raise
    except Exception as exc:
        raise VtcError(error("VT417", f"cannot read {info.description}: {type(exc).__name__}: {exc}"[:400],
                             Span(str(info.path)), help="check that the files are complete")) from None


def _rows_from_dataset(ds, desc: str, where: Span, answer: dict, image_column: str | None,
                       info: SourceInfo | None, common: dict) -> Rows:
    from datasets import Image as ImageFeature

    columns = list(ds.column_names)
    features = ds.features

    def is_image(col: str) -> bool:
        f = features.get(col)
        return isinstance(f, ImageFeature) or (isinstance(getattr(f, "feature", None), ImageFeature))

    if image_column:
        if image_column not in columns:
            raise VtcError(error("VT407", f"no image column `{image_column}` in {desc}; its columns are "
                                 f"{', '.join(columns)}", where,
                                 help=did_you_mean(image_column, columns) or "write `images from column <name>`"))
        image_col = image_column
    else:
        found = [c for c in columns if is_image(c)] or [c for c in IMAGE_COLUMNS if c in columns]
        if not found:
            raise VtcError(error("VT407", f"cannot tell which column of {desc} holds the images "
                                 f"(columns: {', '.join(columns)})", where, help="write `images from column <name>`"))
        image_col = found[0]
    conversation_col = next((c for c in ("messages", "conversations") if c in columns), None)
    n = len(ds)
    if n == 0:
        raise VtcError(error("VT402", f"the dataset is empty: {desc}", where, help="add rows"))
    # Decoding only the columns we need keeps other columns' images out of memory.
    if conversation_col:
        records, problems = [], []
        for i, row in enumerate(ds.select_columns([conversation_col])):
            span = Span(where.file, i + 1)
            msgs = row[conversation_col]
            answers = [m for m in msgs or [] if isinstance(m, dict) and m.get("role") == "assistant"]
            text = _message_text(answers[-1]) if answers else None
            if not text or not text.strip():
                problems.append(error("VT412", f"row {i + 1} of {desc} has no assistant answer", span,
                                      help="end each conversation with the assistant's answer"))
                continue
            records.append(_Record(span, text, index=i))
        _raise_rows(problems)

        def messages_getter(i: int) -> list:
            return _normalise_messages(ds[i][conversation_col])
    else:
        col = _pick_column([c for c in columns if c != image_col and not is_image(c)], answer, where)
        records, problems = [], []
        for i, value in enumerate(ds.select_columns([col])[col]):
            span = Span(where.file, i + 1)
            text = _answer_text(value)
            if text is None:
                problems.append(error("VT412", f"row {i + 1} of {desc} has no answer (column `{col}` is empty)",
                                      span, help=f"fill in `{col}`, or remove the row"))
                continue
            records.append(_Record(span, text, index=i))
        _raise_rows(problems)
        desc = f"{desc}, answers from `{col}`"
        messages_getter = None

    image_ds = ds.select_columns([image_col])

    def image_getter(i: int) -> list:
        value = image_ds[i][image_col]
        if value is None:
            raise VtcError(error("VT410", f"row {i + 1} of {desc} has no image", Span(where.file, i + 1),
                                 help="remove the row or add its image"))
        return list(value) if isinstance(value, (list, tuple)) else [value]

    return Rows(records, description=f"{desc} ({len(records)} rows)", image_getter=image_getter,
                messages_getter=messages_getter, source=info, **common)


def _message_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or "" for p in content or [] if isinstance(p, dict) and p.get("type") == "text")


def _normalise_messages(messages: list) -> list:
    """TRL-style dataset messages: {"type": "image"} placeholders numbered in order (the images column's order)."""
    out, k = [], 0
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parts = []
        for p in content:
            if p.get("type") == "image":
                parts.append({"type": "image", "image": k})
                k += 1
            elif p.get("type") == "text" and p.get("text") is not None:
                parts.append({"type": "text", "text": p["text"]})
        out.append({"role": m["role"], "content": parts})
    return out


# --- file helpers --------------------------------------------------------------------------------------------------


def _split_dirs(path: Path) -> dict[str, Path]:
    """Hugging Face's split folders at the top level: {"train": path/train, "test": path/test, ...}."""
    found: dict[str, Path] = {}
    try:
        names = {p.name: p for p in path.iterdir() if p.is_dir()}
    except OSError:
        return found
    for split, keywords in SPLIT_NAMES.items():
        for kw in keywords:
            if kw in names:
                found[split] = names[kw]
                break
    return found


def _saved_splits(path: Path) -> tuple[str, ...]:
    try:
        return tuple(json.loads((path / "dataset_dict.json").read_text())["splits"])
    except (OSError, ValueError, KeyError, TypeError):
        return ()


def _list_files(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    except OSError:
        return []


def _walk_images(folder: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith(".") and is_image_file(f):
                out.append(Path(dirpath) / f)
    return out


def _columns(table: list[tuple[int, Any]]) -> list[str]:
    cols: list[str] = []
    for _, row in table:
        if isinstance(row, dict):  # a _BadLine has no columns
            for c in row:
                if c not in cols:
                    cols.append(c)
    return cols


def _read_table(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, row) pairs of a .jsonl / .json / .csv / .parquet file (parquet rows numbered from 1)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        except Exception as exc:
            raise VtcError(error("VT419", f"cannot read {path}: {exc}", Span(str(path)),
                                 help="check that the file is complete")) from None
        for i, row in enumerate(table.to_pylist()):
            yield i + 1, row
        return
    if suffix == ".csv":
        text = _read_text(path)
        reader = csv.DictReader(io.StringIO(text))
        try:
            start = 2
            for row in reader:
                yield start, {k: (v if v != "" else None) for k, v in row.items() if k is not None}
                start = reader.line_num + 1
        except csv.Error as exc:
            raise VtcError(error("VT419", f"{path.name} is not valid CSV: {exc}", Span(str(path), reader.line_num),
                                 help="check the quotes and commas on that line")) from None
        return
    yield from _read_json_rows(path)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise VtcError(error("VT419", f"{path.name} is not UTF-8 text", Span(str(path), line),
                             help="save the file as UTF-8")) from None
    except OSError as exc:
        raise VtcError(error("VT419", f"cannot read {path}: {exc.strerror or exc}", Span(str(path)),
                             help="check the file's permissions")) from None


@dataclass(frozen=True)
class _BadLine:
    """A line of a .jsonl file that cannot be a row (not UTF-8, not JSON): its problem, reported at its line."""

    diagnostic: Diagnostic


def _read_json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, row) pairs; in a .jsonl file each line stands alone, so a bad line is a _BadLine, not the end."""
    if path.suffix.lower() == ".json":
        yield from _json_array(path, _read_text(path))
        return
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VtcError(error("VT419", f"cannot read {path}: {exc.strerror or exc}", Span(str(path)),
                             help="check the file's permissions")) from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.lstrip().startswith(b"["):
        yield from _json_array(path, _read_text(path))
        return
    for n, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield n, _BadLine(error(
                "VT419", f"line {n} of {path.name} is not UTF-8 text (byte {raw[exc.start:exc.end].hex(' ')} at "
                         f"column {exc.start + 1})", Span(str(path), n, exc.start + 1),
                help="save the file as UTF-8 (a spreadsheet's 'CSV UTF-8' or an editor's 'Save with encoding')"))
            continue
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as exc:
            yield n, _BadLine(error("VT408", f"line {n} of {path.name} is not valid JSON: {exc.msg}",
                                    Span(str(path), n, exc.colno), help="write one JSON object a line"))


def _json_array(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """Elements of a JSON array with the line each starts on."""
    dec = json.JSONDecoder()
    try:
        i = text.index("[") + 1
    except ValueError:
        raise VtcError(error("VT408", f"{path.name} is not a JSON list of rows", Span(str(path), 1),
                             help="write [ {...}, {...} ] or one object a line (.jsonl)")) from None
    n = len(text)
    while True:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n or text[i] == "]":
            return
        line = text.count("\n", 0, i) + 1
        try:
            value, i = dec.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise VtcError(error("VT408", f"{path.name} is not valid JSON at line {exc.lineno}: {exc.msg}",
                                 Span(str(path), exc.lineno, exc.colno), help="fix the JSON there")) from None
        yield line, value


def _first_json_row(path: Path) -> Any:
    try:
        for _, row in _read_json_rows(path):
            if not isinstance(row, _BadLine):
                return row
    except VtcError:
        return None
    return None
