"""The model registry: families, models and aliases, kept as data in models.json.

A model name in a recipe is one of three things:

* an alias or registry name (``qwen2.5-vl``, ``tiny-qwen2.5-vl``): everything is known (hub ids, markers, geometry,
  architecture sizes);
* a Hugging Face id ``org/name``: the family is guessed from the name when it matches a family pattern, otherwise
  unknown;
* a local folder (``./my-model``, ``/models/x``, ``~/m``, or an ``org/name``-shaped name that is a folder beside
  the recipe): the family is read from the folder's config.json (``model_type``) when the caller passes that
  file's text in.

``hf://org/name`` always means the Hub (a folder of the same name beside the recipe is not read). The same rule
decides a data source's kind (vtc.compiler.resolve.data_kind; docs/data.md, "Folder or Hub dataset").

This module does no file I/O except reading models.json beside it; it never imports a training library. The layout
functions describe every ``nn.Linear`` of a family by module name, so that the planner can count LoRA parameters
exactly and build the same target regex as unsloth_zoo.peft_utils.get_peft_regex.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

REGISTRY_FILE = Path(__file__).with_name("models.json")


@dataclass(frozen=True)
class Registry:
    """The parsed models.json: ``families``, ``models`` and ``aliases`` as plain dicts."""

    families: dict
    models: dict
    aliases: dict

    def names(self) -> list[str]:
        """Every name a recipe may write (aliases and model keys), for did-you-mean."""
        return sorted(set(self.models) | set(self.aliases))

    def lookup(self, name: str) -> tuple[str, dict] | None:
        """The registry key and entry for an alias or model name (case-insensitive), or None."""
        key = name.lower()
        key = self.aliases.get(key, key)
        entry = self.models.get(key)
        return (key, entry) if entry is not None else None

    def family_from_name(self, name: str) -> str | None:
        """The family whose name pattern occurs in ``name`` (a hub id or folder name), or None."""
        lowered = name.lower()
        # Longer patterns first so that "qwen2.5-vl" wins over "qwen2-vl"-like prefixes.
        for fam, info in self.families.items():
            for pattern in info.get("patterns", []):
                if re.search(pattern, lowered):
                    return fam
        return None

    def family_for_model_type(self, model_type: str) -> str | None:
        """The family for a config.json ``model_type`` (``qwen2_5_vl``, ``mllama``, ``gemma3``, ``llava``...)."""
        if model_type in self.families:
            return model_type
        aliases = {"pixtral": "llava", "mistral3": "llava", "qwen2_5_vl_text": "qwen2_5_vl"}
        return aliases.get(model_type)


@lru_cache(maxsize=1)
def load_registry() -> Registry:
    """Load models.json once per process."""
    data = json.loads(REGISTRY_FILE.read_text(encoding="utf-8"))
    return Registry(families=data["families"], models=data["models"], aliases=data["aliases"])


@lru_cache(maxsize=1)
def load_cards() -> dict:
    """cards.json, once per process: the GPUs vtc knows ("cards": name, pattern, memory, peak 16-bit TFLOP/s, the
    sheet) and where the figures come from ("source")."""
    return json.loads((REGISTRY_FILE.parent / "cards.json").read_text(encoding="utf-8"))


# --- what a model name means ---------------------------------------------------------------------------------------

_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_local_path(text: str) -> bool:
    """True for what can only be a path: ./x, ../x, /x, ~/x, C:/x, or anything with a backslash."""
    return text.startswith(("./", "../", "/", "~", ".\\", "..\\")) or text in (".", "..") or bool(
        _DRIVE.match(text)) or "\\" in text


def is_hub_id(text: str) -> bool:
    """True for a Hugging Face id ``org/name`` (exactly one slash, no leading dot)."""
    return bool(_HUB_ID.match(text)) and not is_local_path(text)


# `hf://org/name`: the Hub, said explicitly (huggingface_hub's own URL form; `hf://datasets/org/name` is accepted too).
HUB_PREFIX = "hf://"


def explicit_hub_id(text: str) -> str | None:
    """The id of an explicit Hub name: ``hf://org/name`` (or ``hf://datasets/org/name``) -> ``org/name``; None for
    anything else (also for ``hf://`` naming nothing)."""
    if not text.startswith(HUB_PREFIX):
        return None
    rest = text[len(HUB_PREFIX):].strip("/")
    if rest.startswith("datasets/") and rest.count("/") >= 2:
        rest = rest[len("datasets/"):]
    return rest or None


def shadow_note(name: str, folder: str, what: str) -> tuple[str, str]:
    """(message, help) of note VT270: an ``org/name``-shaped ``name`` is the folder ``folder`` beside the recipe, so
    it is read from there; ``what`` is "the model" or "the data"."""
    return (f"`{name}` is the folder {folder} beside the recipe: {what} is read from there, not from the Hugging "
            f"Face Hub `{name}`",
            f"write `./{name}` to say it is a folder (this note then goes), or `hf://{name}` to read it from the "
            "Hub instead")


@dataclass(frozen=True)
class Problem:
    """A finding about a model name; the caller turns it into a Diagnostic at the name's span."""

    code: str
    severity: str  # "error" | "warning" | "note"
    message: str
    help: str | None = None
    suggestion: str | None = None  # the registry name a misspelled one most likely means (Diagnostic.suggestion)


def resolve_model(name: str, registry: Registry, local_config: str | None = None, *,
                  beside_recipe: str | None = None) -> tuple[dict | None, list[Problem]]:
    """What ``name`` (as written in a recipe) refers to.

    ``local_config`` is the text of the local folder's config.json when the caller could read it (this module does
    no I/O). ``beside_recipe``: the folder an ``org/name``-shaped name is beside the recipe, when the caller found
    one there (it is then a local folder, with note VT270). Returns (model, problems); model is None when the name
    is unknown. The model dict has: name, source (registry|tiny|hub|local), key (registry key or None), id (what
    from_pretrained gets for hub and local: the name, `hf://` dropped), family (or None), entry (registry model entry
    or None), hub (4bit/16bit ids or None).
    """
    from vtc.diagnostics import did_you_mean, suggest

    problems: list[Problem] = []
    found = registry.lookup(name)
    if found is not None:
        key, entry = found
        source = entry.get("source", "registry")
        return {"name": name, "source": source, "key": key, "id": None, "family": entry["family"], "entry": entry,
                "hub": entry.get("hub")}, problems
    explicit = explicit_hub_id(name)
    if beside_recipe is not None and explicit is None and is_hub_id(name):
        problems.append(Problem("VT270", "note", *shadow_note(name, beside_recipe, "the model")))
    if is_local_path(name) or (beside_recipe is not None and explicit is None):
        family = None
        if local_config is None:
            problems.append(Problem(
                "VT203", "warning", f"the model folder `{name}` has no readable config.json, so its family is unknown",
                "vtc cannot check markers, image tokens or parameter counts; point at a folder saved with "
                "save_pretrained (it holds config.json)"))
        else:
            model_type = None
            try:
                config = json.loads(local_config)
                if isinstance(config, dict):
                    model_type = config.get("model_type")
            except ValueError:
                config = None
            family = registry.family_for_model_type(model_type) if isinstance(model_type, str) else None
            arch = architecture_from_config(family, config) if family and isinstance(config, dict) else None
            if family is None:
                shown = f"`{model_type}`" if isinstance(model_type, str) else "no model_type"
                problems.append(Problem(
                    "VT203", "warning",
                    f"the model folder `{name}` has {shown} in its config.json, which is not a vision family vtc knows",
                    "known families: " + ", ".join(sorted(registry.families)) +
                    "; vtc will still try, but cannot check markers, image tokens or parameter counts"))
            if arch is not None:  # the sizes of the folder's own config: parameter and memory estimates
                return {"name": name, "source": "local", "key": None, "id": name, "family": family,
                        "entry": {"family": family, "architecture": arch}, "hub": None}, problems
        return {"name": name, "source": "local", "key": None, "id": name, "family": family, "entry": None,
                "hub": None}, problems
    if explicit is not None or is_hub_id(name):
        hub_id = explicit or name
        family = registry.family_from_name(hub_id)
        if family is None:
            problems.append(Problem(
                "VT202", "warning",
                f"vtc does not know the family of `{name}`: chat markers, image tokens and parameter counts are unknown",
                "use a registry name (see docs/language.md, Models) or a model whose name says its family, "
                "e.g. `unsloth/Qwen2.5-VL-7B-Instruct`"))
        else:
            problems.append(Problem(
                "VT202", "note",
                f"`{name}` is not in vtc's registry; its name says it is {registry.families[family]['display']} "
                f"(`{family}`), so vtc uses that family's markers and image geometry",
                "parameter and memory estimates need the architecture sizes and are left out"))
        return {"name": name, "source": "hub", "key": None, "id": hub_id, "family": family, "entry": None,
                "hub": None}, problems
    hint = did_you_mean(name, registry.names())
    problems.append(Problem(
        "VT201", "error", f"unknown model `{name}`",
        (hint + " " if hint else "") + "write a registry name (e.g. `qwen2.5-vl`), a Hugging Face id "
        "(`org/name`) or a local folder (`./my-model`)", suggest(name, registry.names())))
    return None, problems


# --- the Linear layers of each family --------------------------------------------------------------------------------
# Each entry: (module name with the layer index written as 0, tower, kind, in, out, bias, count).
# tower: vision | language | projector | head; kind: attention | mlp | None. Order = named_modules() order, which
# get_peft_regex keeps when it lists the leaf names.


def linear_layers(family: str, arch: dict) -> list[tuple[str, str, str | None, int, int, bool, int]]:
    """Every nn.Linear of a model of ``family`` with architecture sizes ``arch`` (registry format)."""
    layout = _LAYOUTS.get(family)
    return layout(arch) if layout else []


def _lang_attn(prefix: str, lang: dict, bias: bool, attn: str = "self_attn") -> list:
    h, hd = lang["hidden"], lang["head_dim"]
    q, kv = lang["heads"] * hd, lang["kv_heads"] * hd
    return [
        (f"{prefix}.{attn}.q_proj", "attention", h, q, bias),
        (f"{prefix}.{attn}.k_proj", "attention", h, kv, bias),
        (f"{prefix}.{attn}.v_proj", "attention", h, kv, bias),
        (f"{prefix}.{attn}.o_proj", "attention", q, h, False),
    ]


def _gated_mlp(prefix: str, hidden: int, inter: int, bias: bool) -> list:
    return [
        (f"{prefix}.mlp.gate_proj", "mlp", hidden, inter, bias),
        (f"{prefix}.mlp.up_proj", "mlp", hidden, inter, bias),
        (f"{prefix}.mlp.down_proj", "mlp", inter, hidden, bias),
    ]


def _stack(items: list, tower: str, count: int) -> list:
    return [(name, tower, kind, i, o, b, count) for name, kind, i, o, b in items]


def _qwen(arch: dict, vision_mlp: str, lang_bias: bool, deepstack: int = 0) -> list:
    vis, lang = arch["vision"], arch["language"]
    h, i = vis["hidden"], vis["intermediate"]
    blk = "model.visual.blocks.0"
    vision = [(f"{blk}.attn.qkv", "attention", h, 3 * h, True), (f"{blk}.attn.proj", "attention", h, h, True)]
    if vision_mlp == "gated":
        vision += _gated_mlp(blk, h, i, True)
    elif vision_mlp == "fc":
        vision += [(f"{blk}.mlp.fc1", "mlp", h, i, True), (f"{blk}.mlp.fc2", "mlp", i, h, True)]
    else:  # qwen3_vl
        vision += [(f"{blk}.mlp.linear_fc1", "mlp", h, i, True), (f"{blk}.mlp.linear_fc2", "mlp", i, h, True)]
    merged = h * 4  # spatial merge 2x2 concatenates four patch embeddings
    out = vis.get("out_hidden", lang["hidden"])
    if vision_mlp == "linear":
        projector = [("model.visual.merger.linear_fc1", "projector", None, merged, merged, True, 1),
                     ("model.visual.merger.linear_fc2", "projector", None, merged, out, True, 1)]
        projector += [(f"model.visual.deepstack_merger_list.0.linear_fc{n}", "projector", None, merged,
                       merged if n == 1 else out, True, deepstack) for n in (1, 2)] if deepstack else []
    else:
        projector = [("model.visual.merger.mlp.0", "projector", None, merged, merged, True, 1),
                     ("model.visual.merger.mlp.2", "projector", None, merged, out, True, 1)]
    lyr = "model.language_model.layers.0"
    language = _lang_attn(lyr, lang, lang_bias) + _gated_mlp(lyr, lang["hidden"], lang["intermediate"], False)
    return (_stack(vision, "vision", vis["layers"]) + projector + _stack(language, "language", lang["layers"])
            + [("lm_head", "head", None, lang["hidden"], lang["vocab_size"], False, 1)])


def _mllama(arch: dict) -> list:
    vis, lang = arch["vision"], arch["language"]
    h, i = vis["hidden"], vis["intermediate"]
    out = []
    for stack, count in (("transformer", vis["layers"]), ("global_transformer", vis["global_layers"])):
        p = f"model.vision_model.{stack}.layers.0"
        items = [(f"{p}.self_attn.{n}", "attention", h, h, False) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
        items += [(f"{p}.mlp.fc1", "mlp", h, i, True), (f"{p}.mlp.fc2", "mlp", i, h, True)]
        out += _stack(items, "vision", count)
    cross = len(lang.get("cross_attention_layers", []))
    lyr = "model.language_model.layers.0"
    out += _stack(_lang_attn(lyr, lang, False), "language", lang["layers"] - cross)
    if cross:
        out += _stack(_lang_attn("model.language_model.layers.1", lang, False, "cross_attn"), "language", cross)
    out += _stack(_gated_mlp(lyr, lang["hidden"], lang["intermediate"], False), "language", lang["layers"])
    out.append(("model.multi_modal_projector", "projector", None, vis["output_dim"], lang["hidden"], True, 1))
    out.append(("lm_head", "head", None, lang["hidden"], lang["vocab_size"], False, 1))
    return out


def _gemma3(arch: dict) -> list:
    vis, lang = arch["vision"], arch["language"]
    h, i = vis["hidden"], vis["intermediate"]
    p = "model.vision_tower.vision_model.encoder.layers.0"
    vision = [(f"{p}.self_attn.{n}", "attention", h, h, True) for n in ("q_proj", "k_proj", "v_proj", "out_proj")]
    vision += [(f"{p}.mlp.fc1", "mlp", h, i, True), (f"{p}.mlp.fc2", "mlp", i, h, True)]
    lyr = "model.language_model.layers.0"
    language = _lang_attn(lyr, lang, False) + _gated_mlp(lyr, lang["hidden"], lang["intermediate"], False)
    return (_stack(vision, "vision", vis["layers"]) + _stack(language, "language", lang["layers"])
            + [("lm_head", "head", None, lang["hidden"], lang["vocab_size"], False, 1)])


def _pixtral(arch: dict) -> list:
    vis, lang = arch["vision"], arch["language"]
    h, i = vis["hidden"], vis["intermediate"]
    p = "model.vision_tower.transformer.layers.0"
    vision = [(f"{p}.attention.{n}", "attention", h, h, False) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
    vision += [(f"{p}.feed_forward.{n}", "mlp", a, b, False)
               for n, a, b in (("gate_proj", h, i), ("up_proj", h, i), ("down_proj", i, h))]
    lyr = "model.language_model.layers.0"
    language = _lang_attn(lyr, lang, False) + _gated_mlp(lyr, lang["hidden"], lang["intermediate"], False)
    return (_stack(vision, "vision", vis["layers"])
            + [("model.multi_modal_projector.linear_1", "projector", None, h, lang["hidden"], True, 1),
               ("model.multi_modal_projector.linear_2", "projector", None, lang["hidden"], lang["hidden"], True, 1)]
            + _stack(language, "language", lang["layers"])
            + [("lm_head", "head", None, lang["hidden"], lang["vocab_size"], False, 1)])


_LAYOUTS = {
    "qwen2_vl": lambda a: _qwen(a, "fc", True),
    "qwen2_5_vl": lambda a: _qwen(a, "gated", True),
    "qwen3_vl": lambda a: _qwen(a, "linear", False, deepstack=3),
    "mllama": _mllama,
    "gemma3": _gemma3,
    "llava": _pixtral,
}


def architecture_from_config(family: str, config: dict) -> dict | None:
    """The registry's architecture sizes read from a local model folder's config.json, for the families whose
    parameters vtc counts exactly (Qwen2.5-VL, Llama 3.2 Vision); None for others or a config without the sizes."""
    vision, text = config.get("vision_config"), config.get("text_config") or config
    if not isinstance(vision, dict) or not isinstance(text, dict):
        return None
    tied = bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False)))
    try:
        heads = int(text["num_attention_heads"])
        language = {"layers": int(text["num_hidden_layers"]), "hidden": int(text["hidden_size"]),
                    "intermediate": int(text["intermediate_size"]), "heads": heads,
                    "kv_heads": int(text.get("num_key_value_heads") or heads),
                    "head_dim": int(text.get("head_dim") or int(text["hidden_size"]) // heads),
                    "vocab_size": int(text["vocab_size"]), "tied_embeddings": tied}
        if family == "qwen2_5_vl":
            return {"vision": {"layers": int(vision["depth"]), "hidden": int(vision["hidden_size"]),
                               "intermediate": int(vision["intermediate_size"]), "heads": int(vision["num_heads"]),
                               "fused_qkv": True, "out_hidden": int(vision["out_hidden_size"]),
                               "patch_size": int(vision.get("patch_size", 14)),
                               "temporal_patch_size": int(vision.get("temporal_patch_size", 2))},
                    "language": language}
        if family == "mllama":
            language["cross_attention_layers"] = [int(x) for x in text["cross_attention_layers"]]
            return {"vision": {"layers": int(vision["num_hidden_layers"]),
                               "global_layers": int(vision["num_global_layers"]),
                               "hidden": int(vision["hidden_size"]), "intermediate": int(vision["intermediate_size"]),
                               "heads": int(vision["attention_heads"]), "fused_qkv": False,
                               "output_dim": int(vision["vision_output_dim"]),
                               "image_size": int(vision.get("image_size", 560)),
                               "patch_size": int(vision.get("patch_size", 14)),
                               "max_tiles": int(vision.get("max_num_tiles", 4))},
                    "language": language}
    except (KeyError, TypeError, ValueError):
        return None
    return None


def exact_total_params(family: str, arch: dict) -> int | None:
    """Every parameter of the model, computed from its sizes, for the families whose module shapes vtc mirrors
    exactly (Qwen2.5-VL and Mllama, the tiny models' architectures); None for the others (use total_params)."""
    linears = sum((i * o + (o if b else 0)) * n for _, _, _, i, o, b, n in linear_layers(family, arch))
    vis, lang = arch["vision"], arch["language"]
    h, H, V = vis["hidden"], lang["hidden"], lang["vocab_size"]
    if family == "qwen2_5_vl":
        patch = vis.get("patch_size", 14)
        extra = h * 3 * vis.get("temporal_patch_size", 2) * patch * patch  # patch_embed Conv3d, no bias
        extra += vis["layers"] * 2 * h + h  # norm1, norm2 (RMSNorm) and the merger's ln_q
        extra += V * H + lang["layers"] * 2 * H + H  # embeddings, two norms a layer, final norm
        if lang.get("tied_embeddings"):
            linears -= H * V
        return linears + extra
    if family == "mllama":
        patch, image, tiles = vis.get("patch_size", 14), vis.get("image_size", 560), vis.get("max_tiles", 4)
        positions = (image // patch) ** 2 + 1  # patches + the class token
        ratios = sum(1 for w in range(1, tiles + 1) for t in range(1, tiles + 1) if w * t <= tiles) + 1
        extra = h + h * 3 * patch * patch  # class embedding, patch embedding (Conv2d, no bias)
        extra += 1 + positions * h + ratios * tiles * positions * h  # gated positional + tile embedding
        extra += 2 * (1 + ratios * tiles * h)  # pre/post tile positional embeddings (gate + table)
        extra += 2 * 2 * h  # layernorm_pre, layernorm_post (weight + bias)
        extra += (vis["layers"] + vis["global_layers"]) * 4 * h + vis["global_layers"] * 2  # LayerNorms, gates
        cross = len(lang.get("cross_attention_layers", []))
        extra += (V + 8) * H  # embed_tokens has 8 extra rows for the image tokens
        extra += lang["layers"] * 2 * H + H  # two RMSNorms a layer, final norm
        extra += cross * (2 * lang["head_dim"] + 2)  # q_norm, k_norm, attn and mlp gates of cross-attention layers
        return linears + extra
    return None


def total_params(family: str | None, entry: dict | None) -> int | None:
    """The model's parameter count: exact from the sizes where vtc mirrors the shapes, else the registry's."""
    if not entry or not family:
        return None
    arch = entry.get("architecture")
    if arch:
        exact = exact_total_params(family, arch)
        if exact is not None:
            return exact
    return entry.get("total_params")


def model_geometry(family: str | None, entry: dict | None, registry: Registry) -> dict | None:
    """The image geometry: the model's own (tiny models) or its family's."""
    if entry and entry.get("geometry"):
        return dict(entry["geometry"])
    if family and family in registry.families:
        return dict(registry.families[family]["geometry"])
    return None


def smart_resize(width: int, height: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen-VL's smart_resize (qwen_vl_utils, transformers' Qwen2VLImageProcessor): both sides to multiples of
    ``factor`` (patch x merge); an area above ``max_pixels`` scales both sides down by the square root of the excess
    (rounded down to the multiple), one below ``min_pixels`` up (rounded up). The compiler's token estimates and the
    runtime's pixel budgets (vtc.runtime.images.budget_size) both follow it."""
    import math

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


def default_resize(family: str | None, entry: dict | None, registry: Registry) -> int | None:
    if entry and entry.get("default_resize"):
        return entry["default_resize"]
    if family and family in registry.families:
        return registry.families[family].get("default_resize")
    return None


# --- video (issue 16): pure functions the compiler's estimates, the decoder (vtc.runtime.video), the data check and
# the collator share, so that a clip's frames, size and tokens are decided one way everywhere.


def video_families(registry: Registry) -> list[str]:
    """The display names of the families that read video (the registry's `"video": true`), e.g. for a diagnostic."""
    return [info["display"] for info in registry.families.values() if info.get("video")]


def frame_size(width: int, height: int, resize: dict) -> tuple[int, int]:
    """The size (w, h) every frame of a ``width`` x ``height`` clip gets under the plan's ``video.resize``:
    "pixels" -> Qwen-VL's smart_resize into min_pixels..max_pixels, each side a multiple of ``multiple``;
    "longest" -> the longest side becomes ``size``, the aspect kept, then each side rounded to the nearest
    multiple (at least one multiple)."""
    width, height = max(1, int(width)), max(1, int(height))
    multiple = int(resize.get("multiple", 28))
    if resize["mode"] == "pixels":
        return smart_resize(width, height, multiple, int(resize["min_pixels"]), int(resize["max_pixels"]))
    if resize["mode"] == "longest":
        scale = int(resize["size"]) / max(width, height)
        return tuple(max(multiple, round(side * scale / multiple) * multiple)  # type: ignore[return-value]
                     for side in (width, height))
    raise ValueError(f"unknown video frame size mode {resize['mode']!r}")


def sample_frames(total_frames: int, source_fps: float | None, video: dict) -> tuple[list[int], float]:
    """The frames of a clip that a run reads, and the rate they sample: Qwen-VL's smart_nframes rule restricted to
    the plan's window (``video["window"]``, seconds from the clip's start; end None = to the end).

    With frame timing (``source_fps``): the frames inside the window; n = round(seconds x fps), clamped to
    [min_frames, max_frames] and to the frames there, then floored to a multiple of temporal_patch (at least 1);
    the indices evenly spaced (linspace, rounded) over the window's frames; the fps returned is n / seconds.
    Without timing (a frame folder, a TIFF stack, a DICOM without frame times): each frame counts as one sample at
    ``fps`` (all frames of the window, thinned evenly to max_frames). ValueError (a sentence) when the window lies
    outside the clip or the clip has no frames."""
    total = int(total_frames)
    if total < 1:
        raise ValueError("the clip has no frames")
    timed = source_fps is not None and source_fps > 0
    rate = float(source_fps) if timed else float(video["fps"])
    duration = total / rate
    window = video.get("window") or {}
    start = float(window.get("start") or 0.0)
    end = window.get("end")
    end = duration if end is None else min(float(end), duration)
    if start >= duration:
        raise ValueError(f"the window starts at {start:g} s but the clip lasts {duration:.3g} s")
    if end <= start:
        raise ValueError(f"the window {start:g}-{end:g} s holds no part of the clip")
    first = min(total - 1, math.ceil(start * rate - 1e-9))
    last = max(first, min(total - 1, math.ceil(end * rate - 1e-9) - 1))
    count = last - first + 1
    seconds = count / rate
    most = int(video["max_frames"])
    if timed:
        n = round(seconds * float(video["fps"]))
        n = min(max(n, int(video["min_frames"])), most, count)
        patch = int(video.get("temporal_patch") or 1)
        n = max(1, n // patch * patch)
    else:
        n = min(count, most)
    if n == 1:
        indices = [first]
    else:
        indices = [round(first + i * (last - first) / (n - 1)) for i in range(n)]
    return indices, n / seconds


def video_tokens(frames: int, width: int, height: int, geometry: dict, temporal_patch: int) -> int:
    """Qwen-VL's tokens for a clip of ``frames`` frames of ``width`` x ``height`` px (already frame_size'd):
    ceil(frames / temporal_patch) x (height / (patch x merge)) x (width / (patch x merge)); the processor pads the
    frames to the temporal patch by repeating the last one."""
    unit = int(geometry["patch_size"]) * int(geometry.get("merge_size", 1))
    return math.ceil(int(frames) / int(temporal_patch)) * (int(height) // unit) * (int(width) // unit)
