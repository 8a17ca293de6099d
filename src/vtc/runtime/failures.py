"""Failures a user can act on, as diagnostics: out of GPU memory (VT520), a full disk (VT522), a run folder that
cannot be written (VT538), a checkpoint that cannot be read back (VT539), another process of a distributed run that
failed or stopped answering (VT547); and the redaction that keeps Hugging Face
tokens out of every message a run folder keeps.

    is_oom / is_disk_full / refused_write / checkpoint_unreadable (exc)   what an exception from a run means
    frames(exc) -> [(file, function)]                                     where it came from, the chain included
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

from vtc.diagnostics import Span, error


def oom_error(plan: dict, stage: str, span: Span | None, resume: str = ""):
    """VT520 with what filled the memory (image tokens, rows at a time) and what to change: a smaller `micro
    batch` first (the same samples per update, fewer through the GPU at once)."""
    from vtc.runtime import batching as B

    est = plan["estimates"]
    split = B.in_force(plan)
    micro, batch = split.micro_batch, split.batch
    resize = plan["images"]["resize"]
    tokens, size = est["image_tokens_per_image"], est["image_size"]
    image = (f"each image is {tokens} image tokens" + (f" ({size[0]}x{size[1]})" if size else "")) if tokens \
        else "the images are not resized" if resize["mode"] == "none" else "image size unknown"
    needs = split.needs_gib if split.needs_gib is not None else est["gpu_memory_gib"] if micro == 1 else None
    guess = f", about {needs} GiB estimated" if needs else ""
    retried = (f" (after a first try with {split.retry['from_micro_batch']} at a time)"
               if split.retry and "from_micro_batch" in split.retry else "")
    ideas = []
    if micro > 1:
        smaller = max(m for m in B.divisors(batch // split.processes) if m <= micro // 2)
        ideas.append(f"fewer rows at a time for the same batch of {batch} (`micro batch {smaller}`)")
    if resize["mode"] == "longest":
        smaller_side = max(28, resize["size"] * 3 // 4 // 28 * 28)  # a quarter smaller, a multiple of 28 pixels
        if smaller_side < resize["size"]:
            ideas.append(f"smaller images (`resize {smaller_side}`)")
    elif resize["mode"] == "none":
        ideas.append("resized images (`resize 512`)")
    elif resize["mode"] == "pixels":  # memory follows the largest image: half its pixels, the minimum kept
        half = max(resize["min_pixels"], resize["max_pixels"] // 2)
        if half < resize["max_pixels"]:
            ideas.append(f"a smaller largest image (`resize between {resize['min_pixels']} and {half} pixels`)")
    if plan["method"] != "qlora":
        ideas.append("4-bit training (`using qlora`)")
    return error("VT520", f"out of GPU memory while {stage}: {image}, {micro} row{'s' * (micro != 1)} at a time "
                 f"(batch {batch}){retried}{guess}", span,
                 help="try " + ", or ".join(ideas or ["a GPU with more memory"]) + resume)


def disk_full_error(folder: Path, shown: str, stage: str, resume: str = ""):
    """VT522: the disk is full, with the space left there now and what to do."""
    try:
        free = shutil.disk_usage(folder).free if folder.exists() else None
    except OSError:
        free = None
    left = f" ({free / 2**30:.1f} GiB free there now)" if free is not None else ""
    return error("VT522", f"the disk is full: could not write to {shown} while {stage}{left}", Span(str(folder)),
                 help="free some space (or put runs on a bigger disk with `--runs-dir`)" + (
                     resume or "; then run the recipe again"))


def is_oom(exc: BaseException) -> bool:
    return any(type(e).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(e) for e in _chain(exc))


# torch.save's own words when a write fails: no errno reaches Python. Writing a checkpoint to a full disk raises
# RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") (torch 2.14, from its
# PyTorchStreamWriter), its context RuntimeError("basic_ios::clear: iostream error"); older versions say "file write
# failed".
TORCH_WRITE_FAILED = ("file write failed", "unexpected pos", "basic_ios::clear: iostream error")


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC / EDQUOT anywhere in the exception chain, or torch.save's failed write (TORCH_WRITE_FAILED)."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return True
        text = str(e)
        if "No space left on device" in text or any(words in text for words in TORCH_WRITE_FAILED):
            return True
    return False


# Errors of a write that the file system refuses (not for lack of space): read-only, not allowed, a path whose
# folder became a file or disappeared.
_REFUSED = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.ENOENT, errno.EISDIR)


def refused_write(exc: BaseException, folders) -> OSError | None:
    """The OSError in the chain of a write refused in one of ``folders`` (the run folder, the runs folder), or None.
    A read-only file system counts wherever it is; others only with a file name inside those folders (a data file
    that cannot be read is not the run folder's problem)."""
    roots = [os.path.realpath(str(f)) for f in folders]
    for e in _chain(exc):
        if not isinstance(e, OSError) or e.errno not in _REFUSED:
            continue
        if e.errno == errno.EROFS:
            return e
        for name in (e.filename, getattr(e, "filename2", None)):
            if name is None:
                continue
            real = os.path.realpath(os.fsdecode(name))
            if any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
                return e
    return None


def write_error(folder: Path, shown: str, stage: str, exc: OSError, resume: str = ""):
    """VT538: a write into the run folder (or the runs folder) refused by the file system, with the file and why."""
    name = os.fsdecode(exc.filename) if exc.filename is not None else str(folder)
    return error("VT538", f"cannot write {name} while {stage}: {exc.strerror or exc}", Span(str(folder)),
                 help="make the folder writable again (or put runs elsewhere with `--runs-dir`)" + (
                     resume or "; then run the recipe again"))


# The trainer's functions that read a checkpoint back (transformers 5: Trainer._load_*, TrainerState.load_from_json).
CHECKPOINT_READERS = frozenset({"_load_from_checkpoint", "_load_optimizer_and_scheduler", "_load_rng_state",
                                "_load_scaler", "load_from_json", "load_adapter"})


def checkpoint_unreadable(exc: BaseException) -> bool:
    """The exception came from reading a checkpoint back (resume): a file that is not what it should be (an
    UnpicklingError from torch.load(weights_only=True), a broken zip or safetensors file, bad JSON)."""
    if any(type(e).__name__ == "UnpicklingError" for e in _chain(exc)):
        return True
    return any(function in CHECKPOINT_READERS for _file, function in frames(exc))


def checkpoint_error(checkpoint: Path, shown: str, exc: BaseException, resume: str):
    """VT539: the checkpoint a run resumed from cannot be read; remove it, and resume from the one before."""
    return error("VT539", f"the checkpoint {shown} cannot be read back: {_first_line(exc)}", Span(str(checkpoint)),
                 help=f"it is damaged (a disk error, a copy cut short, an edit): delete the folder {shown}, then "
                      f"resume again with `{resume}` (from the checkpoint before it, which vtc keeps for this, or "
                      "from the start when there is none)")


def frames(exc: BaseException) -> list[tuple[str, str]]:
    """(file name, function name) of every frame the exception and its causes went through."""
    out = []
    for e in _chain(exc):
        tb = e.__traceback__
        while tb is not None:
            out.append((tb.tb_frame.f_code.co_filename, tb.tb_frame.f_code.co_name))
            tb = tb.tb_next
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    line = line if len(line) <= 300 else line[:299] + "…"
    return redact(f"{type(exc).__name__}: {line}" if line else type(exc).__name__)


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


def rank_failed_error(group, failure, plan: dict, stage: str, resume: str = ""):
    """VT547: under torchrun, another process of the run failed, was killed, or stopped answering while ``stage``:
    which one (rank, host, local rank, pid), what is known (its own recorded reason; its process gone or paused on
    this machine; no answer within the plan's timeout), and what to do."""
    culprits = failure.culprits
    step = getattr(group, "step", None)
    after = f", after step {step}, which every process finished" if step else ""
    if culprits:
        named = "; ".join(f"{group.name(r)}: {what}" for r, what in culprits)
        head = f"{'processes' if len(culprits) != 1 else 'a process'} of the run stopped while {stage}{after}: {named}"
    else:
        head = f"a collective operation failed while {stage}{after}, and every process answered afterwards " \
               f"({failure.reason})"
    ideas = []
    reasons = " ".join(what for _r, what in culprits)
    if "OutOfMemoryError" in reasons or "out of memory" in reasons:
        ideas.append("out of memory: write a smaller `micro batch` (the same batch per update, fewer rows at a "
                     "time), smaller images (`resize`), or `using qlora`")
    if "killed" in reasons:
        ideas.append("a process killed without a message is most often the machine's out-of-memory killer (`dmesg` "
                     "says so) or the job scheduler; look at that machine")
    if "paused" in reasons or "no answer" in reasons:
        ideas.append(f"a process that does not answer within {failure.timeout_s} s (hardware.distributed.timeout_s) "
                     "is stuck (a hung GPU, a lost machine or network): look at that machine")
    if not ideas:
        ideas.append("its own messages (in its output, prefixed with its rank) say more")
    return error("VT547", head, None, help="; ".join(ideas) + (resume or "; then run the recipe again"))
