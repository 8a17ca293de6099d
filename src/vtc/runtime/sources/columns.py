"""Columns of tabular rows: which one holds the answer, the answer's text, and the records of a table's rows.

Shared by the readers of tables (imagefolder metadata, flat .jsonl/.json/.csv rows) and of `datasets` datasets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

from vtc.diagnostics import Span, VtcError, did_you_mean, error
from vtc.runtime.sources.files import REFUSAL_HELP, BadLine, columns, locate, path_problem, read_table
from vtc.runtime.sources.clips import frame_folder_problem, is_clip_path
from vtc.runtime.sources.request import Request
from vtc.runtime.sources.rows import Record

# Tried in this order when the recipe does not say which column holds the answer.
ANSWER_COLUMNS = ("text", "caption", "answer", "label", "labels", "report", "description", "output", "response",
                  "target", "ground_truth", "transcription", "latex", "formula", "class", "category", "solution")


def read_columns(path: Path, empty_help: str) -> tuple[list, list[str]]:
    """A table file's (line, row) pairs and its columns in order of appearance; VT402 for a file with no rows."""
    table = list(read_table(path))
    if not table:
        raise VtcError(error("VT402", f"the dataset is empty: {path} has no rows", Span(str(path)), help=empty_help))
    return table, columns(table)


def pick_column(columns: Sequence[str], answer: dict, where: Span) -> str:
    """The answer column: the recipe's (`answer from column X`), else the first of ANSWER_COLUMNS present."""
    cols = list(columns)
    if answer["from"] == "column" and answer["column"]:
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


def answer_text(value: Any) -> str | None:
    """A cell as answer text; None for an empty cell (None, NaN, blank)."""
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


def table_records(table, source: Path, image_col: str | None, col: str, root: Path, resolve: Callable[[str], Path],
                  request: Request, *, row_help: str, image_help: str, missing_help: str,
                  video_cols: Sequence[str] = ()) -> list[Record]:
    """The records of a metadata or table file's rows: every row's images and clips (``resolve`` turns a written
    name into a path; one leaving ``root`` is refused, never opened) and its answer from ``col``. Every bad row is
    reported, all at once (request.report), with its line.

    A name in the image column that is a video file or a folder (a folder of frames; with a `video` clause also a
    .dcm/.tif/.tiff) is a clip; ``video_cols`` hold clips only: a name, or a list of them, an element that is
    itself a list being the frames of one clip. A row needs at least one image or clip."""
    records, problems = [], []
    clips = request.clips
    for line, row in table:
        span = Span(str(source), line)
        if isinstance(row, BadLine):
            problems.append(row.diagnostic)
            continue
        if not isinstance(row, dict):
            problems.append(error("VT408", f"line {line} of {source.name} is not a JSON object", span,
                                  help=row_help))
            continue
        before = len(problems)
        paths, videos = [], []

        def take(name: Any, column: str, *, clip_only: bool, frame: bool = False) -> Path | None:
            """One named file: its checked path (added to paths or videos unless ``frame``), or None (a problem)."""
            if not isinstance(name, str) or not name.strip():
                problems.append(error("VT408", f"row {line} of {source.name} has no `{column}`", span,
                                      help=image_help))
                return None
            p = resolve(name)
            is_clip = clip_only or is_clip_path(p, clips)
            where = locate(p, root)
            if where == "outside":
                problems.append(error("VT415", f"row {line} of {source.name} points outside the dataset folder: "
                                      f"{name}", span, help=f"keep the images and clips inside {root}"))
                return None
            if where == "special" and not frame and is_clip and p.is_dir():  # a folder of frames
                found = frame_folder_problem(p, root, span, f"row {line} of {source.name} lists {name}")
                if found is not None:
                    problems.append(found)
                    return None
            elif where == "special":  # a FIFO (which would block), a device, a folder: never opened
                problems.append(path_problem(p, root, span, f"row {line} of {source.name} lists {name}")
                                or error("VT437", f"row {line} of {source.name} lists {name}: it is not a regular "
                                         "file", span, help=REFUSAL_HELP["VT437"]))
                return None
            elif where != "file":
                problems.append(error("VT409", f"row {line} of {source.name} lists {name}, which does not exist",
                                      span, help=missing_help))
                return None
            if not frame:
                (videos if is_clip else paths).append(p)
            return p

        names = row.get(image_col) if image_col else None
        has_clip_value = any(row.get(c) not in (None, "", []) for c in video_cols)
        if image_col and not (names in (None, "", []) and has_clip_value):
            for name in names if isinstance(names, list) else [names]:
                take(name, image_col, clip_only=False)
        for vcol in video_cols:
            value = row.get(vcol)
            if value in (None, "", []):
                continue
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, list):  # one clip given as its frames
                    frames = [take(f, vcol, clip_only=False, frame=True) for f in item]
                    if item and all(f is not None for f in frames):
                        videos.append(tuple(frames))
                    elif not item:
                        problems.append(error("VT408", f"row {line} of {source.name}: a clip in `{vcol}` lists no "
                                              "frames", span, help="list the clip's frame files, or name a video"))
                else:
                    take(item, vcol, clip_only=True)
        if not image_col and not videos and len(problems) == before:
            problems.append(error("VT408", f"row {line} of {source.name} has no `{video_cols[0]}`", span,
                                  help=image_help))
        text = answer_text(row.get(col))
        if text is None:
            problems.append(error("VT412", f"row {line} of {source.name} has no answer (column `{col}` is empty)",
                                  span, help=f"fill in `{col}`, or remove the row"))
            continue
        if (paths or videos) and len(problems) == before:
            records.append(Record(span, text, tuple(paths), videos=tuple(videos)))
    request.report(problems)
    return records
