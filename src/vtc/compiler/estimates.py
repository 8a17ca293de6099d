"""The numbers a plan derives from the resolved recipe: what trains (the LoRA target regex and the trainable
parameters per part), image sizes and tokens, and the GPU memory estimate. Pure functions over the registry's
architecture sizes; no I/O.

    selection(parts) -> the four Unsloth flags
    projector_modules(family, arch) -> the projector's modules; part_patterns(...) -> parameter-name regexes per part
    lora_targets(family, arch, flags, projector) -> the LoRA target regex with the projector's Linear layers
    image_estimate(geometry, resize) -> image size and tokens after standardisation (a pixel budget: its largest)
    budget_limits(geometry) -> what a pixel budget may ask of this model (None: vtc cannot budget for it)
    budget_token_range(geometry, resize) -> image tokens (or tiles) of the smallest and the largest image
    peft_regex(family, arch, flags) -> (regex, Linear layers it selects)
    trainable_parameters(method, flags, family, arch, rank, total) -> parameters per part
    memory_estimate(...) -> peak GPU memory in GiB, by part
"""

from __future__ import annotations

import math
import re
from collections import Counter

from vtc.registry import linear_layers, smart_resize

# unsloth_zoo.peft_utils.get_peft_regex's tags (unsloth-zoo 2026.10.9; "mixer" is in both component lists there).
VISION_TAGS = ["vision", "image", "visual", "patch"]
LANGUAGE_TAGS = ["language", "text"]
ATTENTION_TAGS = ["self_attn", "attention", "attn", "mixer"]
MLP_TAGS = ["mlp", "feed_forward", "ffn", "dense", "mixer"]
# Leaf names used when the family (and so the module names) is unknown: the Linear leaves of every family vtc knows.
GENERIC_LEAVES = ["q_proj", "k_proj", "v_proj", "o_proj", "qkv", "proj", "out_proj", "gate_proj", "up_proj",
                  "down_proj", "fc1", "fc2", "linear_fc1", "linear_fc2"]
# A stand-in architecture with every size 1, for the module names of a family whose sizes are unknown.
_SHAPE_ONLY = {"vision": {"layers": 2, "global_layers": 2, "hidden": 1, "intermediate": 1, "out_hidden": 1,
                          "output_dim": 1},
               "language": {"layers": 3, "hidden": 1, "intermediate": 1, "heads": 1, "kv_heads": 1, "head_dim": 1,
                            "vocab_size": 1, "cross_attention_layers": [1]}}


def selection(parts: list[str]) -> dict[str, bool]:
    """The four Unsloth flags for a parts list: towers x kinds, a missing axis meaning both (see docs/language.md)."""
    chosen = set(parts)
    if "all" in chosen:
        return {"vision": True, "language": True, "attention": True, "mlp": True}
    if not chosen - {"projector"}:  # `finetune projector on ...`: the projector alone, no layer of the towers
        return {"vision": False, "language": False, "attention": False, "mlp": False}
    towers = chosen & {"vision", "language"} or {"vision", "language"}
    kinds = chosen & {"attention", "mlp"} or {"attention", "mlp"}
    return {"vision": "vision" in towers, "language": "language" in towers, "attention": "attention" in kinds,
            "mlp": "mlp" in kinds}


# The smallest area a pixel budget takes for a tiled model (Llama 3.2 Vision): one 14 px patch of its vision encoder.
_TILES_LOWEST = 14 * 14


def budget_limits(geometry: dict | None) -> dict | None:
    """What a pixel budget (`resize between A and B pixels`) may ask of a model with this image geometry:
    {"multiple": the side multiple, "lowest"/"highest": the smallest and largest area vtc accepts, "default_min":
    the minimum of `resize up to B pixels`}; None for a geometry vtc cannot budget for (a fixed input size, an
    unknown model).

    - patches (Qwen-VL, Pixtral): sides a multiple of patch x merge (Qwen2.5-VL: 14 x 2 = 28 px, one image token
      each 28x28 px), the area within the processor's own min_pixels..max_pixels, so that the processor (whose
      smart_resize rounds to the same multiple within those bounds) leaves vtc's images as they are.
    - tiles (Llama 3.2 Vision): multiple 1. Its processor fits every image, aspect kept, onto a canvas of whole
      560 px tiles (at most max_tiles) and pads the rest, so no side multiple of vtc's would survive it: the budget
      decides the image's detail and how many tiles it covers. The largest area is max_tiles whole tiles (above, the
      processor scales the image down again); the smallest is one 14 px patch.
    - fixed (Gemma 3: every image becomes 896x896 px): a budget would change nothing, so none is offered.
    """
    if not geometry:
        return None
    if geometry["kind"] == "patches":
        multiple = geometry["patch_size"] * geometry.get("merge_size", 1)
        return {"multiple": multiple, "lowest": max(multiple * multiple, geometry["min_pixels"]),
                "highest": geometry["max_pixels"], "default_min": geometry["min_pixels"]}
    if geometry["kind"] == "tiles":
        return {"multiple": 1, "lowest": _TILES_LOWEST,
                "highest": geometry["max_tiles"] * geometry["tile_size"] ** 2, "default_min": _TILES_LOWEST}
    return None


def _budget_tokens(geometry: dict, pixels: int, largest: bool) -> dict:
    """Image size and tokens of an image of about ``pixels`` px under a budget: for the largest, the near-square
    image of whole patches whose area is at most ``pixels``; for the smallest, the fewest patches that reach it."""
    if geometry["kind"] == "patches":
        factor = geometry["patch_size"] * geometry.get("merge_size", 1)
        patches = pixels // (factor * factor) if largest else -(-pixels // (factor * factor))
        rows = max(1, math.isqrt(max(1, patches)))
        cols = max(1, patches // rows if largest else -(-patches // rows))
        tokens = rows * cols
        if geometry.get("row_break_tokens"):
            tokens += rows
        return {"image_size": [cols * factor, rows * factor], "image_tokens_per_image": tokens,
                "text_tokens_per_image": tokens, "tiles": None}
    # Llama 3.2 Vision: a square image of this area, on the canvas of whole tiles its processor chooses (the one
    # that needs the least enlarging: a side over one tile takes two), at most max_tiles.
    tile = geometry["tile_size"]
    side = max(1, math.isqrt(pixels))
    tiles = min(geometry["max_tiles"], math.ceil(side / tile) ** 2)
    return {"image_size": [side, side], "image_tokens_per_image": tiles * geometry["tokens_per_tile"],
            "text_tokens_per_image": geometry.get("text_tokens_per_image", 1), "tiles": tiles}


def budget_token_range(geometry: dict | None, resize: dict) -> dict | None:
    """For a pixel budget: {"unit": "tokens" | "tiles", "low": n, "high": n} for the smallest and the largest image
    the budget allows (Qwen2.5-VL: about min_pixels/784 .. max_pixels/784 tokens; Llama 3.2 Vision: tiles), or None
    when the plan's resize is no budget or the geometry has none."""
    if resize.get("mode") != "pixels" or budget_limits(geometry) is None:
        return None
    low = _budget_tokens(geometry, resize["min_pixels"], largest=False)
    high = _budget_tokens(geometry, resize["max_pixels"], largest=True)
    if geometry["kind"] == "tiles":
        return {"unit": "tiles", "low": low["tiles"], "high": high["tiles"]}
    return {"unit": "tokens", "low": min(low["image_tokens_per_image"], high["image_tokens_per_image"]),
            "high": high["image_tokens_per_image"]}


def image_estimate(geometry: dict | None, resize: dict) -> dict:
    """Image size and tokens for one image at the plan's resize.

    ``resize`` is the plan's images.resize ({"mode": "longest"|"exact"|"none", "size": ...}). For `resize N` the
    worst case is a square N x N image (the aspect ratio is kept, so no side exceeds N). Returns image_size [W, H]
    (or None), image_tokens_per_image (what the vision tower produces, or None), text_tokens_per_image (how many of
    them sit in the text sequence: all of them for Qwen-VL, 1 <|image|> token for Llama 3.2 Vision, whose image
    states enter through cross-attention) and tiles (Llama 3.2 Vision) .
    """
    out = {"image_size": None, "image_tokens_per_image": None, "text_tokens_per_image": None, "tiles": None}
    if geometry is None or resize["mode"] == "none":
        return out
    if resize["mode"] == "pixels":  # the largest image the budget allows: memory and max length are set by it
        return _budget_tokens(geometry, resize["max_pixels"], largest=True) if budget_limits(geometry) else out
    size = resize["size"]
    width, height = (size, size) if resize["mode"] == "longest" else (size[0], size[1])
    if width <= 0 or height <= 0:
        return out
    kind = geometry["kind"]
    if kind == "patches":
        factor = geometry["patch_size"] * geometry.get("merge_size", 1)
        w, h = smart_resize(width, height, factor, geometry["min_pixels"], geometry["max_pixels"])
        tokens = (w // factor) * (h // factor)
        if geometry.get("row_break_tokens"):  # Pixtral: an [IMG_BREAK] after each row, [IMG_END] after the last
            tokens += h // factor
        out.update(image_size=[w, h], image_tokens_per_image=tokens, text_tokens_per_image=tokens)
    elif kind == "tiles":
        tile = geometry["tile_size"]
        tiles = min(geometry["max_tiles"], math.ceil(width / tile) * math.ceil(height / tile))
        out.update(image_size=[width, height], image_tokens_per_image=tiles * geometry["tokens_per_tile"],
                   text_tokens_per_image=geometry.get("text_tokens_per_image", 1), tiles=tiles)
    elif kind == "fixed":
        side = geometry["image_size"]
        out.update(image_size=[side, side], image_tokens_per_image=geometry["tokens_per_image"],
                   text_tokens_per_image=geometry["tokens_per_image"])
    return out


def peft_regex(family: str | None, arch: dict | None, flags: dict[str, bool]) -> tuple[str, list[tuple]]:
    """The regex get_peft_regex builds for these four flags, and the Linear layers it selects.

    Mirrors unsloth_zoo.peft_utils.get_peft_regex (2026.10.9): leaf names of Linear layers that occur more than
    once or inside a numbered stack (so lm_head, Qwen's merger and Mllama's multi_modal_projector are never
    targeted), then ``.*?(?:<towers>).*?(?:<kinds>).*?\\.(?:<leaves>)``, plus the ``model.layers.N`` branch when
    language layers train, and the fallback without towers when nothing matches. PEFT applies it with re.fullmatch.
    Returns (regex, [(module name, tower, kind, in, out, bias, count) selected]).
    """
    layers = linear_layers(family, arch) if family and arch else []
    if family and not layers:
        layers = linear_layers(family, _SHAPE_ONLY)
    if layers:
        counts: Counter = Counter()
        order: list[str] = []
        stacked: set[str] = set()
        for name, _tower, _kind, _i, _o, _b, count in layers:
            leaf = name.rsplit(".", 1)[-1]
            if leaf not in counts:
                order.append(leaf)
            counts[leaf] += count
            if re.search(r"\.\d+\.", name):
                stacked.add(leaf)
        leaves = [leaf for leaf in order if counts[leaf] != 1 or leaf in stacked]
    else:
        leaves = GENERIC_LEAVES
    model_parts = (VISION_TAGS if flags["vision"] else []) + (LANGUAGE_TAGS if flags["language"] else [])
    components = (ATTENTION_TAGS if flags["attention"] else []) + (MLP_TAGS if flags["mlp"] else [])
    parts_re, comps_re = "|".join(model_parts), "|".join(components)
    match_linear = r"(?:" + "|".join(re.escape(x) for x in leaves) + r")"
    regex = r".*?(?:" + parts_re + r").*?(?:" + comps_re + r").*?\." + match_linear
    if flags["language"]:
        regex = (r"(?:" + regex + r")|(?:\bmodel\.layers\.[\d]{1,}(?!.*\.experts\.\d)\..*?(?:" + comps_re
                 + r").*?\.(?:" + match_linear + r"))")
    compiled = re.compile(regex, re.DOTALL)
    selected = [layer for layer in layers if compiled.fullmatch(layer[0])]
    if layers and not selected:
        regex = r"(?!(?:.*\.)?(?:codec_model|audio_tokenizer|acoustic_tokenizer|semantic_tokenizer)\.)" + \
                r".*?(?:" + comps_re + r").*?\." + match_linear
        compiled = re.compile(regex, re.DOTALL)
        selected = [layer for layer in layers if compiled.fullmatch(layer[0])]
    return regex, selected


def _layers(family: str | None, arch: dict | None) -> list[tuple]:
    layers = linear_layers(family, arch) if family and arch else []
    if family and not layers:
        layers = linear_layers(family, _SHAPE_ONLY)
    return layers


def _module_prefix(name: str, stop: tuple[str, ...]) -> str:
    """A module name up to its first component that contains one of ``stop`` (`model.visual.merger.mlp.0` ->
    `model.visual.merger`), else its first two components."""
    comps = name.split(".")
    for i, comp in enumerate(comps):
        if any(word in comp for word in stop):
            return ".".join(comps[: i + 1])
    return ".".join(comps[:2])


def projector_modules(family: str | None, arch: dict | None) -> list[str]:
    """The projector's modules (Qwen-VL: model.visual.merger (+ deepstack_merger_list); Llama 3.2 Vision:
    model.multi_modal_projector), from the registry's Linear layers; [] when vtc does not know them."""
    names = [layer[0] for layer in _layers(family, arch) if layer[1] == "projector"]
    return list(dict.fromkeys(_module_prefix(n, ("merger", "projector")) for n in names))


def _projector_linear_regex(family: str | None, arch: dict | None) -> str:
    """The projector's Linear layers as a regex for re.fullmatch over module names (stack indices as any number)."""
    names = [layer[0] for layer in _layers(family, arch) if layer[1] == "projector"]
    alts = [re.escape(n).replace(r"\.0\.", r"\.\d+\.") for n in names]
    return r"(?:.*\.)?(?:" + "|".join(dict.fromkeys(alts)) + r")"


def part_patterns(family: str | None, arch: dict | None) -> dict[str, str] | None:
    """For each part (vision, projector, language) a regex that re.search finds in the names of its parameters
    (also under PEFT's prefixes: base_model.model.<name>, ...modules_to_save.default...). None when the family's
    module names are unknown. The vision pattern leaves out the projector where it sits inside the vision tower."""
    layers = _layers(family, arch)
    if not layers:
        return None
    proj = projector_modules(family, arch)
    vision = list(dict.fromkeys(_module_prefix(n, ()) for n, tower, *_ in layers if tower == "vision"))
    language = list(dict.fromkeys(_module_prefix(n, ()) for n, tower, *_ in layers if tower == "language"))
    language += [n for n, tower, *_ in layers if tower == "head"]

    def alt(names: list[str]) -> str:
        return "|".join(re.escape(n) + r"\." for n in names)

    out = {}
    if vision:
        skip = [p[len(v) + 1:] for p in proj for v in vision if p.startswith(v + ".")]
        ahead = r"(?!(?:" + "|".join(re.escape(x) + r"\." for x in skip) + r"))" if skip else ""
        out["vision"] = r"(?:^|\.)(?:" + alt(vision) + r")" + ahead
    if proj:
        out["projector"] = r"(?:^|\.)(?:" + alt(proj) + r")"
    if language:
        out["language"] = r"(?:^|\.)(?:" + alt(language) + r")"
    return out


def lora_targets(family: str | None, arch: dict | None, flags: dict[str, bool], projector: str) -> str:
    """The LoRA target regex: get_peft_regex's for the four flags (none when all four are off: the projector
    alone), with the projector's Linear layers added when it trains with LoRA."""
    parts = []
    if any(flags.values()):
        parts.append(peft_regex(family, arch, flags)[0])
    if projector == "lora":
        parts.append(_projector_linear_regex(family, arch))
    if len(parts) == 1:
        return parts[0]
    return "|".join(r"(?:" + p + r")" for p in parts)


def trainable_parameters(method: str, flags: dict[str, bool], family: str | None, arch: dict | None, rank: int,
                         total: int | None, projector: str = "frozen") -> dict | None:
    """Trainable parameters per part. LoRA adds rank x (in + out) per targeted Linear (A is rank x in, B is
    out x rank; bias "none" adds nothing). Full fine-tuning trains the selected Linear layers' weights and biases,
    or every parameter when all four flags are on (as Unsloth's full_finetuning does). The projector (``projector``
    frozen | lora | full) counts its Linear layers: with LoRA rank x (in + out), in full weights and biases."""
    if not family or not arch:
        return None
    selected = peft_regex(family, arch, flags)[1] if any(flags.values()) else []
    selected = [layer for layer in selected if layer[1] != "projector"]
    if projector != "frozen":
        selected += [layer for layer in linear_layers(family, arch) if layer[1] == "projector"]
    table = {"vision": {"attention": 0, "mlp": 0}, "language": {"attention": 0, "mlp": 0}, "projector": 0,
             "other": 0, "total": 0}
    for _name, tower, kind, fan_in, fan_out, bias, count in selected:
        lora = method != "full" and not (tower == "projector" and projector == "full")
        n = rank * (fan_in + fan_out) if lora else fan_in * fan_out + (fan_out if bias else 0)
        if tower in ("vision", "language") and kind in ("attention", "mlp"):
            table[tower][kind] += n * count
        else:
            table["projector"] += n * count
    table["total"] = sum(table["vision"].values()) + sum(table["language"].values()) + table["projector"]
    if method == "full" and all(flags.values()) and total:
        table["other"] = total - table["total"]  # embeddings, norms, projector, lm_head
        table["total"] = total
    return table


# --- GPU memory ------------------------------------------------------------------------------------------------------
# A model of the peak memory torch reserves during training (torch.cuda.max_memory_reserved: the CUDA context, about
# 0.5 GiB, is not in it), fitted to measurements on an NVIDIA H200 (bench/results/memory-calibration-h200-
# 2026-12-01.json; docs/gpu.md gives the table of measured and estimated peaks). Peak = weights + training state +
# fixed + micro-batch x activations per row. Every coefficient below names the measurement it comes from.
GIB = 1024 ** 3
OPTIMIZER_BYTES = {"adamw_torch": 8, "adamw_torch_fused": 8, "adamw_8bit": 2, "paged_adamw_8bit": 2,
                   "adafactor": 4, "sgd": 0}
TEXT_ALLOWANCE = 256  # tokens of instruction + answer + chat template assumed per sample for the estimate
CUDA_CONTEXT_GIB = 0.5  # the CUDA context and kernels, outside torch's reserved memory (nvidia-smi minus reserved)
# Reserved beyond weights and training state at any micro-batch (allocator blocks, cuBLAS workspaces, Unsloth's
# offload buffers): the intercepts of the measured lines (Qwen2.5-VL 3B: 7.54-7.59 GiB against 7.38 of weights and
# LoRA state under Unsloth; 8.24 against 7.38 under transformers, which also keeps the embedding's output grad).
FIXED_GIB = {"unsloth": 0.2, "transformers": 0.85}
# Unsloth's gradient checkpointing ("unsloth") copies each layer's input to host memory, so what stays on the card
# per row does not grow with the layer count. Fitted per text token per language hidden unit from the 3B and 7B
# shapes at 1008 px (slopes 0.601 and 0.798 GiB a row, same vision tower, hidden 2048 vs 3584), and per vision patch
# per vision hidden unit from the 3B slopes (504 px: 0.151 GiB a row; 1008 px: 0.601) and, for Llama 3.2 Vision,
# from the 11B shape (1.13-1.19 GiB a row for 4 x 1601 tile patches: its vision encoder is not offloaded).
UNSLOTH_TEXT_BYTES = 102
UNSLOTH_VISION_BYTES = {"qwen": 55, "mllama": 144}
# Other families were not measured: the larger (Llama's) coefficient, and the estimate says it is not calibrated.
UNCALIBRATED_VISION_BYTES = 144
# Without checkpointing every layer keeps its activations: Korthikanti et al. (2022) count ~34 x hidden bytes per
# token per layer in 16 bits (without the attention scores flash attention avoids); the 3B shape measured 1.6x that
# under Unsloth (504 px: 4.07 GiB a row against 2.55 counted; 1008 px: 15.5 against 9.9), the MLPs being wider
# than the formula's 4 x hidden.
NO_CHECKPOINT_FACTOR = 1.6
# transformers keeps each layer's input (2 x hidden bytes per token per layer), one recomputed layer (34 x hidden)
# and the full-vocabulary logits of the loss: ~14 bytes per token per vocabulary entry (fp32 logits, their
# gradient and the softmax), fitted on the 3B shape (504 px: 0.99 GiB a row; 1008 px: 3.51; 14.3 and 13.8 bytes).
TRANSFORMERS_LOGIT_BYTES = 14


def vision_patches(family: str, geometry: dict | None, image: dict) -> int:
    """Patches the vision tower runs on for one image: Qwen-VL before its 2 x 2 merge; Llama 3.2 Vision every tile
    slot (the processor pads each image to max_tiles tiles and the encoder runs on all of them)."""
    if geometry and geometry.get("kind") == "tiles":
        return geometry["max_tiles"] * geometry["tokens_per_tile"]
    tokens = image.get("image_tokens_per_image") or 0
    if geometry and geometry.get("kind") == "patches":
        return tokens * geometry.get("merge_size", 1) ** 2
    return tokens


def _vision_family(family: str) -> str | None:
    if family.startswith(("qwen2_vl", "qwen2_5_vl")):
        return "qwen"
    if family == "mllama":
        return "mllama"
    return None


def memory_estimate(method: str, family: str | None, arch: dict | None, total: int | None,
                    trainable: dict | None, image: dict, batch: int, max_length: int, optim: str,
                    checkpointing: bool, backend: str = "unsloth", geometry: dict | None = None,
                    text_tokens: int | None = None) -> dict | None:
    """Peak reserved GPU memory in GiB, by part, for a micro-batch of ``batch`` rows on ``backend`` ("unsloth" or
    "transformers"); None without architecture sizes. ``text_tokens`` is the tokens of one row (image tokens
    included); by default the image's tokens + TEXT_ALLOWANCE, at most max_length.""" 
    if not (family and arch and total and trainable):
        return None
    layers = linear_layers(family, arch)
    lang_linear = sum((i * o + (o if bb else 0)) * n for _nm, tower, _k, i, o, bb, n in layers if tower == "language")
    if method == "qlora":
        # bitsandbytes NF4 with double quantisation: 4 bits + ~0.5 bit of scales per weight in the language
        # tower's Linear layers; the vision tower, projector, embeddings and lm_head stay 16-bit.
        weights = lang_linear * 4.5 / 8 + (total - lang_linear) * 2
    else:
        weights = total * 2
    opt = OPTIMIZER_BYTES[optim]
    n = trainable["total"]
    # LoRA: fp32 adapter weights (4) + fp32 gradients (4) + optimizer states. Full: bf16 gradients (2) + states.
    train_bytes = n * (8 + opt) if method != "full" else n * (2 + opt)
    lang, vis = arch["language"], arch["vision"]
    if text_tokens is None:
        text_tokens = min(max_length, (image["text_tokens_per_image"] or 0) + TEXT_ALLOWANCE)
    patches = vision_patches(family, geometry, image)
    vis_layers = vis["layers"] + vis.get("global_layers", 0)
    kind = _vision_family(family)
    if not checkpointing:
        per_row = NO_CHECKPOINT_FACTOR * 34 * (text_tokens * lang["hidden"] * lang["layers"]
                                               + patches * vis["hidden"] * vis_layers)
        if backend == "transformers":
            per_row += text_tokens * TRANSFORMERS_LOGIT_BYTES * lang["vocab_size"]
    elif backend == "unsloth":
        vision_bytes = UNSLOTH_VISION_BYTES.get(kind, UNCALIBRATED_VISION_BYTES) if kind else UNCALIBRATED_VISION_BYTES
        per_row = text_tokens * UNSLOTH_TEXT_BYTES * lang["hidden"] + patches * vision_bytes * vis["hidden"]
    else:
        per_row = (text_tokens * (2 * lang["layers"] * lang["hidden"] + 34 * lang["hidden"]
                                  + TRANSFORMERS_LOGIT_BYTES * lang["vocab_size"])
                   + patches * (2 * vis_layers * vis["hidden"] + 34 * vis["hidden"]))
    parts = {"weights": weights / GIB, "training_state": train_bytes / GIB,
             "activations": batch * per_row / GIB, "overhead": FIXED_GIB.get(backend, FIXED_GIB["transformers"])}
    parts = {k: round(v, 2) for k, v in parts.items()}
    parts["total"] = round(sum(parts.values()), 1)
    return parts


def memory_calibrated(family: str | None) -> bool:
    """Whether the memory model's coefficients for this family's vision tower were measured (docs/gpu.md)."""
    return bool(family) and _vision_family(family) is not None


def card_fits(table: list[dict], backend: str, margin: float) -> list[tuple[int, list[str], int | None]]:
    """For each memory size of the cards vtc knows (registry/cards.json), smallest first: (GiB, card names, the
    largest micro-batch of the plan's memory table whose estimate fits: within the card's memory less the CUDA
    context, leaving ``margin`` of it free, as the runtime chooses; None when not even the smallest fits)."""
    from vtc.registry import load_cards

    sizes: dict[int, list[str]] = {}
    for card in load_cards()["cards"]:
        sizes.setdefault(card["memory_gib"], []).append(card["name"].removeprefix("NVIDIA ").removeprefix("GeForce "))
    out = []
    for gib in sorted(sizes):
        usable = (gib - CUDA_CONTEXT_GIB) * (1 - margin)
        fitting = [row["micro_batch"] for row in table if row[backend] is not None and row[backend] <= usable]
        out.append((gib, sizes[gib], max(fitting) if fitting else None))
    return out


# --- several GPUs ----------------------------------------------------------------------------------------------------
# Data parallel (DDP, the default): every process holds the whole model and its own training state and trains its
# share of the batch, so the memory per GPU is the one-process estimate above at the micro-batch each process runs.
# Sharded (`shard model`: FSDP2, the transformers backend): each of N processes keeps 1/N of every parameter, of its
# gradient and of the optimizer state, and gathers a layer's whole weights only while it computes that layer. So:
#   weights / N + training state / N + activations (each process's own rows: not divided) + the fixed overhead
#   + the gathered layers: the layer being computed and the next one, fetched ahead (FSDP2's forward and backward
#     prefetch of one layer), in 16 bits.
# Not measured (no machine with several GPUs yet): the all-gather and reduce-scatter buffers are taken to fit in
# the fixed overhead; docs/gpu.md gives the one-process calibration this rests on.
SHARD_PROCESSES = (2, 4, 8)
GATHERED_LAYERS = 2


def layer_bytes(family: str | None, arch: dict | None) -> int:
    """The 16-bit size of the largest layer of one tower (its Linear weights and biases, one of each repeated
    module): what a process of a sharded run holds whole while it computes that layer. 0 without sizes."""
    if not (family and arch):
        return 0
    per_tower: Counter = Counter()
    for _name, tower, _kind, fan_in, fan_out, bias, _count in linear_layers(family, arch):
        per_tower[tower] += fan_in * fan_out + (fan_out if bias else 0)
    return 2 * max(per_tower.values(), default=0)


def sharded_estimate(breakdown: dict | None, processes: int, layer: int) -> dict | None:
    """A one-process estimate (memory_estimate's parts, in GiB) as each of ``processes`` sharded processes holds
    it: weights and training state divided, activations and overhead not, GATHERED_LAYERS layers of ``layer``
    bytes gathered (see above)."""
    if breakdown is None:
        return None
    parts = {"weights": breakdown["weights"] / processes, "training_state": breakdown["training_state"] / processes,
             "activations": breakdown["activations"], "overhead": breakdown["overhead"],
             "gathered": GATHERED_LAYERS * layer / GIB}
    parts = {k: round(v, 2) for k, v in parts.items()}
    parts["total"] = round(sum(parts.values()), 1)
    return parts


def largest_card() -> tuple[int, str]:
    """(GiB, name) of the card with the most memory in registry/cards.json."""
    from vtc.registry import load_cards

    card = max(load_cards()["cards"], key=lambda c: c["memory_gib"])
    return card["memory_gib"], card["name"]


def usable_gib(card_gib: float, margin: float) -> float:
    """What a run may fill of a card: its memory less the CUDA context, leaving ``margin`` free (as card_fits)."""
    return (card_gib - CUDA_CONTEXT_GIB) * (1 - margin)


def smallest_card(gib: float, margin: float) -> tuple[int, str] | None:
    """(GiB, name) of the smallest card an estimate fits (usable_gib), or None."""
    from vtc.registry import load_cards

    fitting = sorted((c["memory_gib"], c["name"]) for c in load_cards()["cards"]
                     if gib <= usable_gib(c["memory_gib"], margin))
    return fitting[0] if fitting else None


# --- video (issue 16) -------------------------------------------------------------------------------------------------


def video_estimate(geometry: dict | None, video: dict | None) -> dict:
    """The largest clip the plan's ``video`` section allows, for the estimates and the `max length` check.

    A clip's own size is known only when the data is read, so the frame is the worst case, square: `frame size N`
    -> N x N, a pixel budget -> the square of its max_pixels (frame_size rounds both to the multiple). The frames at
    the cap: the window's seconds x fps when the window has an end (Qwen-VL's rule, vtc.registry.sample_frames),
    else max_frames. Tokens (vtc.registry.video_tokens): ceil(frames / temporal_patch) x (h / 28) x (w / 28).
    Returns frame_size [W, H], frames (at the cap), tokens_per_clip, tokens_per_second (fps / temporal_patch x
    tokens of one merged frame pair, rounded up), per_frame_pair (tokens of frames merged in time); all None
    without video."""
    out = {"frame_size": None, "frames": None, "tokens_per_clip": None, "tokens_per_second": None,
           "per_frame_pair": None}
    if video is None or geometry is None or geometry.get("kind") != "patches":
        return out
    from vtc.registry import frame_size, video_tokens

    resize = video["resize"]
    side = resize["size"] if resize["mode"] == "longest" else math.isqrt(int(resize["max_pixels"]))
    width, height = frame_size(side, side, resize)
    patch = int(video["temporal_patch"])
    frames = int(video["max_frames"])
    window = video.get("window")
    if window and window.get("end") is not None:
        seconds = float(window["end"]) - float(window["start"])
        wanted = min(max(round(seconds * float(video["fps"])), int(video["min_frames"])), frames)
        frames = max(1, wanted // patch * patch)
    pair = video_tokens(patch, width, height, geometry, patch)
    out.update(frame_size=[width, height], frames=frames,
               tokens_per_clip=video_tokens(frames, width, height, geometry, patch),
               tokens_per_second=math.ceil(float(video["fps"]) / patch * pair), per_frame_pair=pair)
    return out
