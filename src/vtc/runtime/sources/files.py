"""Reading data files: tables (.jsonl, .json, .csv, .parquet) as numbered rows, text as UTF-8, folder listings, and
the confinement rule for every file a data set names (vtc.confine: the one rule of vtc for files named by a recipe, a
plan or a data set).

The rule, for data: a file is opened only if its real path (links followed) stays inside the data folder (VT415),
it is a regular file -- never a FIFO (which blocks for ever), a device (/dev/zero reads until memory runs out), a
socket, or a file of /proc, /sys, /dev (/proc/self/environ holds the environment, tokens included) -- (VT437), and a
text file read whole is under its size limit (VT438). What is refused is never opened, so its content reaches no
message and no row. The data folder is the folder `from` names (its real path: a data folder that is itself a link,
to another disk, is fine), the split folder read within it, or, for a data file, the folder that holds it.

    read_table(path, root=None) -> iterator of (line, row)      a row is a dict, another JSON value, or a BadLine
    read_json_rows(path, root=None) -> iterator of (line, row)  .jsonl (a bad line is a BadLine) or a JSON array
    first_json_row(path) -> value | None             for detection: reads no further than the first row of a .jsonl
    read_text(path, root=None, limit=TABLE_LIMIT) -> str        UTF-8 (a BOM allowed); VT419 naming the line otherwise
    read_data(path, root, limit, what) -> bytes      the rule applied, its refusals as VtcError (VT415/437/438/419/439)
    read_located(path, limit, what) -> bytes         the same for a file locate() has just found inside and regular
    locate(path, root) -> "outside" | "file" | "missing" | "special"   nothing is opened
    refusal(path, root) -> (code, reason) | None     why the rule refuses a path that exists (VT415, VT437)
    list_files(folder), list_folders(folder), walk_images(folder)    listings; a folder that cannot be listed: VT439

``root`` None means the file's own folder (a metadata file's folder is the data folder; a table file's folder is).
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

from vtc.confine import VIRTUAL_ROOTS, Refused, confine, open_regular, read_confined, read_regular
from vtc.diagnostics import Diagnostic, Span, VtcError, error
from vtc.runtime.images import IMAGE_EXTENSIONS, is_image_file
from vtc.runtime.video import is_video_file

# Size limits of the text files a reader holds whole in memory (anything larger is refused, VT438, before it is read):
# - a caption is one answer: the longest radiology report or page transcription is a few KB; 1 MB (some 150,000
#   words) is far beyond any answer a model can learn, and small enough that a thousand of them cost nothing.
CAPTION_LIMIT = 1 << 20
# - a metadata, table or conversation file is read whole and held as Python rows (about ten times its size in
#   memory): 512 MB is a million rows of half a kilobyte, some 5 GB of memory, the most `vtc check --data` should
#   take on a laptop. Larger tables belong in parquet, which `datasets` reads memory-mapped (no limit there).
TABLE_LIMIT = 512 << 20
# - small JSON files of a saved dataset (dataset_dict.json, state.json): a few KB each.
SMALL_LIMIT = 1 << 20


def resolve(base: Path, source: str) -> Path:
    """A path as the plan or a row writes it: `~` expanded, relative to ``base``."""
    p = Path(os.path.expanduser(str(source)))
    return p if p.is_absolute() else base / p


# --- the confinement rule --------------------------------------------------------------------------------------------


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def real_folder(folder: str | Path) -> str:
    """The folder with every link resolved: what the rule compares against."""
    return os.path.realpath(os.path.expanduser(str(folder)))


def is_virtual(path: str | Path) -> bool:
    """Whether ``path``, links followed, is in the kernel's virtual file systems (/proc, /sys, /dev)."""
    real = os.path.realpath(str(path))
    return any(_inside(real, top) for top in VIRTUAL_ROOTS)


def refusal(path: str | Path, root: str | Path | None) -> tuple[str, str] | None:
    """(code, reason) when the rule refuses ``path``: VT415 when it leads outside ``root`` (links followed), VT437
    when it is not a regular file (a FIFO, a device, a socket, a folder, a file of /proc, /sys or /dev). None when
    it may be opened, and when it does not exist (each reader says "missing" in its own words). Nothing is opened."""
    if root is not None and not _inside(os.path.realpath(str(path)), real_folder(root)):
        return "VT415", (f"it leads outside the data folder {root} (links followed), and vtc opens nothing outside "
                         "the data folder")
    reason = confine(path, None)
    return ("VT437", reason) if reason else None


REFUSAL_HELP = {
    "VT415": "copy the file into the data folder instead of linking to it (a link that leads out of the data folder "
             "is refused: data sets come from shared repositories)",
    "VT437": "replace it with a regular file, or remove it (vtc never opens pipes, devices or system files: a pipe "
             "would block for ever, a device or /proc file could fill the memory or hold secrets)",
}


def read_data(path: Path, root: str | Path | None, limit: int, what: str | None = None, *,
              span: Span | None = None, too_large_help: str | None = None) -> bytes:
    """The bytes of a data file under the rule (vtc.confine.read_confined; ``root`` None: the file's own folder), at
    most ``limit`` of them.

    Raises VtcError: VT415 (outside the data folder), VT437 (not a regular file), VT438 (over ``limit``), VT439
    (gone), VT419 (cannot be read: permissions, an I/O error). ``what`` names the file in messages (its name)."""
    root = path.parent if root is None else root
    try:
        return read_confined(path, root, limit)
    except Refused as exc:
        raise _refused(path, root, exc, what or path.name, span or Span(str(path)), too_large_help) from None


def read_located(path: Path, limit: int, what: str | None = None, *, span: Span | None = None,
                 too_large_help: str | None = None) -> bytes:
    """The bytes of a file that locate() has just found to be a regular file inside the data folder (so the rule's
    path checks are not paid twice: a folder of 100,000 captions), at most ``limit`` of them (vtc.confine's
    read_regular: a file swapped for a FIFO since is still refused). Raises VtcError as read_data does."""
    try:
        return read_regular(path, limit)
    except Refused as exc:
        raise _refused(path, None, exc, what or path.name, span or Span(str(path)), too_large_help) from None


def _refused(path: Path, root, exc: Refused, what: str, where: Span, too_large_help: str | None) -> VtcError:
    """A refusal of vtc.confine as the diagnostic of its kind."""
    if exc.kind == "too_large":
        return VtcError(error("VT438", f"cannot read {what}: {exc.reason}", where,
                              help=too_large_help or "split it into smaller files"))
    if exc.kind == "missing":
        return VtcError(error("VT439", f"cannot read {what}: it is gone (deleted or moved while vtc was reading the "
                              "data)", where, help="check that nothing else changes the data folder, and run again"))
    if exc.kind == "unreadable":
        return VtcError(error("VT419", f"cannot read {what}: {exc.reason}", where,
                              help="check the file's permissions (it must be readable by the user running vtc)"))
    code, reason = refusal(path, root) or ("VT437", exc.reason)
    return VtcError(error(code, f"cannot read {what}: {reason}", where, help=REFUSAL_HELP[code]))


TABLE_TOO_LARGE = (f"split it into files under {TABLE_LIMIT >> 20} MB, or store the rows as parquet "
                   "(`datasets` reads parquet without holding it in memory)")


# --- tables ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadLine:
    """A line of a .jsonl file that cannot be a row (not UTF-8, not JSON): its problem, reported at its line."""

    diagnostic: Diagnostic


def read_table(path: Path, root: str | Path | None = None) -> Iterator[tuple[int, Any]]:
    """(line number, row) pairs of a .jsonl / .json / .csv / .parquet file (parquet rows numbered from 1), read
    under the rule (``root`` None: the file's own folder)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        data = read_data(path, root, TABLE_LIMIT, too_large_help=TABLE_TOO_LARGE)
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pq.read_table(pa.BufferReader(data))
        except Exception as exc:
            raise VtcError(error("VT419", f"cannot read {path}: {str(exc)[:200]}", Span(str(path)),
                                 help="check that the file is complete")) from None
        del data
        for i, row in enumerate(table.to_pylist()):
            yield i + 1, row
        return
    if suffix == ".csv":
        text = read_text(path, root)
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
    yield from read_json_rows(path, root)


def columns(table: list[tuple[int, Any]]) -> list[str]:
    """Every column of a table's rows, in the order they first appear."""
    cols: list[str] = []
    for _, row in table:
        if isinstance(row, dict):  # a BadLine has no columns
            for c in row:
                if c not in cols:
                    cols.append(c)
    return cols


def read_text(path: Path, root: str | Path | None = None, limit: int | None = None, *,
              too_large_help: str | None = TABLE_TOO_LARGE) -> str:
    """A text file under the rule (at most ``limit`` bytes, TABLE_LIMIT by default), as UTF-8 (a BOM allowed);
    VT419 naming the first bad line."""
    data = read_data(path, root, TABLE_LIMIT if limit is None else limit, too_large_help=too_large_help)
    return decode_text(path, data)


def decode_text(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise VtcError(error("VT419", f"{path.name} is not UTF-8 text", Span(str(path), line),
                             help="save the file as UTF-8")) from None


def read_json_rows(path: Path, root: str | Path | None = None) -> Iterator[tuple[int, Any]]:
    """(line, row) pairs; in a .jsonl file each line stands alone, so a bad line is a BadLine, not the end."""
    data = read_data(path, root, TABLE_LIMIT, too_large_help=TABLE_TOO_LARGE)
    if path.suffix.lower() == ".json":
        yield from _json_array(path, decode_text(path, data))
        return
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.lstrip().startswith(b"["):
        yield from _json_array(path, decode_text(path, data))
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
    """The first row of a .jsonl or .json file that is not a bad line, or None (no row, the file is unreadable, or
    the rule refuses it: the reader then says why).

    Detection needs only this row: a .jsonl file is read a line at a time up to it (a JSON array, whose first row
    cannot be told before it is parsed, is read whole)."""
    if refusal(path, path.parent):
        return None
    try:
        if path.suffix.lower() != ".json":
            with open_regular(path) as f:  # NotRegular (an OSError) for a file swapped for a FIFO since the check
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


def _unlistable(folder: Path, exc: OSError) -> VtcError:
    if isinstance(exc, FileNotFoundError):
        why = "it is gone (deleted or moved while vtc was reading the data)"
        fix = "check that nothing else changes the data folder, and run again"
    else:
        why = f"it cannot be listed ({exc.strerror or type(exc).__name__})"
        fix = "check the folder's permissions (it must be readable by the user running vtc)"
    return VtcError(error("VT439", f"cannot read the data folder {folder}: {why}", Span(str(folder)), help=fix))


def entries(folder: Path) -> list[os.DirEntry]:
    """The visible entries of ``folder``, sorted by name. VT439 when it cannot be listed (permissions, gone)."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        raise _unlistable(folder, exc) from None


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # links followed: a link to a folder is a folder (the rule checks where it leads)
    except OSError:
        return False


def list_files(folder: Path, *, images: bool = False, media: bool = False) -> list[Path]:
    """The visible entries directly in ``folder`` that are not folders, sorted (with ``images``, only those named
    like images; with ``media``, images and video files): regular files, and also links, pipes and devices, so
    that readers refuse those by name instead of skipping them silently. VT439 when the folder cannot be listed."""
    found = entries(folder)
    if images or media:
        found = [e for e in found if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
                 or (media and is_video_file(e.name))]
    return [Path(e.path) for e in found if not _is_dir(e)]


def list_folders(folder: Path) -> list[Path]:
    """The visible sub-folders of ``folder`` (links to folders included: the rule checks where they lead), sorted."""
    return [Path(e.path) for e in entries(folder) if _is_dir(e)]


def walk_images(folder: Path, *, videos: bool = False) -> list[Path]:
    """Every visible image file (with ``videos``, and video file) under ``folder``, folders and files in sorted
    order. Links to folders are not followed (os.walk's rule); links to files, pipes and devices are listed for
    the readers to refuse by name. VT439 when a folder cannot be listed."""
    out = []

    def fail(exc: OSError) -> None:
        raise _unlistable(Path(exc.filename) if exc.filename else folder, exc)

    for dirpath, dirnames, filenames in os.walk(folder, onerror=fail):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith(".") and (is_image_file(f) or (videos and is_video_file(f))):
                out.append(Path(dirpath) / f)
    return out


# --- confinement of the paths that rows name ---------------------------------------------------------------------


def inside(p: Path, root: Path) -> bool:
    """Whether p, symlinks followed, is inside root (an already resolved folder). Nothing is opened."""
    return locate(p, root) != "outside"


def locate(p: Path, root: Path) -> str:
    """"outside" (p, symlinks followed, leaves root, an already resolved folder), "file" (a regular file inside),
    "special" (inside, but a FIFO, a device, a socket or a folder: never opened) or "missing".

    Nothing is opened. Path.resolve() costs an lstat per path component, seconds for 100,000 rows: here the folder
    part is resolved once per folder (cached) and the file costs one lstat (plus a resolve if it is a symlink).
    A name no file can have (a NUL byte, a lone surrogate: ValueError from the OS layer) is "missing".
    """
    try:
        return _locate(p, root)
    except ValueError:
        return "missing"


def _locate(p: Path, root: Path) -> str:
    text = str(p)
    full = os.path.normpath(text if os.path.isabs(text) else os.path.join(str(root), text))
    folder, name = os.path.split(full)
    real = _realdir(folder) + os.sep + name
    top = str(root).rstrip(os.sep) + os.sep
    if not (real + os.sep).startswith(top):  # the root itself is inside
        return "outside"
    try:
        st = os.lstat(real)
    except OSError:
        return "missing"
    if stat.S_ISLNK(st.st_mode):
        real = os.path.realpath(real)
        if not (real + os.sep).startswith(top):  # the root itself is inside
            return "outside"
        try:
            st = os.stat(real)
        except OSError:
            return "missing"
    return "file" if stat.S_ISREG(st.st_mode) else "special"


def path_problem(p: Path, root: Path, where: Span, label: str | None = None) -> Diagnostic | None:
    """The diagnostic of a data path the rule refuses (VT415 outside ``root``, an already resolved folder; VT437 not
    a regular file), or None (a regular file inside, or a missing one: the reader names that in its own words).
    ``label`` begins the message (default "cannot read NAME"); the reason follows it."""
    found = locate(p, root)
    if found in ("file", "missing"):
        return None
    label = label or f"cannot read {p.name}"
    if found == "outside":
        return error("VT415", f"{label}: it leads outside the data folder (links followed), and vtc opens nothing "
                              "outside it", where, help=REFUSAL_HELP["VT415"])
    reason = refusal(p, None)
    return error("VT437", f"{label}: {reason[1] if reason else 'it is not a regular file'}", where,
                 help=REFUSAL_HELP["VT437"])


_REALDIRS: dict[str, str] = {}


def _realdir(folder: str) -> str:
    real = _REALDIRS.get(folder)
    if real is None:
        if len(_REALDIRS) > 100_000:
            _REALDIRS.clear()
        real = _REALDIRS[folder] = os.path.realpath(folder)
    return real
