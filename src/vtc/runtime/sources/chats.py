"""chats: the conversation files of other fine-tuning tools, read as they are.

    sharegpt           LLaMA-Factory's ShareGPT (`conversations` with from/value and human/gpt/system, or `messages`
                       with role/content), ms-swift's and Axolotl's `messages` + `images`: `<image>` placeholders in
                       the text, an `images` list (paths relative to the data file, or base64 `data:image/...`)
    llava              LLaVA's instruction files: `image` (one path) and `conversations` with `<image>\\n` in the
                       first human turn
    prompt_completion  TRL's `prompt` and `completion` (each a string or a list of messages) with `images`

Every `<image>` placeholder becomes an image part at its place in the text (never literal text); a row without any
placeholder gets its images at the start of the first user turn (as ms-swift does). Likewise every `<video>`
placeholder takes the next clip of the row's `videos` list (LLaMA-Factory's and ms-swift's convention; a LLaVA-Video
row's `video`): a video file, a folder of frames, or a list of frame files; a row without `<video>` gets its clips
at the start of the first user turn, after its images. The rows become Records with
the conversation whole (every turn; the answer is the last assistant turn's text). Row problems (VT441-VT446, VT449,
VT409, VT412, VT414, VT415) name the data file and the row.

`dataset_info.json` (LLaMA-Factory) may rename the columns and the role tags: SourceInfo.layout holds them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from pathlib import Path
from typing import Any

from vtc.diagnostics import Span, VtcError, error, suggest
from vtc.runtime.sources.clips import clip_mode, frame_folder_problem, split_clips
from vtc.runtime.sources.detect import SourceInfo, row_format
from vtc.runtime.sources.files import BadLine, locate, path_problem, read_data, read_json_rows, real_folder
from vtc.runtime.sources.request import Request
from vtc.runtime.sources.rows import Record, Rows

PLACEHOLDER = re.compile(r"<(image|video)>")
# The roles of the formats, as vtc's three.
ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
# Tool and function turns: not trained by vtc (VT443).
TOOL_ROLES = ("function_call", "function", "observation", "tool", "tool_call", "ipython")

SHAPES = {
    "sharegpt": '{"messages": [{"role": "user", "content": "<image>What is shown?"}, {"role": "assistant", '
                '"content": "..."}], "images": ["img/1.png"]}',
    "llava": '{"image": "img/1.png", "conversations": [{"from": "human", "value": "<image>\\nWhat is shown?"}, '
             '{"from": "gpt", "value": "..."}]}',
    "prompt_completion": '{"prompt": "<image>What is shown?", "completion": "...", "images": ["img/1.png"]}',
}
SHAPE_HELP = {
    "sharegpt": "a sharegpt row has `messages` (role/content) or `conversations` (from/value), and `images`",
    "llava": "a llava row has `image` and `conversations` (from/value)",
    "prompt_completion": "a prompt_completion row has `prompt` and `completion` (and `images`)",
}


def read(info: SourceInfo, request: Request) -> Rows:
    path, fmt = info.path, info.format
    folder = path.parent
    images_folder = request.images_folder
    roots = [Path(real_folder(folder))] + ([Path(real_folder(images_folder))] if images_folder else [])
    records, problems = [], []
    for line, row in read_json_rows(path, info.root if info.root and info.root != path else None):
        if isinstance(row, BadLine):
            problems.append(row.diagnostic)
            continue
        span = Span(str(path), line)
        try:
            records.append(record(row, fmt, span, folder, images_folder, roots, info.layout or {}, request.video))
        except VtcError as exc:
            problems.extend(exc.diagnostics)
    request.report(problems)
    return request.file_rows(records, f"{fmt} conversations in {path.name}", info)


class RowWhere:
    """The diagnostics of one row, naming its file and line."""

    def __init__(self, span: Span):
        self.span = span
        self.name = Path(span.file).name

    def fail(self, code: str, msg: str, hint: str) -> VtcError:
        return VtcError(error(code, f"line {self.span.line} of {self.name}{msg}", self.span, help=hint))


def record(row: Any, fmt: str, span: Span, folder: Path, images_folder: Path | None, roots: list[Path],
           layout: dict, video: dict | None = None) -> Record:
    """One row of a ``fmt`` file as a Record: turns -> messages with image parts holding indices into the images."""
    r = RowWhere(span)
    if not isinstance(row, dict):
        raise r.fail("VT414", ": a row must be a JSON object", f"write rows like {SHAPES[fmt]}")
    found = row_format(row, layout)
    if found != fmt and not (fmt == "sharegpt" and found == "messages"):  # typed parts read here too
        keys = ", ".join(list(row)[:6]) or "no keys"
        raise r.fail("VT449", f" is not a {fmt} row: it has {keys}",
                     f"{SHAPE_HELP[fmt]}; "
                     + (f"write `format {found}` for this file, or " if found and found != "messages" else "")
                     + "leave `format` out to detect it")
    turns, images, videos = _turns(row, fmt, layout, r)
    messages, refs, clip_refs = _messages(turns, images, r, videos)
    files = [image(ref, folder, images_folder, roots, r) for ref in refs]
    clips = [clip(ref, folder, images_folder, roots, r) for ref in clip_refs]
    messages, files, clips = split_clips(messages, files, clips, clip_mode(video))
    if messages[-1]["role"] == "user":
        raise r.fail("VT444", ": the conversation ends with the user, so it has no answer to learn",
                     "end the conversation with the assistant's answer, or remove the last user turn")
    answers = [m for m in messages if m["role"] == "assistant"]
    if not answers:
        raise r.fail("VT412", " has no assistant answer", "end the conversation with the assistant's answer")
    text = "".join(p["text"] for p in answers[-1]["content"] if p["type"] == "text")
    if not text.strip():
        raise r.fail("VT412", ": the assistant answer is empty", "write the answer into the last assistant turn")
    return Record(span, text, tuple(files), messages=tuple(messages), videos=tuple(clips))


def _videos(row: dict, columns: dict) -> list:
    """A row's clips: the `videos` column (dataset_info.json may rename it), else a LLaVA-Video row's `video`."""
    videos = row.get(columns.get("videos", "videos"))
    if videos is None and "videos" not in columns:
        videos = row.get("video")
    return [] if videos is None else videos if isinstance(videos, list) else [videos]


def _turns(row: dict, fmt: str, layout: dict, r: RowWhere) -> tuple[list[tuple[str, Any]], list, list]:
    """(role, content) pairs, content a string or a list of typed parts, and the row's image and clip references."""
    columns = layout.get("columns") or {}
    videos = _videos(row, columns)
    if fmt == "llava":
        image = row.get("image")
        images = [] if image is None else image if isinstance(image, list) else [image]
        return [_turn(m, layout, r) for m in _list(row.get("conversations"), "conversations", r)], images, videos
    images = row.get(columns.get("images", "images"))
    images = [] if images is None else images if isinstance(images, list) else [images]
    if fmt == "prompt_completion":
        turns = []
        for key, role in (("prompt", "user"), ("completion", "assistant")):
            value = row[key]
            if isinstance(value, str):
                turns.append((role, value))
            else:
                turns.extend(_turn(m, layout, r) for m in _list(value, key, r))
        return turns, images, videos
    key = columns.get("messages") or ("messages" if "messages" in row else "conversations")
    turns = [_turn(m, layout, r) for m in _list(row.get(key), key, r)]
    system = row.get(columns.get("system", "system"))
    if isinstance(system, str) and system.strip() and not any(role == "system" for role, _ in turns):
        turns.insert(0, ("system", system))
    return turns, images, videos


def _list(value: Any, key: str, r: RowWhere) -> list:
    if not isinstance(value, list) or not value:
        raise r.fail("VT414", f": `{key}` must be a list of turns", "write the turns as a JSON list")
    return value


def _turn(m: Any, layout: dict, r: RowWhere) -> tuple[str, Any]:
    """One turn: its role as vtc's (system, user, assistant) and its content."""
    tags = layout.get("tags") or {}
    if not isinstance(m, dict):
        raise r.fail("VT414", ": a turn must be a JSON object", 'write turns like {"from": "human", "value": "..."}')
    role_tag = tags.get("role_tag") or ("role" if "role" in m else "from")
    content_tag = tags.get("content_tag") or ("content" if "content" in m else "value")
    role = m.get(role_tag)
    content = m.get(content_tag)
    names = dict(ROLES)
    for tag, ours in (("user_tag", "user"), ("assistant_tag", "assistant"), ("system_tag", "system")):
        if isinstance(tags.get(tag), str):
            names[tags[tag]] = ours
    if not isinstance(role, str):
        raise r.fail("VT414", f": a turn has no `{role_tag}`", f"give every turn a `{role_tag}` (user or assistant)")
    if role not in names:
        close = suggest(role, names)
        tool = role in TOOL_ROLES
        raise r.fail("VT443", f": unknown role `{role}`",
                     (f"did you mean `{close}`? " if close and not tool else "")
                     + "the roles are system, user (human) and assistant (gpt)"
                     + ("; vtc does not train tool calls: leave such rows out" if tool else ""))
    if content is None:
        content = ""
    if not isinstance(content, (str, list)):
        raise r.fail("VT414", f": the content of a {role} turn must be text", "write the turn's text as a string")
    return names[role], content


def _messages(turns: list[tuple[str, Any]], images: list, r: RowWhere,
              videos: list | None = None) -> tuple[list[dict], list, list]:
    """Turns -> (messages with {"type": "image", "image": k} and {"type": "video", "video": k} parts, the image
    references and the clip references the k point at, in order).

    The k-th placeholder (`<image>` in the text, or a typed {"type": "image"} part naming no file) takes the k-th
    image of the row's list; a typed part naming its own file ({"type": "image", "image": "1.png"}) keeps it. The
    same for `<video>` and the row's `videos`."""
    videos = videos or []
    out = []
    own = object()  # the mark of a part that names its own file
    for i, (role, content) in enumerate(turns):
        parts: list[dict] = []
        pieces = [content] if isinstance(content, str) else content
        for piece in pieces:
            if isinstance(piece, dict) and piece.get("type") in ("image", "video"):
                kind = piece["type"]
                ref = piece.get(kind) or piece.get("path") or piece.get("url")
                parts.append({"type": kind, kind: None if ref is None else (own, ref)})
                continue
            text = piece if isinstance(piece, str) else piece.get("text") if isinstance(piece, dict) else None
            if not isinstance(text, str):
                raise r.fail("VT414", f": unknown content part in turn {i + 1}",
                             'parts are {"type": "text", "text": ...} or {"type": "image"}')
            pieces_of_text = PLACEHOLDER.split(text)  # text, tag, text, tag, ..., text
            for k, chunk in enumerate(pieces_of_text):
                if k % 2 == 0:
                    # LLaVA writes "<image>\n" before the question: the newline belongs to the placeholder.
                    chunk = chunk.lstrip("\n") if k > 0 else chunk
                    chunk = chunk.rstrip("\n") if k + 1 < len(pieces_of_text) else chunk
                    if chunk:
                        parts.append({"type": "text", "text": chunk})
                elif chunk == "video":
                    parts.append({"type": "video", "video": None})
                else:
                    parts.append({"type": "image", "image": None})
        if not parts:
            if role == "assistant" and i == len(turns) - 1:
                raise r.fail("VT412", ": the assistant answer is empty",
                             "write the answer into the last assistant turn")
            raise r.fail("VT446", f": turn {i + 1} ({role}) is empty", "write the turn's text, or remove the turn")
        out.append({"role": role, "content": parts})
    first = next((m for m in out if m["role"] == "user"), None)
    listed = {"image": images, "video": videos}
    slots = {}
    # A kind with no placeholder gets the row's list of it at the start of the first user turn: the clips go in
    # first, then the images before them, so that the turn starts with the images.
    for kind in ("video", "image"):
        slots[kind] = [p for m in out for p in m["content"] if p["type"] == kind and p[kind] is None]
        if not slots[kind] and listed[kind] and first is not None:
            slots[kind] = [{"type": kind, kind: None} for _ in listed[kind]]
            first["content"][:0] = slots[kind]
    for kind in ("image", "video"):
        if len(slots[kind]) != len(listed[kind]):
            n, m = len(slots[kind]), len(listed[kind])
            raise r.fail("VT442", f" has {n} <{kind}> placeholder{'s' * (n != 1)} but {m} {kind}{'s' * (m != 1)}",
                         f"write one <{kind}> in the text for each {kind} of the row (its `{kind}s` list), in order "
                         "(or remove the extra placeholders)")
    refs: dict[str, list] = {"image": [], "video": []}
    unplaced = {kind: iter(listed[kind]) for kind in listed}
    for m in out:
        for p in m["content"]:
            kind = p["type"]
            if kind in refs:
                refs[kind].append(next(unplaced[kind]) if p[kind] is None else p[kind][1])
                p[kind] = len(refs[kind]) - 1
    return out, refs["image"], refs["video"]


def clip(ref: Any, folder: Path, images_folder: Path | None, roots: list[Path], r: RowWhere) -> Path | tuple:
    """A row's clip: a video file, a folder of frames or a multi-frame file (a path, relative as images are, and
    inside the data folder), or a list of frame image files (a tuple of paths). URLs are refused (VT445)."""
    if isinstance(ref, dict):
        ref = ref.get("path") or ref.get("video") or ref.get("url")
    if isinstance(ref, list):
        if not ref:
            raise r.fail("VT414", ": a video given as frames lists no frame", 'write "videos": ["clip.mp4"], or '
                         'the clip\'s frames: "videos": [["f0.png", "f1.png"]]')
        return tuple(image(f, folder, images_folder, roots, r) for f in ref)
    _path_given(ref, "video", "a file or folder path", '"videos": ["clips/1.mp4"]', r)
    if ref.startswith("data:"):
        raise r.fail("VT414", ": a video given as data (base64) is not read", "save the video as a file in the "
                     "data folder and give its path")
    p = Path(os.path.expanduser(ref))
    start = images_folder if images_folder is not None else folder
    p = p if p.is_absolute() else start / p
    if p.is_dir():
        real = os.path.realpath(p)
        root = next((rt for rt in roots if real.startswith(str(rt).rstrip(os.sep) + os.sep)), roots[0])
        problem = frame_folder_problem(p, root, r.span, f"line {r.span.line} of {r.name} names {ref}")
        if problem is not None:
            raise VtcError(problem)
        return p
    return image(ref, folder, images_folder, roots, r)


def _path_given(ref: Any, noun: str, must_be: str, example: str, r: RowWhere) -> None:
    """A row's image or clip reference must be a path: VT414 when it is no text, VT445 when it is a URL."""
    a = "an" if noun[0] in "aeiou" else "a"
    if not isinstance(ref, str) or not ref:
        raise r.fail("VT414", f": {a} {noun} must be {must_be}", f"write {example} (paths relative to the data file)")
    if ref.startswith(("http://", "https://", "ftp://")):
        raise r.fail("VT445", f" names {a} {noun} by URL: {ref[:120]}",
                     f"download the {noun} into the data folder and give its path (relative to the data file)")


def image(ref: Any, folder: Path, images_folder: Path | None, roots: list[Path], r: RowWhere) -> Path:
    """A row's image: a path (relative to the images folder, else the data file's folder, and inside one of them),
    or base64 data (`data:image/png;base64,...`), decoded to a file of its own. URLs are refused (VT445)."""
    if isinstance(ref, dict):
        ref = ref.get("path") or ref.get("image") or ref.get("url")
    _path_given(ref, "image", "a file path", '"images": ["img/1.png"]', r)
    if ref.startswith("data:"):
        return _inline(ref, r)
    p = Path(os.path.expanduser(ref))
    start = images_folder if images_folder is not None else folder
    p = p if p.is_absolute() else start / p
    where = [locate(p, root) for root in roots]
    if all(w == "outside" for w in where):
        raise VtcError(error("VT415", f"line {r.span.line} of {r.name} points outside the dataset folder: {ref}",
                             r.span, help=f"keep the images inside {start}" + (" (`images from folder`)" if
                                                                                images_folder else
                                                                                " (the data file's folder)")))
    if "special" in where:
        raise VtcError(path_problem(p, roots[where.index("special")], r.span, f"line {r.span.line} of {r.name} "
                                    f"names {ref}"))
    if "file" not in where:
        raise VtcError(error("VT409", f"line {r.span.line} of {r.name} names {ref}, which does not exist", r.span,
                             help=f"add {ref} to {start}, or fix the path (relative to {start})"))
    return p


def _inline(ref: str, r: RowWhere) -> Path:
    """A `data:image/...;base64,...` image, decoded into a file named by its content (the row's bytes stay out of
    the messages; the data file's fingerprint covers them)."""
    head, _, body = ref.partition(",")
    m = re.fullmatch(r"data:image/([a-z0-9.+-]+);base64", head.strip().lower())
    if not m:
        raise r.fail("VT414", f": an image given as data must be base64: {head[:60]}",
                     'write "data:image/png;base64,...", or give the image\'s path')
    try:
        data = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise r.fail("VT414", ": an image's base64 data cannot be decoded", "check the data, or give the image's "
                     "path") from None
    ext = {"jpeg": ".jpg", "svg+xml": ".svg"}.get(m.group(1), "." + m.group(1))
    from vtc.paths import cache_root

    digest = hashlib.sha256(data).hexdigest()
    folder = cache_root() / "inline-images"  # the user's own cache (never a shared /tmp another user could fill)
    out = folder / (digest + ext)
    try:
        if out.is_file() and hashlib.sha256(read_data(out, folder, len(data) + 1)).hexdigest() == digest:
            return out
    except VtcError:
        pass  # a file of that name that is not this image (or not a regular file): written again below
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, out)
    except OSError as exc:
        raise r.fail("VT414", f": cannot store an image given as base64 data in {folder} ({exc.strerror or exc})",
                     "give the image's path instead, or set VTC_CACHE to a writable folder") from None
    return out

