"""Row-level data validation before any model loads, and the preparation that comes with it.

    scan_data(plan) -> DataReport            every problem of every row, plus a summary table (vtc check --data)
    scan_data_rows(plan) -> (DataReport, (train, eval) | None)   the same, and the rows a run would use
    scan_plan_data(plan) -> [Diagnostic]     the same problems as a list (kept for callers of the first version)
    validate_for_run(plan, run_dir=None) -> DataCheck   the start of `vtc run`: the rows to train on, bad rows
                                             stopped or skipped as the recipe says (`bad rows skip|stop`)

Imports pillow only (never torch); a Hugging Face dataset source imports ``datasets``, which does not import torch.
Every image of every row is decoded once, in parallel worker processes, and its standardised form goes into the
image cache (vtc.runtime.prepare, vtc.runtime.cache), so the check IS the preparation: a second check or run over
the same files only hashes them. The data files are read once a run: the rows the scan reads and checks are the
rows validate_for_run hands to the trainer.

What is reported, each with its data file and row or line (codes in docs/diagnostics.md):

    errors (bad rows)   VT409 listed file missing, VT410 image missing, VT411 unreadable / truncated / zero-byte
                        image, VT412 empty or missing answer, VT408 malformed row, VT419 text that is not UTF-8,
                        VT414 malformed conversation, VT415 path escaping the dataset folder (never opened),
                        VT421 unsupported format, VT424 aspect ratio over 200 (Qwen-VL refuses it), VT425 image over
                        the decompression-bomb limit (refused before decoding, with its size), VT426 DICOM without
                        pydicom; clips (vtc.runtime.video, each clip checked once and its sampled frames decoded):
                        VT450 unreadable / truncated / not a clip, VT451 video without PyAV, VT452 no frames, VT453
                        shorter than one sample at the chosen rate, VT454 window outside the clip, VT456 frames of
                        different sizes, VT458 a clip for a family without video (and VT410 / VT437 / VT411 ...)
    warnings            VT420 images present but never listed, VT422 duplicate rows (same images and answer),
                        VT423 images far outside the usual 300-1000 px (longest side under 100 or over 10,000 px),
                        VT435 an evaluation set too small to score a model (under MIN_EVAL_ROWS rows), VT436
                        long free-text answers scored by exact_match alone (a near-0% score that says nothing),
                        VT455 a clip far longer than the cap (sampled below the chosen rate), VT457 a clip whose
                        video tokens exceed `max length`
    and                 VT418 a hold-out that cannot be drawn (fewer than 2 good rows)

The evaluation rows are the ones a run would use: the evaluation source's good rows, or the hold-out drawn from
the training source's good rows (bad rows, and under `bad rows skip` later copies of duplicates, leave first).

With `bad rows stop` (the default) any error stops the run before the model loads. With `bad rows skip` the rows
with errors -- and the later copies of duplicate rows -- are left out and listed in the run folder
(skipped_rows.jsonl), so that nothing disappears silently.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vtc.diagnostics import Diagnostic, Span, VtcError, error, printable, sort_diagnostics, warning

# Qwen2-VL's smart_resize raises for an absolute aspect ratio over 200 ("absolute aspect ratio must be smaller
# than 200"); no other family does better with such strips.
MAX_ASPECT = 200
# "Far outside 300-1000 px": a third of the low end, ten times the high end (longest side). Such images are either
# thumbnails/icons or huge scans that resize turns into a few blurry pixels or a slow decode; a warning, not an error.
SMALL_SIDE, LARGE_SIDE = 100, 10_000
# Diagnostics of one code shown in text before "and N more" (the summary table counts them all; the JSON output and
# skipped_rows.jsonl list them all).
SHOWN_PER_CODE = 10
# An evaluation set under this many rows cannot score a model (VT435): one answer moves a score by 100/n points
# (over 5 points below 20 rows), and the 95% margin of a share measured on n rows is about +-1/sqrt(n) -- +-22
# points at 20 rows, +-50 at 4 -- wider than the before/after difference a fine-tune usually makes. 20 is where the
# score starts to mean something, not where it is precise (a few hundred rows are).
MIN_EVAL_ROWS = 20
# Free text (VT436): exact_match counts an answer right only when all of it matches. Labels and short fields (a
# class, a name, a date, a total) are a few words; when the typical (median) expected answer is longer than this --
# a sentence: a caption, a report, a transcription -- exact_match is near 0% whatever the model learnt.
LONG_ANSWER_WORDS, LONG_ANSWER_CHARS = 6, 50

def label(code: str) -> str:
    """How the summary table names a code's problem: the registry's title (vtc.codes), "(warning)" after a warning's."""
    from vtc.codes import CODES, title

    entry = CODES.get(code)
    return title(code) + (" (warning)" if entry is not None and entry.severity[0] == "warning" else "")


@dataclass
class DataReport:
    """What scan_data found: the diagnostics, the bad rows by key, and counts for the summary table."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    bad: dict = field(default_factory=dict)  # row key (Rows.key) -> [Diagnostic] that make the row bad
    duplicates: dict = field(default_factory=dict)  # row key of a later copy -> Diagnostic (VT422)
    rows: int = 0
    text_only_rows: int = 0
    images: int = 0
    cached: int = 0  # images whose prepared form was in the cache before this check began
    same_content: int = 0  # images with the content of another image of this check (prepared once, not cached)
    seconds: float = 0.0
    sources: list = field(default_factory=list)
    # (path, page) -> (width, height) of every image read: the run report's training image sizes (lifecycle).
    image_sizes: dict = field(default_factory=dict)
    clips: int = 0  # clips checked (each once, however many rows name it)
    # clip (its path, or the tuple of its frame paths, as str) -> {"diagnostics": [...], "info": {...}}: what the
    # check found and measured (frames, fps, duration, size, sampled, frame_size, tokens) for each clip.
    clip_checks: dict = field(default_factory=dict)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    def shown(self, per_code: int = SHOWN_PER_CODE) -> list[Diagnostic]:
        """The diagnostics to print: the first ``per_code`` of each code, then one VT400 note per code."""
        out, seen, more = [], Counter(), Counter()
        for d in self.diagnostics:
            seen[d.code] += 1
            if seen[d.code] <= per_code:
                out.append(d)
            else:
                more[d.code] += 1
        for code, n in sorted(more.items()):
            out.append(warning("VT400", f"... and {n} more {code} ({label(code)}) not shown",
                               help="the summary table counts them all; `--format json` lists every one"))
        return out

    def table(self, policy: str = "stop") -> str:
        """The summary table printed after the diagnostics (text output: what came from the data -- the sources'
        folder and file names -- is shown escaped, vtc.diagnostics.printable)."""
        return printable(self._table(policy))

    def _table(self, policy: str) -> str:
        rate = self.images / self.seconds if self.seconds > 0 else 0.0
        same = (f", {self.same_content:,} the same as another image, prepared once" if self.same_content else "")
        lines = [f"data check: {self.rows:,} row{'s' * (self.rows != 1)} in {len(self.sources)} "
                 f"source{'s' * (len(self.sources) != 1)}, {self.images:,} image{'s' * (self.images != 1)} "
                 f"({self.cached:,} from the cache{same}), {self.seconds:.1f} s ({rate:,.0f} images/s)"]
        if self.clips:
            lines[0] += f", {self.clips:,} clip{'s' * (self.clips != 1)}"
        if self.text_only_rows:
            lines.append(f"  {self.text_only_rows:,} text-only row{'s' * (self.text_only_rows != 1)} (no image)")
        counts = Counter(d.code for d in self.diagnostics if d.code != "VT400")
        if counts:
            lines.append(f"  {'problem':<42} {'count':>7}  code")
            for code, n in sorted(counts.items()):
                lines.append(f"  {label(code):<42} {n:>7,}  {code}")
        bad = len(self.bad)
        if bad:
            what = ("the run stops before the model loads; fix them, or write `bad rows skip` in the recipe"
                    if policy != "skip" else "the run leaves them out and lists them in skipped_rows.jsonl")
            lines.append(f"  {'rows with errors':<42} {bad:>7,}  of {self.rows:,}: {what}")
        elif not counts:
            lines.append("  no problems")
        return "\n".join(lines)


@dataclass
class DataCheck:
    """The start of a run: rows to train and evaluate on (bad ones left out under `bad rows skip`)."""

    train: object  # sources.Rows
    eval: object  # sources.Rows
    report: DataReport
    skipped: list[dict]  # {"file", "row", "page", "code", "reason"} for every row left out

    def write_skipped(self, run_dir: str | Path) -> Path:
        """skipped_rows.jsonl in the run folder: one line per row left out (an empty file when none was)."""
        path = Path(run_dir) / "skipped_rows.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(s, ensure_ascii=False, sort_keys=True) + "\n" for s in self.skipped),
                        encoding="utf-8")
        return path


# --- the scan ----------------------------------------------------------------------------------------------------


def scan_plan_data(plan: dict) -> list[Diagnostic]:
    """Every data problem of the plan's training and evaluation sources (an empty list when all is well)."""
    return scan_data(plan).diagnostics


def scan_data(plan: dict, *, cache=None, workers: int | None = None, use_cache: bool = True) -> DataReport:
    """Check (and prepare) every row of the plan's training and evaluation sources; see the module docstring.

    ``cache``: an ImageCache (default: the user's image cache; ``use_cache=False`` checks without one).
    """
    return _scan(plan, cache, workers, use_cache)[0]


def scan_data_rows(plan: dict) -> tuple[DataReport, tuple | None]:
    """scan_data, and the rows a run would use: (train, eval) of good rows, or None when they cannot be drawn
    (`vtc check --data` measures their tokens with vtc.runtime.preview.token_check)."""
    report, _read, split = _scan(plan, None, None, True)
    return report, split if isinstance(split, tuple) else None


def _scan(plan: dict, cache, workers: int | None, use_cache: bool) -> tuple[DataReport, dict, object]:
    """scan_data, also handing back what each source gave: {"train" | "eval": Rows, or the VtcError that stopped its
    reading}, the rows whole (no hold-out taken out) and without the rows that have problems of their own; and the
    rows a run would use (_split): (train, eval), or the VtcError of a hold-out that cannot be drawn, or None when
    the training source could not be read."""
    from vtc.runtime.cache import ImageCache
    from vtc.runtime.sources import source_rows

    started = time.perf_counter()
    if cache is None and use_cache:
        cache = ImageCache()
    report = DataReport()
    data = plan["data"]
    # The hold-out rows are training rows: the whole training source is scanned once (and split after).
    targets = ["train"]
    if data["eval"] or not data["holdout"]:
        targets.append("eval")
    read: dict = {}
    found: list[Diagnostic] = []
    seen_images: dict[tuple, dict] = {}  # (path, page) -> preparation result
    keys: dict = {"fresh": set(), "hits": []}  # cache keys prepared by this check; keys it found in the cache
    for which in targets:
        listing: list[Diagnostic] = []
        try:
            rows = read[which] = source_rows(plan, which, problems=listing)
        except VtcError as exc:
            read[which] = exc
            found.extend(exc.diagnostics)
            continue
        if len(rows) == 0 and (rows.source is None or not listing):
            continue  # no evaluation data
        report.sources.append(rows.description)
        report.rows += len(rows) + len({d.span for d in listing if d.span is not None})
        for d in listing:
            found.append(d)
            report.bad.setdefault((d.span, ()), []).append(d)
        found.extend(_unlisted(rows, complete=not listing))
        found.extend(_scan_rows(rows, plan, cache, workers, seen_images, report, keys))
    # A duplicate image finds in the cache what this check put there a moment before: not a cache hit.
    report.cached = sum(1 for key in keys["hits"] if key not in keys["fresh"])
    report.same_content += len(keys["hits"]) - report.cached
    split = _split(plan, report, read, found)
    report.diagnostics = _dedupe(found)
    report.seconds = time.perf_counter() - started
    report.image_sizes = {key: tuple(r["size"]) for key, r in seen_images.items() if r.get("size")}
    if cache is not None and use_cache and keys["fresh"]:
        cache.trim()  # only when this scan added entries (listing a large cache costs seconds)
    return report, read, split


def _split(plan: dict, report: DataReport, read: dict, found: list[Diagnostic]):
    """The rows a run trains and evaluates on: bad rows (and, under `bad rows skip`, later copies of duplicates)
    left out of each source, then the hold-out drawn from the training rows that are left (so that `holdout 20%`
    holds out 20% of the rows the run can use). Appends the evaluation set's warnings (VT435, VT436) or the hold-out's
    error (VT418) to ``found``. (train, eval); a VtcError when the hold-out cannot be drawn; None when the training
    source could not be read."""
    from vtc.runtime.sources import run_rows

    train, evaluation = read.get("train"), read.get("eval")
    if not hasattr(train, "subset"):
        return None
    drop = dict(report.bad)
    if plan["data"]["bad_rows"] == "skip":
        for key, d in report.duplicates.items():
            drop.setdefault(key, [d])

    def good(rows):
        if not hasattr(rows, "subset"):
            return None  # no evaluation source read, or one that failed (reported already)
        keep = [i for i in range(len(rows)) if rows.key(i) not in drop]
        return rows if len(keep) == len(rows) else rows.subset(
            keep, f"{rows.description}, {len(rows) - len(keep)} bad left out")

    train, evaluation = good(train), good(evaluation)
    if len(train) == 0:
        return train, evaluation  # nothing to split: the run stops (VT402)
    try:
        train, evaluation = run_rows(plan, train, evaluation)
    except VtcError as exc:
        found.extend(exc.diagnostics)
        return exc
    if evaluation is not None:
        found.extend(_evaluation_warnings(plan, evaluation, len(train)))
    return train, evaluation


def _evaluation_warnings(plan: dict, rows, train_rows: int) -> list[Diagnostic]:
    """VT435: an evaluation set too small to mean anything; VT436: long free-text answers scored by exact_match
    alone. Nothing when there is no evaluation data at all (explain and the run say so)."""
    info = rows.source
    if info is None:
        return []
    where = Span(str(info.metadata or info.path or info.hub_id))
    data = plan["data"]
    held = bool(data["holdout"]) and not data["eval"]
    out = []
    n = len(rows)
    if n < MIN_EVAL_ROWS:
        if held:
            total = n + train_rows
            what = f"{float(data['holdout']):.0%} of the {total:,} usable training rows, held out"
            want = -(-MIN_EVAL_ROWS * 100 // total) if total else None
            fix = (f"a larger hold-out (`holdout {want}%` holds out {MIN_EVAL_ROWS} or more), " if want and want < 50
                   else "")
        else:
            what = rows.description.split(" (")[0]
            fix = ""
        if n == 0:
            message = f"the evaluation set has no rows left ({what}): the run cannot score the model"
        else:
            message = (f"the evaluation set has {n} row{'s' * (n != 1)} ({what}): too few to score a model, one "
                       f"answer moves the score by {100 / n:.0f} points")
        out.append(warning("VT435", message, where, help=(
            f"evaluate on {MIN_EVAL_ROWS} rows or more: {fix}more rows, or a larger set named with `evaluate on`; "
            f"below {MIN_EVAL_ROWS} a before/after difference cannot be told from chance")))
    metrics = plan["evaluation"]["metrics"]
    answers = sorted((rows.answer(i) or "" for i in range(n)), key=len)
    if n and set(metrics) == {"exact_match"}:
        median = answers[n // 2]
        words = len(median.split())
        if words > LONG_ANSWER_WORDS or len(median) > LONG_ANSWER_CHARS:
            origin = plan["provenance"].get("/evaluation/metrics", "default")
            said = "the default metric" if origin == "default" else f"`metric exact_match` ({origin})"
            out.append(warning(
                "VT436", f"the expected answers are free text (a typical one has {words} word{'s' * (words != 1)}, "
                         f"{len(median)} characters), and {said} counts an answer right only when all of it matches: "
                         "the score will be near 0% whatever the model learnt", where,
                help="write `metric cer` (characters wrong, for transcriptions and OCR) or `metric wer` (words wrong, "
                     "for reports and captions); `metric exact_match, cer` keeps both"))
    return out


def _scan_rows(rows, plan: dict, cache, workers, seen: dict, report: DataReport, keys: dict) -> list[Diagnostic]:
    """Prepare every image of ``rows`` (in parallel, streaming) and turn the results into row diagnostics.
    ``keys``: the cache keys this check prepared ("fresh") and those it found in the cache ("hits")."""
    from vtc.runtime.prepare import prepare_images, remember

    resize = plan["images"]["resize"]
    window = plan["images"]["window"]
    out: list[Diagnostic] = []
    file_rows = [i for i in range(len(rows)) if rows.images(i)]
    report.text_only_rows += sum(1 for i in range(len(rows)) if not rows.images(i) and not rows.in_dataset(i)
                                 and not _videos(rows, i))
    out.extend(_scan_clips(rows, plan, report, workers, use_cache=cache is not None))

    def tasks():
        for i in file_rows:
            for path, frame in zip(rows.images(i), rows.frames(i)):
                if (str(path), frame) not in seen:
                    seen[(str(path), frame)] = {}  # reserved: the result fills it in below
                    yield str(path), frame

    todo = sum(len(rows.images(i)) for i in file_rows)
    # The stat index of this source: a file unchanged since the last check (size, times, inode) is not read again.
    name = f"{rows.description.split(' (')[0]}|{getattr(rows.source, 'root', None)}"
    memo = cache.read_index(name) if cache is not None else None
    before = len(memo or {})
    from vtc.runtime.progress import bar

    # Progress: one image checked (and prepared, or found in the cache) at a time (vtc.runtime.progress).
    unique = len({(str(p), f) for i in file_rows for p, f in zip(rows.images(i), rows.frames(i))} - seen.keys())
    with bar("images", unique, "images") as progress:
        for result in prepare_images(tasks(), resize=resize, window=window, cache=cache, workers=workers, count=todo,
                                     memo=memo):
            progress.update(1)
            if not result["cached"]:
                remember(memo, result, resize, window)
            seen[(result["path"], result["frame"])] = result
            report.images += 1
            if result["cached"]:
                keys["hits"].append(result["key"])
            elif result.get("key"):
                keys["fresh"].add(result["key"])
    if memo is not None and (len(memo) != before or keys["fresh"]):
        cache.write_index(name, memo)
    first_copy: dict[tuple, Span] = {}
    for i in file_rows:
        span = rows.origin(i)
        key = rows.key(i)
        digests = []
        for path, frame in zip(rows.images(i), rows.frames(i)):
            r = seen.get((str(path), frame)) or {}
            where = path.name + (f" (page {frame + 1})" if frame else "")
            for d in _image_diagnostics(r, where, path, span):
                out.append(d)
                if d.is_error:
                    report.bad.setdefault(key, []).append(d)
            digests.append((r.get("digest"), frame))
        if key in report.bad:
            continue
        dup = (tuple(digests), tuple(_clip_key(c) for c in _videos(rows, i)), rows.answer(i))
        if dup in first_copy:
            first = first_copy[dup]
            at = f"row {first.line}" if first.file == span.file else first.location
            d = warning("VT422", f"row {span.line} of {Path(span.file).name} repeats {at} (same image"
                                 f"{'s' * (len(digests) != 1)} and answer)", span,
                        help="remove the copy: duplicates weigh that row double in training",
                        related=((first, "first here"),))
            out.append(d)
            report.duplicates[key] = d
        else:
            first_copy[dup] = span
    # Rows stored inside a `datasets` dataset: their images live in the dataset; decode them.
    for i in range(len(rows)):
        if not rows.images(i) and rows.in_dataset(i):
            try:
                row = rows[i]
            except VtcError as exc:
                out.extend(exc.diagnostics)
                report.bad.setdefault(rows.key(i), []).extend(exc.diagnostics)
                continue
            report.images += sum(1 for m in row["messages"] for part in m["content"] if part.get("type") == "image")
    return out


def _videos(rows, i: int) -> list:
    """Row i's clips (Rows.videos), [] for rows read by a source that has none."""
    videos = getattr(rows, "videos", None)
    return list(videos(i)) if videos is not None else []


def _clip_key(clip) -> str | tuple:
    return tuple(str(p) for p in clip) if isinstance(clip, (tuple, list)) else str(clip)


def _scan_clips(rows, plan: dict, report: DataReport, workers: int | None = None,
                use_cache: bool = True) -> list[Diagnostic]:
    """The clips of ``rows`` checked (vtc.runtime.video.check_clip), each once for the whole scan; its diagnostics
    given to every row that names it (errors make the row bad). A clip in a family without video: VT458 once a
    row, nothing decoded. ``use_cache``: the checked clips go to the clip cache (read from it when there)."""
    import dataclasses
    import os
    from concurrent.futures import ThreadPoolExecutor

    from vtc.runtime.progress import bar
    from vtc.runtime.video import check_clip, no_video_family

    clip_rows = [i for i in range(len(rows)) if _videos(rows, i)]
    if not clip_rows:
        return []
    out: list[Diagnostic] = []
    video = plan["video"]
    if video is None:
        family = plan["model"]["family"]
        for i in clip_rows:
            d = no_video_family(family, rows.origin(i))
            out.append(d)
            report.bad.setdefault(rows.key(i), []).append(d)
        return out
    checks = report.clip_checks
    todo = {_clip_key(c): c for i in clip_rows for c in _videos(rows, i) if _clip_key(c) not in checks}
    max_length = plan["training"]["max_length"]
    geometry = plan["model"]["geometry"]
    window = plan["images"]["window"]
    first_span = {}
    for i in clip_rows:
        for c in _videos(rows, i):
            first_span.setdefault(_clip_key(c), rows.origin(i))
    def check(item):
        key, clip = item
        info: dict = {}
        found = check_clip(clip, video, first_span[key], max_length=max_length, geometry=geometry, window=window,
                           info=info, cache=use_cache)
        return key, {"diagnostics": found, "info": info}

    # Clips are checked in threads (PyAV and pillow decode and resize outside the GIL), results in order.
    # Progress: one clip checked (probed, its sampled frames decoded) at a time (vtc.runtime.progress).
    threads = max(1, min(len(todo), workers or os.cpu_count() or 1, 8))
    with bar("clips", len(todo), "clips") as progress:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for key, result in pool.map(check, todo.items()):
                checks[key] = result
                report.clips += 1
                progress.update(1)
    for i in clip_rows:
        span, key = rows.origin(i), rows.key(i)
        for c in _videos(rows, i):
            for d in checks[_clip_key(c)]["diagnostics"]:
                d = d if d.span == span else dataclasses.replace(d, span=span)
                out.append(d)
                if d.is_error:
                    report.bad.setdefault(key, []).append(d)
    return out


def _image_diagnostics(r: dict, where: str, path: Path, span: Span) -> list[Diagnostic]:
    """The diagnostics of one prepared image (result of prepare_one)."""
    code, problem = r.get("code"), r.get("problem")
    if code == "VT410":
        return [error("VT410", f"image file not found: {where}", span,
                      help="check the file name, or remove the row that lists it")]
    if code == "VT421":
        from vtc.runtime.images import unsupported_help

        return [error("VT421", f"cannot use {where}: {problem}", span, help=unsupported_help(path))]
    if code == "VT425":
        return [error("VT425", f"refused to open {where}: {problem}", span,
                      help="shrink the image below the limit, or remove the row that lists it")]
    if code == "VT437":
        return [error("VT437", f"cannot read image {where}: {problem}", span,
                      help="replace it with a regular image file, or remove the row that lists it (vtc never opens "
                           "pipes, devices or system files)")]
    if code == "VT426":
        from vtc.runtime.dicom import INSTALL_HELP

        return [error("VT426", f"{where} is a DICOM file, and reading DICOM needs pydicom", span, help=INSTALL_HELP)]
    if code:
        return [error(code, f"cannot read image {where}: {problem}", span,
                      help=r.get("help") or f"replace {path} with a valid image, or remove the row")]
    size = r.get("size")
    if not size:
        return []
    w, h = size
    ratio = max(w, h) / max(1, min(w, h))
    if ratio > MAX_ASPECT:
        return [error("VT424", f"{where} is {w} x {h} px, an aspect ratio of {ratio:,.0f}:1; Qwen-VL refuses "
                               f"images over {MAX_ASPECT}:1", span,
                      help="crop it into pieces, or pad it towards a square, or remove the row")]
    longest = max(w, h)
    if longest < SMALL_SIDE or longest > LARGE_SIDE:
        how = "small" if longest < SMALL_SIDE else "large"
        return [warning("VT423", f"{where} is {w} x {h} px, far outside the usual 300-1000 px (very {how})", span,
                        help="check that it is the image you meant; `resize` brings every image to one size, "
                             "but it cannot add detail to a thumbnail")]
    return []


def _unlisted(rows, complete: bool = False) -> list[Diagnostic]:
    """imagefolder: images in the folder that the metadata file never lists (datasets skips them silently).

    ``complete``: every metadata row is in ``rows`` (none was left out), so the metadata need not be read again.
    Otherwise it is read again (text only, no image) for the names the rows left out list: cheaper than carrying
    every row's names along on every load for a case that ends in a list of problems."""
    info = getattr(rows, "source", None)
    if info is None or info.kind != "imagefolder" or info.metadata is None:
        return []

    import os

    from vtc.runtime.images import IMAGE_EXTENSIONS
    from vtc.runtime.sources.files import read_table

    def norm(p) -> str:  # string normalisation: resolve() costs an lstat per component on 100,000 files
        text = str(p)
        return os.path.normpath(text if text.startswith(os.sep) else os.path.abspath(text))

    listed = {norm(p) for i in range(len(rows)) for p in rows.images(i)}
    # Clips are listed too: a video or multi-frame file, each frame of a frame list, and a frame folder whole.
    for i in range(len(rows)):
        for clip in _videos(rows, i):
            listed.update(norm(p) for p in (clip if isinstance(clip, (tuple, list)) else (clip,)))
    try:  # rows left out for a problem still list their images (and clips)
        for _, row in ([] if complete else read_table(info.metadata)):
            if isinstance(row, dict):
                for col, value in row.items():
                    if col == "file_name" or col.endswith(("_file_name", "file_names")) or col in ("video", "videos"):
                        for name in value if isinstance(value, list) else [value]:
                            if isinstance(name, str) and name.strip():
                                listed.add(norm(info.metadata.parent / name))
    except VtcError:
        pass
    present = []
    top = norm(info.metadata.parent)
    for dirpath, dirnames, filenames in os.walk(top):  # strings, not Paths: this visits every file
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and os.path.join(dirpath, d) not in listed)  # a frame folder: a clip, listed
        for f in sorted(filenames):
            if f[0] != "." and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS:
                full = os.path.join(dirpath, f)
                if full not in listed:
                    present.append(Path(full))
    if not present:
        return []
    names = ", ".join(p.name for p in present[:5]) + (", ..." if len(present) > 5 else "")
    return [warning("VT420", f"{len(present)} image{'s' * (len(present) != 1)} in {info.metadata.parent} "
                    f"{'are' if len(present) != 1 else 'is'} not listed in {info.metadata.name} and will not be "
                    f"used: {names}", Span(str(info.metadata)),
                    help=f"add a row for each to {info.metadata.name}, or move them out of the folder")]


def _dedupe(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    out, seen = [], set()
    for d in diagnostics:
        key = (d.code, d.message, d.span)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return sort_diagnostics(out)


# --- the start of a run ------------------------------------------------------------------------------------------


def validate_for_run(plan: dict, run_dir: str | Path | None = None, *, cache=None,
                     workers: int | None = None) -> DataCheck:
    """Check every row, then hand over the rows to train on, as the plan's `bad rows` policy says.

    ``bad rows stop`` (default): any error raises VtcError with the problems and the summary table (as a note).
    ``bad rows skip``: rows with errors (and later copies of duplicates) are left out; DataCheck.skipped lists them
    and, with ``run_dir``, skipped_rows.jsonl is written there. The returned rows read images from the cache.
    Raises VtcError VT402 when no training row is left.

    The data is read once: the rows handed over are the ones the scan read and checked, the bad ones left out and
    then split by the hold-out (sources.run_rows, the seeded split load_rows makes), so that the hold-out is a share
    of the rows the run can use.
    """
    from vtc.runtime.cache import ImageCache

    cache = cache if cache is not None else ImageCache()
    policy = plan["data"]["bad_rows"]
    report, read, split = _scan(plan, cache, workers, True)
    if report.errors and policy != "skip":
        if not report.bad:  # a problem of a whole source (a missing folder, a wrong column): no row to leave out
            raise VtcError(report.shown())
        raise VtcError(report.shown() + [
            error("VT427", f"{len(report.bad):,} bad row{'s' * (len(report.bad) != 1)} stop the run "
                           "(`bad rows stop`, the default)", help="fix them, or write `bad rows skip` to leave them "
                           "out (they are then listed in the run folder)\n" + report.table(policy)),
        ])
    for failed in [*read.values(), split]:
        if isinstance(failed, VtcError):  # `bad rows skip` leaves out rows, not a source that cannot be read
            raise failed
    drop = dict(report.bad)
    if policy == "skip":
        for key, d in report.duplicates.items():
            drop.setdefault(key, [d])
    train, evaluation = split
    for rows in (train, evaluation):
        if rows is not None:
            rows.cache = cache
    skipped = [_skipped_entry(key, ds) for key, ds in sorted(drop.items(), key=lambda kv: _sort_key(kv[0]))]
    check = DataCheck(train, evaluation, report, skipped)
    if len(check.train) == 0:
        raise VtcError(error("VT402", "no training rows are left after leaving out the bad ones",
                             help="fix the rows listed above (`vtc check --data` lists them all)"))
    if run_dir is not None:
        check.write_skipped(run_dir)
    return check


def _sort_key(key: tuple):
    span, frames = key
    return (span.file if span else "", span.line if span else 0, frames)


def _skipped_entry(key: tuple, diagnostics: list[Diagnostic]) -> dict:
    span, frames = key
    d = diagnostics[0]
    entry = {"file": span.file if span else None, "row": span.line if span else None, "code": d.code,
             "reason": d.message}
    if frames:
        entry["page"] = frames[0] + 1
    return entry
