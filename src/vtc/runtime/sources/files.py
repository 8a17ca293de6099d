"""Reading data files: tables (.jsonl, .json, .csv, .parquet) as numbered rows, text as UTF-8, folder listings, and
the confinement of the paths that rows name (a path may not leave the dataset folder: VT415).

    read_table(path) -> iterator of (line, row)      a row is a dict, another JSON value, or a BadLine
    read_json_rows(path) -> iterator of (line, row)  .jsonl (a bad line is a BadLine, not the end) or a JSON array
    first_json_row(path) -> value | None             for detection: reads no further than the first row of a .jsonl
    read_text(path) -> str                           UTF-8 (a BOM allowed); VT419 naming the line otherwise
    locate(path, root) -> "outside" | "file" | "missing"   nothing is opened
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from vtc.diagnostics import Diagnostic, Span, VtcError, error
from vtc.runtime.images import is_image_file


def resolve(base: Path, source: str) -> Path:
    """A path as the plan or a row writes it: `~` expanded, relative to ``base``."""
    p = Path(os.path.expanduser(str(source)))
    return p if p.is_absolute() else base / p


# --- tables ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadLine:
    """A line of a .jsonl file that cannot be a row (not UTF-8, not JSON): its problem, reported at its line."""

    diagnostic: Diagnostic


def read_table(path: Path) -> Iterator[tuple[int, Any]]:
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
        text = read_text(path)
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
    yield from read_json_rows(path)


def columns(table: list[tuple[int, Any]]) -> list[str]:
    """Every column of a table's rows, in the order they first appear."""
    cols: list[str] = []
    for _, row in table:
        if isinstance(row, dict):  # a BadLine has no columns
            for c in row:
                if c not in cols:
                    cols.append(c)
    return cols


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise VtcError(error("VT419", f"{path.name} is not UTF-8 text", Span(str(path), line),
                             help="save the file as UTF-8")) from None
    except OSError as exc:
        raise VtcError(error("VT419", f"cannot read {path}: {exc.strerror or exc}", Span(str(path)),
                             help="check the file's permissions")) from None


def read_json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, row) pairs; in a .jsonl file each line stands alone, so a bad line is a BadLine, not the end."""
    if path.suffix.lower() == ".json":
        yield from _json_array(path, read_text(path))
        return
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VtcError(error("VT419", f"cannot read {path}: {exc.strerror or exc}", Span(str(path)),
                             help="check the file's permissions")) from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.lstrip().startswith(b"["):
        yield from _json_array(path, read_text(path))
        return
    for n, raw in enumerate(data.split(b"\n"), start=1):
        yield from _json_line(path, n, raw)


def _json_line(path: Path, n: int, raw: bytes) -> Iterator[tuple[int, Any]]:
    """Line n of a .jsonl file: nothing for a blank line, else (n, value) or (n, BadLine)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield n, BadLine(error(
            "VT419", f"line {n} of {path.name} is not UTF-8 text (byte {raw[exc.start:exc.end].hex(' ')} at "
                     f"column {exc.start + 1})", Span(str(path), n, exc.start + 1),
            help="save the file as UTF-8 (a spreadsheet's 'CSV UTF-8' or an editor's 'Save with encoding')"))
        return
    if not line.strip():
        return
    try:
        yield n, json.loads(line)
    except json.JSONDecodeError as exc:
        yield n, BadLine(error("VT408", f"line {n} of {path.name} is not valid JSON: {exc.msg}",
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


def first_json_row(path: Path) -> Any:
    """The first row of a .jsonl or .json file that is not a bad line, or None (no row, or the file is unreadable).

    Detection needs only this row: a .jsonl file is read a line at a time up to it (a JSON array, whose first row
    cannot be told before it is parsed, is read whole)."""
    try:
        if path.suffix.lower() != ".json":
            with open(path, "rb") as f:
                start = True  # before the first line that is not blank
                for n, raw in enumerate(f, start=1):
                    if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                        raw = raw[3:]
                    if start and raw.strip():
                        start = False
                        if raw.lstrip().startswith(b"["):
                            break  # the file is a JSON array
                    for _, row in _json_line(path, n, raw.rstrip(b"\n")):
                        if not isinstance(row, BadLine):
                            return row
                else:
                    return None
        for _, row in read_json_rows(path):
            if not isinstance(row, BadLine):
                return row
    except (OSError, VtcError):
        return None
    return None


# --- folders -------------------------------------------------------------------------------------------------------


def list_files(folder: Path) -> list[Path]:
    """The visible files directly in ``folder`` ([] when it cannot be listed)."""
    try:
        return [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    except OSError:
        return []


def walk_images(folder: Path) -> list[Path]:
    """Every visible image file under ``folder``, folders and files in sorted order."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith(".") and is_image_file(f):
                out.append(Path(dirpath) / f)
    return out


# --- confinement ---------------------------------------------------------------------------------------------------


def inside(p: Path, root: Path) -> bool:
    """Whether p, symlinks followed, is inside root (an already resolved folder). Nothing is opened."""
    return locate(p, root) != "outside"


def locate(p: Path, root: Path) -> str:
    """"outside" (p, symlinks followed, leaves root, an already resolved folder), "file" or "missing".

    Nothing is opened. Path.resolve() costs an lstat per path component, seconds for 100,000 rows: here the folder
    part is resolved once per folder (cached) and the file costs one lstat (plus a resolve if it is a symlink).
    """
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
