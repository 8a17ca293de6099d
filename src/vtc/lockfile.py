"""Fingerprints of a run's inputs (recipe, data, model), the saved plan's "inputs" section, and the lock file.

Torch-free: this module never imports torch, transformers, trl, peft, datasets or unsloth. Library versions are read
with importlib.metadata, which reads the installed package's metadata files without importing the package.

Two strengths of fingerprint, for two moments:

* **quick** (``vtc plan -o plan.json``, checked by ``vtc run plan.json``): must stay fast on a folder of 100,000
  images. It hashes every file's relative name and size, the full content of every file that is not an image (the
  answers live there: metadata.jsonl, captions, CSV; a caption edited from "red" to "blue" keeps the size), and of
  big files (over 64 MiB: parquet, safetensors) 16 evenly spaced 64 KiB samples plus the size. Images are known by
  name and size only: re-encoding or editing an image virtually always changes its size, and reading 100,000
  images would make `vtc plan` take minutes. Modification times are left out on purpose: copying a project to a
  GPU machine changes them, and that must not count as a change.
* **content** (``vtc lock``, and every run's manifest): sha256 over every file's relative name and bytes. Slow on
  big folders, and exact.

A model is known by what from_pretrained would load: a local folder by its files (quick: config.json and every
file's name and size, big weight files sampled; lock: every byte), a Hub model by the revision the local Hugging
Face cache resolves `main` to (offline, from the cache's refs; "unresolved" when it is not cached, and `vtc lock`
then warns, VT533: nothing is pinned), a tiny model by its build version and the hash of its built folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from importlib import metadata
from pathlib import Path
from typing import Any

from vtc.confine import confine

LOCK_VERSION = 1
# The libraries whose version decides what a run does; `vtc run` warns when one differs from the lock.
LOCK_LIBRARIES = ("torch", "transformers", "trl", "peft", "unsloth")
NOT_INSTALLED = "not installed"
UNRESOLVED = "unresolved"

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".dcm", ".dicom", ".ppm",
                  ".pgm", ".jp2", ".heic"}
IMAGE_SUFFIXES |= {".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v"}  # clips: like images (vtc.runtime.video)
BIG_FILE = 64 << 20  # files above this are sampled by the quick fingerprint
SAMPLES = 16
SAMPLE_SIZE = 64 << 10


# ---- files ----------------------------------------------------------------------------------------------------

def _files(root: Path) -> list[tuple[str, Path]]:
    """(relative name, path) of every file under ``root`` (or the file itself), sorted, hidden files included
    except the HF cache's own bookkeeping folders."""
    if root.is_file():
        return [(root.name, root)] if confine(root, None) is None else []
    if not root.is_dir():
        return []
    out = []
    for p in root.rglob("*"):
        # Only regular files: a FIFO or a link into /proc, /sys or /dev (from a stranger's data folder) would block
        # or never end when read (vtc.confine). Links to other regular files count: a Hugging Face snapshot's
        # files are links to its blobs.
        if p.is_file() and confine(p, None) is None:
            rel = p.relative_to(root).as_posix()
            if rel.startswith((".cache/", ".git/")):
                continue
            out.append((rel, p))
    return sorted(out)


def _hash_file(h, path: Path) -> int:
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return size


def _sample_file(h, path: Path, size: int) -> None:
    """16 evenly spaced 64 KiB blocks (the first at 0, the last ending at the end)."""
    with open(path, "rb") as f:
        for i in range(SAMPLES):
            f.seek((size - SAMPLE_SIZE) * i // (SAMPLES - 1))
            h.update(f.read(SAMPLE_SIZE))


def folder_fingerprint(root: Path, *, content: bool) -> dict[str, Any]:
    """Fingerprint of a file or folder: {"sha256", "files", "bytes"} (quick or content, see the module doc)."""
    h = hashlib.sha256()
    files = total = 0
    for rel, p in _files(root):
        size = p.stat().st_size
        h.update(rel.encode("utf-8") + b"\0" + str(size).encode() + b"\0")
        if content:
            _hash_file(h, p)
        elif size > BIG_FILE:
            _sample_file(h, p, size)
        elif p.suffix.lower() not in IMAGE_SUFFIXES:
            _hash_file(h, p)
        h.update(b"\0")
        files += 1
        total += size
    return {"sha256": h.hexdigest(), "files": files, "bytes": total}


# ---- the recipe -----------------------------------------------------------------------------------------------

def recipe_fingerprint(plan: dict) -> dict[str, Any]:
    """sha256 over the recipe and every file it includes (names as the plan lists them, bytes as on disk)."""
    base = Path(plan["base_dir"])
    h = hashlib.sha256()
    missing = []
    names = list(plan["recipe"]["files"])
    for name in names:
        p = Path(name) if os.path.isabs(name) else base / name
        h.update(name.encode("utf-8") + b"\0")
        try:
            h.update(p.read_bytes())
        except OSError:
            missing.append(name)
        h.update(b"\0")
    return {"sha256": h.hexdigest(), "files": names, "missing": missing}


# ---- data -----------------------------------------------------------------------------------------------------

def data_sources(plan: dict) -> list[tuple[str, dict]]:
    """("train" | "eval", the plan's data source) for each source of the plan."""
    return [(k, plan["data"][k]) for k in ("train", "eval") if plan["data"][k] is not None]


def source_path(plan: dict, source: dict) -> Path:
    p = Path(os.path.expanduser(source["source"]))
    return p if p.is_absolute() else Path(plan["base_dir"]) / p


def data_fingerprint(plan: dict, *, content: bool) -> dict[str, Any]:
    """Per source ("train", "eval"): a local folder's fingerprint, or a Hub dataset's cached revision."""
    out: dict[str, Any] = {}
    for key, src in data_sources(plan):
        if src["kind"] == "hub":
            out[key] = {"hub": src["source"], "split": src["split"],
                        "revision": hub_revision(src["source"], "dataset")}
        else:
            path = source_path(plan, src)
            out[key] = {"source": src["source"], **folder_fingerprint(path, content=content)}
            named = _named_images(plan, key, path)
            if named:  # a data file's images (or images in `images from folder`) are data too
                extra = _files_fingerprint(named, content=content)
                out[key]["sha256"] = hashlib.sha256((out[key]["sha256"] + extra["sha256"]).encode()).hexdigest()
                out[key]["files"] += extra["files"]
                out[key]["bytes"] += extra["bytes"]
    return out


def _named_images(plan: dict, key: str, path: Path) -> list[tuple[str, Path]]:
    """The image and clip files (a frame folder's frames too) that the rows of a data file name (relative to the
    file's folder), or, with `images from folder`, those outside the source folder: the source's own fingerprint
    does not cover them. [] when the rows cannot be read (the data check reports why). Reads the rows, never the
    images."""
    folder = plan["data"].get("images_folder")
    if path.is_dir() and folder is None:
        return []
    try:
        from vtc.runtime.sources import source_rows

        rows = source_rows(plan, key, problems=[])
    except Exception:  # noqa: BLE001 -- a source that cannot be read has no named images; the data check says why
        return []
    base = path.parent if path.is_file() else path
    roots = [os.path.realpath(base)] + ([os.path.realpath(Path(plan["base_dir"]) / folder)] if folder else [])
    found: dict[str, Path] = {}
    from vtc.runtime.sources.clips import clip_files

    for i in range(len(rows)):
        named = list(rows.images(i))
        for clip in rows.videos(i):  # a clip's files: the video, a frame folder's frames, a list of frames
            named.extend(clip_files(clip))
        for p in named:
            real = os.path.realpath(p)
            if path.is_dir() and real.startswith(roots[0] + os.sep):
                continue  # in the folder, counted already
            if any(real.startswith(r + os.sep) for r in roots):  # base64 images live in the data file itself
                found[os.path.relpath(p, base)] = Path(p)
    return sorted(found.items())


def _files_fingerprint(files: list[tuple[str, Path]], *, content: bool) -> dict[str, Any]:
    h = hashlib.sha256()
    total = 0
    for rel, p in files:
        try:
            size = p.stat().st_size
        except OSError:
            continue
        h.update(rel.encode("utf-8") + b"\0" + str(size).encode() + b"\0")
        if content:
            _hash_file(h, p)
        h.update(b"\0")
        total += size
    return {"sha256": h.hexdigest(), "files": len(files), "bytes": total}


# ---- the model ------------------------------------------------------------------------------------------------

def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub), as
    huggingface_hub computes it."""
    try:
        from huggingface_hub import constants  # light: no network, no torch

        return Path(constants.HF_HUB_CACHE)
    except ImportError:
        home = os.environ.get("HF_HOME") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
        return Path(os.environ.get("HF_HUB_CACHE") or os.path.join(home, "hub"))


def hub_revision(repo_id: str, kind: str = "model", ref: str = "main") -> str:
    """The commit the local cache resolves ``ref`` to (offline), or "unresolved" when it is not cached."""
    folder = hub_cache_dir() / f"{kind}s--{repo_id.replace('/', '--')}"
    try:
        rev = (folder / "refs" / ref).read_text(encoding="utf-8").strip()
    except OSError:
        return UNRESOLVED
    return rev if rev and (folder / "snapshots" / rev).is_dir() else UNRESOLVED


def model_fingerprint(plan: dict, *, content: bool) -> dict[str, Any]:
    """What from_pretrained would load: see the module doc."""
    model = plan["model"]
    source, mid = model["source"], model["id"]
    if source == "tiny":
        from vtc.paths import TINY_BUILD_VERSION, tiny_model_dir

        folder = tiny_model_dir(mid)
        built = (folder / "vtc_tiny.json").is_file()
        fp = folder_fingerprint(folder, content=True)["sha256"] if built and content else None
        # The build is deterministic: the version decides the bytes; the hash shows they are what was locked.
        return {"kind": "tiny", "id": mid, "version": TINY_BUILD_VERSION,
                "sha256": fp if built and content else (None if built else "not built yet")}
    if source == "local":
        p = Path(os.path.expanduser(mid))
        if not p.is_absolute():
            p = Path(plan["base_dir"]) / p
        if not p.is_dir():
            return {"kind": "local", "path": mid, "sha256": "missing"}
        return {"kind": "local", "path": mid, **folder_fingerprint(p, content=content)}
    return {"kind": "hub", "id": mid, "revision": hub_revision(mid, "model")}


# ---- the saved plan's inputs ----------------------------------------------------------------------------------

def plan_inputs(plan: dict) -> dict[str, Any]:
    """The "inputs" section `vtc plan -o` adds: quick fingerprints of the recipe, the data and the model."""
    return {"fingerprint": "quick", "recipe": recipe_fingerprint(plan),
            "data": data_fingerprint(plan, content=False), "model": model_fingerprint(plan, content=False)}


def input_changes(recorded: dict, plan: dict) -> list[str]:
    """What changed since ``recorded`` (a plan's "inputs") was made, in words; [] when nothing did."""
    now = plan_inputs(plan)
    out = []
    rec_recipe, cur_recipe = recorded.get("recipe") or {}, now["recipe"]
    for name in cur_recipe["missing"]:
        out.append(f"the recipe file {name} no longer exists")
    if rec_recipe.get("sha256") != cur_recipe["sha256"] and not cur_recipe["missing"]:
        out.append(f"the recipe changed ({', '.join(cur_recipe['files'])})")
    for key, cur in now["data"].items():
        rec = (recorded.get("data") or {}).get(key)
        if rec is None:
            out.append(f"the {key} data is new")
        elif rec != cur:
            out.append(f"the {key} data changed: {_data_change(rec, cur)}")
    rec_model, cur_model = recorded.get("model") or {}, now["model"]
    if _model_differs(rec_model, cur_model):
        out.append(f"the model changed: {_model_change(rec_model, cur_model)}")
    return out


def _data_change(rec: dict, cur: dict) -> str:
    if "hub" in cur:
        return f"{cur['hub']} revision {_short(cur.get('revision'))} (was {_short(rec.get('revision'))})"
    where = cur.get("source")
    if rec.get("files") != cur.get("files"):
        return f"{where} has {cur['files']} files (was {rec.get('files')})"
    if rec.get("bytes") != cur.get("bytes"):
        return f"{where} holds {cur['bytes']:,} bytes (was {rec.get('bytes'):,})"
    return f"{where}: the same number of files and bytes, but a file was renamed or edited"


def _model_differs(rec: dict, cur: dict) -> bool:
    if rec.get("kind") != cur.get("kind"):
        return True
    if cur.get("kind") == "hub":
        # "unresolved" means not known offline: no evidence of a change either way.
        return UNRESOLVED not in (rec.get("revision"), cur.get("revision")) and rec.get("revision") != cur.get(
            "revision") or rec.get("id") != cur.get("id")
    if cur.get("kind") == "tiny":
        return rec.get("version") != cur.get("version") or rec.get("id") != cur.get("id")
    return rec.get("sha256") != cur.get("sha256")


def _model_change(rec: dict, cur: dict) -> str:
    if cur.get("kind") == "hub":
        return f"{cur.get('id')} revision {_short(cur.get('revision'))} (was {_short(rec.get('revision'))})"
    if cur.get("kind") == "tiny":
        return f"{cur.get('id')} build version {cur.get('version')} (was {rec.get('version')})"
    if cur.get("sha256") == "missing":
        return f"the folder {cur.get('path')} no longer exists"
    return f"the files in {cur.get('path')} differ"


def _short(rev) -> str:
    return rev[:12] if isinstance(rev, str) and len(rev) == 40 else str(rev)


# ---- the lock file --------------------------------------------------------------------------------------------

def library_versions(names=LOCK_LIBRARIES) -> dict[str, str]:
    """Installed versions, read from package metadata without importing the packages."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = NOT_INSTALLED
    return out


def lock_path(plan: dict) -> Path:
    """recipe.vt.lock beside the recipe."""
    return Path(plan["base_dir"]) / (plan["recipe"]["file"] + ".lock")


# Plan keys that say where a value came from or how the plan was made, not what runs (also runtime/lifecycle.py's
# comparison of a saved plan with its recipe now).
NOT_MEANING = ("inputs", "provenance", "recipe", "vtc_version")


def plan_meaning(plan: dict) -> str:
    """sha256 of the plan's values that decide a run: a recipe whose comments or layout changed keeps it."""
    meaning = {k: v for k, v in plan.items() if k not in NOT_MEANING}
    return hashlib.sha256(json.dumps(meaning, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def build_lock(plan: dict) -> dict[str, Any]:
    """The lock of a compiled plan. Deterministic: no times, no absolute paths, nothing from the environment."""
    from vtc import __version__

    model = model_fingerprint(plan, content=True)
    if model.get("kind") == "local":
        # Both: the content hash for the record, the quick one so that `vtc run` can compare cheaply.
        model["quick_sha256"] = model_fingerprint(plan, content=False).get("sha256")
    recipe = recipe_fingerprint(plan)
    return {
        "lock_version": LOCK_VERSION,
        "vtc": __version__,
        "recipe": {"files": recipe["files"], "sha256": recipe["sha256"], "meaning": plan_meaning(plan)},
        "model": model,
        "data": data_fingerprint(plan, content=True),
        "libraries": library_versions(),
    }


def unpinned(lock: dict, plan: dict) -> list:
    """VT533 warnings, one for each input the lock could not pin: a Hub model or dataset that is not in the local
    Hugging Face cache gets ``"revision": "unresolved"`` (the lock is written offline, from the cache), and a later
    `vtc run` cannot tell whether the Hub has changed it since."""
    from vtc.diagnostics import warning

    out = []
    model = lock.get("model") or {}
    if model.get("kind") == "hub" and model.get("revision") == UNRESOLVED:
        mid = model.get("id")
        out.append(warning(
            "VT533", f"the lock pins no revision of model {mid}: it is not in the local Hugging Face cache, so the "
            "lock says \"revision\": \"unresolved\" and a later run cannot tell whether the Hub changed it",
            _provenance_span(plan, "/model/id", "/model/name"),
            help=f"download it first (`vtc run` does, or `hf download {shlex.quote(mid)}`), then run `vtc lock` "
                 "again"))
    for key, src in data_sources(plan):
        locked = (lock.get("data") or {}).get(key) or {}
        if src["kind"] == "hub" and locked.get("revision") == UNRESOLVED:
            name = src["source"]
            out.append(warning(
                "VT533", f"the lock pins no revision of the {key} dataset {name}: it is not in the local Hugging Face "
                "cache, so the lock says \"revision\": \"unresolved\" and a later run cannot tell whether the Hub "
                "changed it", _provenance_span(plan, f"/data/{key}/source"),
                help=f"download it first (`vtc check --data` does, or "
                     f"`hf download {shlex.quote(name)} --repo-type dataset`), then "
                     "run `vtc lock` again"))
    return out


def _provenance_span(plan: dict, *pointers: str):
    """The recipe line the first of ``pointers`` with one came from ("r.vt:3" in the plan's provenance), else the
    recipe file."""
    from vtc.diagnostics import Span

    for pointer in pointers:
        name, _, line = ((plan.get("provenance") or {}).get(pointer) or "").rpartition(":")
        if name and line.isdigit():
            return Span(name, int(line))
    return Span(plan["recipe"]["file"])


def lock_text(lock: dict) -> str:
    return json.dumps(lock, indent=2, sort_keys=True) + "\n"


def read_lock(path: Path) -> dict | None:
    """A lock file's content, or None when it is missing or unreadable."""
    try:
        lock = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return lock if isinstance(lock, dict) and lock.get("lock_version") else None


def lock_differences(lock: dict, plan: dict, data_content: dict | None = None) -> list[str]:
    """Every difference between a lock and the inputs now, one sentence each.

    ``data_content``: the run's content fingerprint of the data (data_fingerprint(plan, content=True)), when it was
    computed already. A local model is compared by its quick fingerprint (the content hash of many GiB of weights
    would cost every run a full read), the data by content.
    """
    out = []
    recipe = recipe_fingerprint(plan)
    locked_recipe = lock.get("recipe") or {}
    if locked_recipe.get("sha256") != recipe["sha256"] and locked_recipe.get("meaning") != plan_meaning(plan):
        # Bytes and meaning both differ (a lock without "meaning", from before, compares bytes only): a comment or
        # a layout change is not a difference.
        out.append("the recipe differs from the locked one")
    locked_model = lock.get("model") or {}
    now = model_fingerprint(plan, content=False)
    if now.get("kind") == "local":
        if locked_model.get("kind") != "local" or locked_model.get("quick_sha256") != now.get("sha256"):
            out.append(f"the model folder {now.get('path')} differs from the locked one")
    elif now.get("kind") == "tiny":
        if locked_model.get("kind") != "tiny" or (locked_model.get("id"), locked_model.get("version")) != (
                now.get("id"), now.get("version")):
            out.append(f"the model is {now.get('id')} build {now.get('version')}; the lock has "
                       f"{locked_model.get('id')} build {locked_model.get('version')}")
    else:
        if locked_model.get("id") != now.get("id"):
            out.append(f"the model is {now.get('id')}; the lock has {locked_model.get('id')}")
        elif locked_model.get("revision") != now.get("revision"):
            out.append(f"the model {now.get('id')} resolves to revision {_short(now.get('revision'))}; the lock has "
                       f"{_short(locked_model.get('revision'))}")
    data = data_content if data_content is not None else data_fingerprint(plan, content=True)
    locked_data = lock.get("data") or {}
    for key in sorted(set(data) | set(locked_data)):
        if data.get(key) != locked_data.get(key):
            if key not in locked_data:
                out.append(f"the {key} data is not in the lock")
            elif key not in data:
                out.append(f"the lock has {key} data that the recipe no longer uses")
            else:
                out.append(f"the {key} data differs from the locked one: {_data_change(locked_data[key], data[key])}")
    versions = library_versions()
    for name, locked in sorted((lock.get("libraries") or {}).items()):
        if name in versions and versions[name] != locked:
            out.append(f"{name} is {versions[name]}; the lock has {locked}")
    return out
