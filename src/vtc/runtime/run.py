"""`vtc run`: a plan executed end to end, one printed line per stage.

    compile (or read) the plan -> choose the backend -> scan the data -> load rows -> load the model and apply LoRA
    -> collator -> length check -> evaluate the base model -> train -> evaluate the fine-tuned model -> save

Everything that can be wrong with the recipe, the data or the model is found before the run folder exists, and
raised as a VtcError (rendered by the CLI, exit 1). The run folder's life (run-NNN.partial -> run-NNN, or
run-NNN.failed) is described in outputs.py.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from vtc import __version__
from vtc.diagnostics import Span, VtcError, error, render_all
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


def check_model_folder(folder: Path, shown: str, span: Span | None) -> None:
    """A local model folder must exist and hold a vision-language model's config.json (VT501, VT502)."""
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
    if not _is_vision_config(config):
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
    if source == "tiny":
        from vtc.runtime.tiny_models import ensure_tiny_model

        return str(ensure_tiny_model(mid))
    if source == "local":
        p = Path(os.path.expanduser(mid))
        if not p.is_absolute():
            p = Path(plan.get("base_dir") or ".") / p
        check_model_folder(p, mid, span)
        return str(p)
    # hub / registry: the local Hugging Face cache first, then the network.
    from huggingface_hub import constants, snapshot_download

    try:
        folder = snapshot_download(mid, local_files_only=True)
    except Exception:  # not cached (LocalEntryNotFoundError, or an invalid id)
        folder = None
    if folder is not None and (Path(folder) / "config.json").is_file():
        check_model_folder(Path(folder), mid, span)
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

def run_target(target: str, *, backend: str = "auto", runs_dir: str | None = None) -> Path:
    """Run a recipe (.vt) or a saved plan (.json) end to end and return the finished run folder."""
    from vtc.runtime.backends.base import choose_backend

    rep = Reporter()
    started = time.time()
    with rep.stage("compile" if not target.lower().endswith(".json") else "read plan") as st:
        plan, sources = load_target(target, rep)
        st.detail = f"{plan['method']} on {plan['model']['id']} ({plan['model'].get('family', '?')})"

    be, reason = choose_backend(backend)  # before anything imports transformers (unsloth must come first)
    rep.line(reason)
    from vtc.runtime.progress import quiet_libraries

    with quiet_libraries():
        return _run(plan, sources, target, be, reason, runs_dir, rep, started)


def _run(plan, sources, target, be, reason, runs_dir, rep: Reporter, started: float) -> Path:
    with rep.stage("scan data") as st:
        from vtc.runtime.validate import scan_plan_data

        problems = scan_plan_data(plan)
        errors = [d for d in problems if d.is_error]
        if errors:
            _raise(problems, sources)
        if problems:
            rep.line(render_all(problems, sources))
        st.detail = f"{len(problems)} warning{'s' * (len(problems) != 1)}" if problems else "no problems"

    with rep.stage("load rows") as st:
        from vtc.runtime.data import load_rows

        train_rows = load_rows(plan, "train")
        eval_rows = load_rows(plan, "eval")
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

    parent = Path(runs_dir) if runs_dir else _outputs_dir(plan)
    run_dir = O.next_run_dir(parent)
    manifest = _manifest(plan, target, be, reason, started, train_rows, eval_rows, model_path, rep)
    O.write_json(run_dir / "manifest.json", manifest)
    O.write_json(run_dir / "plan.json", plan)
    rep.line(f"run folder: {_shown(run_dir)}")
    try:
        final = _train_and_save(plan, be, model, processor, collator, train_rows, eval_rows, run_dir, rep, manifest)
    except BaseException as exc:
        manifest.update(state="failed", error=f"{type(exc).__name__}: {exc}", timings=rep.timings,
                        finished=_now())
        O.write_json(run_dir / "manifest.json", manifest)
        failed = O.fail_run_dir(run_dir)
        rep.line(f"run failed; its folder is {_shown(failed)}")
        if _is_oom(exc):
            _raise([error("VT520", "out of GPU memory while training", recipe_span(plan),
                          help="make images smaller (`resize 448`), lower `batch`, or raise `accumulate` instead")])
        raise
    return final


def _train_and_save(plan, be, model, processor, collator, train_rows, eval_rows, run_dir: Path, rep: Reporter,
                    manifest: dict) -> Path:
    from vtc.runtime import evaluate as E

    names = list(plan["evaluation"]["metrics"])
    n_eval = len(eval_rows)
    before = None
    expected = E.expected_answers(eval_rows) if n_eval else []
    if n_eval:
        with rep.stage("evaluate base") as st:
            before_answers = E.answer_rows(be, model, processor, eval_rows, plan)
            before = E.score(names, before_answers, expected)
            st.detail = _scores(before)
    else:
        rep.line("evaluate base       skipped: no evaluation data (add `holdout 10%` or `evaluate on <folder>`)")

    metrics_path = run_dir / "metrics.jsonl"
    metrics_path.touch()
    with rep.stage("train", announce=True) as st:
        history = train(be, plan, model, processor, train_rows, collator, run_dir, rep)
        last = history[-1]["loss"] if history else float("nan")
        first = history[0]["loss"] if history else float("nan")
        st.detail = f"{len(history)} logged steps, loss {first:.4f} -> {last:.4f}"

    after = None
    if n_eval:
        with rep.stage("evaluate fine-tuned") as st:
            after_answers = E.answer_rows(be, model, processor, eval_rows, plan)
            after = E.score(names, after_answers, expected)
            st.detail = _scores(after)

    with rep.stage("save") as st:
        model_dir = run_dir / ("model" if plan["method"] == "full" else "adapter")
        be.save_adapter(model, processor, str(model_dir))
        saved = [model_dir.name + "/"]
        if "merged" in (plan["outputs"].get("exports") or []):
            be.save_merged(model, processor, str(run_dir / "merged"))
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


def train(be, plan, model, processor, train_rows, collator, run_dir: Path, rep: Reporter) -> list[dict]:
    """Train with the backend's SFTTrainer; metrics.jsonl and TensorBoard logs go into the run folder."""
    import importlib.util

    from vtc.runtime.progress import training_callback

    progress = training_callback(run_dir / "metrics.jsonl", rep)
    callbacks = [progress]
    report_to = [r for r in _as_list(plan["sft"].get("report_to")) if r not in ("none", "tensorboard")]
    if importlib.util.find_spec("tensorboard") is not None:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        callbacks.append(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(run_dir / "tensorboard"))))
    be.for_training(model)
    scratch = tempfile.mkdtemp(prefix="vtc-trainer-")  # the trainer's output_dir; nothing of it is kept
    try:
        trainer = be.trainer(plan, model, processor, train_rows, collator, scratch, callbacks,
                             report_to=report_to or ["none"])
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)  # our progress line replaces the per-step dict printing
        trainer.remove_callback(ProgressCallback)
        trainer.train()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
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


def _manifest(plan, target, be, reason, started, train_rows, eval_rows, model_path, rep) -> dict:
    return {
        "vtc_version": __version__,
        "state": "running",
        "target": str(Path(target).resolve()),
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "backend": {"name": be.name, "reason": reason},
        "notes": list(getattr(be, "notes", [])),
        "device": O.device_info(),
        "libraries": O.library_versions(),
        "model": {"id": plan["model"]["id"], "source": plan["model"].get("source"), "path": model_path},
        "data": {"fingerprint": O.data_fingerprint(plan), "train_rows": len(train_rows),
                 "eval_rows": len(eval_rows), "train": train_rows.description,
                 "eval": getattr(eval_rows, "description", None)},
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
    return type(exc).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(exc)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
