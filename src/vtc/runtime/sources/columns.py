"""Columns of tabular rows: which one holds the answer, the answer's text, and the records of a table's rows.

Shared by the readers of tables (imagefolder metadata, flat .jsonl/.json/.csv rows) and of `datasets` datasets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

from vtc.diagnostics import Span, VtcError, did_you_mean, error
from vtc.runtime.sources.files import REFUSAL_HELP, BadLine, columns, locate, path_problem, read_table
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


def table_records(table, source: Path, image_col: str, col: str, root: Path, resolve: Callable[[str], Path],
                  request: Request, *, row_help: str, image_help: str, missing_help: str) -> list[Record]:
    """The records of a metadata or table file's rows: every row's images (``resolve`` turns a written name into a
    path; one leaving ``root`` is refused, never opened) and its answer from ``col``. Every bad row is reported, all
    at once (request.report), with its line."""
    records, problems = [], []
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
        names = row.get(image_col)
        paths = []
        for name in names if isinstance(names, list) else [names]:
            if not isinstance(name, str) or not name.strip():
                problems.append(error("VT408", f"row {line} of {source.name} has no `{image_col}`", span,
                                      help=image_help))
                continue
            p = resolve(name)
            where = locate(p, root)
            if where == "outside":
                problems.append(error("VT415", f"row {line} of {source.name} points outside the dataset folder: "
                                      f"{name}", span, help=f"keep the images inside {root}"))
            elif where == "special":  # a FIFO (which would block), a device, a folder: never opened
                problems.append(path_problem(p, root, span, f"row {line} of {source.name} lists {name}")
                                or error("VT437", f"row {line} of {source.name} lists {name}: it is not a regular "
                                         "file", span, help=REFUSAL_HELP["VT437"]))
            elif where != "file":
                problems.append(error("VT409", f"row {line} of {source.name} lists {name}, which does not exist",
                                      span, help=missing_help))
            else:
                paths.append(p)
        text = answer_text(row.get(col))
        if text is None:
            problems.append(error("VT412", f"row {line} of {source.name} has no answer (column `{col}` is empty)",
                                  span, help=f"fill in `{col}`, or remove the row"))
            continue
        if paths and len(problems) == before:
            records.append(Record(span, text, tuple(paths)))
    request.report(problems)
    return records
