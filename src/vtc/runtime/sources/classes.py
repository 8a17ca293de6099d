"""classes: one sub-folder per class; the answer is the folder's name.

Like imagefolder's labels: every image under <root>/<class>/, classes and files in sorted order. A class folder that
is a link leading out of the data folder is refused (VT415) and not read; so is an image that leads out (VT415) or
is not a regular file (VT437). Links to folders below a class folder are not followed.
"""

from __future__ import annotations

from vtc.diagnostics import Span, error
from vtc.runtime.sources.detect import SourceInfo
from vtc.runtime.sources.files import REFUSAL_HELP, list_folders, locate, path_problem, real_folder, walk_images
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
        for img in sorted(walk_images(cls)):
            refused = path_problem(img, root, Span(str(img)))
            if refused is not None:
                problems.append(refused)
            elif locate(img, root) == "missing":  # a link to nowhere
                problems.append(error("VT410", f"image file not found: {img.name}", Span(str(img)),
                                      help="check the file, or remove it"))
            else:
                records.append(Record(Span(str(img)), cls.name, (img,)))
    request.report(problems)
    return request.file_rows(records, f"{len(classes)} class folders in {info.where()}", info)
