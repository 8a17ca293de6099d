"""What kind of source a folder or file is, looked at without reading its rows (`vtc plan` shows the sentence).

    detect_source(path, split=None, format="auto") -> SourceInfo(kind, path, description, splits, root, metadata,
                                                                   format, layout)
    row_format(row, layout=None) -> "messages" | "sharegpt" | "llava" | "prompt_completion" | None
    hub_source(name, split) -> SourceInfo       a Hugging Face dataset id (nothing is looked at)
    split_name(split) -> str                    the split a source reads: the plan's, else `train`

A folder, in this order: a `datasets.save_to_disk` folder (saved); split folders (`train/`, `test/`, ...) select a
sub-folder; `metadata.jsonl|csv|parquet` (imagefolder); `*.parquet` (parquet); images (or video files, or frame
folders) with `.txt` captions (captions); class sub-folders (classes) -- unless the folder holds a conversation
file (LLaMA-Factory's layout: the file, dataset_info.json naming it, an image folder): that file is read (chats),
and a data file vtc cannot read beside image folders is VT447, never class folders. A file: `.jsonl`/`.json` whose
first row is a conversation (row_format: messages -> conversations; sharegpt, llava, prompt_completion -> chats;
`format` pins it), else flat rows (table); `.csv` (table); `.parquet` (parquet).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

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

    kind: str  # imagefolder | captions | classes | conversations | chats | table | saved | parquet | hub
    path: Path | None  # the folder or file (None for hub)
    description: str
    splits: tuple[str, ...] = ()  # split folders found (imagefolder-style), or the dataset's splits
    root: Path | None = None  # the folder actually read (the split folder when splits exist)
    metadata: Path | None = None  # imagefolder: the metadata file
    hub_id: str | None = None  # hub: the dataset id
    format: str | None = None  # chats: sharegpt | llava | prompt_completion (vtc.runtime.sources.chats)
    layout: dict | None = None  # chats: dataset_info.json's "columns" and "tags" for the file ({} or None: none)

    def where(self) -> str:
        """The folder as descriptions name it: `shapes/train` for a split folder, else `shapes`."""
        return f"{self.path.name}/{self.root.name}" if self.root != self.path else self.path.name


def split_name(split: str | None) -> str:
    """The split a source reads: the plan's, or `train` where the plan names none (as `datasets` reads one)."""
    return split or "train"


def hub_source(name: str, split: str | None) -> SourceInfo:
    return SourceInfo("hub", None, f"{name} ({split_name(split)})", hub_id=name)


# The formats of conversation files (`format ...`; the plan's data.train.format): `messages` is read by
# conversations.py, the others by chats.py.
CHAT_FORMATS = ("messages", "sharegpt", "llava", "prompt_completion")
DATA_SUFFIXES = (".json", ".jsonl")


def row_format(row: Any, layout: dict | None = None) -> str | None:
    """The conversation format a row has, from its keys: prompt_completion (`prompt` + `completion`), llava
    (`image` + `conversations`), messages (`messages` with typed content parts), sharegpt (`messages` with text
    content or `conversations` with from/value, `<image>` placeholders, `images`), or None (not a conversation)."""
    if not isinstance(row, dict):
        return None
    columns = (layout or {}).get("columns") or {}
    if columns.get("messages") in row:
        return "sharegpt"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    turns = row.get("messages", row.get("conversations"))
    if not isinstance(turns, list):
        return None
    if "conversations" in row and "image" in row and "images" not in row:
        return "llava"
    if any(isinstance(m, dict) and ("from" in m or "value" in m) for m in turns):
        return "sharegpt"
    if any(isinstance(m, dict) and isinstance(m.get("content"), list) for m in turns):
        return "messages"
    return "sharegpt"  # text content: `<image>` placeholders become images, and text-only rows read the same


def _file_info(path: Path, fmt: str, root: Path, layout: dict | None = None, where: str = "") -> SourceInfo:
    kind = "conversations" if fmt == "messages" else "chats"
    what = "conversations" if fmt == "messages" else f"{fmt} conversations"
    return SourceInfo(kind, path, f"{what} in {where}{path.name}", root=root, format=fmt, layout=layout)


def detect_source(path: str | Path, split: str | None = None, format: str = "auto") -> SourceInfo:
    """What kind of source ``path`` is (see the module docstring), with a description for ``vtc plan``.
    ``format``: the plan's source format (auto: detected from the rows of a .json/.jsonl file).

    Raises VtcError VT401 (missing), VT402 (empty), VT403 (images but no answers), VT404 (unknown split), VT447
    (a data file beside image folders that is not a conversation file), VT448 (dataset_info.json).
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
        return _detect_file(path, format)
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
            _not_a_data_file(format, root, where, f"an imagefolder ({name})")
            return SourceInfo("imagefolder", path, f"imagefolder {where} with {name}", found, root, root / name)
    parquet = sorted(root.glob("*.parquet")) or sorted((root / "data").glob("*.parquet"))
    if parquet:
        _not_a_data_file(format, root, where, "parquet files")
        return SourceInfo("parquet", path, f"{len(parquet)} parquet file{'s' * (len(parquet) != 1)} in {where}",
                          found, root)
    images = list_files(root, media=True)  # images and video files (clips)
    chat = _data_file(root, where, format, bool(images))
    if chat is not None:
        return replace(chat, path=chat.path, splits=found)
    _not_a_data_file(format, root, where, "images, and no .json or .jsonl data file")
    if not images and any(_present(f.parent / (f.name + ".txt")) for f in list_folders(root)):
        # folders of frames, each with a same-named caption (`beat/` + `beat.txt`): clips with captions
        return SourceInfo("captions", path, f"frame folders with .txt captions in {where}", found, root)
    if not images:
        nested = walk_images(root, videos=True)
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
    if any(list_files(p, media=True) for p in folders):
        classes = [p.name for p in folders]
        return SourceInfo("classes", path, f"class folders in {where} ({', '.join(classes[:5])})", found, root)
    raise VtcError(error(
        "VT403", f"{root} holds {len(images)} images but no answers", Span(str(root)),
        help="add metadata.jsonl (file_name + text columns), a .txt caption beside each image, "
             "or sort the images into one sub-folder per class",
    ))


def _detect_file(path: Path, format: str = "auto") -> SourceInfo:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return SourceInfo("parquet", path, f"parquet file {path.name}", root=path.parent)
    if suffix in DATA_SUFFIXES:
        if format in CHAT_FORMATS:
            return _file_info(path, format, path.parent)
        found = row_format(first_json_row(path))
        if found is not None:
            return _file_info(path, found, path.parent)
        return SourceInfo("table", path, f"rows of {path.name}", root=path.parent)
    if suffix == ".csv":
        return SourceInfo("table", path, f"rows of {path.name}", root=path.parent)
    if is_image_file(path):
        raise VtcError(error("VT403", f"{path} is a single image, not a dataset", Span(str(path)),
                             help="point `from` at the folder that holds the images"))
    raise VtcError(error("VT403", f"cannot read {path} as data: unknown file type `{suffix or path.name}`",
                         Span(str(path)), help="use a folder of images, a .jsonl/.json/.csv file or parquet"))


DATASET_INFO = "dataset_info.json"


def _not_a_data_file(format: str, root: Path, where: str, holds: str) -> None:
    """VT449 when `format` pins a conversation file's format and the folder holds none: the pin would be ignored."""
    if format not in CHAT_FORMATS:
        return
    raise VtcError(error(
        "VT449", f"`format {format}` pins the format of a conversation file, but {where} holds {holds}",
        Span(str(root)),
        help=f"name the .json or .jsonl file in `from` (`from ./{where}/chats.json format {format}`), or remove "
             f"`format {format}` to read {where} as it is"))


def _data_file(root: Path, where: str, format: str, top_images: bool) -> SourceInfo | None:
    """A conversation file in the folder ``root`` (LLaMA-Factory's layout: the file, dataset_info.json naming it,
    and an image folder beside them), or None (no data file here: the image folders are read as before).

    VT448: dataset_info.json names several datasets, a missing file, or is not JSON. VT447: data files beside image
    folders, none of them (or several) a conversation file vtc reads."""
    info_file = root / DATASET_INFO
    if _present(info_file):
        return _dataset_info(info_file, root, where, format)
    try:
        files = [p for p in list_files(root) if p.suffix.lower() in DATA_SUFFIXES]
    except VtcError:
        return None
    if not files:
        return None
    found = {p: (format if format in CHAT_FORMATS else row_format(first_json_row(p))) for p in files}
    chats = [p for p, f in found.items() if f is not None]
    if len(chats) == 1:
        return _file_info(chats[0], found[chats[0]], root, where=f"{where}/")
    if len(chats) > 1:
        names = ", ".join(p.name for p in chats)
        raise VtcError(error("VT447", f"{where} holds several conversation files ({names}); vtc cannot tell which "
                             "one to read", Span(str(root)),
                             help=f"name the data file in `from` (from ./{where}/{chats[0].name})"))
    if top_images:
        return None  # images with captions, say, and some other JSON file: read as before
    name = files[0].name
    raise VtcError(error(
        "VT447", f"{where} holds {name} beside image folders, and {name} is not a conversation file vtc reads "
        "(sharegpt, llava, prompt_completion, messages)", Span(str(files[0])),
        help=f"name the data file in `from` (from ./{where}/{name}) with its `format`, or move it out if the "
             "sub-folders are classes"))


def _dataset_info(info_file: Path, root: Path, where: str, format: str) -> SourceInfo:
    """LLaMA-Factory's dataset_info.json: {"name": {"file_name", "formatting", "columns", "tags"}}, one dataset."""
    span = Span(str(info_file))
    try:
        entries = json.loads(read_data(info_file, root, SMALL_LIMIT).decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        raise VtcError(error("VT448", f"{where}/{DATASET_INFO} is not valid JSON", span,
                             help="fix the file, or name the data file in `from`")) from None
    if not isinstance(entries, dict) or not entries:
        raise VtcError(error("VT448", f"{where}/{DATASET_INFO} names no dataset", span,
                             help='write {"name": {"file_name": "data.json", "formatting": "sharegpt"}}, or name '
                                  "the data file in `from`"))
    if len(entries) > 1:
        names = list(entries)
        first = entries[names[0]].get("file_name", names[0]) if isinstance(entries[names[0]], dict) else names[0]
        raise VtcError(error("VT448", f"{where}/{DATASET_INFO} names {len(names)} datasets "
                             f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})", span,
                             help=f"name the data file in `from`: from ./{where}/{first}"))
    name, entry = next(iter(entries.items()))
    file_name = entry.get("file_name") if isinstance(entry, dict) else None
    if not isinstance(file_name, str) or not file_name:
        raise VtcError(error("VT448", f"{where}/{DATASET_INFO}: dataset `{name}` has no file_name (vtc reads "
                             "local files, not Hub datasets named there)", span,
                             help="name the data file in `from`, or give the dataset a file_name"))
    path = root / file_name
    if locate(path, Path(real_folder(root))) != "file" or path.suffix.lower() not in DATA_SUFFIXES:
        raise VtcError(error("VT448", f"{where}/{DATASET_INFO} names {file_name}, which is not a .json or .jsonl "
                             f"file in {where}", span,
                             help=f"put {file_name} beside {DATASET_INFO}, or fix its file_name"))
    formatting = entry.get("formatting", "alpaca")
    layout = {"columns": entry.get("columns") or {}, "tags": entry.get("tags") or {}}
    if format in CHAT_FORMATS:
        fmt = format
    elif formatting == "sharegpt":
        fmt = "sharegpt"
    else:
        fmt = row_format(first_json_row(path), layout)
        if fmt is None:
            raise VtcError(error("VT448", f"{where}/{DATASET_INFO}: dataset `{name}` is in LLaMA-Factory's "
                                 f"`{formatting}` formatting, which vtc does not read", span,
                                 help="convert it to sharegpt (messages + images), or name another file"))
    return _file_info(path, fmt, root, layout, where=f"{where}/")


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
