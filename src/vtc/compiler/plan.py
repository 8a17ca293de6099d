"""The plan: a projection of the resolved recipe, and the summary `vtc plan` prints.

    build_plan(resolved) -> plan dict       every section of vtc.compiler.resolve.Resolved, each value once
    summarize_plan(plan) -> str             each value and where it came from

The plan's format is plan.schema.json (checked whenever a plan is written or read, vtc.plans) and docs/plan.md.
Provenance: every leaf of the plan's sections has an entry in plan["provenance"] keyed by its JSON pointer: the
recipe line that set it ("xray.vt:4"), "default", "registry" (the model registry), or "derived" (computed from
other values, e.g. estimates and the target-module regex). plan_to_json (vtc.plans) writes it deterministically.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from vtc import __version__
from vtc.compiler.resolve import PLAN_SECTIONS, Resolved, Sourced
from vtc.diagnostics import printable
from vtc.plans import PLAN_VERSION
from vtc.records import fields


def build_plan(resolved: Resolved) -> dict:
    """The plan of a resolved recipe (check it first: this assumes no errors). Each plan section is the Resolved
    section of the same name: records become objects, each Sourced value its value, and its origin the provenance
    of every leaf under it."""
    provenance: dict[str, str] = {}
    plan = {section: _project(getattr(resolved, section), "/" + section, provenance) for section in PLAN_SECTIONS}
    plan["plan_version"] = PLAN_VERSION
    plan["vtc_version"] = __version__
    plan["recipe"] = {"file": resolved.recipe.file, "files": list(resolved.recipe.files)}
    plan["base_dir"] = resolved.base_dir
    plan["provenance"] = dict(sorted(provenance.items()))
    return plan


def _project(value, pointer: str, provenance: dict[str, str]):
    if isinstance(value, Sourced):
        _record(value.value, pointer, value.origin, provenance)
        return copy.deepcopy(value.value)
    return {name.rstrip("_"): _project(getattr(value, name), f"{pointer}/{name.rstrip('_')}", provenance)
            for name in fields(value)}


def _record(value, pointer: str, origin: str, provenance: dict[str, str]) -> None:
    """The origin of every leaf of ``value`` (a non-empty object's members are its leaves)."""
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            _record(sub, f"{pointer}/{key}", origin, provenance)
    else:
        provenance[pointer] = origin


# --- the summary ------------------------------------------------------------------------------------------------------


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) if not value or not isinstance(value[0], int) or len(value) != 2 \
            else f"{value[0]}x{value[1]}"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    text = str(value)
    return text.replace("\n", "\\n")


_VALUE_WIDTH = 44
_MOST_VALUE_LINES = 4


def _wrap(text: str) -> list[str]:
    """A value as lines of at most _VALUE_WIDTH characters, broken after a blank or a `/` (a path), at most
    _MOST_VALUE_LINES of them, the last ending in "..." when the value is longer."""
    if len(text) <= _VALUE_WIDTH:
        return [text]
    pieces: list[str] = []
    for word in re.findall(r"\S+\s*|\s+", text):
        if len(word) <= _VALUE_WIDTH:
            pieces.append(word)
            continue
        for part in re.findall(r"[^/]*/|[^/]+", word):  # a long path: after each `/`, or every _VALUE_WIDTH
            pieces.extend(part[i:i + _VALUE_WIDTH] for i in range(0, len(part), _VALUE_WIDTH))
    lines = [""]
    for piece in pieces:
        if lines[-1] and len(lines[-1] + piece.rstrip()) > _VALUE_WIDTH:
            lines.append("")
        lines[-1] += piece
    lines = [line.rstrip() for line in lines]
    if len(lines) > _MOST_VALUE_LINES:
        lines = lines[:_MOST_VALUE_LINES]
        lines[-1] = lines[-1][: _VALUE_WIDTH - 3] + "..."
    return lines


def _plural(n, word: str) -> str:
    """`1 epoch`, `2 epochs`, `1.5 epochs`."""
    return f"{n:g} {word}" + ("" if n == 1 else "s") if isinstance(n, (int, float)) else f"{n} {word}s"


def summarize_plan(plan: dict) -> str:
    """A readable summary of the plan: each value and where it came from (what `vtc plan` prints)."""
    prov = plan["provenance"]
    lines: list[str] = []

    def row(label: str, pointer: str, value=None) -> None:
        if value is None:
            value = _get(plan, pointer)
        where = prov.get(pointer)
        if where is None:  # a dict value: show the first child's origin
            where = next((v for k, v in prov.items() if k.startswith(pointer + "/")), "")
        # A long value (a system prompt, a deep path) wraps within its column, so that the origin column stays
        # where it is; `vtc plan --json` shows every value whole.
        shown = _wrap(_fmt(value))
        lines.append(f"  {label:<24} {shown[0]:<{_VALUE_WIDTH}} {where}".rstrip())
        lines.extend(f"  {'':<24} {more}" for more in shown[1:])

    m = plan["model"]
    lines.append(f"plan for {plan['recipe']['file']}" + (
        f" (with {', '.join(plan['recipe']['files'][1:])})" if len(plan["recipe"]["files"]) > 1 else ""))
    lines.append("model")
    row("name", "/model/name")
    row("loads", "/model/id")
    row("family", "/model/family", m["family"] or "unknown")
    if m["trust_remote_code"]:
        row("trust remote code", "/model/trust_remote_code", "yes")
        lines.append(f"  {'':<24} WARNING: runs Python code that comes with the model")
    lines.append("training")
    row("method", "/method")
    parts = [k for k in ("vision", "language", "attention", "mlp") if plan["parts"][k]]
    row("parts", "/parts/vision", ", ".join(parts) or "none (the projector only)")
    row("projector", "/parts/projector", {"frozen": "frozen", "lora": "with LoRA",
                                          "full": "in full"}[plan["parts"]["projector"]])
    if plan["lora"]:
        row("lora rank / alpha", "/lora/rank", f"{plan['lora']['rank']} / {plan['lora']['alpha']}")
        row("lora dropout", "/lora/dropout")
        row("rslora", "/lora/rslora")
    tr = plan["training"]
    row("responses only", "/training/responses_only")
    if tr["steps"] is not None:
        row("length", "/training/steps", f"{tr['steps']} steps")
    else:
        row("length", "/training/epochs", _plural(tr["epochs"], "epoch"))
    row("batch", "/training/batch", f"{tr['batch']} per update")
    micro = tr["micro_batch"]
    row("micro batch", "/training/micro_batch",
        "auto (vtc chooses from the free memory)" if micro == "auto" else
        f"{micro} at a time, no accumulation" if micro == tr["batch"] else
        f"{micro} at a time, {tr['batch'] // micro} passes an update")
    row("learning rate", "/training/learning_rate")
    for item in tr["part_learning_rates"]:
        row(f"  {item['part']}", "/training/part_learning_rates", f"{item['learning_rate']:g}")
    if tr["warmup_ratio"] is not None:
        row("warmup", "/training/warmup_ratio", f"{tr['warmup_ratio']:.0%} of steps")
    else:
        row("warmup", "/training/warmup_steps", f"{tr['warmup_steps']} steps")
    row("schedule", "/training/schedule")
    row("optimizer", "/training/optimizer")
    row("weight decay", "/training/weight_decay")
    row("max length", "/training/max_length")
    row("seed", "/training/seed")
    if (m["family"] or "").startswith("qwen"):
        row("vision attention", "/training/vision_attention",
            "one call per layer (GPU)" if tr["vision_attention"] == "varlen" else "per window")
    every = plan["checkpoint"]["every_steps"]
    row("checkpoint every", "/checkpoint/every_steps", f"{every} steps" if every else "only on Ctrl-C and at the end")
    lines.append("data")
    d = plan["data"]
    row("train", "/data/train/source", d["train"]["source"] + (f" (split {d['train']['split']})"
                                                               if d["train"]["split"] else ""))
    for key, label in (("train", "train format"), ("eval", "eval format")):
        if d[key] and d[key]["format"] != "auto":  # `format ...` written (auto: `vtc plan` detects it below)
            row(label, f"/data/{key}/format")
    if d["images_folder"] is not None:
        row("images from folder", "/data/images_folder")
    if d["eval"]:
        row("evaluate on", "/data/eval/source", d["eval"]["source"])
    elif d["holdout"] is not None:
        row("holdout", "/data/holdout", f"{d['holdout']:.0%}")
    else:
        row("evaluation", "/data/eval", "none")
    row("instruction", "/data/instruction")
    if d["system"]:
        row("system", "/data/system")
    row("answer from", "/data/answer/from", d["answer"]["from"] + (
        f" `{d['answer']['column']}`" if d["answer"]["column"] else ""))
    r = plan["images"]["resize"]
    row("resize", "/images/resize/mode", pixel_budget_words(r) if r["mode"] == "pixels" else
        {"longest": f"longest side {r['size']} px", "exact": f"exactly {_fmt(r['size'])} px" if r["size"] else "",
         "none": "none (each image's own size)"}[r["mode"]])
    row("bad rows", "/data/bad_rows", {"stop": "stop (the run refuses to start)",
                                       "skip": "skip (listed in the run folder)"}[d["bad_rows"]])
    if plan["images"]["window"]:
        w = plan["images"]["window"]
        row("DICOM window", "/images/window", f"centre {w['center']}, width {w['width']}")
    if plan["images"]["tiff_pages"] == "all":
        row("TIFF pages", "/images/tiff_pages", "all (one sample a page)")
    if plan["video"] is not None:
        lines.append("video")
        for label, pointer, value in video_rows(plan):
            row(label, pointer, value)
    lines.append("outputs")
    row("folder", "/outputs/dir")
    row("exports", "/outputs/exports")
    row("metrics", "/evaluation/metrics")
    lines.append("processes")
    lines.extend(_process_lines(plan, row))
    e = plan["estimates"]
    lines.append("estimates (derived)")
    spread = budget_range_words(plan)
    if spread:  # a pixel budget: the range, then the largest image, which the memory estimate is for
        lines.append(f"  {'image tokens':<24} {spread}")
    if e["image_size"]:
        lines.append(f"  {'image' if not spread else 'largest image':<24} {_fmt(e['image_size'])} px -> "
                     f"{e['image_tokens_per_image']} image tokens"
                     + (f" ({_plural(e['tiles_per_image'], 'tile')}, 1 token in the text)"
                        if e["tiles_per_image"] else ""))
    t = e["trainable_parameters"]
    if t:
        lines.append(f"  {'trainable parameters':<24} {t['total']:,}" + (
            f" of {e['total_parameters']:,} ({100 * t['total'] / e['total_parameters']:.2f}%)"
            if e["total_parameters"] else ""))
        for tower in ("vision", "language"):
            lines.append(f"    {tower:<22} attention {t[tower]['attention']:,}, mlp {t[tower]['mlp']:,}")
        if t.get("projector"):
            lines.append(f"    {'projector':<22} {t['projector']:,}")
    if e["gpu_memory_gib"] is not None:
        at = "" if micro != "auto" else " (1 at a time)"
        lines.append(f"  {'GPU memory':<24} about {e['gpu_memory_gib']} GiB{at}")
    lines.extend(_memory_table(tr))
    lines.extend(video_estimate_lines(plan))
    f = e["flops"]
    if f:  # what the run's model FLOP utilisation counts (docs/running.md, "Speed and utilisation")
        lines.append(f"  {'model FLOPs':<24} {_si(f['per_text_token'])} a text token, "
                     f"{_si(f['per_vision_patch'])} an image patch (6 x parameters)")
    # For a terminal: control characters of recipe values and file names shown escaped (`vtc plan --json` keeps
    # them exact).
    return printable("\n".join(lines))


def processes_text(plan: dict) -> str:
    """How many training processes a run starts, in words (`vtc plan`, `vtc explain`)."""
    gpus = plan["hardware"]["gpus"]
    count = ("one per visible GPU on each machine" if gpus == "all" else
             f"{gpus} on each machine, one per GPU" if gpus > 1 else "1")
    return count + "; under torchrun, torchrun's own"


def each_process_text(plan: dict) -> str:
    """What each training process holds and trains, in words."""
    gpus, t = plan["hardware"]["gpus"], plan["training"]
    batch = t["batch"]
    share = f"{batch // gpus} of the {batch} samples per update" if gpus not in ("all", 1) else \
        f"its share of the {batch} samples per update (the batch divided by the processes)"
    if gpus == 1:
        share = f"all {batch} samples per update (one process: no share)"
    if plan["hardware"]["distributed"]["strategy"] == "fsdp2":
        part = f"1/{gpus}" if gpus not in ("all", 1) else "1/N (N processes)"
        return f"{part} of the weights, gradients and optimizer state (sharded), and {share}"
    return f"the whole model, and {share}"


def sharded_gib(plan: dict) -> float | None:
    """The per-GPU estimate of a sharded plan over its `gpus N` (None for `gpus all`, one GPU or no estimate)."""
    gpus = plan["hardware"]["gpus"]
    rows = plan["estimates"]["gpu_memory_sharded_gib"] or []
    return next((row["gib"] for row in rows if row["processes"] == gpus), None)


def _process_lines(plan: dict, row) -> list[str]:
    """`vtc plan`'s lines on the processes: how many, what each holds, the memory per GPU with sharding."""
    out: list[str] = []
    row("gpus", "/hardware/gpus", processes_text(plan))
    strategy = plan["hardware"]["distributed"]["strategy"]
    row("each process holds", "/hardware/distributed/strategy", each_process_text(plan))
    sharded = plan["estimates"]["gpu_memory_sharded_gib"]
    if strategy == "fsdp2" and sharded:
        mine = sharded_gib(plan)
        text = (f"about {mine} GiB per GPU (transformers)" if mine is not None else
                "; ".join(f"{r['processes']} GPUs: {r['gib']:g} GiB" for r in sharded) + " (transformers)")
        out.append(f"  {'GPU memory, sharded':<24} {text}")
    return out


def memory_table_text(training: dict, backend: str = "unsloth", most: int = 6, unit: str = " GiB") -> str | None:
    """The micro-batch estimates of one backend as `1 -> 9.1 GiB, 2 -> 9.8 GiB, ...` (at most ``most`` of them:
    the smallest and the largest, `...` between), or None when there is none."""
    rows = [(row["micro_batch"], row[backend]) for row in training["batching"]["memory_gib"]
            if row[backend] is not None]
    if not rows:
        return None
    shown = [f"{m} -> {gib:g}{unit}" for m, gib in rows]
    if len(shown) > most:
        shown = shown[:most // 2] + ["..."] + shown[-(most - most // 2):]
    return ", ".join(shown)


def card_fits_text(training: dict, backend: str = "unsloth") -> str | None:
    """Which card sizes the run fits and how many rows at a time each takes: `16 GiB: no; 24 GiB (L4, A10): 2 at a
    time; ...; 80 GiB (H100): all 8`; None without estimates."""
    from vtc.compiler.estimates import card_fits

    table = training["batching"]["memory_gib"]
    if not any(row[backend] is not None for row in table):
        return None
    batch = training["batch"]
    parts = []
    for gib, names, micro in card_fits(table, backend, training["batching"]["safety_margin"]):
        if micro is None:
            parts.append(f"{gib} GiB: too small")
        else:
            parts.append(f"{gib} GiB ({', '.join(names[:2])}): " + (f"all {batch}" if micro == batch else
                                                                    f"{micro} at a time"))
    # One entry per size up to the first that takes the whole batch at once; larger cards add nothing.
    whole = next((i for i, p in enumerate(parts) if p.endswith(f"all {batch}")), len(parts) - 1)
    return "; ".join(parts[:whole + 1]) + ("; larger: the same" if whole < len(parts) - 1 else "")


def video_rows(plan: dict) -> list[tuple[str, str, str]]:
    """The plan's video section (`vtc plan`): (label, pointer, value in words) for each setting."""
    v = plan["video"]
    w = v["window"]
    return [
        ("frames per second", "/video/fps", f"{v['fps']:g}"),
        ("at most", "/video/max_frames", f"{v['max_frames']:,} frames a clip (at least {v['min_frames']})"),
        ("window", "/video/window", "the whole clip" if w is None else
         f"{w['start']:g} s to " + ("the end" if w["end"] is None else f"{w['end']:g} s") + " of each clip"),
        ("frame size", "/video/resize/mode", video_resize_words(v["resize"])),
        ("frames merged in time", "/video/temporal_patch", str(v["temporal_patch"])),
        ("DICOM and TIFF files", "/video/multi_frame_files",
         "read as clips (cine loops, stacks)" if v["multi_frame_files"] == "clips" else
         "read as images (`video` reads them as clips)"),
    ]


def video_resize_words(resize: dict) -> str:
    """The frame size of a clip in words: `longest side 336 px` or a pixel budget."""
    if resize["mode"] == "longest":
        return f"longest side {resize['size']} px (sides multiples of {resize['multiple']})"
    return (f"between {resize['min_pixels']:,} and {resize['max_pixels']:,} pixels a frame, aspect kept, sides "
            f"multiples of {resize['multiple']} px")


def video_estimate_lines(plan: dict) -> list[str]:
    """The video estimates (`vtc plan`): the tokens formula, the largest clip, one second of clip, its memory."""
    e, v = plan["estimates"], plan["video"]
    if v is None or e["video_tokens_per_clip_max"] is None:
        return []
    unit = v["resize"]["multiple"]
    patch = v["temporal_patch"]
    w, h = e["video_frame_size"]
    frames = e["video_frames_per_clip_max"]
    worst = plan["provenance"].get("/video/max_frames") == "default" and (
        v["window"] is None or v["window"]["end"] is None)
    out = [f"  {'video tokens a clip':<24} ceil(frames / {patch}) x (height / {unit}) x (width / {unit})",
           f"  {'largest clip':<24} {frames:,} frames of {w}x{h} px: ceil({frames} / {patch}) x {h // unit} x "
           f"{w // unit} = {e['video_tokens_per_clip_max']:,} tokens"
           + (" (the default cap, a worst case)" if worst else ""),
           f"  {'one second of clip':<24} {e['video_tokens_per_second']:,} tokens ({v['fps']:g} frames)"]
    if e["gpu_memory_video_gib"] is not None:
        out.append(f"  {'GPU memory, that clip':<24} about {e['gpu_memory_video_gib']} GiB (1 row at a time)")
    return out


def pixel_budget_words(resize: dict) -> str:
    """A pixel budget in words: `between 200,000 and 1,000,000 pixels an image, aspect kept, sides multiples of
    28 px`."""
    multiple = f", sides multiples of {resize['multiple']} px" if resize["multiple"] > 1 else ""
    return (f"between {resize['min_pixels']:,} and {resize['max_pixels']:,} pixels an image, aspect kept"
            f"{multiple}")


def budget_range_words(plan: dict) -> str | None:
    """For a pixel budget: the image tokens (or tiles) from the smallest image to the largest, in words; None
    otherwise."""
    from vtc.compiler.estimates import budget_token_range

    spread = budget_token_range(plan["model"]["geometry"], plan["images"]["resize"])
    if spread is None:
        return None
    low, high = spread["low"], spread["high"]
    unit = "tile" if spread["unit"] == "tiles" else "image token"
    return (f"{low:,} to {high:,} {unit}s an image (memory: at the largest)" if low != high
            else f"{_plural(high, unit)} an image")


def _memory_table(training: dict) -> list[str]:
    """`vtc plan`'s lines for the memory estimate of each micro-batch (rows at a time -> GiB), per backend."""
    out = []
    for backend in ("unsloth", "transformers"):
        text = memory_table_text(training, backend, unit="")
        if text is not None:
            label = "GiB by micro batch" if not out else ""
            out.append(f"  {label:<24} {backend + ':':<14}{text}")
    fits_line = card_fits_text(training)
    if fits_line:
        out.append(f"  {'cards (unsloth)':<24} {fits_line}")
    if training["micro_batch"] == "auto":
        rule = training["batching"]
        fits = f"the largest that leaves {rule['safety_margin']:.0%} of the free memory free"
        out.append(f"  {'micro batch rule':<24} {fits}" if out else
                   f"  {'micro batch rule':<24} no estimate: starts at {rule['fallback']}, halved once if the first "
                   "steps run out of memory")
    return out


def _si(n: float) -> str:
    """A count with a metric prefix, three digits: 18.5 G, 2.08 M."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= factor:
            return f"{n / factor:.3g} {prefix}"
    return f"{n:.3g}"


def _get(plan: dict, pointer: str):
    node: Any = plan
    for key in pointer.strip("/").split("/"):
        node = node.get(key) if isinstance(node, dict) else None
    return node
