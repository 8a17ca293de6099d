"""Semantic checks on the resolved recipe (VT2xx). Each check has a code, a test (tests/test_checks.py) and an
entry in the code registry (vtc.codes). Checks never change anything.

    check(resolved) -> [Diagnostic]

They read vtc.compiler.resolve.Resolved: every value already has its default and its span (None for a default),
so a check points at the clause that causes the problem, or at the model when the problem comes from a default.
"""

from __future__ import annotations

import re

from vtc.compiler import estimates as E
from vtc.compiler.resolve import DEFAULTS, Lora, Resolved, Sourced, micro_batches
from vtc.diagnostics import Diagnostic, did_you_mean, error, note, suggest, warning

# Unsloth advises 300-1000 px for vision fine-tuning (unsloth#1326): above, image tokens (and activations) grow with
# the area and run out of memory; below, Qwen-VL's 28 px tokens and Llama's 560 px tiles lose the detail that
# reports and documents need.
MIN_SIDE, MAX_SIDE = 300, 1000
# Text that must fit beside the image tokens: chat template, instruction and a short answer.
MIN_TEXT_TOKENS = 64
LR_SUSPICIOUS = 1e-2


RATE_PARTS = ("vision", "projector", "language")


def _projector_and_rates(r: Resolved) -> list[Diagnostic]:
    """VT213 a word of `learning rate ..., <part> <rate>` that is no part; VT214 a rate for a part that does not
    train; VT215 a part given two rates; VT216 `projector full|lora` without the projector in `finetune`; VT217
    `projector lora` with `using full`; VT218 a projector or a part that vtc cannot find in this model; VT219
    `projector full` as the only part under LoRA (no layer left for the adapter)."""
    out: list[Diagnostic] = []
    written = r.written
    model_name = r.model.name.value
    family, arch = r.model.family.value, r.model.architecture.value
    known = r.model.source.value != "unknown"
    parts = r.parts
    chosen = written["/parts"].value if "/parts" in written else []
    setting = written.get("/projector")
    if setting is not None and "projector" not in chosen:
        if "all" in chosen:
            why = "`all` trains the towers' layers, not the projector, under LoRA" if r.method.value != "full" \
                else "`all` with `using full` trains the projector in full already"
        else:
            why = "`finetune` does not name it"
        out.append(error("VT216", f"`projector {setting.value}` says how the projector trains, but {why}",
                         setting.span, "add it to the parts: `finetune " + ", ".join(
                             [p for p in chosen if p != "all"] or ["language"]) + ", projector on ...`, or remove "
                         f"`projector {setting.value}`"))
    if setting is not None and setting.value == "lora" and r.method.value == "full" and "projector" in chosen:
        out.append(error("VT217", "`projector lora` with `using full`: full fine-tuning has no LoRA adapters; the "
                         "projector trains in full", setting.span,
                         "remove `projector lora`, or write `using lora` to train the rest with LoRA"))
    if r.method.value != "full" and parts.projector.value == "full" and not any(
            getattr(parts, k).value for k in ("vision", "language")):
        out.append(error("VT219", "`projector full` with only the projector in `finetune`: under LoRA nothing is "
                         "left for the adapter to train", setting.span if setting is not None else
                         written["/parts"].span, "write `using full` to train the projector alone in full, "
                         "`projector lora`, or add parts: `finetune language, projector on ...`"))
    proj_known = bool(E.projector_modules(family, arch)) if family else False
    if known and parts.projector.value != "frozen" and "projector" in chosen and not proj_known:
        out.append(error("VT218", f"vtc does not know where the projector is in {model_name}",
                         written["/parts"].span, "leave `projector` out of `finetune`, or use a model family vtc "
                         "knows (Qwen-VL, Llama 3.2 Vision)"))
    rates = written.get("/part_learning_rates")
    if rates is None:
        return out
    patterns = (E.part_patterns(family, arch) or {}) if family else {}
    trains = {"vision": parts.vision.value and (parts.attention.value or parts.mlp.value),
              "language": parts.language.value and (parts.attention.value or parts.mlp.value),
              "projector": parts.projector.value != "frozen"}
    first: dict[str, object] = {}
    for i, item in enumerate(rates.value):
        word = written.get(f"/part_learning_rates/{i}/part")
        span = word.span if word is not None else rates.span
        part = item.get("part") if isinstance(item, dict) else None
        if not isinstance(part, str):
            continue
        if part not in RATE_PARTS:
            hint = did_you_mean(part, RATE_PARTS)
            out.append(error("VT213", f"`{part}` is not a part that can have a learning rate of its own", span,
                             (hint + " " if hint else "") + "write `learning rate 2e-4, vision 2e-5, projector 1e-4`"
                             " (parts: vision, projector, language)", suggestion=suggest(part, RATE_PARTS)))
            continue
        if part in first:
            out.append(error("VT215", f"`{part}` has two learning rates in one `learning rate` clause", span,
                             f"give `{part}` one rate", related=((first[part], "first given here"),)))
            continue
        first[part] = span
        if not trains[part]:
            what = {"projector": "add `projector` to `finetune`",
                    "vision": "add `vision` to `finetune`", "language": "add `language` to `finetune`"}[part]
            out.append(error("VT214", f"a learning rate for `{part}`, which does not train in this recipe", span,
                             f"{what}, or remove `{part} {item.get('learning_rate')}`"))
            continue
        if known and not patterns.get(part):
            out.append(error("VT218", f"vtc does not know which parameters of {model_name} are its `{part}`", span,
                             f"remove `{part} {item.get('learning_rate')}` (every part then trains at the base "
                             "rate)"))
    return out


def check(r: Resolved) -> list[Diagnostic]:
    """Every semantic problem of the resolved recipe, each at the span of the value that causes it."""
    out: list[Diagnostic] = []
    written = r.written
    model_name = r.model.name.value
    known = r.model.source.value != "unknown"
    family = r.model.family.value
    tiny = r.model.source.value == "tiny"
    method = r.method.value
    flags = {name: value.value for name, value in r.flags.items()}

    # VT220-VT221: what trains.
    parts = written["/parts"]
    trainable = r.estimates.trainable_parameters.value
    if trainable is not None and trainable["total"] == 0:
        out.append(error("VT220", f"`{', '.join(parts.value)}` trains nothing in {model_name}", parts.span,
                         "choose parts this model has, e.g. `finetune all`"))
    # (`all, projector` adds the projector, which `all` leaves out under LoRA: no warning for it)
    if "all" in parts.value and len(set(parts.value) - {"projector"}) > 1:
        out.append(warning("VT221", "`all` already trains every part; the other parts listed add nothing",
                           parts.span, "write `finetune all on ...` or list only the parts you want"))

    # VT213-VT218: the projector and the per-part learning rates.
    out.extend(_projector_and_rates(r))

    # VT230-VT233: image standardisation.
    resize = r.images.resize.value
    resize_span = r.images.resize.span
    sides = [] if resize["mode"] in ("none", "pixels") else (
        [resize["size"]] if resize["mode"] == "longest" else list(resize["size"]))
    zero = 0 in sides
    if zero:
        out.append(error("VT231", "`resize 0` would shrink every image to nothing", resize_span,
                         "write `resize 512` (longest side in pixels), `resize 640x480` or `resize none`"))
    if not tiny and sides and not zero and "/resize" in written:
        longest = max(sides)
        if longest > MAX_SIDE:
            out.append(warning(
                "VT230", f"images standardised to {longest} px on the longest side: above {MAX_SIDE} px the image "
                "tokens grow with the area and training often runs out of GPU memory", resize_span,
                f"Unsloth advises {MIN_SIDE}-{MAX_SIDE} px; try `resize 768`"))
        elif longest < MIN_SIDE:
            out.append(warning(
                "VT230", f"images standardised to {longest} px on the longest side: below {MIN_SIDE} px fine "
                "detail (text, small findings) is lost", resize_span,
                f"Unsloth advises {MIN_SIDE}-{MAX_SIDE} px; try `resize 512`"))
    if resize["mode"] == "pixels" and not tiny and "/resize" in written and resize["max_pixels"] > MAX_SIDE ** 2:
        out.append(warning(
            "VT230", f"a pixel budget of up to {resize['max_pixels']:,} pixels an image: above {MAX_SIDE ** 2:,} "
            f"pixels ({MAX_SIDE}x{MAX_SIDE}) the image tokens and memory grow with the area and training often runs "
            "out of GPU memory", resize_span,
            f"Unsloth advises {MIN_SIDE}-{MAX_SIDE} px a side; try " + (
                f"`resize between {resize['min_pixels']} and 1m pixels`" if "/resize/min_pixels" in written
                else "`resize up to 1m pixels`")))
    if resize["mode"] == "none" and not tiny:
        out.append(warning(
            "VT233", "`resize none` keeps every image's own size, so image tokens and memory depend on the largest "
            "image (a 3000 px photo is about 11,000 Qwen-VL tokens)", resize_span,
            f"standardise to {MIN_SIDE}-{MAX_SIDE} px, e.g. `resize 512`"))

    # VT232: max length vs image tokens.
    geometry = r.model.geometry.value
    text_tokens = r.estimates.text_tokens_per_image.value
    if geometry is not None and not zero and text_tokens is not None:
        max_length = r.training.max_length.value
        w, h = r.estimates.image_size.value
        how = (f"{w}x{h} px is {r.estimates.image_tokens_per_image.value} image tokens"
               if geometry["kind"] != "tiles" else
               f"{r.estimates.tiles_per_image.value} tiles of {geometry['tile_size']} px reach the model through "
               f"cross-attention and take {text_tokens} token in the text")
        where = r.training.max_length.span or resize_span or r.model.name.span
        if text_tokens + 2 > max_length:
            out.append(error(
                "VT232", f"`max length {max_length}` is too short for one image: {how}, plus 2 markers",
                where, f"write `max length {_round_up(text_tokens + 2 + 256)}` or a smaller `resize`"))
        elif text_tokens + 2 + MIN_TEXT_TOKENS > max_length:
            out.append(warning(
                "VT232", f"`max length {max_length}` leaves {max_length - text_tokens - 2} tokens for the "
                f"question and the answer: {how}", where,
                f"write `max length {_round_up(text_tokens + 2 + 256)}` or a smaller `resize`"))

    # VT223-VT224: video.
    out.extend(_video_problems(r))

    # VT240: responses_only needs the chat markers.
    if flags["responses_only"] and family is None and known:
        out.append(error(
            "VT240", f"`responses_only` needs the chat markers of {model_name}, and vtc does not know its family",
            r.flags["responses_only"].span,
            "use a model from the registry (or one whose name says its family), or write `without responses_only`"))

    # VT241-VT245: method combinations.
    method_span = r.method.span
    four_bit_checkpoint = "4bit" in model_name.lower().replace("-", "")
    if method == "full" and four_bit_checkpoint:
        out.append(error("VT241", f"full fine-tuning cannot train 4-bit weights, and `{model_name}` is a 4-bit "
                         "checkpoint", method_span, "use the 16-bit model (without -bnb-4bit), or `using qlora`"))
    elif method == "lora" and four_bit_checkpoint:
        out.append(warning("VT241", f"`{model_name}` is stored in 4 bit, so `using lora` still trains on 4-bit "
                           "weights (that is qlora)", method_span, "write `using qlora`, or use the 16-bit model"))
    if method == "full" and flags["rslora"]:
        out.append(warning("VT242", "`rslora` has no effect with full fine-tuning (it scales LoRA adapters)",
                           r.flags["rslora"].span, "remove `with rslora`, or use `using lora`"))
    if method == "full" and "/lora" in written:
        out.append(warning("VT243", "`lora` settings have no effect with full fine-tuning", written["/lora"].span,
                           "remove the `lora` clause, or use `using lora`"))
    exports = r.outputs.exports
    if method == "qlora" and "merged" in exports.value:
        out.append(note("VT244", "with qlora the adapter was trained against 4-bit weights; `export merged` adds it "
                        "to the 16-bit weights, so the merged model can answer slightly differently",
                        exports.span, "compare the merged model on your evaluation data, or train `using lora`"))
    if method == "full" and "adapter" in exports.value and exports.span is not None:
        out.append(warning("VT245", "full fine-tuning has no adapter to export: the whole model is saved",
                           exports.span, "write `export merged`"))

    # VT246-VT249, VT266: the batch and how it is split.
    out.extend(_batch_problems(r))

    # VT250: holdout share.
    holdout = written.get("/holdout")  # in percent, as written
    if holdout is not None and not 0 < holdout.value < 50:
        out.append(error("VT250", f"`holdout {_pct(holdout.value)}%` must be more than 0% and less than 50%",
                         holdout.span, "10% to 20% is usual, e.g. `holdout 10%`"))

    # VT251: answer from column needs the column.
    answer = r.data.answer
    if answer.from_.value == "column" and not answer.column.value:
        out.append(error("VT251", "`answer from column` does not say which column", written["/answer"].span,
                         "write the column's name, e.g. `answer from column caption`"))
    if answer.from_.value in ("captions", "folders") and answer.column.value:
        out.append(error("VT251", f"`answer from {answer.from_.value}` takes no column name", answer.column.span,
                         "write `answer from column <name>` to read a column"))

    # VT260: what TRL refuses for vision-language models.
    for flag, why in (("packing", "packing several samples into one sequence would split images from their "
                                  "tokens"),
                      ("padding_free", "padding-free batches flatten the batch, which the image features cannot "
                                       "follow")):
        if flags[flag]:
            out.append(error(
                "VT260", f"`{flag}` is not supported for vision-language models: TRL's SFTTrainer refuses it "
                f"after the model has loaded ({why})", r.flags[flag].span, f"remove `with {flag}`"))

    # VT261, VT267-VT269: several GPUs, `shard model`, a model bigger than one GPU.
    out.extend(_gpu_problems(r))

    # VT262: learning rate.
    lr = written.get("/learning_rate")
    if lr is not None and lr.value > LR_SUSPICIOUS and not tiny:
        out.append(warning("VT262", f"`learning rate {lr.value}` is very high for fine-tuning a pretrained "
                           "model and usually makes the loss diverge", lr.span,
                           "LoRA typically uses 1e-4 to 2e-4 (the default 2e-4); full fine-tuning 1e-5 to 5e-5"))

    # VT263: remote code.
    if flags["trust_remote_code"]:
        out.append(warning("VT263", "`trust_remote_code` runs Python code downloaded with the model on this machine",
                           r.flags["trust_remote_code"].span,
                           "only use it for a model whose code you have read or whose publisher you trust"))

    # VT265: where run folders go (the runtime checks again, and `--runs-dir` too: VT537).
    out.extend(_save_to_problems(r))

    # VT264: warmup as long as the training.
    steps, warmup = r.training.steps.value, r.training.warmup_steps.value
    if steps is not None and warmup is not None and "/warmup" in written and warmup >= steps > 0:
        out.append(warning("VT264", f"warmup ({warmup} steps) lasts the whole training ({steps} steps), so the "
                           "learning rate never reaches its peak", written["/warmup"].span,
                           "use a few steps of warmup, e.g. `warmup 5 steps`"))
    return out


# The most samples per update (the most `batch` takes): the old form (`batch` x `accumulate`) may not go beyond.
MOST_BATCH = 4096


def _video_problems(r: Resolved) -> list[Diagnostic]:
    """VT223 `video` with `tiff pages all` (a `video` clause reads every TIFF file as a clip, `tiff pages all` as
    several images); VT224 (warning) a clip at the recipe's own bounds (its `at most N frames`, or its window with
    an end) has more tokens than `max length`. Defaults alone never warn."""
    out: list[Diagnostic] = []
    written = r.written
    clause = written.get("/video")
    if clause is None or isinstance(r.video, Sourced):  # no clause, or a family without video (VT222)
        return out
    pages = r.images.tiff_pages
    if pages.value == "all":
        out.append(error(
            "VT223", "`tiff pages all` reads each page of a TIFF file as an image, and `video` reads every TIFF file "
                     "as a clip: the two cannot both apply", pages.span,
            "remove `tiff pages all` to read multi-page TIFF files as clips (a stack, a time-lapse), or remove the "
            "`video` clause to read their pages as images", related=((clause.span, "the video clause"),)))
    bounded = written.get("/video/max_frames") or written.get("/video/window/end")
    tokens = r.estimates.video_tokens_per_clip_max.value
    max_length = r.training.max_length.value
    if bounded is None or tokens is None or tokens <= max_length:
        return out
    frames = r.estimates.video_frames_per_clip_max.value
    width, height = r.estimates.video_frame_size.value
    unit = r.video.resize.value["multiple"]
    patch = r.video.temporal_patch.value
    merged = f"{frames} frames / {patch}" if frames % patch == 0 else f"ceil({frames} frames / {patch})"
    formula = f"{merged} x {height // unit} x {width // unit} = {tokens:,} tokens > max length {max_length:,}"
    size = "a square frame of " if r.video.resize.value["mode"] == "pixels" else ""
    fewer = max(2, (max_length - MIN_TEXT_TOKENS) // max(1, (height // unit) * (width // unit)) * patch)
    out.append(warning(
        "VT224", f"a clip at this recipe's bounds ({frames} frames of {size}{width}x{height} px) is longer than "
                 f"`max length`: {formula}", bounded.span,
        f"sample fewer frames (`at most {fewer} frames`), a smaller frame size "
        f"(`frame size {max(unit, width // 2 // unit * unit)}`), or a larger max length (`max length "
        f"{_round_up(tokens + 256)}`)", related=((r.training.max_length.span, "max length"),)
        if r.training.max_length.span is not None else ()))
    return out


def _batch_problems(r: Resolved) -> list[Diagnostic]:
    """VT246 (note): the old form, `accumulate` (with `batch` the rows per step), and what to write now; VT247:
    `micro batch` that does not divide `batch`; VT248: `micro batch` with `accumulate`; VT249: the old form's
    samples per update beyond MOST_BATCH; VT266 (note): the recipe's last run, older than plan version 3, trained
    another number of samples per update."""
    written = r.written
    batch, micro, accumulate = written.get("/batch"), written.get("/micro_batch"), written.get("/accumulate")
    effective = r.training.batch.value
    out = []
    if accumulate is not None:
        rows = r.training.micro_batch.value
        said = (f"`batch {_num(batch.value)}` with `accumulate {_num(accumulate.value)}`" if batch is not None else
                f"`accumulate {_num(accumulate.value)}` (with the old default `batch {rows}`)")
        if micro is not None:
            return [error(
                "VT248", f"`micro batch {_num(micro.value)}` and `accumulate {_num(accumulate.value)}` both say how "
                "the batch is split: `batch` means the samples per update with `micro batch`, the rows per step "
                "with `accumulate`", accumulate.span,
                f"write `batch {_num(micro.value) * _num(accumulate.value)}` and `micro batch {_num(micro.value)}`, "
                "without `accumulate`")]
        if effective > MOST_BATCH:
            return [error("VT249", f"{said} is {effective:,} samples per update, more than the {MOST_BATCH:,} vtc "
                          "takes", accumulate.span,
                          f"write `batch N` with N at most {MOST_BATCH} (the samples per update); vtc splits it "
                          "to fit the GPU")]
        out.append(note(
            "VT246", f"{said} is the old way of writing the batch: it still means {effective} samples per update, "
            f"{rows} at a time", accumulate.span,
            f"write `batch {effective}` to let vtc choose how many go through the GPU at once (from its free "
            f"memory), or `batch {effective}` and `micro batch {rows}` to keep {rows} at a time"))
        return out
    earlier = _earlier_batch(r) if micro is None else None
    if earlier is not None and earlier[1] != effective:
        # VT266: `batch N` alone meant N rows at a time with the default `accumulate 4` before plan version 3, and
        # this recipe's last run trained that way: say what changed instead of silently training differently.
        run, before = earlier
        where = batch.span if batch is not None else r.model.name.span
        said = f"`batch {_num(batch.value)}`" if batch is not None else "the default batch"
        out.append(note(
            "VT266", f"{said} is now {effective} samples per update; this recipe's last run ({run}) trained "
            f"{before} per update", where,
            f"write `batch {before}` to train as before; vtc chooses how many go through the GPU at once (add "
            f"`micro batch N` to choose yourself)"))
    if micro is not None and effective % micro.value:
        what = f"`batch {effective}`" + ("" if batch is not None else " (the default)")
        choose = ", ".join(str(m) for m in micro_batches(effective))
        why = ("is more than " + what + ", the samples per update" if micro.value > effective else
               f"does not divide {what}: each update must be a whole number of micro-batches")
        out.append(error("VT247", f"`micro batch {_num(micro.value)}` {why}", micro.span,
                         f"choose one of {choose} (the divisors of {effective}), or change `batch`"))
    return out


def _gpu_problems(r: Resolved) -> list[Diagnostic]:
    """VT261: the batch (or a pinned micro-batch) does not divide over `gpus N`; VT267: `shard model` with one GPU;
    VT268: `shard model` with 4-bit weights (qlora); VT269: the model and method do not fit the largest GPU vtc
    knows even one example at a time, with what would fit."""
    out = []
    written = r.written
    gpus, strategy = r.hardware.gpus, r.hardware.distributed.strategy
    n = gpus.value
    batch = r.training.batch.value
    micro = r.training.micro_batch.value
    if n != "all" and n > 1 and batch % n:
        said = f"`batch {batch}`" if "/batch" in written or "/accumulate" in written else f"the default `batch {batch}`"
        lower, upper = batch - batch % n, batch - batch % n + n
        batches = [f"`batch {b}`" for b in (upper, lower) if b > 0]
        counts = [d for d in micro_batches(batch) if 1 < d <= 64 and d != n]
        nearest = sorted(counts, key=lambda d: (abs(d - n), d))[:2]
        instead = " or ".join(batches) + (
            f" ({_share(upper, n)})" if len(batches) == 1 else f" ({upper // n} or {lower // n} per GPU)")
        out.append(error(
            "VT261", f"{said} does not divide over `gpus {n}`: each GPU trains an equal share of the {batch} "
            "samples per update", gpus.span,
            f"write {instead}" + (f", or {' or '.join(f'`gpus {d}`' for d in sorted(nearest))}" if nearest else "")))
    elif n != "all" and n > 1 and micro != "auto" and (batch // n) % micro:
        share = batch // n
        fits = ", ".join(str(m) for m in micro_batches(share))
        out.append(error(
            "VT261", f"`micro batch {micro}` does not divide each GPU's share of the batch: `batch {batch}` over "
            f"`gpus {n}` is {share} a GPU", written.get("/micro_batch", written.get("/accumulate", gpus)).span,
            f"choose a micro batch of {fits} (the divisors of {share}), or change `batch`"))
    if strategy.value == "fsdp2":
        if n == 1:
            out.append(warning(
                "VT267", "`shard model` with one GPU: there is no other GPU to split the model across, so the one "
                "process holds it whole", strategy.span,
                "write `gpus 2` (or more, or `gpus all`) beside `shard model`, or remove `shard model`"))
        if r.method.value == "qlora":
            said = "`using qlora`" if r.method.span is not None else "the default method, `using qlora`,"
            out.append(error(
                "VT268", f"`shard model` cannot split 4-bit weights, and {said} loads the model in 4 bit",
                strategy.span, "write `using lora` (16-bit weights, split across the GPUs), or remove `shard model` "
                "(4-bit weights usually fit one GPU)"))
    out.extend(_bigger_than_one_card(r))
    return out


def _share(batch: int, n: int) -> str:
    return f"{batch // n} per GPU"


def _estimate(r: Resolved, method: str, parts: list[str] | None = None) -> float | None:
    """The one-process estimate at micro-batch 1 (the smaller backend's) of this recipe with another method or
    other parts."""
    family, arch = r.model.family.value, r.model.architecture.value
    total = r.estimates.total_parameters.value
    chosen = E.selection(parts) if parts else {k: getattr(r.parts, k).value
                                               for k in ("vision", "language", "attention", "mlp")}
    rank = r.lora.rank.value if isinstance(r.lora, Lora) else DEFAULTS["lora.rank"]
    trainable = E.trainable_parameters(method, chosen, family, arch, rank, total)
    image = {"image_size": r.estimates.image_size.value,
             "image_tokens_per_image": r.estimates.image_tokens_per_image.value,
             "text_tokens_per_image": r.estimates.text_tokens_per_image.value, "tiles": r.estimates.tiles_per_image.value}
    found = [E.memory_estimate(method=method, family=family, arch=arch, total=total, trainable=trainable, image=image,
                               batch=1, max_length=r.training.max_length.value, optim=r.training.optimizer.value,
                               checkpointing=r.training.gradient_checkpointing.value, backend=backend,
                               geometry=r.model.geometry.value) for backend in ("unsloth", "transformers")]
    totals = [f["total"] for f in found if f]
    return min(totals) if totals else None


def _bigger_than_one_card(r: Resolved) -> list[Diagnostic]:
    """VT269: at micro-batch 1 the memory model's estimate per process is above the largest card vtc knows
    (registry/cards.json; the language has no clause naming a card): say so, and what would fit, each with its
    estimate per GPU and the smallest card it fits."""
    table = r.training.batching.memory_gib.value
    if not table or table[0]["micro_batch"] != 1:
        return []
    ones = [gib for backend, gib in table[0].items() if backend != "micro_batch" and gib is not None]
    if not ones:
        return []
    margin = r.training.batching.safety_margin.value
    card_gib, card = E.largest_card()
    most = E.usable_gib(card_gib, margin)
    sharded = {row["processes"]: row["gib"] for row in r.estimates.gpu_memory_sharded_gib.value or []}
    n = r.hardware.gpus.value
    strategy = r.hardware.distributed.strategy.value
    need = min(ones)
    if strategy == "fsdp2" and sharded:
        # Sharded over `gpus N` (or, for `gpus all`, the most GPUs vtc estimates: 8 on one machine).
        need = sharded.get(n) if n != "all" and n in sharded else sharded[max(sharded)]
    if need <= most:
        return []

    def fits(gib: float) -> str:
        found = E.smallest_card(gib, margin)
        return f"fits an {found[1]} ({found[0]} GiB)" if found else "still too big"

    method = r.method.value
    options = []
    for other in (("lora", "qlora") if method == "full" else ("qlora",) if method == "lora" else ()):
        gib = _estimate(r, other)
        if gib is not None:
            options.append(f"`using {other}`: about {gib:g} GiB, {fits(gib)}")
    current = [k for k in ("vision", "language", "attention", "mlp") if getattr(r.parts, k).value]
    for parts in (["language"], ["attention"]):
        if set(E.selection(parts).items()) < set(E.selection(current).items()) or (
                E.selection(parts) != E.selection(current) and all(
                    not v or E.selection(current)[k] for k, v in E.selection(parts).items())):
            gib = _estimate(r, method, parts)
            if gib is not None:
                options.append(f"`finetune {parts[0]}`: about {gib:g} GiB, {fits(gib)}")
    if method != "qlora" and sharded:
        per = ", ".join(f"`gpus {k}` {v:g} GiB" for k, v in sorted(sharded.items()))
        options.append(f"`shard model` (the transformers backend splits the model across the GPUs), per GPU: {per}")
    options.append(f"a GPU with more than {card_gib} GiB")
    where = "with `shard model` over " + (f"`gpus {n}`" if n != "all" else "8 GPUs") + ", " if strategy == "fsdp2" \
        else ""
    return [warning(
        "VT269", f"`{r.model.name.value}` with `using {method}` needs about {need:g} GiB per GPU {where}even one "
        f"example at a time: more than the largest GPU vtc knows ({card}, {card_gib} GiB, about {most:.0f} GiB of "
        "it usable)", r.model.name.span or r.method.span,
        "what would fit: " + "; ".join(options))]


def _runs_folder(r: Resolved) -> str:
    """The recipe's runs folder (`save to` or its default), a relative one taken from the recipe's folder."""
    import os

    folder = str(r.outputs.dir.value)
    if not os.path.isabs(os.path.expanduser(folder)) and not re.match(r"^[A-Za-z]:[\\/]", folder):
        folder = os.path.join(r.base_dir, folder)
    return folder


def _earlier_batch(r: Resolved) -> tuple[str, int] | None:
    """(run folder, samples per update) of the recipe's last run in its runs folder when that run's plan is older
    than plan version 3 (where `batch` was the rows at a time); None otherwise or when nothing can be read."""
    import json
    import os

    from vtc.confine import Refused, read_regular

    folder = os.path.expanduser(_runs_folder(r))
    try:
        runs = sorted(n for n in os.listdir(folder) if re.fullmatch(r"run-\d+(\.\w+)?", n))
    except OSError:
        return None
    for name in reversed(runs):
        try:
            plan = json.loads(read_regular(os.path.join(folder, name, "plan.json"), 16 << 20))
            if plan.get("plan_version", 3) >= 3:
                return None
            t = plan["training"]
            # One process trained, whatever `gpus` said (multi-GPU training came with plan version 4): the
            # samples per update were the rows per step times the accumulation.
            return name, int(t["batch"]) * int(t.get("accumulate", 1))
        except (Refused, ValueError, KeyError, TypeError, AttributeError):
            continue
    return None


def _num(value):
    """A whole number as written (`4`, not `4.0`)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _save_to_problems(r: Resolved) -> list[Diagnostic]:
    """VT265: `save to` (or its default) names the file system's root, a system folder, the home folder itself, a
    file, or a folder that holds other files and no run folder (vtc.plans.runs_folder_problem: plain os.path calls on
    the folder as it is now)."""
    from vtc.plans import runs_folder_problem

    written = r.outputs.dir
    why = runs_folder_problem(_runs_folder(r))
    if why is None:
        return []
    what = f"`save to {written.value}`" if written.span is not None else f"the default `save to {written.value}`"
    return [error("VT265", f"{what} cannot hold run folders: {why}", written.span or r.model.name.span,
                  "save runs in a folder of their own, e.g. `save to ./runs/xray` (an empty or new folder, or one "
                  "that already holds run-NNN folders)")]


def _round_up(n: int) -> int:
    """Up to the next multiple of 256 (a tidy number to suggest)."""
    return -(-n // 256) * 256


def _pct(value) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
