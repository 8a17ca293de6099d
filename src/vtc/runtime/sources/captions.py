"""captions: images with a same-named .txt caption beside each (`cat.png` + `cat.txt`), in file-name order.

Both files obey the data folder's rule (vtc.runtime.sources.files): an image or a caption that is a link leading
out of the folder (VT415) or not a regular file (a FIFO, a device: VT437) is a bad row, never opened; a caption
over CAPTION_LIMIT is refused before it is read (VT438).
"""

from __future__ import annotations

from vtc.diagnostics import Span, VtcError, error
from vtc.runtime.sources.detect import SourceInfo
from vtc.runtime.sources.files import (CAPTION_LIMIT, decode_text, list_files, locate, path_problem, read_located,
                                       real_folder)
from vtc.runtime.sources.request import Request
from vtc.runtime.sources.rows import Record, Rows


def read(info: SourceInfo, request: Request) -> Rows:
    root = real_folder(info.root)
    records, problems = [], []
    for img in list_files(info.root, images=True):
        txt = img.with_suffix(".txt")
        image, caption = locate(img, root), locate(txt, root)
        if image in ("outside", "special") or caption in ("outside", "special"):  # never opened
            problems.append(path_problem(img, root, Span(str(img))) or path_problem(txt, root, Span(str(txt))))
            continue
        if caption == "missing":
            problems.append(error("VT412", f"{img.name} has no caption file {txt.name}", Span(str(img)),
                                  help=f"write the answer into {txt.name} beside the image, or remove the image"))
            continue
        try:
            text = decode_text(txt, read_located(txt, CAPTION_LIMIT, span=Span(str(txt)), too_large_help=(
                "a caption is one answer: shorten it (or remove the image and its caption)"))).strip()
        except VtcError as exc:
            d = exc.diagnostics[0]
            if d.code == "VT419" and "UTF-8" in d.message:
                d = error("VT419", f"{txt.name} is not UTF-8 text", Span(str(txt)), help="save the caption as UTF-8")
            problems.append(d)
            continue
        if not text:
            problems.append(error("VT412", f"the caption {txt.name} is empty", Span(str(txt)),
                                  help="write the answer into it, or remove the image"))
            continue
        if image == "missing":  # a link to nowhere: named now, not when the image is opened
            problems.append(error("VT410", f"image file not found: {img.name}", Span(str(img)),
                                  help="check the file, or remove it and its caption"))
            continue
        records.append(Record(Span(str(txt), 1), text, (img,)))
    request.report(problems)
    return request.file_rows(records, f"images with .txt captions in {info.where()}", info)
