"""Failures a user can act on, as diagnostics: out of GPU memory (VT520) and a full disk (VT522); and the redaction
that keeps Hugging Face tokens out of every message a run folder keeps."""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

from vtc.diagnostics import Span, error


def oom_error(plan: dict, stage: str, span: Span | None, resume: str = ""):
    """VT520 with what filled the memory (image tokens, batch) and what to change."""
    est = plan["estimates"]
    batch, accumulate = plan["training"]["batch"], plan["training"]["accumulate"]
    resize = plan["images"]["resize"]
    tokens, size = est["image_tokens_per_image"], est["image_size"]
    image = (f"each image is {tokens} image tokens" + (f" ({size[0]}x{size[1]})" if size else "")) if tokens \
        else "the images are not resized" if resize["mode"] == "none" else "image size unknown"
    guess = f", about {est['gpu_memory_gib']} GiB estimated" if est["gpu_memory_gib"] else ""
    ideas = []
    if resize["mode"] == "longest":
        smaller = max(28, resize["size"] * 3 // 4 // 28 * 28)  # a quarter smaller, a multiple of 28 pixels
        if smaller < resize["size"]:
            ideas.append(f"smaller images (`resize {smaller}`)")
    elif resize["mode"] == "none":
        ideas.append("resized images (`resize 512`)")
    if batch > 1:
        ideas.append(f"a smaller batch with the same effective batch (`batch {batch // 2}` and "
                     f"`accumulate {accumulate * 2}`)")
    if plan["method"] != "qlora":
        ideas.append("4-bit training (`using qlora`)")
    return error("VT520", f"out of GPU memory while {stage}: {image}, {batch} per step (batch {batch}){guess}",
                 span, help="try " + ", or ".join(ideas or ["a GPU with more memory"]) + resume)


def disk_full_error(folder: Path, shown: str, stage: str, resume: str = ""):
    """VT522: the disk is full, with the space left there now and what to do."""
    free = shutil.disk_usage(folder).free if folder.exists() else None
    left = f" ({free / 2**30:.1f} GiB free there now)" if free is not None else ""
    return error("VT522", f"the disk is full: could not write to {shown} while {stage}{left}", Span(str(folder)),
                 help="free some space (or put runs on a bigger disk with `--runs-dir`)" + (
                     resume or "; then run the recipe again"))


def is_oom(exc: BaseException) -> bool:
    return any(type(e).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(e) for e in _chain(exc))


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC / EDQUOT anywhere in the exception chain (torch.save reports it as "file write failed")."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return True
        if "No space left on device" in str(e) or "file write failed" in str(e):
            return True
    return False


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def free_gpu_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort
        pass


# Hugging Face tokens (hf_ + 30-odd letters and digits) must never reach a run folder, even inside an error message.
_TOKEN = re.compile(r"hf_[A-Za-z0-9]{8,}")


def redact(text: str) -> str:
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN"):
        value = os.environ.get(var)
        if value and len(value) >= 8:
            text = text.replace(value, "<redacted>")
    return _TOKEN.sub("hf_<redacted>", text)
