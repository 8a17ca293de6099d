"""Plan -> rows: which source gives a plan's training and evaluation rows, the hold-out split, and what `vtc plan`
says about the sources. Every value comes from the plan as it is (a validated plan has every key).

    load_rows(plan, which="train", problems=None) -> Rows       the rows to train ("train") or evaluate ("eval") on
    source_rows(plan, which, problems=None) -> Rows              a source's rows, whole (before any hold-out)
    run_rows(plan, train, evaluation) -> (train, evaluation)     a run's rows from the whole sources' rows
    hold_out(rows, share, seed) -> (kept, held)                  the seeded hold-out split
    describe_sources(plan) -> [(label, sentence)]                what `vtc plan` prints (escaped: text output);
                                                                 never raises on user data

Evaluation rows: the plan's evaluation source (`evaluate on`), else the hold-out share of the training rows, else
the training folder's `test/` (or `validation/`) split folder, else none (an empty Rows).
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from vtc.diagnostics import Span, VtcError, error, printable
from vtc.runtime.sources import captions, chats, classes, conversations, hf, imagefolder, table
from vtc.runtime.sources.detect import SourceInfo, detect_source, hub_source, split_name
from vtc.runtime.sources.files import resolve
from vtc.runtime.sources.request import Request
from vtc.runtime.sources.rows import Rows

# The reader of each source kind: every module has read(info: SourceInfo, request: Request) -> Rows.
READERS = {"imagefolder": imagefolder, "captions": captions, "classes": classes, "conversations": conversations,
           "chats": chats, "table": table, "saved": hf, "parquet": hf, "hub": hf}

# How `datasets` is told "the Hub, never a local folder" (datasets.load.dataset_module_factory, remote_only).
HUB_URL = "hf://datasets/"

# `answer from captions|folders` names the source kind it needs.
ANSWER_KINDS = {"captions": ("captions", "a .txt file beside each image"),
                "folders": ("classes", "one sub-folder per class")}


def load_rows(plan: dict, which: str = "train", *, problems: list | None = None) -> Rows:
    """The train or eval rows of a plan (``which`` = "train" | "eval"); no evaluation data gives an empty Rows.

    Raises VtcError (VT4xx) naming the file and row for every problem it finds without opening images. With
    ``problems`` (a list), row-level problems (a missing file, an empty answer, a bad line) are appended to it
    instead and those rows are left out; problems with the whole source still raise. Evaluation rows without a
    hold-out never read the training rows themselves.
    """
    if which not in ("train", "eval"):
        raise ValueError(f"which must be 'train' or 'eval', not {which!r}")
    data = plan["data"]
    if which == "eval" and (data["eval"] or not data["holdout"]):
        return source_rows(plan, "eval", problems=problems)
    train, held = run_rows(plan, source_rows(plan, "train", problems=problems), None)
    return train if which == "train" else held


def source_rows(plan: dict, which: str, *, problems: list | None = None) -> Rows:
    """A source's rows whole: "train", the training source with no hold-out taken out; "eval", the evaluation
    source, else (no hold-out) the training folder's test/validation split folder, else an empty Rows."""
    data = plan["data"]
    train = data["train"]
    if which == "train":
        return _read(plan, train, train["split"], problems)
    if data["eval"]:
        return _read(plan, data["eval"], data["eval"]["split"], problems)
    # No evaluation source and no hold-out: a test (or validation) split folder next to the training split.
    if not data["holdout"] and train["kind"] == "path" and train["split"] in (None, "train"):
        info = detect_source(resolve(Path(plan["base_dir"]), train["source"]), None, train["format"])
        for split in ("test", "validation"):
            if split in info.splits:
                return _read(plan, train, split, problems)
    return Request.of(plan, None, problems).rows([], "no evaluation data", None)


def run_rows(plan: dict, train: Rows, evaluation: Rows | None) -> tuple[Rows, Rows | None]:
    """The rows a run trains and evaluates on, from its sources' whole rows (source_rows): with `holdout`, the
    training rows split in two, the held-out part evaluating where the plan names no evaluation source."""
    data = plan["data"]
    if not data["holdout"]:
        return train, evaluation
    kept, held = hold_out(train, data["holdout"], plan["training"]["seed"])
    return kept, evaluation if data["eval"] else held


def hold_out(rows: Rows, share: float, seed: int) -> tuple[Rows, Rows]:
    """round(n * share) of n rows (at least 1, at most n - 1) held out: ``random.Random(seed)`` shuffles the indices
    0..n-1 and the first ones are held out. Both parts keep the source's order; the same plan holds out the same rows.
    VT418 for fewer than 2 rows."""
    n = len(rows)
    k = min(max(round(n * float(share)), 1), n - 1)
    if n < 2:
        info = rows.source  # the data file or folder, or the Hub dataset's id
        where = str(info.metadata or info.path or info.hub_id) if info is not None else rows.description
        raise VtcError(error(
            "VT418", f"cannot hold out {float(share):.0%} of {n} row{'s' * (n != 1)} for evaluation",
            Span(where), help="add rows, or name a separate evaluation source with `evaluate on`",
        ))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = sorted(order[:k])
    held_set = set(held)
    return (rows.subset([i for i in range(n) if i not in held_set],
                        f"{n - k} of {rows.description}, {k} held out (seed {seed})"),
            rows.subset(held, f"{k} of {rows.description}, held out (seed {seed})"))


def describe_sources(plan: dict) -> list[tuple[str, str]]:
    """(label, sentence) for each data source of the plan as `vtc plan` shows it: the kind detected (without reading
    rows or opening images), or the problem `vtc run` would stop at. Never raises on user data."""
    data = plan["data"]
    out = []
    for label, src in (("train", data["train"]), ("evaluation", data["eval"])):
        if not src:
            continue
        if src["kind"] == "hub":
            folder = resolve(Path(plan["base_dir"]), src["source"])
            why = (f"the recipe says hf://, so the folder {src['source']} beside the recipe is not read"
                   if folder.exists() else f"no folder {src['source']} beside the recipe: read as a Hub dataset")
            out.append((label, f"Hugging Face Hub dataset {src['source']} (split {split_name(src['split'])}; {why}), "
                               "downloaded or read from the Hugging Face cache when the run starts"))
            continue
        try:
            info = detect_source(resolve(Path(plan["base_dir"]), src["source"]), src["split"], src["format"])
        except VtcError as exc:
            out.append((label, f"problem: {exc.diagnostics[0].message}"))
            continue
        splits = f"; split folders: {', '.join(info.splits)}" if info.splits else ""
        out.append((label, f"{info.description}{splits}"))
    if data["holdout"] and not data["eval"]:
        out.append(("evaluation", f"{float(data['holdout']):.0%} of the training rows, held out "
                                  f"(a seeded shuffle, seed {plan['training']['seed']})"))
    # Text output: folder and file names from the recipe or the data are shown with control characters escaped.
    return [(label, printable(sentence, newlines=False)) for label, sentence in out]


def _read(plan: dict, src: dict, split: str | None, problems: list | None) -> Rows:
    """One source's rows: its kind detected (or `hub`), then read by that kind's reader."""
    request = Request.of(plan, split, problems)
    if src["kind"] == "hub":
        info = hub_source(src["source"], split)  # `answer from` is not checked here: the dataset's columns decide
        if Path(src["source"]).exists():
            # `datasets.load_dataset("org/name")` reads a folder of that name in the working directory instead of
            # the Hub, silently. The plan says Hub (the compiler found no such folder beside the recipe, or the
            # recipe wrote hf://): `hf://datasets/org/name` makes `datasets` go to the Hub (remote only).
            info = replace(info, hub_id=HUB_URL + src["source"])
    else:
        path = resolve(Path(plan["base_dir"]), src["source"])
        info = detect_source(path, split, src["format"])
        mode = request.answer["from"]
        if mode in ANSWER_KINDS and info.kind != ANSWER_KINDS[mode][0]:
            raise VtcError(error("VT413", f"`answer from {mode}` needs {ANSWER_KINDS[mode][1]}; {path} is "
                                 f"{info.description}", Span(str(path)), help=_answer_help(info)))
    return READERS[info.kind].read(info, request)


def _answer_help(info: SourceInfo) -> str:
    if info.kind in ("imagefolder", "table"):
        return "write `answer from column <name>` (or leave `answer from` out to detect it)"
    if info.kind == "classes":
        return "write `answer from folders` (or leave `answer from` out)"
    if info.kind == "captions":
        return "write `answer from captions` (or leave `answer from` out)"
    return "leave `answer from` out: the answers come from the data"
