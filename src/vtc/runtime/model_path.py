"""Where the model is: what from_pretrained gets for the plan's model, checked before any weight loads.

    resolve_model_path(plan) -> str      the built tiny model's folder, a local folder, or a Hub id (cached or
                                         downloadable); VtcError VT501/VT502/VT503/VT507 otherwise. A Hub id asks
                                         the Hub once (vtc.runtime.hub): unreachable and not cached is VT503 within
                                         seconds; unreachable and cached reads the cache only, with a note
    load_model(backend, plan, path)      backend.load, with a missing download or remote code as a diagnostic
    model_code_error(plan, exc, doing)   VT509 when an exception came from the model's own code (trust_remote_code)
    remote_code_source(plan) -> str      where the model's own code comes from, in words (the run's warning line)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vtc.diagnostics import Span, VtcError, error


# A model folder's config.json: a few KB (the largest vision-language configs are tens of KB).
CONFIG_LIMIT = 4 * 2**20


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


def check_model_folder(folder: Path, shown: str, span: Span | None, trust_remote_code: bool,
                       root: Path | None = None) -> None:
    """A local model folder must exist and hold a vision-language model's config.json (VT501, VT502), loadable
    without its own code unless the recipe says `with trust_remote_code` (VT507). config.json is read under the
    confinement rule, inside ``root`` (the folder itself; for a Hub cache snapshot, whose files link to the
    repository's blobs/, the repository's cache folder)."""
    if not folder.is_dir():
        raise VtcError(error("VT501", f"model folder not found: {shown}", span,
                             help="check the path after `on` in `finetune ... on <model>`"))
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise VtcError(error("VT502", f"{shown} has no config.json, so it is not a Hugging Face model folder", span,
                             help="point `finetune ... on` at the folder that holds config.json and the weights"))
    from vtc.confine import Refused, read_confined

    try:
        # Under the confinement rule: a regular file inside the folder (never a FIFO, which would block for ever).
        config = json.loads(read_confined(cfg, root or folder, CONFIG_LIMIT).decode("utf-8"))
    except Refused as exc:
        raise VtcError(error("VT502", f"cannot read {cfg}: {exc.reason}", Span(str(cfg)),
                             help="fix or replace config.json")) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise VtcError(error("VT502", f"cannot read {cfg}: {exc}", Span(str(cfg)),
                             help="fix or replace config.json")) from None
    if not isinstance(config, dict):
        raise VtcError(error("VT502", f"cannot read {cfg}: it is not a JSON object", Span(str(cfg)),
                             help="fix or replace config.json"))
    if needs_remote_code(config) and not trust_remote_code:
        raise VtcError(remote_code_error(shown, span))
    if not _is_vision_config(config) and not (trust_remote_code and needs_remote_code(config)):
        kind = config.get("model_type", "unknown")
        raise VtcError(error(
            "VT502", f"{shown} is not a vision-language model (its config.json says model_type `{kind}`, "
            f"a text-only model with no vision part)", Span(str(cfg)),
            help="fine-tune a vision-language model (e.g. qwen2.5-vl, llama-3.2-vision) or a folder holding one"))


def local_folder(plan: dict) -> Path:
    """A `local` model's folder: its id with ~ expanded, relative to the recipe's folder."""
    p = Path(os.path.expanduser(plan["model"]["id"]))
    return p if p.is_absolute() else Path(plan["base_dir"]) / p


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
        p = local_folder(plan)
        check_model_folder(p, mid, span, trust)
        return str(p)
    # hub / registry: the local Hugging Face cache first, then the network (asked once: vtc.runtime.hub).
    from huggingface_hub import snapshot_download

    from vtc.runtime import hub

    try:
        folder = snapshot_download(mid, local_files_only=True)
    except Exception:  # not cached (LocalEntryNotFoundError, or an invalid id)
        folder = None
    cached = folder is not None and (Path(folder) / "config.json").is_file()
    if cached:
        check_model_folder(Path(folder), mid, span, trust, root=Path(folder).parent.parent)
    problem = hub.unreachable()
    # from_pretrained("org/name") reads a folder of that name in the working directory instead of the Hub, silently.
    # The plan says Hub (the compiler found no such folder beside the recipe, or the recipe wrote hf://): when the
    # working directory has one, from_pretrained gets the Hub snapshot's own folder instead of the id.
    shadowed = Path(mid).exists()
    if problem is None:
        if shadowed:
            return folder if cached else snapshot_download(mid)
        return mid  # downloaded (with the Hub's progress bars) or checked for a newer version by from_pretrained
    if cached:
        if not hub.offline_by_user():
            hub.go_offline()
            hub.note_cached(problem, f"model {mid}")
        return folder if shadowed else mid
    raise VtcError(no_network(mid, span, problem))


def no_network(mid: str, span: Span | None, problem: str | None = None, failure: str = ""):
    """VT503: a Hub model that is not cached, and the Hub cannot be reached (``problem``: why, from hub.py), or
    its download failed although the Hub answered (``failure``: the library's message)."""
    from vtc.runtime import hub
    from vtc.runtime.failures import redact

    problem = problem or hub.unreachable()
    offline = hub.offline_by_user()
    if problem is None:
        said = redact(failure.strip().splitlines()[0][:300]) if failure.strip() else "the download failed"
        return error("VT503", f"model {mid} could not be downloaded from the Hugging Face Hub: {said}", span,
                     help="run again (a download that broke off resumes where it stopped); or "
                          + hub.what_to_do(mid, dataset=False))
    if offline:
        return error("VT503", f"model {mid} is not in the local Hugging Face cache and there is no network "
                     f"({offline} is set)", span,
                     help=f"unset {offline} to download it once; or " + hub.what_to_do(mid, dataset=False))
    return error("VT503", f"model {mid} is not in the local Hugging Face cache and the Hugging Face Hub cannot be "
                 f"reached: {problem}", span, help=hub.what_to_do(mid, dataset=False))


def remote_code_source(plan: dict) -> str:
    """Where a model's own code comes from, in words: its folder (absolute) or its Hub id."""
    model = plan["model"]
    if model["source"] == "local":
        p = Path(os.path.expanduser(model["id"]))
        return f"the folder {p if p.is_absolute() else Path(plan['base_dir']) / p}"
    if model["source"] == "tiny":
        return f"vtc's tiny model {model['id']}"
    return f"the Hugging Face model {model['id']}"


def _model_code_frame(exc: BaseException, folders) -> bool:
    """The exception went through a file of the model's own code: transformers copies it into its modules cache
    (a folder named transformers_modules) before importing it; a local model's own folder counts too."""
    from vtc.runtime.failures import frames

    roots = [os.path.realpath(str(f)) + os.sep for f in folders if f]
    for file, _function in frames(exc):
        if "transformers_modules" in Path(file).parts:
            return True
        real = os.path.realpath(file)
        if any(real.startswith(root) for root in roots):
            return True
    return False


def model_code_error(plan: dict, exc: BaseException, doing: str, model_path: str | None = None):
    """VT509 when ``exc`` came from the model's own Python code (only possible with trust_remote_code), else None."""
    if not plan["model"]["trust_remote_code"] or not _model_code_frame(exc, [model_path]):
        return None
    from vtc.runtime.failures import _first_line

    import transformers

    return error(
        "VT509", f"the model's own Python code (trust_remote_code, from {remote_code_source(plan)}) failed while "
        f"{doing}: {_first_line(exc)}", recipe_span(plan),
        help=f"this code comes with the model, not with vtc: check that the model's files are complete and written "
             f"for the installed transformers ({transformers.__version__}), ask the model's authors, or choose a "
             "model that transformers supports natively (then remove `with trust_remote_code`); VTC_DEBUG=1 shows "
             "the traceback")


def load_model(backend, plan: dict, model_path: str, *, trained: str | None = None):
    """backend.load (or, with ``trained``, a run's model folder: backend.load_trained), with a missing download
    turned into VT503, a model needing its own code into VT507, and a failure of the model's own code into VT509."""
    try:
        if trained is not None:
            return backend.load_trained(plan, model_path, trained)
        return backend.load(plan, model_path)
    except VtcError:
        raise
    except ValueError as exc:
        if "trust_remote_code" in str(exc) and not plan["model"]["trust_remote_code"]:
            raise VtcError(remote_code_error(plan["model"]["id"], recipe_span(plan))) from None
        _raise_model_code_error(plan, exc, model_path)
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
            raise VtcError(no_network(plan["model"]["id"], span, failure=text)) from None
        _raise_model_code_error(plan, exc, model_path)
        raise
    except (Exception, SystemExit) as exc:  # SystemExit: a model's own code must not end vtc without a word
        _raise_model_code_error(plan, exc, model_path)
        raise


def _raise_model_code_error(plan: dict, exc: BaseException, model_path: str) -> None:
    found = model_code_error(plan, exc, "loading the model", model_path)
    if found is not None:
        if os.environ.get("VTC_DEBUG"):
            import traceback

            traceback.print_exception(exc)
        raise VtcError(found) from None
