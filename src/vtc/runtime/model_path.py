"""Where the model is: what from_pretrained gets for the plan's model, checked before any weight loads.

    resolve_model_path(plan) -> str      the built tiny model's folder, a local folder, or a Hub id (cached or
                                         downloadable); VtcError VT501/VT502/VT503/VT507 otherwise
    load_model(backend, plan, path)      backend.load, with a missing download or remote code as a diagnostic
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vtc.diagnostics import Span, VtcError, error


def recipe_span(plan: dict) -> Span:
    """The plan's recipe, for diagnostics that concern the whole run."""
    return Span(plan["recipe"]["file"])


def _is_vision_config(config: dict) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return config.get("model_type") in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES or "vision_config" in config


def needs_remote_code(config: dict) -> bool:
    """A model whose config names its own Python classes (auto_map) for a model type transformers does not know."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return bool(config.get("auto_map")) and config.get("model_type") not in CONFIG_MAPPING_NAMES


def remote_code_error(shown: str, span: Span | None):
    return error(
        "VT507", f"model {shown} needs to run its own Python code, downloaded with it (trust_remote_code), and the "
        f"recipe does not allow that", span,
        help="only if you trust the model's authors: add `with trust_remote_code` to the recipe (vtc check and "
             "vtc explain will then warn about it); otherwise choose a model that transformers supports natively")


def check_model_folder(folder: Path, shown: str, span: Span | None, trust_remote_code: bool) -> None:
    """A local model folder must exist and hold a vision-language model's config.json (VT501, VT502), loadable
    without its own code unless the recipe says `with trust_remote_code` (VT507)."""
    if not folder.is_dir():
        raise VtcError(error("VT501", f"model folder not found: {shown}", span,
                             help="check the path after `on` in `finetune ... on <model>`"))
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise VtcError(error("VT502", f"{shown} has no config.json, so it is not a Hugging Face model folder", span,
                             help="point `finetune ... on` at the folder that holds config.json and the weights"))
    try:
        config = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise VtcError(error("VT502", f"cannot read {cfg}: {exc}", Span(str(cfg)),
                             help="fix or replace config.json")) from None
    if needs_remote_code(config) and not trust_remote_code:
        raise VtcError(remote_code_error(shown, span))
    if not _is_vision_config(config) and not (trust_remote_code and needs_remote_code(config)):
        kind = config.get("model_type", "unknown")
        raise VtcError(error(
            "VT502", f"{shown} is not a vision-language model (its config.json says model_type `{kind}`, "
            f"a text-only model with no vision part)", Span(str(cfg)),
            help="fine-tune a vision-language model (e.g. qwen2.5-vl, llama-3.2-vision) or a folder holding one"))


def resolve_model_path(plan: dict) -> str:
    """What from_pretrained gets: the built tiny model's folder, a local folder, or a Hub id that is cached or can
    be downloaded. Raises VtcError VT501/VT502/VT503/VT507."""
    model = plan["model"]
    source, mid = model["source"], model["id"]
    span = recipe_span(plan)
    trust = model["trust_remote_code"]
    if source == "tiny":
        from vtc.runtime.tiny_models import ensure_tiny_model

        return str(ensure_tiny_model(mid))
    if source == "local":
        p = Path(os.path.expanduser(mid))
        if not p.is_absolute():
            p = Path(plan["base_dir"]) / p
        check_model_folder(p, mid, span, trust)
        return str(p)
    # hub / registry: the local Hugging Face cache first, then the network.
    from huggingface_hub import constants, snapshot_download

    try:
        folder = snapshot_download(mid, local_files_only=True)
    except Exception:  # not cached (LocalEntryNotFoundError, or an invalid id)
        folder = None
    if folder is not None and (Path(folder) / "config.json").is_file():
        check_model_folder(Path(folder), mid, span, trust)
        return mid
    if constants.HF_HUB_OFFLINE:
        raise VtcError(no_network(mid, span))
    return mid


def no_network(mid: str, span: Span | None):
    return error("VT503", f"model {mid} is not in the local Hugging Face cache and there is no network", span,
                 help="connect to the internet once to download it (or unset HF_HUB_OFFLINE), or copy the model "
                      "folder here and write `finetune ... on ./that-folder`")


def load_model(backend, plan: dict, model_path: str):
    """backend.load, with a missing download turned into VT503 and a model needing its own code into VT507."""
    try:
        return backend.load(plan, model_path)
    except ValueError as exc:
        if "trust_remote_code" in str(exc) and not plan["model"]["trust_remote_code"]:
            raise VtcError(remote_code_error(plan["model"]["id"], recipe_span(plan))) from None
        raise
    except OSError as exc:
        text = str(exc)
        if any(s in text for s in ("connect", "offline", "Connection", "resolve", "not a valid model identifier",
                                   "local_files_only")):
            span = recipe_span(plan)
            if "not a valid model identifier" in text:
                raise VtcError(error("VT503", f"model {plan['model']['id']} was not found on the Hugging Face Hub",
                                     span, help="check the model name (and that you are logged in for gated "
                                                "models)")) from None
            raise VtcError(no_network(plan["model"]["id"], span)) from None
        raise
