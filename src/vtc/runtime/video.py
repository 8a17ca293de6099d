"""Clips: video files, frame folders, cine DICOM and TIFF stacks, probed, sampled and sized (pillow; PyAV for video
files, the optional extra `pip install 'vtc[video]'`; pydicom for DICOM, `vtc[dicom]`). No torch.

    probe(source, span) -> ClipInfo          frames, frame rate, duration, size, kind; VtcError on every problem
    read_clip(source, video, span, window,   -> Clip: the frames a run reads (vtc.registry.sample_frames), each at
              cache=None)                    the plan's frame size (vtc.registry.frame_size), RGB; with ``cache``
                                             (a ClipCache, or True) from the clip cache when it holds them
    clip_key(source, video, window)          -> the clip cache key: the clip's content + the settings (or None)
    check_clip(source, video, span, ...)     -> [Diagnostic]: the data check's problems of one clip (VT450-VT458)

A clip source is:

- a video file (VIDEO_SUFFIXES), read with PyAV from its first video stream; its frame rate is the stream's
  average rate, its frames are counted by reading its packets (a container's own count can be missing or wrong, and
  a truncated file shows itself only then); read_clip decodes from the start to the last frame it samples, so a
  frame that does not decode is found there (the data check reads every clip that way);
- a folder of frames: the image files in it (vtc.runtime.images.IMAGE_EXTENSIONS, one-frame DICOM too) in name order,
  numbers compared as numbers (frame_2.png before frame_10.png); every frame must have the size of the first; no
  frame rate (each frame is one sample);
- a tuple of frame image paths (a ShareGPT / ms-swift row that lists a video as its frames): as a folder;
- a DICOM file (.dcm): all its frames (vtc.runtime.dicom.read_dicom_frames: pixel data only, header text never read
  into any output), its frame rate from FrameTime / RecommendedDisplayFrameRate / CineRate when the file has one;
- a TIFF file (.tif, .tiff): its pages, no frame rate.

Every file is opened under vtc.confine's rule (regular files only: no FIFO, device or /proc file), as images are.
Frames of a clip whose count is odd are not padded here: Qwen-VL's processor repeats the last one (its temporal
patch is 2), and vtc.registry.video_tokens counts that.

PyAV is imported inside functions only; without it a video file is VT451, naming the extra.

The clip cache (vtc.runtime.cache.ClipCache, docs/video.md "The clip cache"): a clip read with ``cache`` is stored
as its sampled, sized frames (lossless PNG) and their timing, keyed by clip_key; a later read of the same content
with the same settings loads them instead of probing and decoding (pixel for pixel the same frames). Rows (when
their image cache is set: a run), the data check, `vtc ask` and the report read through it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from vtc.diagnostics import Diagnostic, Span, VtcError, error, warning

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v")
TIFF_SUFFIXES = (".tif", ".tiff")
INSTALL_HELP = "install the video extra: pip install 'vtc[video]' (it adds PyAV, the FFmpeg decoder), then check again"
# "Far longer than the cap" (VT455): the clip would give more than this many times max_frames at the chosen rate.
FAR_LONGER = 2


def is_video_file(path) -> bool:
    """A file whose suffix is a video container vtc reads (VIDEO_SUFFIXES)."""
    return isinstance(path, (str, Path)) and Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class ClipInfo:
    frames: int
    fps: float | None  # frames a second of the source; None: no frame timing (folder, TIFF stack, untimed DICOM)
    duration: float | None  # seconds (frames / fps); None without timing
    width: int
    height: int
    kind: str  # "video" | "frames" | "dicom" | "tiff"


@dataclass
class Clip:
    frames: list  # PIL images, RGB, all of one size
    fps: float  # the rate the frames sample (frames a second of the clip)
    indices: list[int]  # the source frames they are
    times: list[float]  # seconds from the clip's start of each
    source: object = None
    size: tuple[int, int] = field(default=(0, 0))

    def part(self) -> dict:
        """The content part of a chat message, as Unsloth's vision collator (unsloth_zoo.vision_utils fetch_video's
        list branch) and Qwen-VL's processor read it."""
        width, height = self.frames[0].size if self.frames else self.size
        return {"type": "video", "video": list(self.frames), "fps": float(self.fps),
                "resized_height": int(height), "resized_width": int(width)}


def name_of(source) -> str:
    """How a diagnostic names a clip: the file or folder name, or "frames a.png .. z.png (n)" for a frame list."""
    if isinstance(source, (tuple, list)):
        if not source:
            return "an empty frame list"
        first, last = Path(source[0]).name, Path(source[-1]).name
        return f"frames {first} .. {last} ({len(source)})" if len(source) > 1 else f"frame {first}"
    path = Path(source)
    return path.name + ("/" if path.is_dir() else "")


def _natural(path: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def folder_frames(folder: Path) -> list[Path]:
    """The frame images of a folder (single-frame DICOM files too: a series exported one frame a file), in name
    order with numbers compared as numbers; hidden files, sub-folders and other files are left out."""
    from vtc.runtime.images import is_image_file

    return sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_file(p)),
                  key=_natural)


def _fail(code: str, message: str, span: Span, help: str):
    raise VtcError(error(code, message, span, help=help))


def _confined(path: Path, span: Span, what: str = "clip") -> None:
    from vtc.runtime.images import not_regular

    special = not_regular(path)
    if special:
        _fail("VT437", f"cannot read {what} {path.name}: {special}", span,
              help="replace it with a regular file, or remove the row that lists it (vtc never opens pipes, "
                   "devices or system files)")


def _av():
    try:
        import av
    except ImportError:
        return None
    return av


# --- probe ---------------------------------------------------------------------------------------------------------


def probe(source, span: Span | None = None) -> ClipInfo:
    """What a clip is: its frames, frame rate, duration, size and kind. Raises VtcError (diagnostics of the row at
    ``span``): VT410 missing, VT437 not a regular file, VT450 unreadable / truncated / not a clip, VT451 PyAV
    missing, VT452 no frames, VT456 frames of different sizes, and the DICOM and image codes of their readers."""
    where = span or Span(str(source))
    if isinstance(source, (tuple, list)):
        return _probe_frames([Path(p) for p in source], name_of(source), where)
    path = Path(source)
    if path.is_dir():
        frames = folder_frames(path)
        if not frames:
            _fail("VT452", f"clip {path.name}/ has no frames: the folder holds no image files", where,
                  help="put the frames (PNG or JPEG, named in order: frame_000.png, frame_001.png, ...) in the "
                       "folder, or remove the row")
        return _probe_frames(frames, path.name + "/", where, inside=path)
    _confined(path, where)
    if not path.is_file():
        _fail("VT410", f"clip not found: {path}", where, help="check the file or folder name, or remove the row "
                                                              "that lists it")
    suffix = path.suffix.lower()
    if suffix == ".dcm":
        from vtc.runtime.dicom import dicom_clip_info

        frames, fps, width, height = dicom_clip_info(path, span=where)
        return _info(frames, fps, width, height, "dicom", path.name, where)
    if suffix in TIFF_SUFFIXES:
        return _probe_tiff(path, where)
    if suffix in VIDEO_SUFFIXES:
        return _probe_video(path, where)
    _fail("VT450", f"cannot read clip {path.name}: `{suffix or path.name}` is not a video format vtc reads", where,
          help=f"convert it to MP4 (or one of {', '.join(VIDEO_SUFFIXES)}), give a folder of frames, a cine DICOM or "
               "a multi-page TIFF; or remove the row")


def _info(frames, fps, width, height, kind, name, where) -> ClipInfo:
    if frames < 1:
        _fail("VT452", f"clip {name} has no frames", where, help="replace the file with one that holds frames, or "
                                                                 "remove the row")
    fps = float(fps) if fps else None
    return ClipInfo(int(frames), fps, frames / fps if fps else None, int(width), int(height), kind)


def _probe_frames(frames: list[Path], name: str, where: Span, inside: Path | None = None) -> ClipInfo:
    """A frame list or folder; ``inside``: the folder every frame's real path (links followed) must stay in."""
    from PIL import Image

    from vtc.runtime.images import open_image

    if not frames:
        _fail("VT452", f"clip {name} has no frames: the frame list is empty", where,
              help="list the frames of the clip, or remove the row")
    first_size = None
    for index, frame in enumerate(frames):
        if not frame.is_file():
            open_image(frame, where)  # VT410 / VT437 as for an image, naming the frame
        _confined(frame, where, "frame")
        if inside is not None:
            from vtc.confine import outside

            if outside(frame, inside):
                _fail("VT415", f"clip {name}: frame {frame.name} leads outside its folder (links followed), and vtc "
                               "opens nothing outside the data", where,
                      help="copy the frame into the folder instead of linking to it, or remove it")
        if frame.suffix.lower() == ".dcm":
            from vtc.runtime.dicom import dicom_clip_info

            size = dicom_clip_info(frame, span=where)[2:4]  # header numbers only
        else:
            try:
                with Image.open(frame) as im:
                    size = im.size
            except Exception:  # pillow's many errors: decode it to get the image's own diagnostic (VT411 ...)
                size = open_image(frame, where).size
        if first_size is None:
            first_size = size
        elif size != first_size:
            _fail("VT456", f"clip {name}: frame {frame.name} (frame {index + 1}) is {size[0]} x {size[1]} px, but "
                           f"the first frame, {frames[0].name}, is {first_size[0]} x {first_size[1]} px", where,
                  help="give every frame of a clip the same size (export them again, or crop / pad the odd ones), "
                       "or remove the frame from the folder")
    return _info(len(frames), None, first_size[0], first_size[1], "frames", name, where)


def _probe_tiff(path: Path, where: Span) -> ClipInfo:
    from PIL import Image

    from vtc.runtime.images import bomb_problem

    try:
        with Image.open(path) as im:
            size = im.size
            bomb = bomb_problem(size)
            if bomb:
                _fail("VT425", f"refused to open {path.name}: {bomb}", where,
                      help="shrink the stack below the limit, or remove the row that lists it")
            pages = int(getattr(im, "n_frames", 1) or 1)
    except VtcError:
        raise
    except Exception as exc:
        _fail("VT450", f"cannot read clip {path.name}: {_reason(exc, path)}", where,
              help="export the stack again as a multi-page TIFF, or remove the row")
    return _info(pages, None, size[0], size[1], "tiff", path.name, where)


def _reason(exc: BaseException, path: Path) -> str:
    from vtc.runtime.images import EMPTY_FILE, is_empty

    if is_empty(path):
        return EMPTY_FILE
    text = str(exc).strip()
    name = type(exc).__name__
    if "Invalid data" in text or "moov atom" in text or name in ("InvalidDataError", "EOFError"):
        return "not a video file, or a truncated or corrupt one (FFmpeg cannot decode it)"
    return f"the decoder failed ({name}{': ' + text[:120] if text else ''})"


def _need_av(name: str, where: Span):
    av = _av()
    if av is None:
        _fail("VT451", f"{name} is a video file, and reading video needs PyAV, which is not installed", where,
              help=INSTALL_HELP)
    return av


def _open_stream(av, path: Path, where: Span):
    try:
        container = av.open(str(path), mode="r")
    except Exception as exc:
        _fail("VT450", f"cannot read clip {path.name}: {_reason(exc, path)}", where,
              help="export the clip again (MP4 with H.264 is the safest), or remove the row")
    if not container.streams.video:
        container.close()
        _fail("VT450", f"cannot read clip {path.name}: the file holds no video stream (sound only?)", where,
              help="give a file with video in it, or remove the row")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _stream_fps(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        try:
            if rate and float(rate) > 0:
                return float(rate)
        except (TypeError, ZeroDivisionError):
            continue
    return None


def _declared_frames(container, stream, fps: float | None) -> int:
    """The frames the file says it has (its frame count, else its duration x rate; 0 when it says nothing): a
    clip with far fewer was cut short. The container's duration counts only when the video is its one stream (a
    sound track may be longer than the picture)."""
    if stream.frames:
        return int(stream.frames)
    if not fps:
        return 0
    seconds = None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration and len(container.streams) == 1:
        seconds = container.duration / 1_000_000  # av.time_base
    return int(seconds * fps) if seconds else 0


def _probe_video(path: Path, where: Span) -> ClipInfo:
    av = _need_av(path.name, where)
    container, stream = _open_stream(av, path, where)
    fps = _stream_fps(stream)
    declared = _declared_frames(container, stream, fps)
    width, height = stream.codec_context.width, stream.codec_context.height
    count = 0
    try:
        # Frames counted by reading the packets (one a frame; no decoding: read_clip decodes the frames it uses).
        with container:
            for packet in container.demux(stream):
                if packet.size:
                    count += 1
    except Exception as exc:
        if count == 0:
            _fail("VT450", f"cannot read clip {path.name}: {_reason(exc, path)}", where,
                  help="export the clip again (MP4 with H.264 is the safest), or remove the row")
        _fail("VT450", f"cannot read clip {path.name}: truncated or corrupt after frame {count} "
                       f"({_reason(exc, path)})", where,
              help="export or copy the clip again (the copy may have been cut short), or remove the row")
    if count == 0:
        _fail("VT452", f"clip {path.name} has no frames (its video stream decodes to nothing)", where,
              help="export the clip again, or remove the row")
    if declared and count < declared * 0.9 - 1:
        _fail("VT450", f"cannot read clip {path.name}: truncated: the file says {declared} frames, but only {count} "
                       "are in it", where,
              help="export or copy the clip again (the copy may have been cut short), or remove the row")
    return _info(count, fps, width, height, "video", path.name, where)


# --- read ----------------------------------------------------------------------------------------------------------


def sample(info: ClipInfo, video: dict, name: str, where: Span) -> tuple[list[int], float]:
    """vtc.registry.sample_frames on a probed clip; its ValueError (a window outside the clip) as VT454."""
    from vtc.registry import sample_frames

    try:
        return sample_frames(info.frames, info.fps, video)
    except ValueError as exc:
        _fail("VT454", f"clip {name}: {exc}", where, help=_window_help(info, video))


def _window_help(info: ClipInfo, video: dict) -> str:
    length = (f"{info.duration:.3g} s" if info.duration is not None
              else f"{info.frames} frames, {info.frames / float(video['fps']):.3g} s at {video['fps']:g} fps")
    return (f"the clip lasts {length}: change `between ... seconds` in the recipe's `video` line to fit every clip, "
            "or remove the row")


def read_clip(source, video: dict, span: Span | None = None, window: dict | None = None, cache=None) -> Clip:
    """The clip's sampled frames (vtc.registry.sample_frames), each sized to vtc.registry.frame_size of the clip's
    size under ``video["resize"]``, as RGB PIL images. ``window``: the plan's images.window (DICOM windowing).
    ``cache``: a vtc.runtime.cache.ClipCache (or True: the default one) to read the clip from when it holds it, and
    to store it in when not (clip_key); None or False: decode. Raises VtcError as probe does, and VT454 for a window
    outside the clip (a cached clip is one that read without a problem, and raises nothing)."""
    if cache is True:
        from vtc.runtime.cache import default_clip_cache

        cache = default_clip_cache()
    key = clip_key(source, video, window) if cache else None
    if key is not None:
        clip = _cached(cache, key, source)
        if clip is not None:
            return clip
    clip = _read_clip(source, video, span, window)
    if key is not None:
        try:
            cache.put_frames(key, {"fps": clip.fps, "indices": clip.indices, "times": clip.times,
                                   "size": list(clip.size)}, clip.frames)
        except OSError:  # a full or read-only disk: the clip is still read, only not kept
            pass
    return clip


def _cached(cache, key: str, source) -> Clip | None:
    meta = cache.meta(key, touch=True)
    if not meta:
        return None
    try:
        count, fps, indices, times = int(meta["frames"]), float(meta["fps"]), list(meta["indices"]), meta["times"]
        size = (int(meta["size"][0]), int(meta["size"][1]))
    except (KeyError, TypeError, ValueError, IndexError):
        return None  # an entry of another layout: decoded again, and written over
    frames = cache.load_frames(key, count)
    if frames is None or count != len(indices):
        return None
    return Clip(frames=frames, fps=fps, indices=[int(i) for i in indices], times=[float(t) for t in times],
                source=source, size=size)


# Bump when read_clip gives other frames for the same clip and settings (another resampling filter, another frame
# order rule, ...): old clip cache entries are then never used.
CLIP_CACHE_VERSION = 1
# (path, size, mtime, ctime, inode) -> content digest: within a process each file is hashed once while unchanged
# (any write changes the ctime), so an epoch over cached clips reads no clip file.
_DIGESTS: dict[tuple, str] = {}


def clip_key(source, video: dict, window: dict | None = None) -> str | None:
    """The clip cache key of a clip read with ``video`` (the plan's video block; all of it: every setting there can
    change the frames) and ``window`` (the DICOM window): a hash of the clip's content -- a file's bytes, or each
    frame's bytes (and suffix) in order for a folder or a frame list -- with the settings and CLIP_CACHE_VERSION.
    None when the content cannot be hashed safely (a missing or special file, a frame linking outside its folder,
    an empty folder): the caller decodes, and the decoder reports the problem."""
    import hashlib
    import json

    try:
        inside = None
        if isinstance(source, (tuple, list)):
            files, kind = [Path(p) for p in source], "list"
        elif Path(source).is_dir():
            inside = Path(source)
            files, kind = folder_frames(inside), "folder"
        else:
            files, kind = [Path(source)], "file"
        if not files:
            return None
        h = hashlib.blake2b(digest_size=20)
        settings = json.dumps({"video": video, "window": window}, sort_keys=True, separators=(",", ":"), default=str)
        h.update(f"clip|{CLIP_CACHE_VERSION}|{settings}|{kind}".encode())
        for path in files:
            if inside is not None:
                from vtc.confine import outside

                if outside(path, inside):
                    return None
            h.update(f"|{path.suffix.lower()}:{_digest(path)}".encode())
        return h.hexdigest()
    except Exception:  # whatever stops hashing (gone, a FIFO, unreadable) is for the decoder to report
        return None


def _digest(path: Path) -> str:
    from vtc.runtime.cache import digest_file

    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    digest = _DIGESTS.get(memo)
    if digest is None:
        digest = _DIGESTS[memo] = digest_file(path)
    return digest


def _read_clip(source, video: dict, span: Span | None, window: dict | None) -> Clip:
    from vtc.registry import frame_size

    where = span or Span(str(source))
    info = probe(source, where)
    name = name_of(source)
    indices, fps = sample(info, video, name, where)
    frames = _decode(source, info, indices, where, window)
    size = frame_size(info.width, info.height, video["resize"])
    frames = [_resize(frame, size) for frame in frames]
    rate = info.fps if info.fps else float(video["fps"])
    return Clip(frames=frames, fps=fps, indices=list(indices), times=[i / rate for i in indices], source=source,
                size=size)


def _resize(image, size):
    from PIL import Image

    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size == tuple(size):
        return image
    shrink = size[0] * size[1] < image.size[0] * image.size[1]
    return image.resize(tuple(size), Image.Resampling.LANCZOS if shrink else Image.Resampling.BICUBIC)


def _decode(source, info: ClipInfo, indices: list[int], where: Span, window: dict | None) -> list:
    from vtc.runtime.images import open_image

    if info.kind == "frames":
        frames = [Path(p) for p in source] if isinstance(source, (tuple, list)) else folder_frames(Path(source))
        return [open_image(frames[i], where) for i in indices]
    path = Path(source)
    if info.kind == "tiff":
        return [open_image(path, where, frame=i) for i in indices]
    if info.kind == "dicom":
        from vtc.runtime.dicom import read_dicom_frames

        frames, _rate = read_dicom_frames(path, window=window, span=where)
        if max(indices) >= len(frames):
            _fail("VT450", f"cannot read clip {path.name}: its header says {info.frames} frames but its pixel data "
                           f"holds {len(frames)}", where,
                  help="export the cine loop again from the scanner or PACS, or remove the row")
        return [frames[i] for i in indices]
    av = _need_av(path.name, where)
    container, stream = _open_stream(av, path, where)
    wanted: dict[int, int] = {}
    for position, index in enumerate(indices):
        wanted.setdefault(index, position)
    out: dict[int, object] = {}
    last = max(indices)
    try:
        with container:
            for n, frame in enumerate(container.decode(stream)):
                if n in wanted:
                    out[n] = frame.to_image()  # RGB
                if n >= last:
                    break
    except Exception as exc:
        _fail("VT450", f"cannot read clip {path.name}: {_reason(exc, path)}", where,
              help="export the clip again (MP4 with H.264 is the safest), or remove the row")
    missing = [i for i in indices if i not in out]
    if missing:
        _fail("VT450", f"cannot read clip {path.name}: truncated: frame {missing[0] + 1} of {info.frames} does not "
                       "decode", where, help="export or copy the clip again, or remove the row")
    return [out[i] for i in indices]


# --- check ---------------------------------------------------------------------------------------------------------


def families_with_video() -> list[str]:
    """The display names of the families that read video (registry `"video": true`)."""
    from vtc.registry import load_registry, video_families

    return video_families(load_registry())


def no_video_family(family: str | None, span: Span) -> Diagnostic:
    """VT458: a row with a clip, for a model whose family reads no video."""
    from vtc.registry import load_registry

    families = ", ".join(families_with_video()) or "Qwen2-VL, Qwen2.5-VL"
    known = load_registry().families.get(family or "")
    who = f"the model's family ({known['display'] if known else family})" if family else "this model's family"
    return error("VT458", f"this row has a video clip, but {who} reads images only, not video", span,
                 help=f"train a model of a family that reads video ({families}), or remove the clips from the data")


def check_clip(source, video: dict | None, span: Span | None = None, max_length: int | None = None,
               geometry: dict | None = None, *, window: dict | None = None, family: str | None = None,
               info: dict | None = None, cache=True) -> list[Diagnostic]:
    """The data check's problems with one clip (each with the row's ``span``):

    errors    VT410 missing, VT437 not a regular file, VT450 unreadable / truncated / not a clip, VT451 PyAV missing,
              VT452 no frames, VT453 shorter than one sample at the chosen rate, VT454 window outside the clip,
              VT456 frames of different sizes, VT458 a family without video (``video`` None), and the DICOM and image
              codes of their readers (VT411, VT426, VT440, ...)
    warnings  VT455 far longer than the cap (sampled below the chosen rate), VT457 more tokens than ``max_length``
              (needs ``geometry``, the model's patch geometry)

    The sampled frames are decoded (so a frame that does not decode is found here, not in the run) and kept in the
    clip cache (``cache``: as read_clip's; default the default clip cache), so that the run reads them from there;
    a clip already cached with the same content and settings is not decoded again. ``info``, when given, receives
    what was measured: frames, fps, duration, size, sampled, frame_size, tokens."""
    where = span or Span(str(source))
    if video is None:
        return [no_video_family(family, where)]
    name = name_of(source)
    try:
        clip_info = probe(source, where)
    except VtcError as exc:
        return list(exc.diagnostics)
    out: list[Diagnostic] = []
    fps = float(video["fps"])
    seconds = _window_seconds(clip_info, video)
    if clip_info.fps and seconds and seconds * fps < 1:
        return [error("VT453", f"clip {name} is shorter than one sample: {seconds:.3g} s"
                               f"{' within the window' if video.get('window') else ''} x {fps:g} fps = "
                               f"{seconds * fps:.2g} frames", where,
                      help=f"sample faster (`video {math.ceil(1 / seconds - 1e-9):g} fps` takes one frame "
                           "of it), widen the window, or remove the row")]
    try:
        clip = read_clip(source, video, where, window=window, cache=cache)
    except VtcError as exc:
        return list(exc.diagnostics)
    if info is not None:
        info.update(frames=clip_info.frames, fps=clip_info.fps, duration=clip_info.duration,
                    size=(clip_info.width, clip_info.height), sampled=len(clip.indices), frame_size=clip.size)
    cap = int(video["max_frames"])
    if clip_info.fps and seconds is not None and seconds * fps > FAR_LONGER * cap:
        out.append(warning(
            "VT455", f"clip {name} lasts {seconds:.3g} s{' within the window' if video.get('window') else ''}: at "
                     f"{fps:g} fps that is {seconds * fps:,.0f} frames, over {FAR_LONGER} x the cap of {cap}; it is "
                     f"sampled at {clip.fps:.2g} fps instead of {fps:g}", where,
            help="cut the clip into shorter ones, or choose the part that matters (`between A and B seconds`), or "
                 "raise `at most N frames` if memory allows"))
    if max_length and geometry:
        from vtc.registry import video_tokens

        w, h = clip.size
        tokens = video_tokens(len(clip.indices), w, h, geometry, int(video.get("temporal_patch") or 1))
        if info is not None:
            info["tokens"] = tokens
        if tokens > int(max_length):
            out.append(warning(
                "VT457", f"clip {name}: {len(clip.indices)} frames of {w} x {h} px are {tokens:,} video tokens, over "
                         f"`max length {max_length}`: the row will be cut", where,
                help="fewer frames (`video at most N frames`, or a lower fps), smaller frames (`frame size N`), or a "
                     "larger `max length`"))
    return out


def _window_seconds(info: ClipInfo, video: dict) -> float | None:
    """Seconds of the clip inside the plan's window (None for a clip without timing)."""
    if info.duration is None:
        return None
    window = video.get("window") or {}
    start = float(window.get("start") or 0.0)
    end = window.get("end")
    end = info.duration if end is None else min(float(end), info.duration)
    return max(0.0, end - start)
