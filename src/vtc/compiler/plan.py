"""Recipe document + registry -> the plan: every value the runtime needs, where it came from, and estimates.

The plan's format is docs/plan.md (field by field) and docs/internals.md (the contract). It is deterministic:
plan_to_json gives sorted keys, two-space indent and a trailing newline, so the same recipe gives the same bytes.
Provenance: every leaf of the plan's sections has an entry in plan["provenance"] keyed by its JSON pointer: the
recipe line that set it ("xray.vt:4"), "default", "registry" (the model registry), or "derived" (computed from
other values, e.g. estimates and the target-module regex).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from typing import Any

from vtc import __version__
from vtc.diagnostics import Span
from vtc.registry import (Registry, default_resize, is_local_path, linear_layers, model_geometry, resolve_model,
                          total_params)

PLAN_VERSION = 1

# Defaults: Unsloth's vision notebooks (Qwen2.5-VL 7B notebook, ../shared/reference/unsloth-vision.md) where they
# exist; the notebooks train for max_steps=30 as a demo, vtc's default is one epoch (num_train_epochs=1, the
# notebooks' documented alternative) because a recipe describes a real run.
DEFAULTS: dict[str, Any] = {
    "method": "qlora",
    "precision": "auto",
    "instruction": "Describe this image.",
    "lora.rank": 16,
    "lora.alpha": 16,
    "lora.dropout": 0.0,
    "train_for": {"amount": 1, "unit": "epochs"},
    "batch": 2,
    "accumulate": 4,
    "learning_rate": 2e-4,
    "warmup": {"amount": 5, "unit": "steps"},
    "schedule": "linear",
    "optimizer": "adamw_8bit",
    "weight_decay": 0.001,
    "max_length": 2048,
    "seed": 3407,
    "metrics": ["exact_match"],
    "exports": ["adapter"],
    "gpus": 1,
    "flags": {"responses_only": False, "rslora": False, "gradient_checkpointing": True, "trust_remote_code": False,
              "packing": False, "padding_free": False},
    # Checkpoint frequency: at a few seconds a step on a GPU, 50 steps lose at most a few minutes of work, while
    # saving a LoRA adapter with its optimizer state takes about a second.
    "checkpoint_every": 50,
    "max_new_tokens": 128,  # generation length for evaluation; radiology reports and LaTeX fit in 128 tokens
}
DTYPES = {"auto": None, "bf16": "bfloat16", "fp16": "float16"}

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


# --- small pieces other modules use ---------------------------------------------------------------------------------


def selection(parts: list[str]) -> dict[str, bool]:
    """The four Unsloth flags for a parts list: towers x kinds, a missing axis meaning both (see docs/language.md)."""
    chosen = set(parts)
    if "all" in chosen:
        return {"vision": True, "language": True, "attention": True, "mlp": True}
    towers = chosen & {"vision", "language"} or {"vision", "language"}
    kinds = chosen & {"attention", "mlp"} or {"attention", "mlp"}
    return {"vision": "vision" in towers, "language": "language" in towers, "attention": "attention" in kinds,
            "mlp": "mlp" in kinds}


def smart_resize(width: int, height: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen-VL's smart_resize: both sides to multiples of ``factor`` (patch x merge), area within the bounds."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return w_bar, h_bar


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


def trainable_parameters(method: str, flags: dict[str, bool], family: str | None, arch: dict | None, rank: int,
                         total: int | None) -> dict | None:
    """Trainable parameters per part. LoRA adds rank x (in + out) per targeted Linear (A is rank x in, B is
    out x rank; bias "none" adds nothing). Full fine-tuning trains the selected Linear layers' weights and biases,
    or every parameter when all four flags are on (as Unsloth's full_finetuning does)."""
    if not family or not arch:
        return None
    _regex, selected = peft_regex(family, arch, flags)
    table = {"vision": {"attention": 0, "mlp": 0}, "language": {"attention": 0, "mlp": 0}, "projector": 0,
             "other": 0, "total": 0}
    for _name, tower, kind, fan_in, fan_out, bias, count in selected:
        n = rank * (fan_in + fan_out) if method != "full" else fan_in * fan_out + (fan_out if bias else 0)
        if tower in ("vision", "language") and kind in ("attention", "mlp"):
            table[tower][kind] += n * count
        else:
            table["projector"] += n * count
    table["total"] = sum(table["vision"].values()) + sum(table["language"].values()) + table["projector"]
    if method == "full" and all(flags.values()) and total:
        table["other"] = total - table["total"]  # embeddings, norms, projector, lm_head
        table["total"] = total
    return table


# --- building the plan ----------------------------------------------------------------------------------------------


class _Builder:
    """The plan under construction: values by JSON pointer, and where each came from."""

    def __init__(self, spans: dict[str, Span], display) -> None:
        self.plan: dict = {}
        self.provenance: dict[str, str] = {}
        self.spans = spans
        self.display = display

    def origin(self, pointer: str | None) -> str | None:
        span = self.spans.get(pointer) if pointer else None
        if span is None:
            return None
        return f"{self.display(span.file)}:{span.line}" if span.line else self.display(span.file)

    def put(self, path: str, value, source: str) -> None:
        """Set plan[path] = value. source: a document pointer ("/batch"), or default | registry | derived."""
        if source.startswith("/") or source == "":
            source = self.origin(source) or "default"
        node = self.plan
        keys = path.strip("/").split("/")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        self._record(path, value, source)

    def _record(self, path: str, value, source: str) -> None:
        if isinstance(value, dict) and value:
            for key, sub in value.items():
                self._record(f"{path}/{key}", sub, source)
        else:
            self.provenance[path] = source


def _doc(document: dict, key: str, default=None):
    """A top-level or dotted document value, or the default."""
    node: Any = document
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _pointer(key: str) -> str:
    return "/" + key.replace(".", "/")


def _data_kind(source: str) -> str:
    """path or hub: a Hub dataset is written org/name; anything path-like is a path (write ./x for a folder)."""
    if is_local_path(source) or source.count("/") != 1 or re.search(r"\.(jsonl?|csv|parquet|arrow)$", source):
        return "path"
    return "hub"


def build_plan(document: dict, spans: dict[str, Span], registry: Registry, base_dir: str,
               model: dict | None = None) -> dict:
    """The plan for a valid recipe document (validate and check first: this assumes no errors).

    ``model`` is resolve_model's result when the caller resolved it (e.g. with a local folder's config.json);
    otherwise the name is resolved here without reading any file. ``base_dir`` is the folder of the main recipe;
    relative paths in the plan are relative to it.
    """
    main_file = spans[""].file if "" in spans else "recipe.vt"

    def display(file: str) -> str:
        return _display_name(file, main_file, base_dir)

    b = _Builder(spans, display)
    get = lambda key, default=None: _doc(document, key, default)  # noqa: E731
    src = lambda key: _pointer(key) if _doc(document, key) is not None else "default"  # noqa: E731

    # --- model
    if model is None:
        model, _problems = resolve_model(document["model"], registry)
    model = model or {"name": document["model"], "source": "hub", "key": None, "family": None, "entry": None,
                      "hub": None}
    family, entry = model["family"], model["entry"]
    fam_info = registry.families.get(family) if family else None
    method = get("method", DEFAULTS["method"])
    flags = {name: bool(get(f"flags.{name}", default)) for name, default in DEFAULTS["flags"].items()}
    fsrc = {name: src(f"flags.{name}") for name in flags}
    if model["source"] in ("registry",) and model.get("hub"):
        model_id, id_src = model["hub"]["4bit" if method == "qlora" else "16bit"], "registry"
    elif model["source"] == "tiny":
        model_id, id_src = model["key"], "registry"
    else:
        model_id, id_src = document["model"], "/model"
    fam_src = "registry" if model["source"] in ("registry", "tiny") else "derived"
    b.put("/model/name", document["model"], "/model")
    b.put("/model/source", model["source"], "derived")
    b.put("/model/id", model_id, id_src)
    b.put("/model/family", family, fam_src)
    b.put("/model/markers", dict(fam_info["markers"]) if fam_info else None, "registry")
    geometry = model_geometry(family, entry, registry)
    b.put("/model/geometry", geometry, "registry")
    b.put("/model/architecture", entry.get("architecture") if entry else None, "registry")
    b.put("/model/trust_remote_code", flags["trust_remote_code"], fsrc["trust_remote_code"])

    # --- what trains
    parts = list(document["parts"])
    chosen = selection(parts)
    b.put("/method", method, src("method"))
    for key in ("vision", "language", "attention", "mlp"):
        b.put(f"/parts/{key}", chosen[key], "/parts")

    seed = int(get("seed", DEFAULTS["seed"]))
    max_length = int(get("max_length", DEFAULTS["max_length"]))
    rank = int(get("lora.rank", DEFAULTS["lora.rank"]))
    alpha = int(get("lora.alpha", DEFAULTS["lora.alpha"]))
    dropout = float(get("lora.dropout", DEFAULTS["lora.dropout"]))
    precision = get("precision", DEFAULTS["precision"])
    fp = "/unsloth/from_pretrained"
    b.put(f"{fp}/model_name", model_id, id_src)
    b.put(f"{fp}/max_seq_length", max_length, src("max_length"))
    b.put(f"{fp}/dtype", DTYPES.get(precision), src("precision"))
    b.put(f"{fp}/load_in_4bit", method == "qlora", src("method"))
    b.put(f"{fp}/load_in_16bit", method != "qlora", src("method"))
    b.put(f"{fp}/full_finetuning", method == "full", src("method"))
    b.put(f"{fp}/use_gradient_checkpointing", "unsloth" if flags["gradient_checkpointing"] else False,
          fsrc["gradient_checkpointing"])
    b.put(f"{fp}/trust_remote_code", flags["trust_remote_code"], fsrc["trust_remote_code"])
    b.put(f"{fp}/random_state", seed, src("seed"))

    arch = entry.get("architecture") if entry else None
    regex, _selected = peft_regex(family, arch, chosen)
    if method == "full":
        b.put("/unsloth/get_peft_model", None, "/method")
        b.put("/peft", None, "/method")
        b.put("/trainable_regex", ".*" if all(chosen.values()) else r"(?:" + regex + r")\.(?:weight|bias)",
              "derived")
    else:
        gp = "/unsloth/get_peft_model"
        for key, flag in (("vision", "finetune_vision_layers"), ("language", "finetune_language_layers"),
                          ("attention", "finetune_attention_modules"), ("mlp", "finetune_mlp_modules")):
            b.put(f"{gp}/{flag}", chosen[key], "/parts")
        for prefix in (gp, "/peft"):
            b.put(f"{prefix}/r", rank, src("lora.rank"))
            b.put(f"{prefix}/lora_alpha", alpha, src("lora.alpha"))
            b.put(f"{prefix}/lora_dropout", dropout, src("lora.dropout"))
            b.put(f"{prefix}/bias", "none", "default")
            b.put(f"{prefix}/use_rslora", flags["rslora"], fsrc["rslora"])
        b.put(f"{gp}/random_state", seed, src("seed"))
        b.put("/peft/target_modules", regex, "derived")
        b.put("/peft/modules_to_save", None, "default")
        b.put("/trainable_regex", None, "/method")

    # --- data
    train = get("train_data")
    b.put("/data/train/source", train["source"], "/train_data/source")
    b.put("/data/train/kind", _data_kind(train["source"]), "derived")
    b.put("/data/train/split", train.get("split"), "/train_data/split" if "split" in train else "default")
    evald = get("eval_data")
    if evald:
        b.put("/data/eval/source", evald["source"], "/eval_data/source")
        b.put("/data/eval/kind", _data_kind(evald["source"]), "derived")
        b.put("/data/eval/split", evald.get("split"), "/eval_data/split" if "split" in evald else "default")
    else:
        b.put("/data/eval", None, "default")
    holdout = get("holdout")
    b.put("/data/holdout", round(holdout / 100, 10) if holdout is not None else None, src("holdout"))
    b.put("/data/instruction", get("instruction", DEFAULTS["instruction"]), src("instruction"))
    b.put("/data/system", get("system"), src("system"))
    answer = get("answer") or {}
    b.put("/data/answer/from", answer.get("from", "auto"), src("answer.from"))
    b.put("/data/answer/column", answer.get("column"), src("answer.column"))
    b.put("/data/image_column", get("image_column"), src("image_column"))
    # What a run does with rows that fail the data check (vtc.runtime.validate): stop is the safe default.
    b.put("/data/bad_rows", get("bad_rows", "stop"), src("bad_rows"))

    # --- images and collator
    resize = get("resize")
    if resize is None:
        size = default_resize(family, entry, registry) or 512
        rsrc = "registry" if family else "default"
        images = {"mode": "longest", "size": size}
    elif resize == "none":
        images, rsrc = {"mode": "none", "size": None}, "/resize"
    elif isinstance(resize, dict):
        images, rsrc = {"mode": "exact", "size": [int(resize["width"]), int(resize["height"])]}, "/resize"
    else:
        images, rsrc = {"mode": "longest", "size": int(resize)}, "/resize"
    b.put("/images/resize", images, rsrc)
    window = get("window")
    b.put("/images/window", {"center": window["center"], "width": window["width"]} if window else None,
          src("window"))
    b.put("/images/tiff_pages", get("tiff_pages", "first"), src("tiff_pages"))
    markers = fam_info["markers"] if fam_info else None
    cp = "/collator"
    b.put(f"{cp}/train_on_responses_only", flags["responses_only"], fsrc["responses_only"])
    b.put(f"{cp}/instruction_part", markers["instruction_part"] if markers else None, "registry")
    b.put(f"{cp}/response_part", markers["response_part"] if markers else None, "registry")
    b.put(f"{cp}/max_seq_length", max_length, src("max_length"))
    b.put(f"{cp}/resize", images["size"] if images["mode"] != "none" else "max", rsrc)
    # Unsloth's collator compares the WIDTH with an int resize by default (resize_dimension=0); "max" makes
    # `resize N` mean the longest side, as the recipe language says.
    b.put(f"{cp}/resize_dimension", "max", "default")
    b.put(f"{cp}/ignore_index", -100, "default")

    # --- training
    train_for = get("train_for") or DEFAULTS["train_for"]
    tsrc = "/train_for" if get("train_for") else "default"
    sp = "/sft"
    batch = int(get("batch", DEFAULTS["batch"]))
    accumulate = int(get("accumulate", DEFAULTS["accumulate"]))
    b.put(f"{sp}/per_device_train_batch_size", batch, src("batch"))
    b.put(f"{sp}/gradient_accumulation_steps", accumulate, src("accumulate"))
    warmup = get("warmup") or DEFAULTS["warmup"]
    wsrc = "/warmup" if get("warmup") else "default"
    if warmup["unit"] == "percent":
        b.put(f"{sp}/warmup_ratio", round(warmup["amount"] / 100, 10), wsrc)
    else:
        b.put(f"{sp}/warmup_steps", int(warmup["amount"]), wsrc)
    if train_for["unit"] == "steps":
        b.put(f"{sp}/max_steps", int(train_for["amount"]), tsrc)
        b.put(f"{sp}/num_train_epochs", 1, "default")
    else:
        b.put(f"{sp}/max_steps", -1, tsrc)
        epochs = train_for["amount"]
        b.put(f"{sp}/num_train_epochs", int(epochs) if float(epochs).is_integer() else float(epochs), tsrc)
    b.put(f"{sp}/learning_rate", float(get("learning_rate", DEFAULTS["learning_rate"])), src("learning_rate"))
    b.put(f"{sp}/lr_scheduler_type", get("schedule", DEFAULTS["schedule"]), src("schedule"))
    b.put(f"{sp}/optim", get("optimizer", DEFAULTS["optimizer"]), src("optimizer"))
    b.put(f"{sp}/weight_decay", float(get("weight_decay", DEFAULTS["weight_decay"])), src("weight_decay"))
    b.put(f"{sp}/seed", seed, src("seed"))
    b.put(f"{sp}/logging_steps", 1, "default")
    b.put(f"{sp}/report_to", "none", "default")
    # Required by Unsloth's vision collator (its patched SFTTrainer forces them too).
    b.put(f"{sp}/remove_unused_columns", False, "default")
    b.put(f"{sp}/dataset_text_field", "", "default")
    b.put(f"{sp}/dataset_kwargs", {"skip_prepare_dataset": True}, "default")
    b.put(f"{sp}/max_length", max_length, src("max_length"))

    b.put("/evaluation/metrics", list(get("metrics", DEFAULTS["metrics"])), src("metrics"))
    b.put("/evaluation/max_new_tokens", DEFAULTS["max_new_tokens"], "default")
    stem = os.path.splitext(os.path.basename(main_file))[0] or "recipe"
    b.put("/outputs/dir", get("save_to", f"runs/{stem}"), src("save_to"))
    b.put("/outputs/exports", list(get("exports", DEFAULTS["exports"])), src("exports"))
    b.put("/checkpoint/every_steps", int(get("checkpoint_every", DEFAULTS["checkpoint_every"])),
          src("checkpoint_every"))
    gpus = int(get("gpus", DEFAULTS["gpus"]))
    b.put("/hardware/gpus", gpus, src("gpus"))

    # --- estimates
    total = total_params(family, entry)
    image = image_estimate(geometry, images)
    trainable = trainable_parameters(method, chosen, family, arch, rank, total)
    memory = memory_estimate(method, family, arch, total, trainable, image, batch, max_length,
                             b.plan["sft"]["optim"], flags["gradient_checkpointing"])
    est = {"image_size": image["image_size"], "image_tokens_per_image": image["image_tokens_per_image"],
           "text_tokens_per_image": image["text_tokens_per_image"], "tiles_per_image": image["tiles"],
           "trainable_parameters": trainable, "total_parameters": total,
           "effective_batch": batch * accumulate * gpus,
           "gpu_memory_gib": memory["total"] if memory else None,
           "gpu_memory_breakdown_gib": memory}
    b.put("/estimates", est, "derived")

    plan = b.plan
    plan["plan_version"] = PLAN_VERSION
    plan["vtc_version"] = __version__
    files = [display(f) for f in _files_in(spans, main_file)]
    plan["recipe"] = {"file": display(main_file), "files": files}
    plan["base_dir"] = base_dir
    plan["provenance"] = dict(sorted(b.provenance.items()))
    return plan


def _files_in(spans: dict[str, Span], main_file: str) -> list[str]:
    files = [main_file]
    for span in spans.values():
        if span.file not in files:
            files.append(span.file)
    return files


def _display_name(file: str, main_file: str, base_dir: str) -> str:
    """A file name relative to the main recipe's folder, with forward slashes (stable across machines)."""
    try:
        if os.path.isabs(file):
            rel = os.path.relpath(file, base_dir)
        else:
            rel = os.path.relpath(file, os.path.dirname(main_file) or ".")
    except ValueError:  # another drive on Windows
        rel = file
    return rel.replace(os.sep, "/")


# --- GPU memory ------------------------------------------------------------------------------------------------------
GIB = 1024 ** 3
OPTIMIZER_BYTES = {"adamw_torch": 8, "adamw_torch_fused": 8, "adamw_8bit": 2, "paged_adamw_8bit": 2,
                   "adafactor": 4, "sgd": 0}
TEXT_ALLOWANCE = 256  # tokens of instruction + answer + chat template assumed per sample for the estimate
OVERHEAD_GIB = 1.0  # CUDA context, kernels and allocator slack


def memory_estimate(method: str, family: str | None, arch: dict | None, total: int | None,
                    trainable: dict | None, image: dict, batch: int, max_length: int, optim: str,
                    checkpointing: bool) -> dict | None:
    """Peak GPU memory in GiB, by part (docs/plan.md gives the formula); None without architecture sizes."""
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
    opt = OPTIMIZER_BYTES.get(optim, 8)
    n = trainable["total"]
    # LoRA: fp32 adapter weights (4) + fp32 gradients (4) + optimizer states. Full: bf16 gradients (2) + states.
    train_bytes = n * (8 + opt) if method != "full" else n * (2 + opt)
    lang, vis = arch["language"], arch["vision"]
    text_tokens = image["text_tokens_per_image"] or 0
    seq = min(max_length, text_tokens + TEXT_ALLOWANCE)
    # Activations in 16-bit (Korthikanti et al. 2022, without the attention-score term that flash attention
    # avoids): ~34 x hidden bytes per token per layer; with checkpointing only each layer's input (2 x hidden
    # bytes) is kept, plus one layer recomputed at a time.
    def acts(tokens: int, hidden: int, n_layers: int) -> float:
        if checkpointing:
            return tokens * hidden * (2 * n_layers + 34)
        return tokens * hidden * 34 * n_layers

    activations = acts(batch * seq, lang["hidden"], lang["layers"])
    vision_tokens = image["image_tokens_per_image"] or 0
    if family.startswith("qwen"):
        vision_tokens *= 4  # the vision tower runs on patches before the 2x2 merge
    vis_layers = vis["layers"] + vis.get("global_layers", 0)
    activations += acts(batch * vision_tokens, vis["hidden"], vis_layers)
    logits = batch * seq * lang["vocab_size"] * 4  # fp32 logits for the loss
    parts = {"weights": weights / GIB, "training_state": train_bytes / GIB,
             "activations": (activations + logits) / GIB, "overhead": OVERHEAD_GIB}
    parts = {k: round(v, 2) for k, v in parts.items()}
    parts["total"] = round(sum(parts.values()), 1)
    return parts


# --- output -----------------------------------------------------------------------------------------------------------


def plan_to_json(plan: dict) -> str:
    """The plan as deterministic JSON: sorted keys, two-space indent, trailing newline."""
    return json.dumps(plan, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


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


def summarize_plan(plan: dict) -> str:
    """A readable summary of the plan: each value and where it came from (what `vtc plan` prints)."""
    prov = plan.get("provenance", {})
    lines: list[str] = []

    def row(label: str, pointer: str, value=None) -> None:
        if value is None:
            value = _get(plan, pointer)
        where = prov.get(pointer)
        if where is None:  # a dict value: show the first child's origin
            where = next((v for k, v in prov.items() if k.startswith(pointer + "/")), "")
        lines.append(f"  {label:<24} {_fmt(value):<44} {where}")

    m = plan["model"]
    lines.append(f"plan for {plan['recipe']['file']}" + (
        f" (with {', '.join(plan['recipe']['files'][1:])})" if len(plan["recipe"]["files"]) > 1 else ""))
    lines.append("model")
    row("name", "/model/name")
    row("loads", "/model/id")
    row("family", "/model/family", m["family"] or "unknown")
    if m.get("trust_remote_code"):
        row("trust remote code", "/model/trust_remote_code",
            "yes - WARNING: runs Python code that comes with the model")
    lines.append("training")
    row("method", "/method")
    parts = [k for k in ("vision", "language", "attention", "mlp") if plan["parts"][k]]
    row("parts", "/parts/vision", ", ".join(parts))
    if plan["peft"]:
        row("lora rank / alpha", "/peft/r", f"{plan['peft']['r']} / {plan['peft']['lora_alpha']}")
        row("lora dropout", "/peft/lora_dropout")
        row("rslora", "/peft/use_rslora")
    row("responses only", "/collator/train_on_responses_only")
    sft = plan["sft"]
    if sft["max_steps"] > 0:
        row("length", "/sft/max_steps", f"{sft['max_steps']} steps")
    else:
        row("length", "/sft/num_train_epochs", f"{sft['num_train_epochs']} epoch(s)")
    row("batch", "/sft/per_device_train_batch_size")
    row("accumulate", "/sft/gradient_accumulation_steps")
    row("learning rate", "/sft/learning_rate")
    if "warmup_ratio" in sft:
        row("warmup", "/sft/warmup_ratio", f"{sft['warmup_ratio']:.0%} of steps")
    else:
        row("warmup", "/sft/warmup_steps", f"{sft['warmup_steps']} steps")
    row("schedule", "/sft/lr_scheduler_type")
    row("optimizer", "/sft/optim")
    row("weight decay", "/sft/weight_decay")
    row("max length", "/sft/max_length")
    row("seed", "/sft/seed")
    if "checkpoint" in plan:
        every = plan["checkpoint"]["every_steps"]
        row("checkpoint every", "/checkpoint/every_steps",
            f"{every} steps" if every else "only on Ctrl-C and at the end")
    lines.append("data")
    d = plan["data"]
    row("train", "/data/train/source", d["train"]["source"] + (f" (split {d['train']['split']})"
                                                               if d["train"]["split"] else ""))
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
    row("resize", "/images/resize/mode", {"longest": f"longest side {r['size']} px",
                                          "exact": f"exactly {_fmt(r['size'])} px" if r["size"] else "",
                                          "none": "none (each image's own size)"}[r["mode"]])
    if d.get("bad_rows") is not None:
        row("bad rows", "/data/bad_rows", {"stop": "stop (the run refuses to start)",
                                           "skip": "skip (listed in the run folder)"}.get(d["bad_rows"]))
    if plan["images"].get("window"):
        w = plan["images"]["window"]
        row("DICOM window", "/images/window", f"centre {w['center']}, width {w['width']}")
    if plan["images"].get("tiff_pages") == "all":
        row("TIFF pages", "/images/tiff_pages", "all (one sample a page)")
    lines.append("outputs")
    row("folder", "/outputs/dir")
    row("exports", "/outputs/exports")
    row("metrics", "/evaluation/metrics")
    row("gpus", "/hardware/gpus")
    e = plan["estimates"]
    lines.append("estimates (derived)")
    if e["image_size"]:
        lines.append(f"  {'image':<24} {_fmt(e['image_size'])} px -> {e['image_tokens_per_image']} image tokens"
                     + (f" ({e['tiles_per_image']} tiles, 1 token in the text)" if e.get("tiles_per_image") else ""))
    t = e["trainable_parameters"]
    if t:
        lines.append(f"  {'trainable parameters':<24} {t['total']:,}" + (
            f" of {e['total_parameters']:,} ({100 * t['total'] / e['total_parameters']:.2f}%)"
            if e["total_parameters"] else ""))
        for tower in ("vision", "language"):
            lines.append(f"    {tower:<22} attention {t[tower]['attention']:,}, mlp {t[tower]['mlp']:,}")
    if e["gpu_memory_gib"] is not None:
        lines.append(f"  {'GPU memory':<24} about {e['gpu_memory_gib']} GiB")
    lines.append(f"  {'effective batch':<24} {e['effective_batch']}")
    return "\n".join(lines)


def _get(plan: dict, pointer: str):
    node: Any = plan
    for key in pointer.strip("/").split("/"):
        node = node.get(key) if isinstance(node, dict) else None
    return node
