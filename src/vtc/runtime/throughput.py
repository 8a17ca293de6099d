"""What training achieved: tokens/s, samples/s, model FLOP utilisation (MFU) and peak memory, counted from the
batches actually trained.

    meter = attach(trainer, plan)        before trainer.train(): counts every micro-batch, times every step
    summary = meter.summary()            after it: the figures, manifest.json's "throughput"
    keep(run_dir, summary) / take(run_dir)   handed from training (train.py) to the run's end (lifecycle.py)
    lines(summary) -> [str]              the run's closing summary, in plain words
    data_wait_warning(summary)           VT543 when a GPU waited for its batches
    card_for(name) -> dict | None        a GPU's peak arithmetic (src/vtc/registry/cards.json)

Counting. Each micro-batch is counted as the trainer hands it to ``training_step`` (already on the device; the sums
are taken there, without waiting for the GPU, and read once at the end): samples = rows; text tokens = the
non-padding positions of the sequence (attention_mask), image placeholder tokens included, which is what the model's
language part computes on; vision patches = what the vision tower computes on: Qwen-VL's pixel_values rows
(patch_size x patch_size x 2 frames each) and pixel_values_videos rows (a clip's patches, two frames each), and for image tensors [..., C, H, W] (Llama 3.2 Vision's tiles, padding
tiles included, Gemma 3, Pixtral) (H / patch) x (W / patch) + the tower's extra tokens (Llama's class token) per
image or tile. The time the trainer spends fetching the next batches (``get_batch_samples``) is the data wait.

Steady state: the first SKIPPED_STEPS steps a process trains are left out (Unsloth compiles during step 1, and new
shapes can compile again at step 2; the data loader starts its workers), and the figures cover the time from the
end of the last left-out step to the end of the last step. A run of SKIPPED_STEPS steps or fewer counts every step
from the start of training, and says so. Steps end when the trainer's step callback runs (the host's time: the
device may still be finishing the step, but vtc logs every step's loss, which waits for the device, so the two
clocks agree to within a step, and over a window the offsets cancel).

FLOPs per text token and per vision patch come from the plan (estimates.flops, compiler/flops.py: 6 x the
parameters each passes through, PaLM's MFU convention without the attention term); the peak from the card's entry
in registry/cards.json for the training dtype. MFU is null, with the reason, on a CPU, on an unknown card, for a
model whose sizes vtc does not know, and for 32-bit training.
"""

from __future__ import annotations

import os
import time

from vtc.diagnostics import Diagnostic, warning
from vtc.registry import load_cards

# The first steps of a process left out of the steady-state figures (compilation, the data loader's start).
SKIPPED_STEPS = 2
# A GPU run whose steady-state steps wait longer than this share of their time for batches gets VT543, when the
# waits add up to DATA_WAIT_MIN_SECONDS at least (a 12-step smoke run of a tiny model on an H200 waited 6% of its
# 0.66 s: 42 ms, nothing to act on).
DATA_WAIT_MIN_SECONDS = 5.0
DATA_WAIT_LIMIT = 0.05
GIB = 2 ** 30

COUNTING = ("model FLOPs = 6 x (language-model parameters x text tokens + vision-tower parameters x vision "
            "patches), PaLM's convention without the attention term; MFU = model FLOPs per second / the card's "
            "dense 16-bit peak (docs/running.md, \"Speed and utilisation\")")


def _now() -> float:
    """The clock steps are timed by (a function, so that tests can set it)."""
    return time.perf_counter()


# --- the card's peak ---------------------------------------------------------------------------------------------

def card_for(name: str) -> dict | None:
    """The cards.json entry of the GPU torch calls ``name`` (the first whose pattern occurs in it), or None."""
    import re

    lowered = name.lower()
    for card in load_cards()["cards"]:
        if re.search(card["pattern"], lowered):
            return card
    return None


# --- counting a batch ---------------------------------------------------------------------------------------------

def count_batch(inputs, flops: dict | None) -> tuple[int, object, object]:
    """(samples, text tokens, vision patches) of one micro-batch as the model receives it. The text tokens and
    patches may be 0-d tensors on the batch's device (summed there, read later); patches is None when the plan does
    not say how to count them (no patch size)."""
    ids = inputs.get("input_ids")
    samples = int(ids.shape[0]) if ids is not None and ids.dim() >= 1 else 0
    mask = inputs.get("attention_mask")
    if mask is not None and ids is not None and tuple(mask.shape) == tuple(ids.shape):
        text = mask.sum()
    else:  # no padding mask (padding-free batches): every position is a token
        text = int(ids.numel()) if ids is not None else 0
    return samples, text, _patches(inputs, flops)


def _patches(inputs, flops: dict | None):
    clips = inputs.get("pixel_values_videos")
    # Qwen-VL's clips: one row per patch of two frames (temporal_patch_size), each one token of the vision tower.
    in_clips = int(clips.shape[0]) if hasattr(clips, "shape") and clips.dim() == 2 else 0
    images = _image_patches(inputs, flops)
    return None if images is None else images + in_clips


def _image_patches(inputs, flops: dict | None):
    pixels = inputs.get("pixel_values")
    if pixels is None or not hasattr(pixels, "shape"):
        return 0
    if pixels.dim() == 2:  # Qwen-VL: one row per patch (image_grid_thw says how they tile each image)
        return int(pixels.shape[0])
    size = flops.get("patch_size") if flops else None
    if not size or pixels.dim() < 4:
        return None
    extra = int(flops["patch_extra_tokens"])
    sizes = inputs.get("image_sizes")
    if sizes is not None and hasattr(sizes, "dim") and sizes.dim() == 2 and sizes.shape[-1] == 2:
        # Pixtral: images padded to the batch's largest; each image's own size says its patches.
        return ((sizes[:, 0] // size) * (sizes[:, 1] // size) + extra).sum()
    images = 1
    for n in pixels.shape[:-3]:
        images *= int(n)
    height, width = int(pixels.shape[-2]), int(pixels.shape[-1])
    return images * ((height // size) * (width // size) + extra)


# --- the meter ---------------------------------------------------------------------------------------------------

class Meter:
    """Counts the micro-batches of a trainer and times its steps (see the module docstring).

    Token and patch counts that are sums on the device stay there as running totals (a couple of scalars: never
    one a step), read once at the end: counting never makes the host wait for the GPU."""

    def __init__(self, plan: dict) -> None:
        self.flops = plan["estimates"]["flops"]
        self.steps: list[dict] = []  # {"step", "end", "samples", "wait"} per step, host values only
        self._pending = self._empty()
        self._sums = self._no_sums()
        self.begin: float | None = None
        self.end: float | None = None
        self.device = "cpu"
        self.dtype: str | None = None
        self.workers: int | None = None
        self.pin_memory: bool | None = None
        self.first_step: int | None = None
        self.broken: str | None = None  # why the batches could not be counted (the figures are then left out)
        self.batches = 0  # micro-batches seen
        self.waits = False  # the trainer fetched its batches through get_batch_samples: the data wait is measured

    @staticmethod
    def _empty() -> dict:
        return {"samples": 0, "text": 0, "patches": 0, "wait": 0.0}

    @staticmethod
    def _no_sums() -> dict:
        # "all": every step; "later": the steps after the first SKIPPED_STEPS (the steady state)
        return {"all": {"text": 0, "patches": 0}, "later": {"text": 0, "patches": 0}}

    # called by the wrappers and the callback
    def count(self, inputs) -> None:
        if self.broken:
            return
        try:
            samples, text, patches = count_batch(inputs, self.flops)
        except Exception as exc:  # a batch of a shape vtc does not know: the figures go, training goes on
            self.broken = f"{type(exc).__name__}: {exc}"
            return
        self.batches += 1
        self._pending["samples"] += samples
        self._pending["text"] = _add(self._pending["text"], text)
        self._pending["patches"] = _add(self._pending["patches"], patches)

    def waited(self, seconds: float) -> None:
        self._pending["wait"] += seconds

    def started(self, args, step: int) -> None:
        self.begin = _now()
        self.first_step = step
        device = getattr(args, "device", None)
        self.device = getattr(device, "type", None) or "cpu"
        self.dtype = "bf16" if getattr(args, "bf16", False) else "fp16" if getattr(args, "fp16", False) else "fp32"
        self.workers = getattr(args, "dataloader_num_workers", None)
        self.pin_memory = getattr(args, "dataloader_pin_memory", None)
        self._pending, self._sums, self.steps = self._empty(), self._no_sums(), []

    def step_ended(self, step: int) -> None:
        pending, self._pending = self._pending, self._empty()
        parts = ("all", "later") if len(self.steps) >= SKIPPED_STEPS else ("all",)
        for part in parts:
            for key in ("text", "patches"):
                self._sums[part][key] = _add(self._sums[part][key], pending[key])
        self.steps.append({"step": step, "end": _now(), "samples": pending["samples"], "wait": pending["wait"]})

    def ended(self) -> None:
        self.end = _now()

    # the figures
    def summary(self) -> dict:
        """manifest.json's "throughput" (docs/running.md, "Speed and utilisation")."""
        steps = self.steps
        out: dict = {"counting": COUNTING, "device": self._device_name(), "dtype": self.dtype,
                     "data_workers": self.workers, "pin_memory": self.pin_memory}
        if not steps:
            out.update(steps=None, mfu=None, mfu_reason="no training step ran in this process")
            out["peak_memory_gib"] = self._peak_memory()
            return out
        if not self.batches and not self.broken:
            self.broken = "no batch went through the trainer's training_step (this trainer trains another way)"
        begin = self.begin if self.begin is not None else steps[0]["end"]
        steady = len(steps) > SKIPPED_STEPS
        counted = steps[SKIPPED_STEPS:] if steady else steps
        start = steps[SKIPPED_STEPS - 1]["end"] if steady else begin
        seconds = max(counted[-1]["end"] - start, 1e-9)
        left_out = [s["step"] for s in steps[:SKIPPED_STEPS]] if steady else []
        why = (f"the first {len(left_out)} steps this process trained are left out: they include compiling and the "
               "data loader's start" if steady else
               f"only {len(steps)} step{'s' * (len(steps) != 1)}: every step is counted, the first ones (compiling, "
               "the data loader's start) included")
        window = self._totals(counted, "later" if steady else "all")
        out["steps"] = {"first": counted[0]["step"], "last": counted[-1]["step"], "counted": len(counted),
                        "left_out": left_out, "why": why}
        out["seconds"] = round(seconds, 4)
        out.update(window)
        out["samples_per_second"] = round(window["samples"] / seconds, 3) if window["samples"] is not None else None
        out["tokens_per_second"] = round(window["text_tokens"] / seconds, 1) if window["text_tokens"] is not None \
            else None
        out["vision_patches_per_second"] = round(window["vision_patches"] / seconds, 1) \
            if window["vision_patches"] is not None else None
        flops, flops_reason = self._model_flops(window)
        out["model_tflops_per_second"] = round(flops / seconds / 1e12, 4) if flops is not None else None
        out.update(self._mfu(flops / seconds if flops is not None else None, flops_reason))
        waits = sum(s["wait"] for s in counted)
        out["data_wait_seconds"] = round(waits, 3) if self.waits else None
        out["data_wait_share"] = round(waits / seconds, 4) if self.waits else None
        whole_seconds = max(steps[-1]["end"] - begin, 1e-9)
        out["whole_run"] = {"first": steps[0]["step"], "last": steps[-1]["step"], "steps": len(steps),
                            "seconds": round(whole_seconds, 3), **self._totals(steps, "all")}
        out["peak_memory_gib"] = self._peak_memory()
        if self.broken:
            out["counting_failed"] = self.broken
        return out

    def _totals(self, steps: list[dict], part: str) -> dict:
        """{"samples", "text_tokens", "vision_patches"} of ``steps``, whose device sums are ``part``'s."""
        sums = self._sums[part]
        broken = self.broken is not None
        return {"samples": None if broken else int(sum(s["samples"] for s in steps)),
                "text_tokens": None if broken else _read(sums["text"]),
                "vision_patches": None if broken else _read(sums["patches"])}

    def _device_name(self) -> str:
        if self.device != "cuda":
            return "cpu"
        import torch

        return torch.cuda.get_device_name(torch.cuda.current_device())

    def _model_flops(self, window: dict) -> tuple[float | None, str | None]:
        if self.broken:
            return None, f"the batches could not be counted ({self.broken})"
        if not self.flops:
            return None, ("vtc does not know this model's sizes (it is not in vtc's registry), so it cannot count "
                          "the model's arithmetic")
        if window["text_tokens"] is None or window["vision_patches"] is None:
            return None, "vtc could not count this model's vision patches"
        return (window["text_tokens"] * self.flops["per_text_token"]
                + window["vision_patches"] * self.flops["per_vision_patch"]), None

    def _mfu(self, flops_per_second: float | None, reason: str | None) -> dict:
        """{"mfu", "mfu_reason", "card", "peak_tflops"}: the share of the card's peak, or null with the reason."""
        out = {"mfu": None, "mfu_reason": None, "card": None, "peak_tflops": None}
        if self.device != "cuda":
            out["mfu_reason"] = "it is a share of a GPU's peak arithmetic, and this run trained on the CPU"
            return out
        name = self._device_name()
        card = card_for(name)
        if card is None:
            out["mfu_reason"] = (f"vtc does not know the peak arithmetic of the {name} (add it to "
                                 "src/vtc/registry/cards.json)")
            return out
        out["card"] = card["name"]
        peak = card["tflops"].get(self.dtype) if self.dtype in ("bf16", "fp16") else None
        out["peak_tflops"] = peak
        if self.dtype not in ("bf16", "fp16"):
            out["mfu_reason"] = (f"the model trained in 32-bit floating point; the {card['name']}'s table holds its "
                                 "16-bit peaks")
        elif peak is None:
            out["mfu_reason"] = f"the {card['name']} has no {self.dtype} tensor cores"
        elif flops_per_second is None:
            out["mfu_reason"] = reason
        else:
            out["mfu"] = round(flops_per_second / (peak * 1e12), 4)
        return out

    def _peak_memory(self) -> dict:
        """The process's peak memory: the GPU's (allocated and reserved by torch, since the process started: model
        loading included) and the host's (resident set of the training process; workers not included)."""
        out: dict = {"gpu_allocated": None, "gpu_reserved": None, "gpu_total": None, "host": _host_peak_gib()}
        if self.device == "cuda":
            import torch

            device = torch.cuda.current_device()
            out.update(gpu_allocated=round(torch.cuda.max_memory_allocated(device) / GIB, 2),
                       gpu_reserved=round(torch.cuda.max_memory_reserved(device) / GIB, 2),
                       gpu_total=round(torch.cuda.get_device_properties(device).total_memory / GIB, 1))
        return out


def _add(a, b):
    """a + b, where either may be a 0-d tensor (added on its device, not read) or None (unknown: stays unknown)."""
    if a is None or b is None:
        return None
    return a + b


def _read(value) -> int | None:
    """A count as a whole number: a device tensor read (the one wait for the device), an int as it is."""
    if value is None:
        return None
    if hasattr(value, "item"):
        return int(round(float(value.detach().double().item())))
    return int(value)


def _host_peak_gib() -> float | None:
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return None
    per = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return round(peak * per / GIB, 2)


def attach(trainer, plan: dict) -> Meter:
    """A Meter on ``trainer``: its ``training_step`` counts each micro-batch first, its ``get_batch_samples`` (when
    the trainer has one) is timed as the data wait, and a callback marks the steps. Wraps the trainer's own methods
    (instance attributes, so that Unsloth's patched class methods still run inside)."""
    from transformers import TrainerCallback

    meter = Meter(plan)
    step = trainer.training_step

    def training_step(model, inputs, *args, **kwargs):
        meter.count(inputs)
        return step(model, inputs, *args, **kwargs)

    trainer.training_step = training_step
    fetch = getattr(trainer, "get_batch_samples", None)
    if fetch is not None:
        def get_batch_samples(*args, **kwargs):
            meter.waits = True
            began = _now()
            try:
                return fetch(*args, **kwargs)
            finally:
                meter.waited(_now() - began)

        trainer.get_batch_samples = get_batch_samples

    class ThroughputCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            meter.started(args, state.global_step)

        def on_step_end(self, args, state, control, **kw):
            meter.step_ended(state.global_step)

        def on_train_end(self, args, state, control, **kw):
            meter.ended()

    trainer.add_callback(ThroughputCallback())
    return meter


# --- from training to the run's end ------------------------------------------------------------------------------

_KEPT: dict[str, dict] = {}


def keep(run_dir, summary: dict) -> None:
    """The summary of the training in ``run_dir``, for the run's end (lifecycle.finish, interrupted, failed)."""
    _KEPT[os.path.abspath(run_dir)] = summary


def take(run_dir) -> dict | None:
    """The summary kept for ``run_dir`` (once), or None."""
    return _KEPT.pop(os.path.abspath(run_dir), None)


# --- in words ----------------------------------------------------------------------------------------------------

def _n(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}" if value >= 10 else f"{value:,.2f}"


# The figures that add up over the processes of a run (each trains its share of every update, at the same time).
_ADDED = ("samples", "text_tokens", "vision_patches", "samples_per_second", "tokens_per_second",
          "vision_patches_per_second", "model_tflops_per_second")


def combine(summaries: list[dict]) -> dict:
    """The run's figures from every process's summary (rank order), for a run of several processes: rank 0's,
    with the counts and rates added over the processes (each trains its own share of every update in the same
    seconds), the model FLOP utilisation the mean of theirs (every process has a card of its own), the data wait
    the largest share, the peak memory the largest process's, and each process's own figures under "processes".
    One summary: itself."""
    if len(summaries) == 1:
        return summaries[0]
    out = dict(summaries[0])

    def total(key: str, parts: list[dict]):
        values = [p.get(key) for p in parts]
        return None if any(v is None for v in values) else round(sum(values), 4)

    for key in _ADDED:
        out[key] = total(key, summaries)
    if all(s.get("whole_run") for s in summaries):
        out["whole_run"] = {**out["whole_run"], **{k: total(k, [s["whole_run"] for s in summaries])
                                                   for k in ("samples", "text_tokens", "vision_patches")}}
    mfus = [s.get("mfu") for s in summaries]
    out["mfu"] = None if any(m is None for m in mfus) else round(sum(mfus) / len(mfus), 4)
    waits = [s.get("data_wait_share") for s in summaries if s.get("data_wait_share") is not None]
    out["data_wait_share"] = max(waits) if waits else None
    memory = [s["peak_memory_gib"] for s in summaries]
    out["peak_memory_gib"] = max(memory, key=lambda m: (m.get("gpu_reserved") or 0, m.get("host") or 0))
    out["processes"] = [{"rank": rank, **{k: s.get(k) for k in ("tokens_per_second", "samples_per_second", "mfu",
                                                                 "data_wait_share", "peak_memory_gib")}}
                        for rank, s in enumerate(summaries)]
    return out


def lines(summary: dict, width: int = 20) -> list[str]:
    """The closing summary's lines: speed, utilisation, memory, data (``width``: the name column's)."""
    out: list[str] = []

    def line(name: str, text: str) -> None:
        out.append(f"{name:<{width}}{text}")

    steps = summary.get("steps")
    if steps is None:
        line("speed", "no training step ran in this process")
    elif summary["samples_per_second"] is None:
        line("speed", f"not counted: {summary.get('counting_failed')}")
    else:
        speed = []
        if summary["tokens_per_second"] is not None:
            speed.append(f"{_n(summary['tokens_per_second'])} tokens/s")
        speed.append(f"{_n(summary['samples_per_second'])} samples/s")
        if summary["vision_patches_per_second"]:
            speed.append(f"{_n(summary['vision_patches_per_second'])} image patches/s")
        span = f"step {steps['first']}" if steps["first"] == steps["last"] else \
            f"steps {steps['first']}-{steps['last']}"
        left = steps["left_out"]
        which = f"{span}; the first {len(left)} left out as warm-up" if left else f"{span}, the warm-up included"
        together = f", the {len(summary['processes'])} processes together" if summary.get("processes") else ""
        line("speed", ", ".join(speed) + f" ({which}{together})")
    if steps is not None:
        if summary["mfu"] is not None:
            achieved, peak = _n(summary["model_tflops_per_second"]), _n(summary["peak_tflops"])
            cards = len(summary.get("processes") or [None])
            of = f"{cards} x the {summary['card']}'s" if cards > 1 else f"the {summary['card']}'s"
            line("utilisation", f"{100 * summary['mfu']:.1f}% model FLOP utilisation: {achieved} of {of} {peak} "
                                f"TFLOP/s ({summary['dtype']}, dense; 6 x parameters a token)")
        else:
            achieved = (f"; {summary['model_tflops_per_second']:.3g} TFLOP/s of model arithmetic"
                        if summary.get("model_tflops_per_second") is not None else "")
            line("utilisation", f"no model FLOP utilisation: {summary['mfu_reason']}{achieved}")
    memory = summary["peak_memory_gib"]
    if memory["gpu_allocated"] is not None:
        most = " (the process that used the most)" if summary.get("processes") else ""
        line("memory", f"peak {memory['gpu_allocated']:.1f} GiB allocated, {memory['gpu_reserved']:.1f} GiB reserved "
                       f"of the GPU's {memory['gpu_total']:.1f} GiB{most}")
    elif memory["host"] is not None:
        which = "the training process that used the most" if summary.get("processes") else "the training process"
        line("memory", f"peak {memory['host']:.2f} GiB of host memory ({which})")
    if summary.get("data_wait_share") is not None:
        workers = summary["data_workers"]
        made = (f"{workers} data-loading worker{'s' * (workers != 1)}" if workers
                else "batches made in the training process")
        line("data", f"the steps waited {100 * summary['data_wait_share']:.1f}% of their time for batches ({made})")
    return out


def data_wait_warning(summary: dict) -> Diagnostic | None:
    """VT543 when a GPU run's steady-state steps waited more than DATA_WAIT_LIMIT of their time for batches."""
    share = summary.get("data_wait_share")
    steps = summary.get("steps")
    if share is None or steps is None or summary.get("device") == "cpu" or share <= DATA_WAIT_LIMIT:
        return None
    if (summary.get("data_wait_seconds") or 0) < DATA_WAIT_MIN_SECONDS:
        return None  # a short run of tiny steps: a few milliseconds of waiting are no bottleneck worth a warning
    workers = summary["data_workers"] or 0
    cores = _cores()
    made = (f"{workers} data-loading worker{'s' * (workers != 1)}" if workers
            else "the batches were made in the training process")
    return warning(
        "VT543", f"the GPU waited for its data {100 * share:.0f}% of the time (steps {steps['first']}-{steps['last']}; "
                 f"{made}, {cores} CPU cores): the images could not be opened and prepared as fast as it trained",
        help="smaller images make each batch cheaper (a smaller `resize`, or the images stored at about that size); "
             "on a machine with more CPU cores, more workers help: save the plan (`vtc plan recipe.vt -o plan.json`), "
             "raise training.data_loading.workers.gpu in it, and run `vtc run plan.json`")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
