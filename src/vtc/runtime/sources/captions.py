"""captions: images with a same-named .txt caption beside each (`cat.png` + `cat.txt`), in file-name order.

Video files are clips with their caption the same way (`clip.mp4` + `clip.txt`), and so are folders of frames
(`beat/` + `beat.txt`: one clip, its frames in name order); with a `video` clause .dcm/.tif/.tiff files are clips.

Both files obey the data folder's rule (vtc.runtime.sources.files): an image or a caption that is a link leading
out of the folder (VT415) or not a regular file (a FIFO, a device: VT437) is a bad row, never opened; a caption
over CAPTION_LIMIT is refused before it is read (VT438).
"""

from __future__ import annotations

from vtc.diagnostics import Span, VtcError, error
import os

from vtc.runtime.sources.clips import frame_folder_problem, is_clip_path
from vtc.runtime.sources.detect import SourceInfo
from vtc.runtime.sources.files import (CAPTION_LIMIT, decode_text, list_files, list_folders, locate, path_problem,
                                       read_located, real_folder)
from vtc.runtime.sources.request import Request
from vtc.runtime.sources.rows import Record, Rows


def read(info: SourceInfo, request: Request) -> Rows:
    root = real_folder(info.root)
    records, problems = [], []
    clips = request.clips
    found = list_files(info.root, media=True)
    # folders of frames with a caption beside them (`beat/` + `beat.txt`)
    found = sorted(found + [d for d in list_folders(info.root) if _present(caption_of(d))])
    for img in found:
        txt = caption_of(img)
        image, caption = locate(img, root), locate(txt, root)
        if image == "special" and img.is_dir():  # a folder of frames, inside the data folder
            refused = frame_folder_problem(img, root, Span(str(img)), f"cannot read {img.name}")
            if refused is not None:
                problems.append(refused)
                continue
            image = "file"
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
        if is_clip_path(img, clips):
            records.append(Record(Span(str(txt), 1), text, videos=(img,)))
        else:
            records.append(Record(Span(str(txt), 1), text, (img,)))
    request.report(problems)
    return request.file_rows(records, f"images with .txt captions in {info.where()}", info)


def caption_of(path):
    """The caption file of an image or video file (`a.png` -> `a.txt`) or of a frame folder (`beat/` -> `beat.txt`)."""
    return path.parent / (path.name + ".txt") if path.is_dir() else path.with_suffix(".txt")


def _present(path) -> bool:
    return os.path.lexists(path) and not os.path.isdir(path)
