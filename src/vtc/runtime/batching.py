"""How a run splits its batch: micro_batch x accumulate x processes = batch (docs/plan.md, "How the batch is split").

The plan's `training.batch` is the samples per update (what the optimizer sees). How many rows go through the GPU
at once (the micro-batch) is pinned by the recipe (`micro batch N`, or the old form `batch B` + `accumulate A`) or
"auto": the run picks it here, from the plan's rule (`training.batching`: the estimate of every candidate
micro-batch per backend, the safety margin, the fallback) and the memory it finds free before the model loads.

    choose(plan, backend) -> Split      what a new run trains with; measures the free memory (free_memory)
    pick(plan, backend, free) -> Split  the rule itself, given the free memory (pure: the tests drive it)
    recorded(manifest, plan, folder)    the split a run recorded (a resumed run keeps it: the data order of a
                                        checkpoint depends on it); VT541 when it is missing or does not add up
    recorded_or_planned(manifest, plan) the same without the error, for `vtc ask`
    halved(split, why) -> Split | None  the retry after an out-of-memory error at the first steps (VT540)
    scope() / use(split) / in_force(plan)   the run's split, for the places the backends call without it
                                        (base.sft_arguments, evaluate.eval_batch_size); outside a run (tests,
                                        `vtc ask`) in_force is planned(plan): the pinned micro-batch or the fallback
    Snapshot                            the trainable weights, kept on the CPU so that a retry starts from them

Only free_memory and Snapshot import torch (inside the functions).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from pathlib import Path
from typing import Any

from vtc.diagnostics import Span, VtcError, error, warning
from vtc.records import record

GIB = 2**30
# The optimizer steps after which an out-of-memory error is no longer retried with a smaller micro-batch: by then
# every kind of batch has usually been through the GPU, and a checkpoint may hold the split.
RETRY_STEPS = 3
# A retry restores the trainable weights as they were before the first step; they are copied to the CPU first
# when they take at most this share of the machine's available memory (a LoRA adapter always does; full
# fine-tuning of a large model may not, and then an out-of-memory error is not retried).
SNAPSHOT_SHARE = 0.5


@record
class Free:
    """Memory free where the run trains: ``gib``, and ``where`` in words ("NVIDIA H200", "this machine (no
    GPU)"); ``gpu``: whether it is a GPU's."""

    gib: float
    where: str
    gpu: bool


@record
class Split:
    """How a run splits its batch, and why.

    ``how``: "pinned" (the recipe's `micro batch`, or the old form), "fits" (the largest whose estimate fits),
    "smallest" (none fits: the smallest, tried anyway), "fallback" (nothing to compare: no estimate, or the free
    memory unreadable), "planned" (outside a run: pinned or fallback, nothing measured), "resumed" (as recorded).
    ``needs_gib``: the estimate of the chosen micro-batch for the backend; ``free``: what was measured.
    ``retry``: what the out-of-memory retry changed ({"from_micro_batch", "at_step", "error"}), or None."""

    batch: int
    micro_batch: int
    accumulate: int
    processes: int
    how: str
    reason: str
    backend: str | None = None
    needs_gib: float | None = None
    free: Free | None = None
    safety_margin: float | None = None
    retry: dict | None = None

    def line(self) -> str:
        """What the run prints: `batch 8: 4 rows at a time, 2 passes an update (needs ~9.8 GiB of the ...)`."""
        return f"batch {self.batch}: {self.split_words()} ({self.reason})"

    def split_words(self) -> str:
        passes = "no accumulation" if self.accumulate == 1 else f"{self.accumulate} passes an update"
        procs = f", on each of {self.processes} processes" if self.processes > 1 else ""
        return f"{self.micro_batch} row{'s' * (self.micro_batch != 1)} at a time, {passes}{procs}"

    def record(self) -> dict:
        """For the run's manifest.json (key "batch")."""
        memory = None
        if self.free is not None or self.needs_gib is not None:
            memory = {"needs_gib": self.needs_gib, "safety_margin": self.safety_margin,
                      "free_gib": round(self.free.gib, 2) if self.free else None,
                      "usable_gib": round(self.free.gib * (1 - self.safety_margin), 2)
                      if self.free and self.safety_margin is not None else None,
                      "where": self.free.where if self.free else None,
                      "gpu": self.free.gpu if self.free else None}
        return {"batch": self.batch, "micro_batch": self.micro_batch, "accumulate": self.accumulate,
                "processes": self.processes, "how": self.how, "reason": self.reason, "backend": self.backend,
                "memory": memory, "retry": self.retry}


def world_size() -> int:
    """The run's processes (the plan's `training.batching.processes` is "world_size"): torchrun's, or 1."""
    from vtc.runtime.distributed import world

    return world().size


def divisors(n: int) -> list[int]:
    """The divisors of n, smallest first."""
    low = [d for d in range(1, int(n ** 0.5) + 1) if n % d == 0]
    return sorted(set(low + [n // d for d in low]))


def _table(plan: dict, backend: str, per_process: int) -> list[tuple[int, float | None]]:
    """(micro-batch, estimate in GiB or None) of the plan's table, for the backend, the micro-batches that divide
    the batch of one process."""
    return [(row["micro_batch"], row.get(backend)) for row in plan["training"]["batching"]["memory_gib"]
            if per_process % row["micro_batch"] == 0]


def _accumulate(batch: int, micro: int, processes: int) -> int:
    return batch // processes // micro


def _gib(x: float) -> str:
    return f"{x:.1f}"


def planned(plan: dict, processes: int | None = None) -> Split:
    """The split without measuring anything: the pinned micro-batch, or the plan's fallback."""
    t = plan["training"]
    processes = processes or world_size()
    batch, micro = t["batch"], t["micro_batch"]
    if micro != "auto":
        return Split(batch, micro, _accumulate(batch, micro, processes), processes, "pinned", "pinned by the recipe")
    micro = t["batching"]["fallback"]
    return Split(batch, micro, _accumulate(batch, micro, processes), processes, "planned",
                 "the plan's fallback: nothing measured")


def pick(plan: dict, backend: str, free: Free | None, processes: int | None = None) -> Split:
    """The plan's rule (docs/plan.md, "How the batch is split"), given the free memory of the run's device:

    * pinned (`micro batch N`, or the old form): that, whatever the memory (VT540 says when it may not fit);
    * no estimate for this backend, or ``free`` None: the plan's fallback;
    * otherwise the largest micro-batch (a divisor of the batch per process) whose estimate fits the free memory
      less the safety margin; when none fits, the smallest, tried anyway (VT540).

    ``processes``: the training processes (the plan's rule: the run's world size, world_size() when not given)."""
    t = plan["training"]
    rule = t["batching"]
    processes = processes or world_size()
    batch, margin = t["batch"], rule["safety_margin"]
    per_process = batch // processes
    table = _table(plan, backend, per_process)
    estimate = dict(table)
    usable = free.gib * (1 - margin) if free is not None else None
    of = (f"of the {_gib(free.gib)} GiB free on {free.where}" if free is not None and free.gpu else
          f"of the {_gib(free.gib)} GiB of memory available on {free.where}" if free is not None else "")

    def split(micro: int, how: str, reason: str) -> Split:
        return Split(batch, micro, _accumulate(batch, micro, processes), processes, how, reason, backend,
                     estimate.get(micro), free, margin)

    pinned = t["micro_batch"]
    if pinned != "auto":
        needs = estimate.get(pinned)
        if needs is None or free is None:
            return split(pinned, "pinned", "pinned by the recipe's `micro batch`" + (
                f"; {_gib(free.gib)} GiB free on {free.where}" if free is not None else ""))
        return split(pinned, "pinned", f"pinned by the recipe's `micro batch`; needs ~{_gib(needs)} GiB {of}")
    fallback = rule["fallback"]
    if per_process % fallback:
        fallback = max(m for m in divisors(per_process) if m <= fallback)
    if all(gib is None for _m, gib in table):
        return split(fallback, "fallback", f"vtc has no memory estimate for this model: it starts at {fallback} "
                     "and halves it once if the first steps run out of memory")
    if free is None:
        return split(fallback, "fallback", f"the free memory cannot be read here: vtc starts at {fallback} and "
                     "halves it once if the first steps run out of memory")
    fits = [(m, gib) for m, gib in table if gib is not None and gib <= usable]
    if not fits:
        smallest = min(m for m, gib in table if gib is not None)
        return split(smallest, "smallest", f"even {smallest} at a time needs ~{_gib(estimate[smallest])} GiB, "
                     f"more than {100 - round(100 * margin)}% {of}: trying anyway")
    micro, needs = max(fits)
    larger = [(m, gib) for m, gib in table if m > micro and gib is not None]
    more = f"; {larger[0][0]} at a time would need ~{_gib(larger[0][1])}" if larger else ""
    return split(micro, "fits", f"needs ~{_gib(needs)} GiB {of}{more}")


def choose(plan: dict, backend: str, processes: int | None = None) -> Split:
    """The split a new run trains with: pick() over the free memory measured now (before the model loads). Under
    torchrun with several processes, the least free memory over them all (one gather), so that every process
    chooses the same micro-batch, one that fits the fullest card."""
    from vtc.runtime.distributed import group

    free = free_memory()
    g = group()
    if g.distributed:
        least = g.least(None if free is None else free.gib)
        free = None if least is None else Free(least, free.where + (f" (the least free of {g.size} processes)"
                                                                    if least != free.gib else ""), free.gpu)
    return pick(plan, backend, free, processes or g.size)


def check_world(plan: dict, processes: int) -> None:
    """VT548 when the batch per update does not divide over the run's processes (each must take the same share):
    the batches near it that would, and the numbers of processes that would. A compile-time check says the same
    for `gpus N` in a recipe; this one knows the number torchrun started."""
    batch, micro = plan["training"]["batch"], plan["training"]["micro_batch"]
    if processes <= 1:
        return
    from vtc.runtime.backends.base import plan_span

    share = batch // processes
    if batch % processes == 0 and micro != "auto" and share % micro:
        fits = ", ".join(f"`micro batch {m}`" for m in divisors(share))
        exc = VtcError(error(
            "VT548", f"`micro batch {micro}` does not divide the share of each of the {processes} processes of this "
            f"run ({share} of the batch of {batch} samples per update)", plan_span(plan, "/training/micro_batch"),
            help=f"write one of {fits}, or remove `micro batch` to let vtc choose"))
        exc.everyone = True
        raise exc
    if batch % processes == 0:
        return

    lower, higher = batch // processes * processes, (batch // processes + 1) * processes
    batches = " or ".join(f"`batch {b}`" for b in (lower, higher) if b >= processes)
    counts = [str(d) for d in divisors(batch) if 1 < d <= batch and d != processes][:6]
    counts = ", ".join(counts[:-1]) + " or " + counts[-1] if len(counts) > 1 else "".join(counts)
    others = f", or run {counts} processes" if counts else ""
    exc = VtcError(error(
        "VT548", f"the batch of {batch} samples per update cannot be split evenly over the {processes} processes "
        f"of this run (each process takes the same share)", plan_span(plan, "/training/batch"),
        help=f"write {batches} in the recipe{others}"))
    exc.everyone = True  # every process finds it alike: rank 0 says it, the others stop quietly
    raise exc


def resplit(split: Split, processes: int) -> Split:
    """A recorded split (a resumed run) for another number of processes: the same batch per update, the
    micro-batch kept when it divides the new batch per process, else the largest divisor below it, and the
    accumulation that makes up the rest. The retry record is kept."""
    per_process = split.batch // processes
    micro = max(m for m in divisors(per_process) if m <= split.micro_batch)
    return Split(split.batch, micro, _accumulate(split.batch, micro, processes), processes, "resumed",
                 f"split again for {processes} process{'es' * (processes != 1)} (the run had {split.processes})",
                 split.backend, retry=split.retry)


def does_not_fit(split: Split, span: Span | None) -> VtcError | None:
    """VT540 (warning) for a split whose estimate is more than the usable free memory, or None."""
    if split.how not in ("pinned", "smallest") or split.needs_gib is None or split.free is None:
        return None
    usable = split.free.gib * (1 - split.safety_margin)
    if split.needs_gib <= usable:
        return None
    pinned = split.how == "pinned"
    return warning(
        "VT540", f"{split.micro_batch} row{'s' * (split.micro_batch != 1)} at a time may not fit: the estimate is "
        f"~{_gib(split.needs_gib)} GiB, and {_gib(split.free.gib)} GiB is free on {split.free.where} (vtc keeps "
        f"{split.safety_margin:.0%} of it free); trying anyway", span,
        (f"if it runs out of memory, write a smaller `micro batch` (one of "
         f"{', '.join(str(m) for m in divisors(split.batch // split.processes) if m < split.micro_batch)}), "
         "or remove it to let vtc choose" if pinned and split.micro_batch > 1 else
         "if it runs out of memory: smaller images (`resize`), `using qlora`, or a GPU with more memory"))


def halved(split: Split, at_step: int, why: str) -> Split | None:
    """The split after an out-of-memory error at optimizer step ``at_step`` (completed steps): the largest divisor
    of the batch per process at most half the micro-batch, the accumulation grown to keep the batch; None when the
    micro-batch is 1."""
    per_process = split.batch // split.processes
    smaller = [m for m in divisors(per_process) if m <= split.micro_batch // 2]
    if not smaller:
        return None
    micro = max(smaller)
    reason = (f"out of memory at {'the first step' if at_step == 0 else f'step {at_step + 1}'} with "
              f"{split.micro_batch} at a time; retried with {micro}")
    return Split(split.batch, micro, _accumulate(split.batch, micro, split.processes), split.processes, split.how,
                 reason, split.backend, None, split.free, split.safety_margin,
                 {"from_micro_batch": split.micro_batch, "from_accumulate": split.accumulate, "at_step": at_step,
                  "error": why})


def retry_warning(old: Split, new: Split, span: Span | None):
    """VT540 (warning): the line a run prints when it retries with half the micro-batch."""
    step = new.retry["at_step"]
    return warning(
        "VT540", f"out of memory at {'the first training step' if step == 0 else f'training step {step + 1}'} with "
        f"{old.micro_batch} row{'s' * (old.micro_batch != 1)} at a time: training again from the start with "
        f"{new.split_words()} (still {new.batch} samples per update)", span,
        f"to start with this split next time, write `micro batch {new.micro_batch}`")


def recorded(manifest: dict, plan: dict, folder: Path) -> Split:
    """The split a run recorded in its manifest, for `vtc run --resume` (VT541 when it is missing, or does not add up
    to the plan's batch, or contradicts the plan's pinned micro-batch)."""
    got = manifest.get("batch")
    t = plan["training"]

    def refuse(why: str) -> VtcError:
        return VtcError(error(
            "VT541", f"cannot resume {folder.name}: {why}", Span(str(folder / "manifest.json")),
            help="a checkpoint's data order depends on how its batch was split, so resuming needs the split the "
                 "run started with; start a new run (`vtc run` with the recipe) instead"))

    names = ("batch", "micro_batch", "accumulate", "processes")
    if not isinstance(got, dict) or not all(type(got.get(k)) is int and got[k] >= 1 for k in names):
        raise refuse("its manifest.json does not record how the batch was split (no \"batch\" with whole numbers "
                     "batch, micro_batch, accumulate and processes)")
    if got["micro_batch"] * got["accumulate"] * got["processes"] != got["batch"] or got["batch"] != t["batch"]:
        raise refuse(f"its manifest.json records {got['micro_batch']} x {got['accumulate']} x {got['processes']} "
                     f"for a batch of {got['batch']}, and its plan has a batch of {t['batch']}")
    if t["micro_batch"] != "auto" and t["micro_batch"] != got["micro_batch"]:
        raise refuse(f"its manifest.json records {got['micro_batch']} rows at a time, and its plan pins "
                     f"{t['micro_batch']}")
    retry = got.get("retry") if isinstance(got.get("retry"), dict) else None
    return Split(got["batch"], got["micro_batch"], got["accumulate"], got["processes"], "resumed",
                 "as the run chose when it started: a checkpoint's data order depends on it",
                 got.get("backend") if isinstance(got.get("backend"), str) else None, retry=retry)


def recorded_or_planned(manifest: dict | None, plan: dict) -> Split:
    """The split a finished run recorded (for `vtc ask`, which answers in batches of twice its micro-batch), or the
    plan's own when the manifest does not record one that adds up."""
    try:
        return recorded(manifest or {}, plan, Path("run"))
    except VtcError:
        return planned(plan)


# --- the run's split, where the backends look for it ----------------------------------------------------------------

_IN_FORCE: contextvars.ContextVar[Split | None] = contextvars.ContextVar("vtc_batch_split", default=None)


@contextlib.contextmanager
def scope():
    """A run: the split that use() puts in force lasts until the end of the block."""
    token = _IN_FORCE.set(None)
    try:
        yield
    finally:
        _IN_FORCE.reset(token)


def use(split: Split) -> None:
    """Put a split in force (inside scope()): sft_arguments and the evaluation's batch size read it."""
    _IN_FORCE.set(split)


def in_force(plan: dict) -> Split:
    """The split of the run in progress, or, outside a run (or for another plan's batch), planned(plan)."""
    split = _IN_FORCE.get()
    if split is not None and split.batch == plan["training"]["batch"]:
        return split
    return planned(plan)


# --- measuring ------------------------------------------------------------------------------------------------------


def free_memory() -> Free | None:
    """The memory free where this run trains: the GPU's (torch.cuda.mem_get_info on this process's device:
    LOCAL_RANK under torchrun, else 0), else the machine's available memory (MemAvailable of /proc/meminfo, which
    counts what the kernel can reclaim); None when neither can be read."""
    import torch

    if torch.cuda.is_available():
        try:
            device = int(os.environ.get("LOCAL_RANK", "0") or 0)
        except ValueError:
            device = 0
        device = device if 0 <= device < torch.cuda.device_count() else 0
        free, _total = torch.cuda.mem_get_info(device)
        return Free(free / GIB, torch.cuda.get_device_name(device), True)
    available = host_available()
    return Free(available / GIB, "this machine (no GPU)", False) if available is not None else None


def host_available(meminfo: str = "/proc/meminfo") -> int | None:
    """MemAvailable in bytes, or None (not Linux, or unreadable)."""
    try:
        with open(meminfo, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class Snapshot:
    """The trainable weights before the first step, on the CPU, so that a retry after an out-of-memory error starts
    from the same weights (the steps before the error, and a partial optimizer step, changed them)."""

    def __init__(self, saved: dict[str, Any]) -> None:
        self.saved = saved

    @classmethod
    def take(cls, model) -> "Snapshot | None":
        """A copy of every trainable parameter, or None when they would take more than SNAPSHOT_SHARE of the
        machine's available memory (or that cannot be read)."""
        params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        size = sum(p.numel() * p.element_size() for _n, p in params)
        available = host_available()
        if available is None or size > SNAPSHOT_SHARE * available:
            return None
        return cls({name: p.detach().to("cpu", copy=True) for name, p in params})

    def restore(self, model) -> None:
        """The saved weights back in place; gradients dropped."""
        import torch

        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in self.saved:
                    p.copy_(self.saved[name].to(p.device))
                p.grad = None
