"""What kind of source a folder or file is, looked at without reading its rows (`vtc plan` shows the sentence).

    detect_source(path, split=None) -> SourceInfo(kind, path, description, splits, root, metadata)
    hub_source(name, split) -> SourceInfo       a Hugging Face dataset id (nothing is looked at)
    split_name(split) -> str                    the split a source reads: the plan's, else `train`

A folder, in this order: a `datasets.save_to_disk` folder (saved); split folders (`train/`, `test/`, ...) select a
sub-folder; `metadata.jsonl|csv|parquet` (imagefolder); `*.parquet` (parquet); images with `.txt` captions
(captions); class sub-folders (classes). A file: `.jsonl`/`.json` whose first row has `messages` (conversations),
else flat rows (table); `.csv` (table); `.parquet` (parquet).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from vtc.diagnostics import Span, VtcError, error
from vtc.runtime.images import IMAGE_EXTENSIONS, is_image_file
from vtc.runtime.sources.files import (REFUSAL_HELP, SMALL_LIMIT, first_json_row, is_virtual, list_files,
                                       list_folders, locate, read_data, real_folder, refusal, walk_images)

METADATA_FILES = ("metadata.jsonl", "metadata.csv", "metadata.parquet")
SPLIT_NAMES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "dev", "val"),
    "test": ("test", "testing", "eval", "evaluation"),
}


@dataclass(frozen=True)
class SourceInfo:
    """What a data source is and how vtc reads it. ``description`` is the sentence ``vtc plan`` shows."""

    kind: str  # imagefolder | captions | classes | conversations | table | saved | parquet | hub
    path: Path | None  # the folder or file (None for hub)
    description: str
    splits: tuple[str, ...] = ()  # split folders found (imagefolder-style), or the dataset's splits
    root: Path | None = None  # the folder actually read (the split folder when splits exist)
    metadata: Path | None = None  # imagefolder: the metadata file
    hub_id: str | None = None  # hub: the dataset id

    def where(self) -> str:
        """The folder as descriptions name it: `shapes/train` for a split folder, else `shapes`."""
        return f"{self.path.name}/{self.root.name}" if self.root != self.path else self.path.name


def split_name(split: str | None) -> str:
    """The split a source reads: the plan's, or `train` where the plan names none (as `datasets` reads one)."""
    return split or "train"


def hub_source(name: str, split: str | None) -> SourceInfo:
    return SourceInfo("hub", None, f"{name} ({split_name(split)})", hub_id=name)


def detect_source(path: str | Path, split: str | None = None) -> SourceInfo:
    """What kind of source ``path`` is (see the module docstring), with a description for ``vtc plan``.

    Raises VtcError VT401 (missing), VT402 (empty), VT403 (images but no answers), VT404 (unknown split).
    """
    path = Path(path)
    if not path.exists():
        raise VtcError(error("VT401", f"data folder or file not found: {path}", Span(str(path)),
                             help="check the path in `from` (relative paths start at the recipe's folder)"))
    if is_virtual(path):
        raise VtcError(error("VT437", f"cannot read {path} as data: it is in the system's virtual file systems "
                             "(/proc, /sys, /dev), not a data folder", Span(str(path)), help=REFUSAL_HELP["VT437"]))
    if not path.is_dir():
        # A data file named by `from` obeys the rule within the folder that holds it: a regular file (a FIFO would
        # block, a device fill the memory) whose real path is in that folder (a link to ~/.cache/huggingface/token
        # named rows.csv would print the token as a column name).
        found = refusal(path, path.parent)
        if found:
            code, reason = found
            raise VtcError(error(code, f"cannot read {path} as data: {reason}", Span(str(path)),
                                 help="name the file itself in `from`, not a link to it" if code == "VT415"
                                 else REFUSAL_HELP[code]))
        return _detect_file(path)
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return SourceInfo("saved", path, f"a dataset saved with `datasets` ({path.name})", root=path,
                          splits=_saved_splits(path))
    splits = _split_dirs(path)
    root = path
    if splits:
        want = split_name(split)
        if want not in splits:
            raise VtcError(error(
                "VT404", f"no `{want}` split in {path}: it has {', '.join(splits)}", Span(str(path)),
                help=f"write `split {next(iter(splits))}` or put the rows in a `{want}/` folder",
            ))
        root = splits[want]
        if locate(root, real_folder(path)) == "outside":
            raise VtcError(error("VT415", f"the split folder {root.name} of {path} leads outside it (links followed); "
                                 "it is not read", Span(str(root)), help=REFUSAL_HELP["VT415"]))
    elif split not in (None, "train"):
        raise VtcError(error("VT404", f"{path} has no split folders, so it has no `{split}` split",
                             Span(str(path)), help="remove `split ...`, or make train/ and test/ folders"))
    found = tuple(splits)
    where = f"{path.name}/{root.name}" if root != path else path.name
    for name in METADATA_FILES:
        if _present(root / name):  # a link or a FIFO too: the reader refuses it by name (never read as captions)
            return SourceInfo("imagefolder", path, f"imagefolder {where} with {name}", found, root, root / name)
    parquet = sorted(root.glob("*.parquet")) or sorted((root / "data").glob("*.parquet"))
    if parquet:
        return SourceInfo("parquet", path, f"{len(parquet)} parquet file{'s' * (len(parquet) != 1)} in {where}",
                          found, root)
    images = list_files(root, images=True)
    if not images:
        nested = walk_images(root)
        if nested:
            classes = sorted({p.relative_to(root).parts[0] for p in nested})
            return SourceInfo("classes", path, f"{len(classes)} class folders in {where} "
                              f"({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})", found, root)
        raise VtcError(error(
            "VT402", f"no images in {root}", Span(str(root)),
            help=f"put image files ({', '.join(IMAGE_EXTENSIONS[:4])}, ...) in the folder, with metadata.jsonl, "
                 ".txt captions or class sub-folders for the answers",
        ))
    if any(_present(p.with_suffix(".txt")) for p in images):
        return SourceInfo("captions", path, f"images with .txt captions in {where}", found, root)
    folders = list_folders(root)
    if any(list_files(p, images=True) for p in folders):
        classes = [p.name for p in folders]
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
        first = first_json_row(path)
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


def _present(path: Path) -> bool:
    """Whether something other than a folder is at ``path`` (a file, a link, a FIFO); nothing is opened."""
    return os.path.lexists(path) and not path.is_dir()


def _saved_splits(path: Path) -> tuple[str, ...]:
    try:
        return tuple(json.loads(read_data(path / "dataset_dict.json", path, SMALL_LIMIT))["splits"])
    except (VtcError, ValueError, KeyError, TypeError):
        return ()
