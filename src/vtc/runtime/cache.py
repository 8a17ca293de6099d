"""The image cache: standardised images, keyed by the source file's content and the settings that made them.

An entry's key is a BLAKE2b hash of (the source file's bytes hashed, the page, the resize, the DICOM window,
CACHE_VERSION): a file that changes gets a new key and is prepared again; the same bytes under another name or in
another dataset are prepared once. Each key has a small JSON file (what the check found: the original size, the
format, the pages, or the problem) and, for a readable image, the standardised image as a PNG (lossless, so an
image from the cache is exactly the image preparation made; PNG compression level 1 is the fastest of pillow's
levels and still shrinks typical photos 2-3x).

Where: ``<cache root>/images/`` (the root is vtc.paths.cache_root(): $VTC_CACHE, else $XDG_CACHE_HOME/vtc, else
~/.cache/vtc), or $VTC_IMAGE_CACHE when set (another disk, or a test's temporary folder). Size cap:
$VTC_CACHE_MAX (like ``20G``, ``500M``), default 10 GiB; after each preparation the least recently used entries go
until the cache is under the cap. ``vtc cache`` shows the size, ``vtc cache clear`` empties it.

The clip cache (ClipCache, ``<cache root>/clips/``, or $VTC_CLIP_CACHE) is the same machinery for clips: an entry
is the sampled, sized frames of one clip (one PNG a frame) and a JSON with their timing, keyed by
vtc.runtime.video.clip_key (the clip's content and the plan's video settings); the rules below hold for it too.

A stat index per dataset (``<root>/index/``, ImageCache.read_index / write_index) remembers each source file's
size, mtime, ctime and inode with its content hash and check result, so that a check over unchanged files reads none
of them (git's rule: any write changes the ctime). Clearing or trimming the cache drops the indexes.

Several processes at once (the workers of one preparation, the processes of a run over several GPUs, several
machines sharing the cache over a network file system; docs/distributed.md) need no lock, so none can be left held
by a process that died:

- Every write goes to a temporary file named after this host, process and thread (``.tmp-<host>-<pid>-<thread>-``
  and a random part, created exclusively) in the entry's own folder, then renamed into place (atomic on one file
  system), so a reader sees an entry whole or not at all, never half-written. Two processes preparing the same image
  write the same bytes; the last rename wins.
- The PNG is renamed into place before the JSON, and trimming removes the JSON first: an entry whose JSON exists
  is complete. A reader that finds the JSON but not the image (trimmed in between) gets None from ``load`` and
  decodes the source instead; a listing or a trim that finds a file gone (removed by another process) skips it; a
  write whose folder was just removed (``vtc cache clear`` elsewhere) makes the folder again.
- An image still without its JSON is a write in progress (or the leftover of a process killed in between): trimming
  counts its own time as its last use, so it is not taken for the oldest entry. Temporary files older than an hour
  are leftovers of a killed process, and trimming removes them.
- The stat indexes are a memo, and losing an update does not matter: a write merges the index on disk (entries
  other processes added since it was read) with this process's, and an entry lost to a race only means that file
  is hashed again next time. An index entry is used only while its file's size, times and inode are unchanged, so
  it is never wrong about the file; one naming a cache entry that was trimmed meanwhile costs a decode (above).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

from vtc.confine import open_regular

# Bump when preparation changes what it writes for the same input: old entries are then never used.
CACHE_VERSION = 1
DEFAULT_MAX_BYTES = 10 * 1024**3
# Read source files in 1 MiB blocks for hashing (a 100 MB scan never sits in memory at once).
_BLOCK = 1 << 20
# Entries used again within this many seconds are not re-touched (the LRU order needs no finer clock).
_TOUCH_EVERY = 3600
# A temporary file older than this was left by a process killed while writing (a write takes milliseconds).
_STALE_TEMP = 3600
_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "M": 1024**2, "MB": 1024**2, "G": 1024**3, "GB": 1024**3,
          "T": 1024**4, "TB": 1024**4}


def cache_dir() -> Path:
    """The image cache folder: $VTC_IMAGE_CACHE, else <vtc cache root>/images."""
    if os.environ.get("VTC_IMAGE_CACHE"):
        return Path(os.environ["VTC_IMAGE_CACHE"]).expanduser()
    from vtc.paths import image_cache_dir

    return image_cache_dir()


def clip_cache_dir() -> Path:
    """The clip cache folder: $VTC_CLIP_CACHE, else ``clips`` inside $VTC_IMAGE_CACHE when that is set (one variable
    moves both caches: another disk, a test's folder; the image cache lists only its own two-letter folders), else
    <vtc cache root>/clips."""
    if os.environ.get("VTC_CLIP_CACHE"):
        return Path(os.environ["VTC_CLIP_CACHE"]).expanduser()
    if os.environ.get("VTC_IMAGE_CACHE"):
        return Path(os.environ["VTC_IMAGE_CACHE"]).expanduser() / "clips"
    from vtc.paths import cache_root

    return cache_root() / "clips"


def parse_size(text: str) -> int:
    """``20G`` / ``500M`` / ``1.5GB`` / ``123456`` -> bytes. Raises ValueError."""
    t = text.strip().upper().replace("IB", "B")
    number = t.rstrip("KMGTB")
    unit = t[len(number):]
    if unit not in _UNITS or not number:
        raise ValueError(f"not a size: {text!r} (write it like 20G or 500M)")
    return int(float(number) * _UNITS[unit])


def max_bytes() -> int:
    """The size cap: $VTC_CACHE_MAX, else 10 GiB (an unreadable value falls back to the default)."""
    try:
        return parse_size(os.environ["VTC_CACHE_MAX"]) if os.environ.get("VTC_CACHE_MAX") else DEFAULT_MAX_BYTES
    except ValueError:
        return DEFAULT_MAX_BYTES


def digest_file(path: str | Path) -> str:
    """Hex BLAKE2b-128 of the file's bytes (the content part of a cache key)."""
    h = hashlib.blake2b(digest_size=16)
    # Only regular files are read (vtc.confine.open_regular: a FIFO would block, a device never end). Raw reads on
    # its descriptor: a third of the cost of buffered reads for the small files of a dataset.
    with open_regular(path) as f:
        fd = f.fileno()
        while True:
            block = os.read(fd, _BLOCK)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def entry_key(digest: str, frame: int, settings: dict | str) -> str:
    """The cache key of one standardised image: content digest + page + preparation settings + version.

    ``settings`` may be given already as settings_text(settings) (the same for every file of a dataset)."""
    text = settings if isinstance(settings, str) else settings_text(settings)
    return hashlib.blake2b(f"{CACHE_VERSION}|{digest}|{int(frame)}|{text}".encode(), digest_size=20).hexdigest()


def settings_text(settings: dict) -> str:
    """The canonical text of preparation settings, as keys use it."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))


class ImageCache:
    """A folder of standardised images and their check results (see the module docstring)."""

    def __init__(self, root: str | Path | None = None, limit: int | None = None):
        self.root = Path(root) if root is not None else cache_dir()
        self._root = str(self.root)
        self.limit = max_bytes() if limit is None else int(limit)

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / key[:2]
        return folder / f"{key}.json", folder / f"{key}.png"

    def meta(self, key: str, touch: bool = False) -> dict | None:
        """What preparation recorded for this key, or None when it is not cached.

        With ``touch``, the entry is marked as used now (the size cap removes the least recently used first), at
        most once an hour: a run over 100,000 cached images then costs reads, not writes. A missing image of an
        entry is found when it is loaded (``load`` returns None and the caller decodes the source instead).
        """
        path = f"{self._root}/{key[:2]}/{key}.json"
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            data = os.read(fd, 1 << 16)
            stale = touch and time.time() - os.fstat(fd).st_mtime > _TOUCH_EVERY
        finally:
            os.close(fd)
        try:
            meta = json.loads(data)
        except ValueError:
            return None
        if stale:
            try:
                os.utime(path)
            except OSError:
                pass
        return meta

    def touch(self, key: str) -> None:
        """Mark an entry as used now (the JSON's time counts for the size cap)."""
        try:
            os.utime(self._paths(key)[0])
        except OSError:
            pass

    def load(self, key: str):
        """The cached standardised image (RGB PIL image), or None."""
        return _load_png(self._paths(key)[1])

    def put(self, key: str, meta: dict, image=None) -> None:
        """Store an entry: the standardised image first, then its JSON (whose presence means "complete")."""
        meta_path, image_path = self._paths(key)
        _make_folder(meta_path.parent)
        if image is not None:
            _atomic(image_path, lambda f: image.save(f, format="PNG", compress_level=1))
        data = json.dumps(meta, sort_keys=True).encode("utf-8")
        _atomic(meta_path, lambda f: f.write(data))

    def read_index(self, name: str) -> dict:
        """The stat index saved under ``name`` (prepare.lookup's memo), or {}."""
        try:
            return json.loads(self._index_path(name).read_bytes())
        except (OSError, ValueError):
            return {}

    def write_index(self, name: str, memo: dict) -> None:
        """Save the stat index ``name``: the entries on disk now (other processes may have added some since it
        was read), updated with ``memo``'s. A memo: a write that cannot be made, or is lost to another process's
        at the same moment, only means some files are hashed again next time."""
        path = self._index_path(name)
        merged = {**self.read_index(name), **memo}
        data = json.dumps(merged, separators=(",", ":")).encode("utf-8")
        try:
            _atomic(path, lambda f: f.write(data))
        except OSError:
            pass

    def _index_path(self, name: str) -> Path:
        return self.root / "index" / (hashlib.blake2b(name.encode(), digest_size=12).hexdigest() + ".json")

    def _drop_indexes(self) -> None:
        shutil.rmtree(self.root / "index", ignore_errors=True)

    def stats(self) -> tuple[int, int]:
        """(entries, bytes) of the cache (files removed by another process meanwhile are not counted)."""
        entries, size = 0, 0
        for entry, st in self._files():
            size += st.st_size
            if entry.name.endswith(".json"):
                entries += 1
        return entries, size

    def clear(self) -> tuple[int, int]:
        """Remove every entry; returns what was removed as (entries, bytes)."""
        found = self.stats()
        self._drop_indexes()
        if self.root.is_dir():
            for child in self.root.iterdir():
                if child.is_dir() and len(child.name) == 2:
                    shutil.rmtree(child, ignore_errors=True)
        return found

    def trim(self, limit: int | None = None) -> int:
        """Remove least recently used entries until the cache is under ``limit`` bytes; returns entries removed."""
        limit = self.limit if limit is None else limit
        entries: dict[str, list] = {}  # key -> [last used, bytes, paths, has its JSON]
        total = 0
        for entry, st in self._files(temporary=True):
            if entry.name.startswith(".tmp-"):
                if time.time() - st.st_mtime > _STALE_TEMP:  # left by a process killed while writing
                    _unlink(entry.path)
                continue
            total += st.st_size
            item = entries.setdefault(entry.name.split(".")[0], [0.0, 0, [], False])
            item[1] += st.st_size
            item[2].append(entry.path)
            if entry.name.endswith(".json"):
                item[0], item[3] = st.st_mtime, True
            elif not item[3]:
                item[0] = max(item[0], st.st_mtime)  # no JSON (yet): a write in progress counts as used now
        if total <= limit:
            return 0
        self._drop_indexes()  # they may name removed entries
        removed = 0
        for used, size, paths, _ in sorted(entries.values(), key=lambda t: t[0]):
            if total <= limit:
                break
            for p in sorted(paths, key=lambda q: not q.endswith(".json")):  # the JSON ("complete") first
                _unlink(p)
            total -= size
            removed += 1
        return removed

    def _files(self, temporary: bool = False):
        """(DirEntry, stat) of every entry file (and, with ``temporary``, every temporary file, the indexes' too),
        skipping what another process removes while this one lists."""
        try:
            subs = [sub.path for sub in os.scandir(self.root) if sub.is_dir() and len(sub.name) == 2]
        except OSError:
            return
        if temporary:
            subs.append(str(self.root / "index"))
        for sub in subs:
            try:
                listing = list(os.scandir(sub))
            except OSError:  # removed meanwhile (`vtc cache clear` elsewhere), or no index folder
                continue
            index = sub.endswith("index")
            for entry in listing:
                name = entry.name
                if name.startswith(".tmp-") and temporary:
                    pass
                elif index or not name.endswith((".json", ".png")):
                    continue
                try:
                    yield entry, entry.stat()
                except OSError:
                    continue


class ClipCache(ImageCache):
    """Sampled, sized clips (vtc.runtime.video.read_clip's frames), in the image cache's machinery: an entry is
    ``<key>.json`` (fps, indices, times, size, frame count) and one lossless PNG a frame, ``<key>.<n>.png``, the PNGs
    renamed into place before the JSON (the JSON's presence still means "complete"; trimming groups the files of a
    key, removes the JSON first, and counts the JSON's time as the entry's last use). Where: clip_cache_dir(); the
    same cap as the image cache ($VTC_CACHE_MAX), kept by each cache for its own folder.

    A process trims after its first write and then after every hundredth of the cap it wrote (so that a run over
    many clips lists the folder rarely, and the cache exceeds the cap by at most 1 % a writing process)."""

    def __init__(self, root: str | Path | None = None, limit: int | None = None):
        super().__init__(clip_cache_dir() if root is None else root, limit)
        self._written: int | None = None  # bytes written since this object's last trim; None: never trimmed
        self._lock = threading.Lock()

    def frame_path(self, key: str, n: int) -> Path:
        return self.root / key[:2] / f"{key}.{int(n)}.png"

    def load_frames(self, key: str, count: int) -> list | None:
        """The ``count`` cached frames of an entry (RGB PIL images), or None when any is missing or unreadable (a
        trim or a clear in between, a truncated file): the caller decodes the clip instead."""
        frames = []
        for n in range(int(count)):
            image = _load_png(self.frame_path(key, n))
            if image is None:
                return None
            frames.append(image)
        return frames

    def put_frames(self, key: str, meta: dict, frames: list) -> None:
        """Store an entry: every frame's PNG, then the JSON (with ``frames``: how many); then trim when due."""
        meta_path = self._paths(key)[0]
        _make_folder(meta_path.parent)
        written = 0
        for n, frame in enumerate(frames):
            path = self.frame_path(key, n)
            _atomic(path, lambda f, frame=frame: frame.save(f, format="PNG", compress_level=1))
            try:
                written += path.stat().st_size
            except OSError:  # removed by another process already
                pass
        data = json.dumps({**meta, "frames": len(frames)}, sort_keys=True).encode("utf-8")
        _atomic(meta_path, lambda f: f.write(data))
        with self._lock:
            due = self._written is None or self._written + written >= self.limit // 100
            self._written = 0 if due else self._written + written
        if due:
            self.trim()


_CLIP_CACHES: dict[tuple, ClipCache] = {}


def default_clip_cache() -> ClipCache:
    """The clip cache of this process for the current $VTC_CLIP_CACHE / $VTC_CACHE / $VTC_CACHE_MAX (one object, so
    that its trimming schedule holds across calls)."""
    root, limit = clip_cache_dir(), max_bytes()
    cache = _CLIP_CACHES.get((str(root), limit))
    if cache is None:
        cache = _CLIP_CACHES[(str(root), limit)] = ClipCache(root, limit)
    return cache


def _load_png(path: Path):
    """An RGB PIL image from a cache PNG, or None (missing, truncated, unreadable)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB") if im.mode != "RGB" else im.copy()
    except (OSError, ValueError, SyntaxError, EOFError):
        return None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:  # removed by another process already
        pass


def _temp_prefix() -> str:
    """``.tmp-<host>-<pid>-<thread>-``: a temporary file's name says who writes it (mkstemp adds a random part and
    creates it exclusively), so that processes on several machines sharing the cache never write the same file."""
    host = re.sub(r"[^A-Za-z0-9.-]", "_", platform.node())[:40] or "host"
    return f".tmp-{host}-{os.getpid()}-{threading.get_ident()}-"


def _make_folder(folder: Path) -> None:
    """``folder`` made (with its parents) when missing. Path.mkdir(exist_ok=True) raises FileExistsError when the
    folder exists as it tries and is gone when it looks again (another process's `vtc cache clear` or trim removed
    it in between): then it is tried again, a few times."""
    for attempt in range(5):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return
        except (FileExistsError, FileNotFoundError):
            if attempt == 4:
                raise


# How many times a write starts again after its folder vanished under it (each a few milliseconds).
ATOMIC_ATTEMPTS = 20


def _atomic(path: Path, write) -> None:
    """Write ``path`` whole or not at all: a temporary file of this process's, then an atomic rename. The folder is
    made when missing, also when another process removed it (`vtc cache clear`) during the write: again and again
    while a clear keeps removing it (seen in CI: three attempts were not enough under a clear in a loop)."""
    for attempt in range(ATOMIC_ATTEMPTS):
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix())
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, path)
            return
        except FileNotFoundError:
            if tmp is not None:
                _unlink(tmp)
            if attempt == ATOMIC_ATTEMPTS - 1:
                raise
            _make_folder(path.parent)
        except BaseException:
            if tmp is not None:
                _unlink(tmp)
            raise
