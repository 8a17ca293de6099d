"""captions: images with a same-named .txt caption beside each (`cat.png` + `cat.txt`), in file-name order."""

from __future__ import annotations

from vtc.diagnostics import Span, error
from vtc.runtime.images import is_image_file
from vtc.runtime.sources.detect import SourceInfo
from vtc.runtime.sources.files import list_files
from vtc.runtime.sources.request import Request
from vtc.runtime.sources.rows import Record, Rows


def read(info: SourceInfo, request: Request) -> Rows:
    records, problems = [], []
    for img in sorted(p for p in list_files(info.root) if is_image_file(p)):
        txt = img.with_suffix(".txt")
        if not txt.is_file():
            problems.append(error("VT412", f"{img.name} has no caption file {txt.name}", Span(str(img)),
                                  help=f"write the answer into {txt.name} beside the image, or remove the image"))
            continue
        try:
            text = txt.read_text(encoding="utf-8-sig").strip()
        except UnicodeDecodeError:
            problems.append(error("VT419", f"{txt.name} is not UTF-8 text", Span(str(txt)),
                                  help="save the caption as UTF-8"))
            continue
        if not text:
            problems.append(error("VT412", f"the caption {txt.name} is empty", Span(str(txt)),
                                  help="write the answer into it, or remove the image"))
            continue
        records.append(Record(Span(str(txt), 1), text, (img,)))
    request.report(problems)
    return request.file_rows(records, f"images with .txt captions in {info.where()}", info)
