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
    extra = row.get("images") or []
    if isinstance(extra, str):
        extra = [extra]
    extra_videos = row.get("videos") or []
    if isinstance(extra_videos, str):
        extra_videos = [extra_videos]
    files: list[Path] = []
    clips: list = []
    placeholders = video_placeholders = 0
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
            elif kind == "image" or (isinstance(part, dict) and "image" in part and kind is None):
                ref = part.get("image") or part.get("path") or part.get("url")
                if ref is None:
                    if placeholders >= len(extra):
                        raise bad("an image part names no image, and the row's `images` list has no more",
                                  'give the part an image: {"type": "image", "image": "img.png"}')
                    ref = extra[placeholders]
                    placeholders += 1
                files.append(chats.image(ref, folder, images_folder, roots, chats.RowWhere(span)))
                parts.append({"type": "image", "image": len(files) - 1})
            elif kind == "video" or (isinstance(part, dict) and "video" in part and kind is None):
                ref = part.get("video") or part.get("path") or part.get("url")
                if ref is None:
                    if video_placeholders >= len(extra_videos):
                        raise bad("a video part names no clip, and the row's `videos` list has no more",
                                  'give the part a clip: {"type": "video", "video": "clip.mp4"}')
                    ref = extra_videos[video_placeholders]
                    video_placeholders += 1
                clips.append(chats.clip(ref, folder, images_folder, roots, chats.RowWhere(span)))
                parts.append({"type": "video", "video": len(clips) - 1})
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
