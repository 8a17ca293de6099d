"""classes: one sub-folder per class; the answer is the folder's name.

Like imagefolder's labels: every image under <root>/<class>/, classes and files in sorted order. A class folder that
is a link leading out of the data folder is refused (VT415) and not read; so is an image that leads out (VT415) or
is not a regular file (VT437). Links to folders below a class folder are not followed.

Video files in a class folder are clips (one row each). With a `video` clause (.dcm/.tif/.tiff are clips then too),
a sub-folder of a class folder that holds image files is a folder of frames: one row, one clip (its frames in name
order); without one, images in sub-folders are rows of their own, as before.
"""

from __future__ import annotations

from vtc.diagnostics import Span, error
from vtc.runtime.sources.detect import SourceInfo
from vtc.runtime.sources.clips import frame_files, frame_folder_problem, is_clip_path
from vtc.runtime.sources.files import (REFUSAL_HELP, list_files, list_folders, locate, path_problem, real_folder,
                                       walk_images)
from vtc.runtime.sources.request import Request
from vtc.runtime.sources.rows import Record, Rows


def read(info: SourceInfo, request: Request) -> Rows:
    root = real_folder(info.root)
    records, problems, classes = [], [], []
    for cls in list_folders(info.root):
        if locate(cls, root) == "outside":
            problems.append(error("VT415", f"the class folder {cls.name} leads outside the data folder (links "
                                  "followed); it is not read", Span(str(cls)), help=REFUSAL_HELP["VT415"]))
            continue
        classes.append(cls)
        if request.clips:  # files and folders of frames, in name order
            found = sorted(list_files(cls, media=True) + [f for f in list_folders(cls) if frame_files(f)])
        else:
            found = sorted(walk_images(cls, videos=True))
        for img in found:
            if img.is_dir():
                refused = frame_folder_problem(img, root, Span(str(img)), f"cannot read {img.name}")
                if refused is not None:
                    problems.append(refused)
                else:
                    records.append(Record(Span(str(img)), cls.name, videos=(img,)))
                continue
            refused = path_problem(img, root, Span(str(img)))
            if refused is not None:
                problems.append(refused)
            elif locate(img, root) == "missing":  # a link to nowhere
                problems.append(error("VT410", f"image file not found: {img.name}", Span(str(img)),
                                      help="check the file, or remove it"))
            elif is_clip_path(img, request.clips):
                records.append(Record(Span(str(img)), cls.name, videos=(img,)))
            else:
                records.append(Record(Span(str(img)), cls.name, (img,)))
    request.report(problems)
    return request.file_rows(records, f"{len(classes)} class folders in {info.where()}", info)
