"""Streaming, parallel preparation: every image of a dataset checked, standardised and stored in the image cache.

``prepare_images(tasks, resize=..., window=..., cache=..., workers=...)`` takes an iterable of (path, page) and
yields one result dict per task (in completion order) while worker processes decode and resize. Memory stays flat
however many images there are: tasks are read from the iterable as workers need them (at most ``workers * 4``
chunks of ``CHUNK`` images in flight), no image outlives its worker's loop, and results are small dicts
(path, frame, key, digest, ok, code, problem, size, format, frames, cached).
Results come back as they are done, so the caller (validate._scan_rows) moves its progress bar one image at a time
(vtc.runtime.progress): a chunk's images arrive together, a few dozen at once, never the whole set at the end.

Each image: its bytes are hashed here, in this process (cache key, see vtc.runtime.cache); a key already in the
cache is done (the recorded check result comes back, nothing is decoded, no worker is involved -- a run over
prepared data starts no worker at all); otherwise a worker reads the header, refuses an image over pillow's
decompression-bomb limit is refused (VT425) before any pixel is decoded, the pixels are decoded (unreadable,
truncated, zero-byte: VT411; unsupported format: VT421; DICOM through vtc.runtime.dicom), EXIF-rotated, converted
to RGB, standardised to the plan's size and written to the cache with what the check found. Failures are cached too,
so a second check of the same broken file costs only its hash.

Workers are ``spawn``ed processes (safe after torch or CUDA were imported, unlike fork) running this module, which
imports only pillow (and pydicom for .dcm). Small jobs (fewer than ``MIN_PARALLEL`` images) run in this process,
where starting workers would cost more than it saves.
"""

from __future__ import annotations

import io
import os
import warnings
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator

# Images handed to a worker at once: large enough that inter-process overhead (~0.1 ms a message) is negligible
# next to decoding (~1 ms a small PNG), small enough that results stream back steadily.
CHUNK = 64
# Below this many images the workers' start-up (~0.3 s each with spawn) costs more than they save.
MIN_PARALLEL = 256


def default_workers() -> int:
    """The CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def prepare_images(tasks: Iterable[tuple[str, int]], *, resize: dict, window: dict | None = None,
                   cache=None, workers: int | None = None, store: bool = True,
                   count: int | None = None, memo: dict | None = None) -> Iterator[dict]:
    """Check and standardise every (path, page) in ``tasks``; yields result dicts (in completion order).

    ``cache``: an ImageCache (None: check only, nothing stored or reused). ``count``: how many tasks there are, if
    known (decides whether workers are worth starting). ``memo``: a stat index (ImageCache.read_index), updated in
    place: a file whose size, mtime, ctime and inode are those recorded is not even read again (git's rule for
    "unchanged"; any write changes the ctime). Its content hash, the cache key, was recorded with them.
    """
    root = str(cache.root) if cache is not None else None
    workers = default_workers() if workers is None else max(1, workers)
    serial = workers == 1 or (count is not None and count < MIN_PARALLEL) or not _can_spawn()
    pool = None
    pending: deque = deque()
    chunk: list = []
    try:
        for path, frame in tasks:
            path, frame = str(path), int(frame)
            if cache is not None:
                hit = lookup(path, frame, resize, window, cache, memo)
                if hit is not None:
                    yield hit
                    continue
            if serial:
                yield prepare_one(path, frame, resize, window, root, store)
                continue
            chunk.append((path, frame))
            if len(chunk) < CHUNK:
                continue
            if pool is None:
                import multiprocessing as mp

                pool = mp.get_context("spawn").Pool(workers)
            pending.append(pool.apply_async(_prepare_chunk, (chunk, resize, window, root, store)))
            chunk = []
            while len(pending) >= workers * 4:
                yield from pending.popleft().get()
        if chunk:
            if pool is None:  # fewer misses than one chunk: not worth starting workers
                yield from _prepare_chunk(chunk, resize, window, root, store)
            else:
                pending.append(pool.apply_async(_prepare_chunk, (chunk, resize, window, root, store)))
        while pending:
            yield from pending.popleft().get()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


_SETTINGS_TEXT: dict = {}


def _can_spawn() -> bool:
    """Whether spawned workers can start: they re-import the main script, which must exist as a file (a script
    piped to `python -` has none, and its workers would die and be restarted forever)."""
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return path is None or os.path.isfile(path)


_FIELDS = ("ok", "code", "problem", "size", "format", "frames")
# Failures that depend on this machine, not on the file: pydicom (VT426) or a DICOM decoder (VT440) not installed.
# They are neither cached nor remembered, so that installing the package is all it takes.
_MACHINE_FAILURES = ("VT426", "VT440")


def stat_signature(path: str) -> list[int]:
    """[size, mtime_ns, ctime_ns, inode]: what says "unchanged" without reading the file."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def lookup(path: str, frame: int, resize: dict, window: dict | None, cache,
           memo: dict | None = None) -> dict | None:
    """The cached result for this file's current content and these settings, or None (also when unreadable)."""
    from vtc.runtime.cache import digest_file, entry_key, settings_text

    dicom = path[-4:].lower() == ".dcm"
    which = (repr(resize), repr(window) if dicom else None)
    text = _SETTINGS_TEXT.get(which)
    if text is None:
        text = _SETTINGS_TEXT[which] = settings_text(settings_for(path, resize, window))
    try:
        sig = stat_signature(path)
    except OSError:
        return None
    slot = f"{path}|{frame}|{text}"
    known = memo.get(slot) if memo is not None else None
    if known is not None and known[0] == sig:
        _, key, digest, meta = known
    else:
        try:
            digest = digest_file(path)
        except OSError:
            return None
        key = entry_key(digest, frame, text)
        meta = cache.meta(key, touch=True)
        if meta is None:
            return None
        if memo is not None:
            memo[slot] = [sig, key, digest, {k: meta.get(k) for k in _FIELDS}]
    out = {"path": path, "frame": frame, "key": key, "digest": digest, "cached": True}
    out.update({k: meta.get(k) for k in _FIELDS})
    return out


def remember(memo: dict | None, result: dict, resize: dict, window: dict | None) -> None:
    """Record a freshly prepared file in the stat index (its signature was taken before it was read)."""
    if memo is None or not result.get("key") or not result.get("stat") or result.get("code") in _MACHINE_FAILURES:
        return
    from vtc.runtime.cache import settings_text

    path = result["path"]
    slot = f"{path}|{result['frame']}|{settings_text(settings_for(path, resize, window))}"
    memo[slot] = [result["stat"], result["key"], result["digest"], {k: result.get(k) for k in _FIELDS}]


def _prepare_chunk(chunk, resize, window, root, store) -> list[dict]:
    return [prepare_one(path, frame, resize, window, root, store) for path, frame in chunk]


def settings_for(path: str | Path, resize: dict, window: dict | None) -> dict:
    """The preparation settings that change the output for this file (the window matters for DICOM only). The whole
    resize is in it, so a pixel budget's bounds and multiple are part of every cache key: another budget prepares
    the images again."""
    s = {"resize": resize}
    if Path(path).suffix.lower() == ".dcm":
        s["window"] = window
    return s


def prepare_one(path: str, frame: int, resize: dict, window: dict | None, root: str | None,
                store: bool = True) -> dict:
    """Check and standardise one image (page ``frame``); the result dict described in the module docstring."""
    from vtc.runtime.cache import ImageCache, entry_key
    from vtc.runtime.images import not_regular, unsupported_reason

    out = {"path": path, "frame": frame, "key": None, "digest": None, "ok": False, "code": None, "problem": None,
           "size": None, "format": None, "frames": None, "cached": False}
    p = Path(path)
    try:
        sig = stat_signature(path)  # before reading: a write after this changes the ctime
        size = sig[0]
        out["stat"] = sig
    except OSError:
        out.update(code="VT410", problem="the file does not exist")
        return out
    special = not_regular(path)
    if special:  # the readers refuse these; a file swapped for a FIFO since is refused here (never opened)
        out.update(code="VT437", problem=special)
        return out
    unsupported = unsupported_reason(p)
    if unsupported:
        out.update(code="VT421", problem=unsupported)
        return out
    if size == 0:
        out.update(code="VT411", problem="the file is empty (0 bytes)")
        return out
    try:
        data = _read_regular(path)
    except OSError as exc:
        out.update(code="VT411", problem=f"cannot read the file ({exc.strerror or type(exc).__name__})")
        return out
    import hashlib

    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    key = entry_key(digest, frame, settings_for(p, resize, window))
    out.update(key=key, digest=digest)
    cache = ImageCache(root) if root is not None else None
    if cache is not None:
        meta = cache.meta(key)
        if meta is not None:
            cache.touch(key)
            out.update({k: meta.get(k) for k in ("ok", "code", "problem", "size", "format", "frames")}, cached=True)
            return out
    image, meta = _decode(p, data, frame, window)
    del data
    out.update(meta)
    if image is not None:
        from vtc.runtime.images import standardise

        image = standardise(image, resize)
    if cache is not None and store and out["code"] not in _MACHINE_FAILURES:
        cache.put(key, {k: out[k] for k in ("ok", "code", "problem", "size", "format", "frames")}, image)
    return out


def _read_regular(path: str) -> bytes:
    """The bytes of a regular file; OSError for anything else (vtc.confine.open_regular: a file swapped for a FIFO
    after the check does not block the open, and is refused)."""
    from vtc.confine import open_regular

    with open_regular(path) as f:
        return f.read()


def _decode(path: Path, data: bytes, frame: int, window: dict | None):
    """(RGB image | None, {"ok", "code", "problem", "size", "format", "frames"}) for the bytes of one file."""
    from PIL import Image

    from vtc.diagnostics import VtcError
    from vtc.runtime.images import _reason, bomb_problem, decoded_frame

    meta = {"ok": False, "code": None, "problem": None, "size": None, "format": None, "frames": 1}
    if path.suffix.lower() == ".dcm":
        from vtc.runtime.dicom import read_dicom

        try:
            image = read_dicom(path, window=window)
        except VtcError as exc:
            d = exc.diagnostics[0]
            # The problem names the remedy when there is one (VT440: the decoder to install), since the row
            # diagnostic is made from it; "help" carries the DICOM reader's help as well.
            meta.update(code=d.code, problem=d.message.split(": ", 1)[-1], help=d.help)
            return None, meta
        meta.update(ok=True, size=list(image.size), format="DICOM")
        return image, meta
    try:
        with warnings.catch_warnings():
            # Between 1x and 2x pillow's limit, open() only warns: bomb_problem() below refuses those with their
            # size before any pixel is decoded; over 2x, open() raises DecompressionBombError.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                meta.update(size=list(im.size), format=im.format, frames=int(getattr(im, "n_frames", 1) or 1))
                bomb = bomb_problem(im.size)
                if bomb:
                    meta.update(code="VT425", problem=bomb)
                    return None, meta
                if frame >= meta["frames"]:
                    meta.update(code="VT411", problem=f"it has no page {frame + 1} (it has {meta['frames']})")
                    return None, meta
                im = decoded_frame(im, frame)
    except Image.DecompressionBombError as exc:
        meta.update(code="VT425", problem=f"the image is too large to open safely ({exc}); it was not decoded")
        return None, meta
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombWarning) as exc:
        meta.update(code="VT411", problem=_reason(exc, path))
        return None, meta
    if im.width < 1 or im.height < 1:
        meta.update(code="VT411", problem="the image has no pixels")
        return None, meta
    meta.update(ok=True, size=list(im.size))
    return im, meta
