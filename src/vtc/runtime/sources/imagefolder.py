"""imagefolder: a folder with metadata.jsonl, metadata.csv or metadata.parquet (Hugging Face's convention).

A `file_name` column, or `<name>_file_name` / `file_names` for several images a row, holds paths relative to the
metadata file; another column holds the answer. A name there that is a video file or a folder (of frames) is a
clip (Hugging Face's videofolder uses `file_name` too); a `video` or `videos` column holds clips only, so a row may
have images and clips. With a `video` clause, .dcm/.tif/.tiff files are clips too (vtc.runtime.sources.clips).
Rows come in the same order as ``datasets.load_dataset("imagefolder", data_dir=..., split=...)``: the metadata
file's order.
"""

from __future__ import annotations

from vtc.diagnostics import Span, VtcError, did_you_mean, error
from vtc.runtime.sources.columns import pick_column, read_columns, table_records
from vtc.runtime.sources.detect import SourceInfo
from vtc.runtime.sources.request import Request
from vtc.runtime.sources.rows import Rows


def is_image_column(name: str) -> bool:
    """An imagefolder image column: file_name, <name>_file_name, file_names, <name>_file_names."""
    return name == "file_name" or name.endswith("_file_name") or name == "file_names" or name.endswith("_file_names")


# Columns that hold clips only (file names relative to the metadata file, or lists of them).
VIDEO_COLUMNS = ("video", "videos")


def read(info: SourceInfo, request: Request) -> Rows:
    meta = info.metadata
    table, found = read_columns(meta, 'add one row a line: {"file_name": "1.png", "text": "the answer"}')
    image_cols = [c for c in found if is_image_column(c)]
    video_cols = [c for c in found if c in VIDEO_COLUMNS]
    image_column = request.image_column
    if image_column:
        wanted = [c for c in image_cols if c in (image_column, f"{image_column}_file_name",
                                                 f"{image_column}_file_names")
                  or (image_column in ("image", "images") and c in ("file_name", "file_names"))]
        if not wanted:
            raise VtcError(error(
                "VT407", f"no image column `{image_column}` in {meta}", Span(str(meta)),
                help=did_you_mean(image_column, image_cols) or
                f"imagefolder image columns are named file_name or <name>_file_name; {meta.name} has "
                f"{', '.join(image_cols) or 'none'}",
            ))
        image_cols = wanted[:1]
    if not image_cols and not video_cols:
        raise VtcError(error(
            "VT408", f"{meta} has no `file_name` column", Span(str(meta), 1),
            help=f"name the column that holds the image (or video) file names `file_name` (it has "
                 f"{', '.join(found)})",
        ))
    col = pick_column([c for c in found if c not in image_cols and c not in video_cols], request.answer,
                      Span(str(meta), 1))
    folder = meta.parent
    records = table_records(table, meta, image_cols[0] if image_cols else None, col, info.root.resolve(),
                            lambda name: folder / name, request,
                            row_help='write one object a line: {"file_name": "1.png", "text": "..."}',
                            image_help="give every row the file name of its image",
                            missing_help=f"add the file to {folder}, or remove the row", video_cols=video_cols)
    return request.file_rows(records, f"imagefolder {info.where()} with {meta.name}, answers from `{col}`", info)
