"""conversations: a .jsonl or .json file of ``{"messages": [...]}`` rows with typed content parts.

``{"type": "image", "image": "img/1.png"}`` (paths relative to the file, or to `images from folder`, and kept
inside; base64 ``data:image/...`` decoded as in chats.image), several images a row allowed, text-only rows allowed; also TRL's form: ``{"type": "image"}`` placeholders filled in order from a
row-level ``"images": [...]`` list. The last message is the assistant's answer.

Clips: ``{"type": "video", "video": "clips/1.mp4"}`` (also ``"path"``; a URL is refused as an image's is), a folder
of frames, or the clip as a list of frame files (``"video": ["f0.png", "f1.png"]``); ``{"type": "video"}`` parts
take the row-level ``"videos": [...]`` list in order. An image part naming a video file (or, with a `video` clause,
a .dcm/.tif/.tiff) is read as a clip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vtc.diagnostics import Span, VtcError, error
from vtc.runtime.sources import chats
from vtc.runtime.sources.clips import clip_mode, split_clips
from vtc.runtime.sources.detect import SourceInfo
from vtc.runtime.sources.files import BadLine, read_json_rows, real_folder
from vtc.runtime.sources.request import Request
from vtc.runtime.sources.rows import Record, Rows

# A media part that names no file and finds none left in the row's list: what is wrong, what to write.
NO_FILE = {"image": ("an image part names no image", 'give the part an image: {"type": "image", "image": "img.png"}'),
           "video": ("a video part names no clip", 'give the part a clip: {"type": "video", "video": "clip.mp4"}')}

FORMAT = ('{"messages": [{"role": "user", "content": [{"type": "text", "text": "..."}, '
          '{"type": "image", "image": "img.png"}]}, {"role": "assistant", "content": [{"type": "text", '
          '"text": "..."}]}]}')


def read(info: SourceInfo, request: Request) -> Rows:
    path = info.path
    records, problems = [], []
    for line, row in read_json_rows(path):
        if isinstance(row, BadLine):
            problems.append(row.diagnostic)
            continue
        try:
            records.append(record(row, path.parent, Span(str(path), line), request.images_folder, request.video))
        except VtcError as exc:
            problems.extend(exc.diagnostics)
    request.report(problems)
    return request.file_rows(records, f"conversations in {path.name}", info)


def record(row: Any, folder: Path, span: Span, images_folder: Path | None = None,
           video: dict | None = None) -> Record:
    """Validate one conversation row; image parts become indices into the record's image files (chats.image: a path
    relative to ``images_folder`` when given, else to the file's folder, inside one of them)."""
    name = Path(span.file).name
    roots = [Path(real_folder(f)) for f in (folder, images_folder) if f is not None]

    def bad(msg: str, hint: str = f"write rows like {FORMAT}") -> VtcError:
        return VtcError(error("VT414", f"line {span.line} of {name}: {msg}", span, help=hint))

    if not isinstance(row, dict):
        raise bad("a row must be a JSON object")
    messages = row.get("messages", row.get("conversations"))
    if not isinstance(messages, list) or not messages:
        raise bad("the row has no `messages` list")
    listed = {}  # the row's `images` and `videos` lists: what a part naming no file takes, in order
    for kind in ("image", "video"):
        given = row.get(f"{kind}s") or []
        listed[kind] = [given] if isinstance(given, str) else given
    files: list[Path] = []
    clips: list = []
    found = {"image": files, "video": clips}  # the resolved files of each kind; a part holds an index into it
    resolve = {"image": chats.image, "video": chats.clip}
    used = {"image": 0, "video": 0}
    out = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise bad("every message needs a role: system, user or assistant")
        content = m.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise bad(f"the content of a {m['role']} message must be a list of parts")
        parts = []
        for part in content:
            if isinstance(part, str):
                part = {"type": "text", "text": part}
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                marker = chats.PLACEHOLDER.search(part["text"])
                if marker:  # never trained as literal text
                    raise VtcError(error(
                        "VT441", f"line {span.line} of {name}: the text holds `{marker.group(0)}`, which the "
                        "`messages` format does not turn into an image (it would be trained as literal text)", span,
                        help='give the image as a part: {"type": "image", "image": "1.png"}, or write `format '
                             "sharegpt` after `from` if the row's `images` list holds the images"
                        if marker.group(1) == "image" else 'give the clip as a part: {"type": "video", "video": '
                        '"clip.mp4"}, or write `format sharegpt` after `from` if the row\'s `videos` list holds '
                        "the clips"))
                parts.append({"type": "text", "text": part["text"]})
                continue
            if kind is None and isinstance(part, dict):  # an untyped part: {"image": ...} or {"video": ...}
                kind = next((k for k in found if k in part), None)
            if isinstance(kind, str) and kind in found:
                ref = part.get(kind) or part.get("path") or part.get("url")
                if ref is None:
                    if used[kind] >= len(listed[kind]):
                        problem, fix = NO_FILE[kind]
                        raise bad(f"{problem}, and the row's `{kind}s` list has no more", fix)
                    ref = listed[kind][used[kind]]
                    used[kind] += 1
                found[kind].append(resolve[kind](ref, folder, images_folder, roots, chats.RowWhere(span)))
                parts.append({"type": kind, kind: len(found[kind]) - 1})
            else:
                raise bad(f"unknown content part {json.dumps(part)[:60]}", 'parts are {"type": "text", '
                          '"text": ...}, {"type": "image", "image": ...} or {"type": "video", "video": ...}')
        out.append({"role": m["role"], "content": parts})
    answers = [m for m in out if m["role"] == "assistant"]
    if not answers:
        raise VtcError(error("VT412", f"line {span.line} of {name} has no assistant answer", span,
                             help="end the conversation with an assistant message holding the answer"))
    text = "".join(p["text"] for p in answers[-1]["content"] if p["type"] == "text")
    if not text.strip():
        raise VtcError(error("VT412", f"line {span.line} of {name}: the assistant answer is empty", span,
                             help="write the answer into the assistant message"))
    if out[-1]["role"] != "assistant":
        raise bad("the last message must be the assistant's answer", "end each row with the assistant message")
    out, files, clips = split_clips(out, files, clips, clip_mode(video))
    return Record(span, text, tuple(files), messages=tuple(out), videos=tuple(clips))
