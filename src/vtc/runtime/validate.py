"""Row-level data validation before any model loads: ``scan_plan_data(plan) -> [Diagnostic]``.

Used by ``vtc check --data`` and at the start of ``vtc run``. Imports pillow only (never torch); a Hugging Face
dataset source (saved, parquet, hub) imports ``datasets``, which does not import torch either. Every problem comes
back at once, each naming its data file and row: missing folders and files, empty datasets, rows without an answer,
unknown columns, unreadable / zero-byte / truncated images; images in an imagefolder that its metadata never lists
are a warning (Hugging Face's loader silently skips them).
"""

from __future__ import annotations

import copy
from pathlib import Path

from vtc.diagnostics import Diagnostic, Span, VtcError, error, sort_diagnostics, warning


def scan_plan_data(plan: dict) -> list[Diagnostic]:
    """Every data problem of the plan's training and evaluation sources (an empty list when all is well)."""
    from vtc.runtime import data as data_mod

    found: list[Diagnostic] = []
    data = plan.get("data") or {}
    # The hold-out rows are training rows: scan the whole training source once.
    whole = copy.deepcopy(plan)
    whole.setdefault("data", {})["holdout"] = None
    targets = [("train", whole)]
    if data.get("eval") or not data.get("holdout"):
        targets.append(("eval", whole))
    seen_files: set[Path] = set()
    for which, p in targets:
        try:
            rows = data_mod.load_rows(p, which)
        except VtcError as exc:
            found.extend(exc.diagnostics)
            continue
        found.extend(_scan_rows(rows, seen_files))
        found.extend(_unlisted(rows))
    return _dedupe(found)


def _scan_rows(rows, seen: set[Path]) -> list[Diagnostic]:
    out = []
    for i in range(len(rows)):
        paths = rows.images(i)
        if not paths:
            # A `datasets` row: its images live inside the dataset; decode them.
            try:
                rows[i]
            except VtcError as exc:
                out.extend(exc.diagnostics)
            continue
        for path in paths:
            if path in seen:
                continue
            seen.add(path)
            problem = check_image_file(path)
            if problem:
                out.append(error("VT411", f"cannot read image {path.name}: {problem}", rows.origin(i),
                                 help=f"replace {path} with a valid image, or remove the row"))
    return out


def check_image_file(path: str | Path) -> str | None:
    """None when pillow decodes the whole file, else the reason in a few words."""
    from PIL import Image

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        return "the file does not exist"
    if size == 0:
        return "the file is empty (0 bytes)"
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                # Decode at 1/8 scale: the whole stream is still read, so truncation is still found.
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
            if im.width < 1 or im.height < 1:
                return "the image has no pixels"
    except Image.DecompressionBombError as exc:
        return f"the image is too large to open safely ({exc})"
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        text = str(exc)
        if "cannot identify image file" in text:
            return "not an image pillow can decode (wrong format or a corrupt file)"
        if "truncated" in text.lower():
            return "the file is truncated"
        return text or type(exc).__name__
    return None


def _unlisted(rows) -> list[Diagnostic]:
    """imagefolder: images in the folder that the metadata file never lists (datasets skips them silently)."""
    info = getattr(rows, "source", None)
    if info is None or info.kind != "imagefolder" or info.metadata is None:
        return []
    from vtc.runtime.data import _walk_images

    listed = {p.resolve() for i in range(len(rows)) for p in rows.images(i)}
    present = [p for p in _walk_images(info.metadata.parent) if p.resolve() not in listed]
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
