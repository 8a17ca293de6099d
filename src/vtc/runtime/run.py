"""`vtc run`: a plan executed end to end, one printed line per stage.

    compile (or read) the plan -> choose the backend -> scan the data -> load rows -> load the model and apply LoRA
    -> collator -> length check -> evaluate the base model -> train -> evaluate the fine-tuned model -> save

Everything that can be wrong with the recipe, the data or the model is found before the run folder exists, and
raised as a VtcError (rendered by the CLI, exit 1). The run folder's life (run-NNN.partial -> run-NNN, or
run-NNN.interrupted / run-NNN.failed) is described in outputs.py; checkpoints, Ctrl-C and SIGTERM in
checkpoints.py. `vtc run --resume RUN_DIR` (resume_run) continues an interrupted or failed run in its own folder
from its newest checkpoint, with the run's own plan.json, to the same final step.

Failures a user can do something about end as one diagnostic, exit code 1, the folder marked failed: out of GPU
memory (VT520, with the image tokens, the batch and what to change), a disk too full to save (VT522), a model that
needs its own code (VT507), a model that is not cached while offline (VT503).
"""

from __future__ import annotations

import errno
import json
import os
import platform
import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from vtc import __version__
from vtc.diagnostics import Span, VtcError, error, render_all
from vtc.runtime import checkpoints as C
from vtc.runtime import outputs as O
from vtc.runtime.progress import Reporter

PLAN_VERSION = 1
# Rows shown in the printed before/after examples.
EXAMPLES_SHOWN = 5


def _raise(diagnostics, sources=None):
    exc = VtcError(diagnostics)
    exc.sources = sources or {}
    raise exc


# ---- the plan ------------------------------------------------------------------------------------------------

def load_target(target: str, reporter: Reporter | None = None) -> tuple[dict, dict]:
    """The plan of a recipe (.vt, compiled) or a saved plan (.json), and the sources for rendering diagnostics."""
    path = Path(target)
    if path.suffix.lower() == ".json":
        return read_plan(path), {}
    from vtc.compiler.pipeline import compile_file

    result = compile_file(str(path))
    if result.plan is None or any(d.is_error for d in result.diagnostics):
        _raise(result.diagnostics, result.sources)
    warnings = [d for d in result.diagnostics if not d.is_error]
    if warnings and reporter:
        reporter.line(render_all(warnings, result.sources))
    return result.plan, result.sources


_REQUIRED = ("model", "method", "data", "collator", "sft", "evaluation", "outputs")


def read_plan(path: Path) -> dict:
    """A saved plan.json, checked to be a vtc plan this version can run."""
    where = Span(str(path))
    if not path.is_file():
        _raise([error("VT510", f"plan file not found: {path}", where,
                      help="give a recipe (.vt) or a plan saved with `vtc plan recipe.vt -o plan.json`")])
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        _raise([error("VT510", f"cannot read {path} as JSON: {exc}", where,
                      help="save the plan again with `vtc plan recipe.vt -o plan.json`")])
    if not isinstance(plan, dict) or "plan_version" not in plan:
        _raise([error("VT510", f"{path} is not a vtc plan (it has no plan_version)", where,
                      help="create one with `vtc plan recipe.vt -o plan.json`, or run the recipe itself")])
    if plan["plan_version"] != PLAN_VERSION:
        _raise([error("VT510", f"{path} has plan_version {plan['plan_version']}; this vtc runs version "
                      f"{PLAN_VERSION}", where, help="compile the recipe again with this vtc")])
    missing = [k for k in _REQUIRED if k not in plan]
    if missing:
        _raise([error("VT510", f"{path} lacks the plan field(s) {', '.join(missing)}", where,
                      help="compile the recipe again with `vtc plan recipe.vt -o plan.json`")])
    return plan


def recipe_span(plan: dict) -> Span | None:
    recipe = (plan.get("recipe") or {}).get("file")
    return Span(recipe) if recipe else None


# ---- the model -----------------------------------------------------------------------------------------------

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


def check_model_folder(folder: Path, shown: str, span: Span | None, trust_remote_code: bool = False) -> None:
    """A local model folder must exist and hold a vision-language model's config.json (VT501, VT502), loadable
    without its own code unless the recipe says `with trust_remote_code` (VT507)."""
    if not folder.is_dir():
        _raise([error("VT501", f"model folder not found: {shown}", span,
                      help="check the path after `on` in `finetune ... on <model>`")])
    cfg = folder / "config.json"
    if not cfg.is_file():
        _raise([error("VT502", f"{shown} has no config.json, so it is not a Hugging Face model folder", span,
                      help="point `finetune ... on` at the folder that holds config.json and the weights")])
    try:
        config = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        _raise([error("VT502", f"cannot read {cfg}: {exc}", Span(str(cfg)), help="fix or replace config.json")])
    if needs_remote_code(config) and not trust_remote_code:
        _raise([remote_code_error(shown, span)])
    if not _is_vision_config(config) and not (trust_remote_code and needs_remote_code(config)):
        kind = config.get("model_type", "unknown")
        _raise([error(
            "VT502", f"{shown} is not a vision-language model (its config.json says model_type `{kind}`, "
            f"a text-only model with no vision part)", Span(str(cfg)),
            help="fine-tune a vision-language model (e.g. qwen2.5-vl, llama-3.2-vision) or a folder holding one")])


def resolve_model_path(plan: dict) -> str:
    """What from_pretrained gets: the built tiny model's folder, a local folder, or a Hub id that is cached or can
    be downloaded. Raises VtcError VT501/VT502/VT503."""
    model = plan["model"]
    source, mid = model.get("source"), model["id"]
    span = recipe_span(plan)
    trust = bool(model.get("trust_remote_code"))
    if source == "tiny":
        from vtc.runtime.tiny_models import ensure_tiny_model

        return str(ensure_tiny_model(mid))
    if source == "local":
        p = Path(os.path.expanduser(mid))
        if not p.is_absolute():
            p = Path(plan.get("base_dir") or ".") / p
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
        _raise([_no_network(mid, span)])
    return mid


def _no_network(mid: str, span: Span | None):
    return error("VT503", f"model {mid} is not in the local Hugging Face cache and there is no network", span,
                 help="connect to the internet once to download it (or unset HF_HUB_OFFLINE), or copy the model "
                      "folder here and write `finetune ... on ./that-folder`")


def load_model(backend, plan: dict, model_path: str):
    """backend.load, with a missing download turned into VT503."""
    try:
        return backend.load(plan, model_path)
    except ValueError as exc:
        if "trust_remote_code" in str(exc) and not plan["model"].get("trust_remote_code"):
            _raise([remote_code_error(plan["model"]["id"], recipe_span(plan))])
        raise
    except OSError as exc:
        text = str(exc)
        if any(s in text for s in ("connect", "offline", "Connection", "resolve", "not a valid model identifier",
                                   "local_files_only")):
            span = recipe_span(plan)
            if "not a valid model identifier" in text:
                _raise([error("VT503", f"model {plan['model']['id']} was not found on the Hugging Face Hub", span,
                              help="check the model name (and that you are logged in for gated models)")])
            _raise([_no_network(plan["model"]["id"], span)])
        raise


# ---- the run -------------------------------------------------------------------------------------------------

class _Resume:
    """What resume_run hands to _run: the run folder, its manifest, its newest checkpoint."""

    def __init__(self, folder: Path, manifest: dict, checkpoint: tuple[int, Path] | None, data_fp: dict) -> None:
        self.folder = folder
        self.manifest = manifest
        self.checkpoint = checkpoint
        self.data_fp = data_fp


def run_target(target: str, *, backend: str = "auto", runs_dir: str | None = None,
               allow_changed: bool = False) -> Path:
    """Run a recipe (.vt) or a saved plan (.json) end to end and return the finished run folder.

    A saved plan whose recipe, data or model changed since `vtc plan -o` made it is refused (VT530) unless
    ``allow_changed``. Raises VtcError for problems, checkpoints.RunInterrupted after Ctrl-C or SIGTERM.
    """
    from vtc.runtime.backends.base import choose_backend

    rep = Reporter()
    started = time.time()
    saved_plan = target.lower().endswith(".json")
    with rep.stage("compile" if not saved_plan else "read plan") as st:
        plan, sources = load_target(target, rep)
        st.detail = f"{plan['method']} on {plan['model']['id']} ({plan['model'].get('family', '?')})"
    if saved_plan:
        check_saved_plan(plan, target, allow_changed, rep)

    be, reason = choose_backend(backend)  # before anything imports transformers (unsloth must come first)
    rep.line(reason)
    from vtc.runtime.progress import quiet_libraries

    with quiet_libraries():
        return _run(plan, sources, target, be, reason, runs_dir, rep, started)


def check_saved_plan(plan: dict, target: str, allow_changed: bool, rep: Reporter) -> None:
    """A saved plan runs exactly as saved: refuse it (VT530) when its recorded inputs changed since."""
    from vtc.lockfile import input_changes

    inputs = plan.get("inputs")
    if not isinstance(inputs, dict):
        rep.line(f"note: {target} records no fingerprints of its inputs (save plans with `vtc plan recipe.vt -o "
                 f"{Path(target).name}` to have them checked)")
        return
    changes = input_changes(inputs, plan)
    if not changes:
        rep.line("inputs              recipe, data and model unchanged since the plan was made")
        return
    if allow_changed:
        for change in changes:
            rep.line(f"warning: {change} since {target} was made (running anyway: --allow-changed)")
        return
    where = Span(str(target))
    _raise([error("VT530", f"{target} no longer matches its inputs: " + "; ".join(changes), where,
                  help=f"make the plan again (`vtc plan {plan.get('recipe', {}).get('file', 'recipe.vt')} -o "
                       f"{Path(target).name}`) and review it, or run this one anyway with "
                       f"`vtc run {target} --allow-changed`")])


def resume_run(run_dir: str, *, backend: str = "auto", allow_changed: bool = False) -> Path:
    """Continue an interrupted or failed run in its own folder, from its newest complete checkpoint, with the
    run's own plan.json, to the same final step. Refuses (VT531) a folder that is not a resumable run, and (VT532)
    one whose data or model changed since it started, unless ``allow_changed``."""
    from vtc.lockfile import model_fingerprint
    from vtc.runtime.backends.base import choose_backend

    rep = Reporter()
    started = time.time()
    with rep.stage("read run") as st:
        folder, plan, manifest = _resumable(Path(run_dir))
        ckpt = C.latest_checkpoint(folder)
        total = plan["sft"].get("max_steps")
        of = f" of {total}" if total and total > 0 else ""
        st.detail = (f"{folder.name} ({manifest.get('state', '?')}), checkpoint at step {ckpt[0]}{of}" if ckpt
                     else f"{folder.name} ({manifest.get('state', '?')}), no checkpoint: training starts again")
    with rep.stage("inputs") as st:
        data_fp = O.data_fingerprint(plan)
        changes = []
        was = ((manifest.get("data") or {}).get("fingerprint") or {}).get("sha256")
        if was and was != data_fp["sha256"]:
            changes.append("the data changed since the run started (its content fingerprint differs)")
        was_model = (manifest.get("model") or {}).get("fingerprint")
        if was_model and was_model != model_fingerprint(plan, content=False):
            changes.append("the model changed since the run started")
        if changes and not allow_changed:
            _raise([error("VT532", f"cannot resume {folder.name}: " + "; ".join(changes), Span(str(folder)),
                          help="resuming with other inputs would mix two trainings; start a new run, or resume "
                               f"anyway with `vtc run --resume {_shown(folder)} --allow-changed`")])
        for change in changes:
            rep.line(f"warning: {change} (resuming anyway: --allow-changed)")
        st.detail = "data and model as when the run started" if not changes else "changed (allowed)"

    be, reason = choose_backend(backend)
    rep.line(reason)
    from vtc.runtime.progress import quiet_libraries

    with quiet_libraries():
        return _run(plan, {}, manifest.get("target") or str(folder / "plan.json"), be, reason, None, rep, started,
                    resume=_Resume(folder, manifest, ckpt, data_fp))


def _resumable(folder: Path) -> tuple[Path, dict, dict]:
    """A run folder that can be resumed, its plan and manifest (VT531 otherwise)."""
    where = Span(str(folder))
    if not folder.is_dir():
        _raise([error("VT531", f"run folder not found: {folder}", where,
                      help="give the folder that the interrupted run printed, e.g. runs/xray/run-003.interrupted")])
    state = O.state_of(folder)
    if state is None or not (folder / "plan.json").is_file() or not (folder / "manifest.json").is_file():
        _raise([error("VT531", f"{folder} is not a vtc run folder (run-NNN with plan.json and manifest.json)",
                      where, help="give the folder that the interrupted run printed")])
    if state == "finished":
        _raise([error("VT531", f"{folder.name} finished already; there is nothing to resume", where,
                      help=f"use it (`vtc ask {_shown(folder)} <image>`), or start a new run with `vtc run`")])
    plan = read_plan(folder / "plan.json")
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _raise([error("VT531", f"cannot read {folder / 'manifest.json'}: {exc}", where,
                      help="the folder is damaged; start a new run")])
    if state == "running":
        pid, host = manifest.get("pid"), manifest.get("host")
        if host == platform.node() and isinstance(pid, int) and pid != os.getpid() and C.process_alive(pid):
            _raise([error("VT531", f"{folder.name} is still running (process {pid})", where,
                          help="wait for it, or stop it first (Ctrl-C in its terminal, or `kill "
                               f"{pid}`), then resume")])
    return folder, plan, manifest


def _run(plan, sources, target, be, reason, runs_dir, rep: Reporter, started: float,
         resume: _Resume | None = None) -> Path:
    # Every row is checked (and its standardised image prepared into the cache) before any model loads. Under
    # `bad rows stop` (the default) any bad row stops here with every problem listed; under `bad rows skip` the bad
    # rows are left out and listed in the run folder's skipped_rows.jsonl.
    with rep.stage("scan data") as st:
        from vtc.runtime.validate import validate_for_run

        try:
            data_check = validate_for_run(plan)
        except VtcError as exc:
            _raise(exc.diagnostics, sources)
        report = data_check.report
        if report.diagnostics:
            rep.line(render_all(report.shown(), sources))
            rep.line(report.table(plan["data"].get("bad_rows") or "stop"))
        warnings = len(report.diagnostics)
        st.detail = (f"{len(data_check.skipped)} bad rows left out" if data_check.skipped else
                     f"{warnings} warning{'s' * (warnings != 1)}" if warnings else "no problems")

    with rep.stage("load rows") as st:
        train_rows, eval_rows = data_check.train, data_check.eval
        if len(train_rows) == 0:
            _raise([error("VT402", f"no training rows in {train_rows.description}", recipe_span(plan),
                          help="check the folder after `from`: it needs images and their answers")])
        st.detail = f"{len(train_rows)} train, {len(eval_rows)} eval ({train_rows.description})"

    with rep.stage("load model") as st:
        model_path = resolve_model_path(plan)
        model, processor = load_model(be, plan, model_path)
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        what = "LoRA" if plan["method"] != "full" else "full fine-tuning"
        st.detail = (f"{plan['model']['id']}, {what}: {trainable:,} of {total:,} parameters trainable "
                     f"({100 * trainable / max(total, 1):.1f}%)")
    for note in getattr(be, "notes", []):
        rep.line(f"note: {note}")

    with rep.stage("collator") as st:
        collator = be.collator(plan, model, processor)
        c = plan["collator"]
        st.detail = ("loss on answers only" if c.get("train_on_responses_only") else "loss on the whole text") + \
            f", max {c['max_seq_length']} tokens"

    with rep.stage("length check") as st:
        st.detail = check_lengths(be, plan, processor, collator, train_rows, eval_rows)

    if resume is None:
        data_fp = O.data_fingerprint(plan)
        lock = _check_lock(plan, data_fp, rep)
        parent = Path(runs_dir) if runs_dir else _outputs_dir(plan)
        run_dir = O.next_run_dir(parent)
        manifest = _manifest(plan, target, be, reason, started, train_rows, eval_rows, model_path, rep, data_fp)
        manifest["lock"] = lock
        manifest["data"]["skipped_rows"] = len(data_check.skipped)
        O.write_json(run_dir / "plan.json", plan)
        O.write_json(run_dir / "manifest.json", manifest)
        data_check.write_skipped(run_dir)
        (run_dir / "metrics.jsonl").touch()
        history: list[dict] = []
        checkpoint = None
    else:
        run_dir = O.move_run_dir(resume.folder, "running")
        manifest = resume.manifest
        step = resume.checkpoint[0] if resume.checkpoint else 0
        checkpoint = resume.checkpoint[1].name if resume.checkpoint else None
        history = C.trim_metrics(run_dir / "metrics.jsonl", step)
        manifest.update(state="running", pid=os.getpid(), host=platform.node())
        manifest.pop("error", None)
        manifest.setdefault("resumes", []).append({
            "at": _now(), "from_step": step, "backend": {"name": be.name, "reason": reason},
            "libraries": O.library_versions(), "device": O.device_info()})
        O.write_json(run_dir / "manifest.json", manifest)
    rep.line(f"run folder: {_shown(run_dir)}")

    with C.StopSignals(rep.stream) as stop:
        try:
            return _train_and_save(plan, be, model, processor, collator, train_rows, eval_rows, run_dir, rep,
                                   manifest, stop=stop, history=history, checkpoint=checkpoint)
        except KeyboardInterrupt:
            name = stop.received or "SIGINT"
            raise _interrupted(run_dir, manifest, name, rep, plan) from None
        except Exception as exc:
            raise _failed(run_dir, manifest, exc, rep, plan) from None


def _interrupted(run_dir: Path, manifest: dict, name: str, rep: Reporter, plan: dict) -> C.RunInterrupted:
    """Mark the folder interrupted and say how to resume."""
    ckpt = C.latest_checkpoint(run_dir)
    manifest.update(state="interrupted", finished=_now(), timings=rep.timings,
                    interrupted={"signal": name, "checkpoint_step": ckpt[0] if ckpt else None})
    _try_write_manifest(run_dir, manifest)
    folder = O.move_run_dir(run_dir, "interrupted")
    command = C.resume_command(folder, _shown(folder))
    rep.line()
    total = plan["sft"].get("max_steps")
    of = f" of {total}" if total and total > 0 else ""
    if ckpt:
        rep.line(f"stopped by {name}: checkpoint saved at step {ckpt[0]}{of}")
    else:
        rep.line(f"stopped by {name} before the first checkpoint: resuming trains from the beginning")
    rep.line(f"run folder: {_shown(folder)} (interrupted)")
    rep.line(f"resume with: {command}")
    return C.RunInterrupted(name, folder, ckpt[0] if ckpt else None, command)


def _failed(run_dir: Path, manifest: dict, exc: BaseException, rep: Reporter, plan: dict) -> BaseException:
    """Mark the folder failed; a failure the user can act on becomes a diagnostic (the exception to raise)."""
    manifest.update(state="failed", error=_redact(f"{type(exc).__name__}: {exc}"), timings=rep.timings,
                    finished=_now())
    _try_write_manifest(run_dir, manifest)
    failed = O.move_run_dir(run_dir, "failed")
    rep.line(f"run failed; its folder is {_shown(failed)}")
    ckpt = C.latest_checkpoint(failed)
    resume = (f"; then continue from its checkpoint at step {ckpt[0]} with "
              f"`{C.resume_command(failed, _shown(failed))}`") if ckpt else ""
    span = recipe_span(plan)
    doing = _DOING.get(rep.current or "", rep.current or "training")
    if _is_oom(exc):
        _free_gpu_memory()
        return _diagnostic_error([oom_error(plan, doing, span, resume)])
    if _is_disk_full(exc):
        free = shutil.disk_usage(failed).free if failed.exists() else None
        left = f" ({free / 2**30:.1f} GiB free there now)" if free is not None else ""
        return _diagnostic_error([error(
            "VT522", f"the disk is full: could not write to {_shown(failed)} while {doing}{left}",
            Span(str(failed)),
            help="free some space (or put runs on a bigger disk with `--runs-dir`)" + (resume or
                 "; then run the recipe again"))])
    return exc


_DOING = {"train": "training", "evaluate base": "evaluating the base model",
          "evaluate fine-tuned": "evaluating the fine-tuned model", "save": "saving the results"}


def _diagnostic_error(diagnostics) -> VtcError:
    exc = VtcError(diagnostics)
    exc.sources = {}
    return exc


def oom_error(plan: dict, stage: str, span: Span | None, resume: str = ""):
    """VT520 with what filled the memory (image tokens, batch) and what to change."""
    est = plan.get("estimates") or {}
    sft = plan["sft"]
    batch = int(sft.get("per_device_train_batch_size", 1))
    accumulate = int(sft.get("gradient_accumulation_steps", 1))
    tokens = est.get("image_tokens_per_image")
    size = est.get("image_size")
    image = (f"each image is {tokens} image tokens" + (f" ({size[0]}x{size[1]})" if size else "")) if tokens \
        else "the images are not resized" if (plan.get("images") or {}).get("resize", {}).get("mode") == "none" \
        else "image size unknown"
    guess = f", about {est['gpu_memory_gib']} GiB estimated" if est.get("gpu_memory_gib") else ""
    resize = (plan.get("images") or {}).get("resize") or {}
    smaller = None
    if resize.get("mode") == "longest" and resize.get("size"):
        smaller = max(28, int(resize["size"]) * 3 // 4 // 28 * 28)  # a quarter smaller, a multiple of 28 pixels
    ideas = []
    if smaller and smaller < int(resize["size"]):
        ideas.append(f"smaller images (`resize {smaller}`)")
    elif resize.get("mode") == "none":
        ideas.append("resized images (`resize 512`)")
    if batch > 1:
        ideas.append(f"a smaller batch with the same effective batch (`batch {batch // 2}` and "
                     f"`accumulate {accumulate * 2}`)")
    if plan.get("method") != "qlora":
        ideas.append("4-bit training (`using qlora`)")
    return error("VT520", f"out of GPU memory while {stage}: {image}, {batch} per step (batch {batch}){guess}",
                 span, help="try " + ", or ".join(ideas or ["a GPU with more memory"]) + resume)


def _try_write_manifest(run_dir: Path, manifest: dict) -> None:
    try:
        O.write_json(run_dir / "manifest.json", manifest)
    except OSError:  # the disk may be the problem
        pass


def _check_lock(plan: dict, data_fp: dict, rep: Reporter) -> dict | None:
    """Warn about every difference from recipe.vt.lock (when there is one); returned for the manifest."""
    from vtc.lockfile import lock_differences, lock_path, read_lock

    path = lock_path(plan)
    if not path.is_file():
        return None
    lock = read_lock(path)
    if lock is None:
        rep.line(f"warning: cannot read the lock file {path.name}; make it again with `vtc lock "
                 f"{plan['recipe']['file']}`")
        return {"file": path.name, "differences": ["unreadable"]}
    diffs = lock_differences(lock, plan, data_fp.get("sources"))
    for d in diffs:
        rep.line(f"warning: {d} ({path.name})")
    if not diffs:
        rep.line(f"lock                matches {path.name}")
    return {"file": path.name, "differences": diffs}


def _train_and_save(plan, be, model, processor, collator, train_rows, eval_rows, run_dir: Path, rep: Reporter,
                    manifest: dict, *, stop: C.StopSignals | None = None, history: list[dict] | None = None,
                    checkpoint: str | None = None) -> Path:
    from vtc.runtime import evaluate as E

    names = list(plan["evaluation"]["metrics"])
    n_eval = len(eval_rows)
    before = before_answers = None
    expected = E.expected_answers(eval_rows) if n_eval else []
    if n_eval:
        saved = _read_base_eval(run_dir, n_eval)
        if saved is not None:  # a resumed run: the base model was evaluated before the interruption
            before_answers, before = saved
            rep.line(f"{'evaluate base':<{rep.NAME_WIDTH}}  {_scores(before)}  (from before the interruption)")
        else:
            with rep.stage("evaluate base") as st:
                before_answers = E.answer_rows(be, model, processor, eval_rows, plan)
                before = E.score(names, before_answers, expected)
                st.detail = _scores(before)
            O.write_json(run_dir / BASE_EVAL, {"answers": before_answers, "scores": before})
    else:
        rep.line("evaluate base       skipped: no evaluation data (add `holdout 10%` or `evaluate on <folder>`)")

    with rep.stage("train", announce=True) as st:
        if checkpoint:
            rep.line(f"  resuming from {checkpoint}")
        history = train(be, plan, model, processor, train_rows, collator, run_dir, rep, stop=stop,
                        history=history, resume_from=checkpoint)
        if stop is not None and stop.received:
            raise KeyboardInterrupt(stop.received)  # the step finished and its checkpoint is saved
        last = history[-1]["loss"] if history else float("nan")
        first = history[0]["loss"] if history else float("nan")
        st.detail = f"{len(history)} logged steps, loss {first:.4f} -> {last:.4f}"

    after = after_answers = None
    if n_eval:
        with rep.stage("evaluate fine-tuned") as st:
            after_answers = E.answer_rows(be, model, processor, eval_rows, plan)
            after = E.score(names, after_answers, expected)
            st.detail = _scores(after)

    with rep.stage("save") as st:
        # Each saved folder is written under a temporary name and renamed when complete (outputs.atomic_dir).
        name = "model" if plan["method"] == "full" else "adapter"
        with O.atomic_dir(run_dir / name) as tmp:
            be.save_adapter(model, processor, str(tmp))
        saved = [name + "/"]
        if "merged" in (plan["outputs"].get("exports") or []):
            with O.atomic_dir(run_dir / "merged") as tmp:
                be.save_merged(model, processor, str(tmp))
            saved.append("merged/")
        if O.plot_loss(history, run_dir / "loss.png", title=f"training loss ({plan['model']['id']})"):
            saved.append("loss.png")
        if n_eval:
            records = _prediction_records(plan, eval_rows, expected, before_answers, after_answers, names)
            O.write_jsonl(run_dir / "predictions.jsonl", records)
            O.write_json(run_dir / "eval.json", {
                "metrics": names, "n": n_eval, "data": eval_rows.description,
                "before": before, "after": after,
                "per_metric": {m: {"before": before[m], "after": after[m],
                                   "change": after[m] - before[m]} for m in names},
            })
            saved += ["eval.json", "predictions.jsonl"]
        st.detail = ", ".join(saved)

    manifest.update(state="finished", finished=_now(), timings=rep.timings, notes=list(getattr(be, "notes", [])))
    O.write_json(run_dir / "manifest.json", manifest)
    # Checkpoints serve an unfinished run only; the adapter is the result (the optimizer state is ~3x its size).
    shutil.rmtree(run_dir / C.CHECKPOINTS, ignore_errors=True)
    (run_dir / BASE_EVAL).unlink(missing_ok=True)
    final = O.finish_run_dir(run_dir)

    if n_eval:
        rep.line()
        rep.line(O.before_after_table(names, before, after, n_eval, "evaluation rows"))
        rep.line()
        rep.line(O.examples_table(_prediction_records(plan, eval_rows, expected, before_answers, after_answers,
                                                      names)[:EXAMPLES_SHOWN]))
    rep.line()
    rep.line(f"finished: {_shown(final)}")
    rep.line(f"  try it: vtc ask {_shown(final)} <image>")
    return final


BASE_EVAL = "eval-base.json"


def _read_base_eval(run_dir: Path, n: int):
    try:
        saved = json.loads((run_dir / BASE_EVAL).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    answers, scores = saved.get("answers"), saved.get("scores")
    if not isinstance(answers, list) or len(answers) != n or not isinstance(scores, dict):
        return None
    return answers, scores


def train(be, plan, model, processor, train_rows, collator, run_dir: Path, rep: Reporter, *,
          stop: C.StopSignals | None = None, history: list[dict] | None = None,
          resume_from: str | None = None) -> list[dict]:
    """Train with the backend's trainer; metrics.jsonl, TensorBoard logs and checkpoints go into the run folder.

    ``resume_from``: the name of a checkpoint folder in <run>/checkpoints to continue from (its optimizer,
    scheduler, RNG and step); ``history``: the metrics already logged before it.
    """
    import importlib.util

    from vtc.runtime.progress import training_callback

    progress = training_callback(run_dir / "metrics.jsonl", rep, history=history)
    stop = stop or C.StopSignals()
    callbacks = [progress, C.checkpoint_callback(C.every_steps(plan), stop)]
    report_to = [r for r in _as_list(plan["sft"].get("report_to")) if r not in ("none", "tensorboard")]
    if importlib.util.find_spec("tensorboard") is not None:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        callbacks.append(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(run_dir / "tensorboard"))))
    be.for_training(model)
    # The trainer's output_dir holds only the checkpoints (vtc saves the adapter itself).
    ckpt_dir = run_dir / C.CHECKPOINTS
    ckpt_dir.mkdir(exist_ok=True)
    trainer = be.trainer(plan, model, processor, train_rows, collator, str(ckpt_dir), callbacks,
                         report_to=report_to or ["none"])
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)  # our progress line replaces the per-step dict printing
    trainer.remove_callback(ProgressCallback)
    if resume_from:
        trainer.train(resume_from_checkpoint=str(ckpt_dir / resume_from))
    else:
        trainer.train()
    return progress.history


def check_lengths(be, plan, processor, collator, train_rows, eval_rows) -> str:
    """Every row must fit max_seq_length with all its image tokens, before any training (VT4xx from the collator)."""
    limit = int(plan["collator"]["max_seq_length"])
    check = getattr(collator, "check_lengths", None)
    if check is None:  # a backend's own collator (unsloth): measure with vtc's collator
        from vtc.runtime.collator import VisionCollator

        c = plan["collator"]
        check = VisionCollator(processor, train_on_responses_only=c["train_on_responses_only"],
                               instruction_part=c["instruction_part"], response_part=c["response_part"],
                               max_seq_length=limit).check_lengths
    longest = check(train_rows, limit)
    if len(eval_rows):
        longest_eval = check(eval_rows, limit)
        if isinstance(longest, int) and isinstance(longest_eval, int):
            longest = max(longest, longest_eval)
    if isinstance(longest, int):
        return f"longest row {longest} tokens (limit {limit})"
    return f"every row fits {limit} tokens"


def _prediction_records(plan, rows, expected, before, after, names) -> list[dict]:
    from vtc.runtime import metrics as M

    question = plan["data"].get("instruction")
    out = []
    for i in range(len(rows)):
        images = [str(p) for p in rows.images(i)] if hasattr(rows, "images") else []
        origin = rows.origin(i).location if hasattr(rows, "origin") else None
        out.append({
            "row": i, "origin": origin, "images": images, "question": question, "expected": expected[i],
            "before": before[i] if before is not None else None, "after": after[i],
            "after_scores": M.row_scores(names, after[i], expected[i]),
        })
    return out


def _manifest(plan, target, be, reason, started, train_rows, eval_rows, model_path, rep, data_fp) -> dict:
    from vtc.lockfile import model_fingerprint

    return {
        "vtc_version": __version__,
        "state": "running",
        "pid": os.getpid(),  # with host: `vtc run --resume` refuses a folder whose run is still alive
        "host": platform.node(),
        "target": str(Path(target).resolve()),
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "backend": {"name": be.name, "reason": reason},
        "notes": list(getattr(be, "notes", [])),
        "device": O.device_info(),
        "libraries": O.library_versions(),
        "model": {"id": plan["model"]["id"], "source": plan["model"].get("source"), "path": model_path,
                  "fingerprint": model_fingerprint(plan, content=False)},
        "data": {"fingerprint": data_fp, "train_rows": len(train_rows),
                 "eval_rows": len(eval_rows), "train": train_rows.description,
                 "eval": getattr(eval_rows, "description", None)},
        "checkpoint_every_steps": C.every_steps(plan),
        "timings": dict(rep.timings),
    }


def _outputs_dir(plan: dict) -> Path:
    d = Path(os.path.expanduser(plan["outputs"]["dir"]))
    return d if d.is_absolute() else Path(plan.get("base_dir") or ".") / d


def _shown(path: Path) -> str:
    """A path as the user should type it: relative to the working folder when it lies inside it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _scores(scores: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" if k == "bleu" else f"{k} {100 * v:.1f}%" for k, v in scores.items())


def _as_list(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _is_oom(exc: BaseException) -> bool:
    return any(type(e).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(e) for e in _chain(exc))


def _is_disk_full(exc: BaseException) -> bool:
    """ENOSPC / EDQUOT anywhere in the exception chain (torch.save reports it as "file write failed")."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return True
        if "No space left on device" in str(e) or "file write failed" in str(e):
            return True
    return False


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _free_gpu_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort
        pass


# Hugging Face tokens (hf_ + 30-odd letters and digits) must never reach a run folder, even inside an error message.
_TOKEN = re.compile(r"hf_[A-Za-z0-9]{8,}")


def _redact(text: str) -> str:
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN"):
        value = os.environ.get(var)
        if value and len(value) >= 8:
            text = text.replace(value, "<redacted>")
    return _TOKEN.sub("hf_<redacted>", text)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
