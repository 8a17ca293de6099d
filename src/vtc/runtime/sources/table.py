"""table: a .jsonl, .json or .csv file of flat rows: an image path column (`file_name`, `image`, ...; paths relative
to the file, kept inside its folder) and an answer column. A path there naming a video file or a folder (of
frames) is a clip; a `video` / `videos` column holds clips (a name, a list of names, or a clip as a list of frame
files), so a row may have an image and a clip, or only a clip."""

from __future__ import annotations

from vtc.diagnostics import Span, VtcError, did_you_mean, error
from vtc.runtime.sources.columns import pick_column, read_columns, table_records
from vtc.runtime.sources.detect import SourceInfo
from vtc.runtime.sources.files import resolve
from vtc.runtime.sources.request import Request
from vtc.runtime.sources.rows import Rows

# Tried in this order for the image column when the recipe does not name one (`images from column X`).
PATH_COLUMNS = ("file_name", "image", "images", "image_path", "path", "file")
# Columns that hold clips only.
VIDEO_COLUMNS = ("video", "videos", "video_path", "clip")


def read(info: SourceInfo, request: Request) -> Rows:
    path = info.path
    table, found = read_columns(path, "add rows (an image path and its answer on each)")
    image_column = request.image_column
    candidates = [image_column] if image_column else [c for c in PATH_COLUMNS if c in found]
    video_cols = [c for c in VIDEO_COLUMNS if c in found and c != image_column]
    if not image_column and not candidates and video_cols:
        candidates = [None]
    if not candidates or (candidates[0] is not None and candidates[0] not in found):
        raise VtcError(error(
            "VT407", f"cannot tell which column of {path.name} holds the image paths "
                     f"(columns: {', '.join(found)})", Span(str(path), 1),
            help=(did_you_mean(image_column, found) if image_column else None)
            or "name it file_name (or `video` for clips), or write `images from column <name>`",
        ))
    image_col = candidates[0]
    col = pick_column([c for c in found if c != image_col and c not in video_cols], request.answer, Span(str(path), 1))
    folder = path.parent
    records = table_records(table, path, image_col, col, folder.resolve(), lambda name: resolve(folder, name), request,
                            row_help="write one object a line", image_help="give every row its image path",
                            missing_help="fix the path (relative to the file), or remove the row",
                            video_cols=video_cols)
    return request.file_rows(records, f"rows of {path.name}, answers from `{col}`", info)
