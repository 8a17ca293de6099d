"""saved, parquet, hub: the sources that Hugging Face `datasets` reads (imported here only, when one is read).

saved: a folder written by ``save_to_disk``; parquet: parquet file(s) (a file, a folder of them, or its `data/`);
hub: a dataset id (``org/name``), downloaded or read from the Hugging Face cache. The image column is the one the
recipe names (`images from column X`), else the first Image feature, else the first of IMAGE_COLUMNS; conversation
datasets (a `messages` or `conversations` column) bring their own prompts.

Clips: a column of video file (or frame folder) paths -- `video`, `videos`, `video_path`, `clip`, a path or a list of
them, inside the data folder as images are -- gives each row its clips (a dataset may have only such a column).
`datasets`' own Video feature (decoded with torchcodec) is not read: VT460 says so. `<video>` in a dataset's
conversations is VT441 (write the rows as a .jsonl file with a `videos` list instead).
"""

from __future__ import annotations

import io
import json
import os
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from vtc.diagnostics import Span, VtcError, did_you_mean, error
from vtc.runtime.failures import redact
from vtc.runtime.images import open_image
from vtc.runtime.sources import chats
from vtc.runtime.sources.clips import frame_folder_problem
from vtc.runtime.sources.columns import answer_text, pick_column
from vtc.runtime.sources.detect import SourceInfo, split_name
from vtc.runtime.sources.files import locate, path_problem, real_folder
from vtc.runtime.sources.request import Request
from vtc.runtime.sources.rows import Record, Rows

# Tried in this order for the image column of a `datasets` dataset (an Image feature wins over any name).
IMAGE_COLUMNS = ("image", "images", "img", "picture", "photo", "file_name", "image_path", "path")
# Columns of clip paths (video files or frame folders).
VIDEO_COLUMNS = ("video", "videos", "video_path", "clip")


def read(info: SourceInfo, request: Request) -> Rows:
    if info.kind == "hub":
        return _rows(_load_hub(info.hub_id, request.split), info, Span(info.hub_id), request)
    return _rows(_load_local(info, request.split), info, Span(str(info.path)), request)


def _load_hub(name: str, split: str | None):
    """A Hub dataset: downloaded (huggingface_hub's download bars show), or read from the cache. The Hub is asked once
    (vtc.runtime.hub) before `datasets` tries: unreachable, the cache is read without a request, so there are no
    retry loops, and a dataset that is not cached is one VT416 within seconds."""
    try:
        import datasets
    except ImportError:
        raise VtcError(error("VT417", "reading a Hugging Face dataset needs the `datasets` package",
                             Span(name), help="pip install 'vtc[train]'")) from None
    from vtc.runtime import hub

    user_offline = hub.offline_by_user(datasets=True)
    problem = hub.unreachable(datasets=True)
    went_offline = problem is not None and not user_offline
    if went_offline:
        hub.go_offline()
    try:
        with _datasets_warnings(off=went_offline):  # our note says what its "Using the latest cached version" does
            ds = datasets.load_dataset(name, split=split_name(split))
    except Exception as exc:  # datasets raises many types for "offline" and "not found"
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if "split" in str(exc).lower() and "unknown split" in str(exc).lower():
            raise VtcError(error("VT404", f"dataset {name} has no split `{split}`", Span(name),
                                 help=f"check the split name ({text})")) from None
        if user_offline:
            raise VtcError(error(
                "VT416", f"cannot download dataset {name}: the network is off ({user_offline} is set) and it is not "
                "in the local cache", Span(name),
                help=f"unset {user_offline} to download it once; or " + hub.what_to_do(name, dataset=True))) from None
        if problem is not None:
            raise VtcError(error(
                "VT416", f"cannot download dataset {name}: it is not in the local cache and the Hugging Face Hub "
                f"cannot be reached: {problem}", Span(name), help=hub.what_to_do(name, dataset=True))) from None
        if type(exc).__name__ in ("DatasetNotFoundError", "RepositoryNotFoundError", "GatedRepoError"):
            raise VtcError(error(
                "VT416", f"cannot download dataset {name}: the Hugging Face Hub has no such dataset, or it is private "
                "or gated and this machine is not logged in", Span(name),
                help=f"check the name on the Hub (and `hf auth login` for a private or gated one) ({text})")) from None
        raise VtcError(error("VT416", f"cannot download dataset {name}: {redact(text)}", Span(name),
                             help="check the name on the Hub and run again; or " + hub.what_to_do(name, dataset=True)
                             )) from None
    if went_offline:
        hub.note_cached(problem, f"dataset {name}")
    return ds


@contextmanager
def _datasets_warnings(*, off: bool):
    """`datasets`' warnings off (errors still show) while ``off``."""
    if not off:
        yield
        return
    from datasets.utils import logging as ds_logging

    level = ds_logging.get_verbosity()
    ds_logging.set_verbosity_error()
    try:
        yield
    finally:
        ds_logging.set_verbosity(level)


def _load_local(info: SourceInfo, split: str | None):
    try:
        import datasets
    except ImportError:
        raise VtcError(error("VT417", f"reading {info.description} needs the `datasets` package",
                             Span(str(info.path)), help="pip install 'vtc[train]'")) from None
    _confined_files(info)
    try:
        if info.kind == "saved":
            ds = datasets.load_from_disk(str(info.path))
            if isinstance(ds, datasets.DatasetDict):
                want = split_name(split)
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


def _confined_files(info: SourceInfo) -> None:
    """The rule of the data folder for the files `datasets` will open: every file of a saved dataset's folder, and
    every parquet file read, is a regular file whose real path stays in the data folder (VT415, VT437), before
    `datasets` opens any of them (it would follow a link anywhere, and block on a FIFO)."""
    root = real_folder(info.path if info.kind == "saved" else info.root)
    if info.kind == "saved":
        def fail(exc: OSError) -> None:
            raise VtcError(error("VT439", f"cannot read the data folder {exc.filename or info.path}: "
                                 f"{exc.strerror or type(exc).__name__}", Span(str(exc.filename or info.path)),
                                 help="check the folder's permissions")) from None

        files = []
        for dirpath, dirnames, filenames in os.walk(info.path, onerror=fail):
            files.extend(Path(dirpath) / f for f in filenames)
            files.extend(Path(dirpath) / d for d in dirnames if os.path.islink(os.path.join(dirpath, d)))
    elif info.path.is_file():
        files = [info.path]
    else:
        files = sorted(info.root.glob("*.parquet")) or sorted((info.root / "data").glob("*.parquet"))
    if info.kind == "saved":
        # The files `datasets` opens are also those its JSON files name: dataset_dict.json's splits (folders) and
        # each state.json's data files ("../../elsewhere.arrow" would load another dataset's rows).
        files.extend(_saved_names(info.path, Path(root)))
    for f in sorted(set(files)):
        if os.path.isdir(f):  # a folder (a saved dataset's split): only where it leads matters
            if locate(f, Path(root)) == "outside":
                raise VtcError(path_problem(f, Path(root), Span(str(f)), f"cannot read {info.description}, "
                                            f"whose folder {f.name}"))
            continue
        problem = path_problem(f, Path(root), Span(str(f)), f"cannot read {info.description}, whose file {f.name}")
        if problem is not None:
            raise VtcError(problem)


def _saved_names(path: Path, root: Path) -> list[Path]:
    """The split folders and data files that a saved dataset's dataset_dict.json and state.json files name (read
    under the rule, 1 MB at most each): what load_from_disk will open."""
    from vtc.runtime.sources.files import SMALL_LIMIT, read_data

    def read_json(p: Path):
        try:
            return json.loads(read_data(p, root, SMALL_LIMIT))
        except ValueError:
            return None  # not JSON: `datasets` says so (VT417)

    named: list[Path] = []
    folders = [path]
    if os.path.lexists(path / "dataset_dict.json"):
        splits = (read_json(path / "dataset_dict.json") or {}).get("splits")
        folders = [path / k for k in splits if isinstance(k, str)] if isinstance(splits, list) else []
        named.extend(folders)
    for folder in folders:
        if locate(folder, root) == "outside" or not os.path.lexists(folder / "state.json"):
            continue  # refused by the caller / `datasets` says what is missing
        state = read_json(folder / "state.json")
        for entry in (state or {}).get("_data_files") or []:
            if isinstance(entry, dict) and isinstance(entry.get("filename"), str):
                named.append(folder / entry["filename"])
    return named


def _image_roots(info: SourceInfo) -> list[str]:
    """Where the path of an image stored as a path (not bytes) may lead: the data folder; for a Hub dataset, the
    Hugging Face caches its files were downloaded to."""
    if info.kind != "hub":
        return [real_folder(info.path if info.kind == "saved" else info.root)]
    roots = []
    try:
        import datasets.config

        roots.append(real_folder(datasets.config.HF_DATASETS_CACHE))
    except Exception:  # noqa: BLE001 - the `datasets` configuration is optional here
        pass
    try:
        from huggingface_hub import constants

        roots.append(real_folder(constants.HF_HUB_CACHE))
    except Exception:  # noqa: BLE001
        pass
    return roots


def _rows(ds, info: SourceInfo, where: Span, request: Request) -> Rows:
    """The rows of a loaded dataset: records (index + answer) now, messages and images when a row is read."""
    from datasets import Image as ImageFeature

    desc = info.description
    columns = list(ds.column_names)
    features = ds.features

    def is_image(col: str) -> bool:
        f = features.get(col)
        return isinstance(f, ImageFeature) or (isinstance(getattr(f, "feature", None), ImageFeature))

    def is_video_feature(col: str) -> bool:
        f = features.get(col)
        return any(type(x).__name__ == "Video" and type(x).__module__.startswith("datasets")
                   for x in (f, getattr(f, "feature", None)))

    decoded = [c for c in columns if is_video_feature(c)]
    if decoded:
        raise VtcError(error("VT460", f"the column `{decoded[0]}` of {desc} is a `datasets` Video feature, which vtc "
                             "does not read (`datasets` decodes it with torchcodec)", where,
                             help="store the clips as files in the data folder and give their paths in a `video` "
                                  "column (a .jsonl, .csv or parquet file of rows), then check again"))
    image_column = request.image_column
    video_col = next((c for c in VIDEO_COLUMNS if c in columns and c != image_column), None)
    if image_column:
        if image_column not in columns:
            raise VtcError(error("VT407", f"no image column `{image_column}` in {desc}; its columns are "
                                 f"{', '.join(columns)}", where,
                                 help=did_you_mean(image_column, columns) or "write `images from column <name>`"))
        image_col = image_column
    else:
        found = [c for c in columns if is_image(c)] or [c for c in IMAGE_COLUMNS if c in columns]
        if not found and video_col:
            found = [None]  # clips only
        if not found:
            raise VtcError(error("VT407", f"cannot tell which column of {desc} holds the images "
                                 f"(columns: {', '.join(columns)})", where, help="write `images from column <name>`"))
        image_col = found[0]
    conversation_col = next((c for c in ("messages", "conversations") if c in columns), None)
    if len(ds) == 0:
        raise VtcError(error("VT402", f"the dataset is empty: {desc}", where, help="add rows"))
    # Decoding only the columns we need keeps other columns' images out of memory.
    records, problems = [], []
    if conversation_col:
        for i, row in enumerate(ds.select_columns([conversation_col])):
            span = Span(where.file, i + 1)
            msgs = row[conversation_col]
            if _holds_video(msgs):
                problems.append(error("VT441", f"row {i + 1} of {desc}: the text holds `<video>`, and vtc does not "
                                      "read clips in a `datasets` dataset's conversations (it would be trained as "
                                      "literal text)", span, help="write the rows as a .jsonl file with a `videos` "
                                      "list of clip files (ShareGPT), or remove the video rows"))
                continue
            msgs = _normalise_messages(msgs or [])
            answers = [m for m in msgs if m.get("role") == "assistant"]
            text = _message_text(answers[-1]) if answers else None
            if not text or not text.strip():
                problems.append(error("VT412", f"row {i + 1} of {desc} has no assistant answer", span,
                                      help="end each conversation with the assistant's answer"))
                continue
            records.append(Record(span, text, index=i))
        request.report(problems)

        def messages_getter(i: int) -> list:
            return _normalise_messages(ds[i][conversation_col])
    else:
        col = pick_column([c for c in columns if c not in (image_col, video_col) and not is_image(c)],
                          request.answer, where)
        for i, value in enumerate(ds.select_columns([col])[col]):
            span = Span(where.file, i + 1)
            text = answer_text(value)
            if text is None:
                problems.append(error("VT412", f"row {i + 1} of {desc} has no answer (column `{col}` is empty)",
                                      span, help=f"fill in `{col}`, or remove the row"))
                continue
            records.append(Record(span, text, index=i))
        request.report(problems)
        desc = f"{desc}, answers from `{col}`"
        messages_getter = None
    roots = _image_roots(info)
    base = info.root if info.kind != "hub" else None
    if video_col:
        records = _with_clips(records, ds.select_columns([video_col])[video_col], roots, base, desc, request,
                              needed=image_col is None)
    if image_col is None:
        return request.rows(records, f"{desc} ({len(records)} rows)", info, messages_getter=messages_getter)

    # The image column as stored ({"bytes", "path"} for an Image feature, a string for a path column), never decoded
    # by `datasets`: it would open a stored path wherever it leads. vtc decodes the bytes, and opens a path only
    # inside the data folder (_image_roots), as every other source does.
    image_ds = ds.select_columns([image_col]).with_format("arrow")

    def image_getter(i: int) -> list:
        """Row i's images, RGB with EXIF applied."""
        span = Span(where.file, i + 1)
        try:
            value = image_ds[i].column(image_col)[0].as_py()
        except Exception as exc:
            raise VtcError(error("VT411", f"cannot read the image of row {i + 1} of {desc}: "
                                 f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                                 span, help="fix or remove the row")) from None
        if value is None or value == []:
            raise VtcError(error("VT410", f"row {i + 1} of {desc} has no image", span,
                                 help="remove the row or add its image"))
        return [_rgb(_confined(v, roots, base, span, i, desc), span)
                for v in (value if isinstance(value, (list, tuple)) else [value])]

    return request.rows(records, f"{desc} ({len(records)} rows)", info, image_getter=image_getter,
                        messages_getter=messages_getter)


def _with_clips(records: list[Record], values: list, roots: list[str], base: Path | None, desc: str,
                request: Request, *, needed: bool) -> list[Record]:
    """The records with their clips from a column of clip paths (a path or a list of them; a folder is a folder of
    frames); a row whose clip is refused, missing or (``needed``: the dataset has no images) absent is a problem."""
    out, problems = [], []
    for rec in records:
        i = rec.index
        value = values[i]
        items = [] if value in (None, "") else value if isinstance(value, list) else [value]
        try:
            if not items and needed:
                raise VtcError(error("VT410", f"row {i + 1} of {desc} has no clip", rec.origin,
                                     help="remove the row or add its clip"))
            clips = tuple(_clip_path(v, roots, base, rec.origin, i, desc) for v in items)
        except VtcError as exc:
            problems.extend(exc.diagnostics)
            continue
        out.append(replace(rec, videos=clips))
    request.report(problems)
    return out


def _clip_path(value, roots: list[str], base: Path | None, span: Span, i: int, desc: str) -> Path:
    """A clip path of a dataset row, kept inside the data folder: a folder of frames, or a file (_confined)."""
    if isinstance(value, str) and not value.startswith(("http://", "https://", "hf://")):
        p = Path(os.path.expanduser(value))
        p = p if p.is_absolute() or base is None else base / p
        if p.is_dir():
            real = os.path.realpath(p)
            root = next((r for r in roots if real.startswith(r.rstrip(os.sep) + os.sep)), roots[0])
            problem = frame_folder_problem(p, root, span, f"the clip of row {i + 1} of {desc} ({value[:200]})")
            if problem is not None:
                raise VtcError(problem)
            return p
    if not isinstance(value, str):
        raise VtcError(error("VT410", f"the clip of row {i + 1} of {desc} is not a path", span,
                             help="give each row's clip as a file path (relative to the data folder)"))
    return Path(_confined(value, roots, base, span, i, desc))


def _confined(value, roots: list[str], base: Path | None, span: Span, i: int, desc: str):
    """An image value as stored, with a path kept only when it stays inside ``roots`` (relative paths start at
    ``base``, the data folder) and is a regular file: VT415 / VT437 otherwise, VT410 when it is missing."""
    if isinstance(value, dict) and value.get("bytes"):
        return value
    path = value.get("path") if isinstance(value, dict) else value
    if not isinstance(path, str):
        return value  # not a path: _rgb says what it is
    if path.startswith(("http://", "https://", "hf://")):
        raise VtcError(error("VT415", f"the image of row {i + 1} of {desc} is a URL ({path[:200]}); vtc downloads "
                             "no image a data set names", span, help="store the images in the dataset, or download "
                             "them into the data folder"))
    p = Path(os.path.expanduser(path))
    if not p.is_absolute():
        if base is None:
            raise VtcError(error("VT410", f"the image of row {i + 1} of {desc} is a relative path ({path[:200]}) "
                                 "with no folder to start from", span, help="store the images in the dataset"))
        p = base / p
    for root in roots:
        where = locate(p, Path(root))
        if where == "outside":
            continue
        if where == "missing":
            raise VtcError(error("VT410", f"the image of row {i + 1} of {desc} is not found: {path[:200]}", span,
                                 help="put the image back where the dataset says, or remove the row"))
        if where == "special":
            raise VtcError(path_problem(p, Path(root), span, f"the image of row {i + 1} of {desc} ({path[:200]})"))
        return str(p)
    raise VtcError(error("VT415", f"the image of row {i + 1} of {desc} points outside the data folder: {path[:200]}",
                         span, help="keep the images inside the data folder, or store them in the dataset"))


def _rgb(im, span: Span):
    """A PIL image from a `datasets` value (PIL image, {"bytes", "path"} dict, or a path), RGB, EXIF applied."""
    from PIL import Image, ImageOps

    from vtc.runtime.images import _to_rgb

    if isinstance(im, dict):
        if im.get("bytes"):
            try:
                im = Image.open(io.BytesIO(im["bytes"]))
                im.load()
            except Image.DecompressionBombError as exc:
                raise VtcError(error("VT425", f"refused to open the image of this row: {exc}", span,
                                     help="shrink the image below the limit, or remove the row")) from None
            except (OSError, ValueError, SyntaxError, EOFError) as exc:
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
    return im if im.mode == "RGB" else _to_rgb(im)


def _message_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or "" for p in content or [] if isinstance(p, dict) and p.get("type") == "text")


def _holds_video(messages) -> bool:
    return any(isinstance(m, dict) and "<video>" in str(m.get("content", m.get("value", ""))) for m in messages or [])


def _normalise_messages(messages: list) -> list:
    """Dataset messages: TRL-style {"type": "image"} placeholders and ShareGPT-style `<image>` placeholders in the
    text numbered in order (the images column's order); ShareGPT's from/value (human, gpt) read as role/content."""
    out, k = [], 0
    for m in messages:
        if not isinstance(m, dict):
            continue
        role = m.get("role") or chats.ROLES.get(m.get("from"), m.get("from"))
        content = m.get("content", m.get("value"))
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parts = []
        for p in content or []:
            if not isinstance(p, dict):
                continue
            if p.get("type") == "image":
                parts.append({"type": "image", "image": k})
                k += 1
            elif p.get("type") == "text" and p.get("text") is not None:
                for j, chunk in enumerate(chats.PLACEHOLDER.split(p["text"])):
                    if j % 2:  # an <image> placeholder (videos are refused before)
                        parts.append({"type": "image", "image": k})
                        k += 1
                    elif chunk.strip("\n"):
                        parts.append({"type": "text", "text": chunk})
        out.append({"role": ROLE_NAMES.get(role, role), "content": parts})
    return out


ROLE_NAMES = {"human": "user", "gpt": "assistant"}
