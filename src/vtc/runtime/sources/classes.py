"""classes: one sub-folder per class; the answer is the folder's name.

Like imagefolder's labels: every image under <root>/<class>/, classes and files in sorted order.
"""

from __future__ import annotations

from vtc.diagnostics import Span
from vtc.runtime.sources.detect import SourceInfo
from vtc.runtime.sources.files import walk_images
from vtc.runtime.sources.request import Request
from vtc.runtime.sources.rows import Record, Rows


def read(info: SourceInfo, request: Request) -> Rows:
    classes = sorted(p for p in info.root.iterdir() if p.is_dir() and not p.name.startswith("."))
    records = [Record(Span(str(img)), cls.name, (img,)) for cls in classes for img in sorted(walk_images(cls))]
    return request.file_rows(records, f"{len(classes)} class folders in {info.where()}", info)
