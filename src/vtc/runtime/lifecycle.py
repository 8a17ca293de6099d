"""A run folder's life, apart from the training in it: created with its plan and manifest, checked against a saved
plan's inputs and the lock file, found again to resume, and marked interrupted, failed or finished.

    check_saved_plan(plan, target, allow_changed, rep)     VT530: a saved plan whose inputs changed, or that records
                                                           none (an "inputs" section removed)
    allow_remote_code(plan, rep, ...)                      VT508: a plan file's trust_remote_code needs the
                                                           command line's --trust-remote-code too; the warning line
    check_runs_folder(plan, runs_dir)                      VT537/VT538: where run folders go, before any work
    resumable(folder) -> Resume                            VT531/VT532: a folder `vtc run --resume` can continue
    start(plan, target, ...) -> (run_dir, manifest)         run-NNN.partial with plan.json, manifest.json, ...
    reopen(resume, backend, reason) -> (run_dir, manifest, history, checkpoint)
    interrupted(...) / failed(...) / finish(...)            the folder's last state, and what the user sees

The folder's states and atomic writes are outputs.py's; checkpoints, Ctrl-C and SIGTERM are checkpoints.py's.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path

from vtc import __version__
from vtc.diagnostics import Span, VtcError, error
from vtc.lockfile import NOT_MEANING
from vtc.plans import read_plan
from vtc.records import record
from vtc.runtime import checkpoints as C
from vtc.runtime import compile_cache as CC
from vtc.runtime import failures as F
from vtc.runtime import outputs as O
from vtc.runtime import throughput as T
from vtc.runtime.model_path import recipe_span, remote_code_source
from vtc.runtime.progress import Reporter

# The base model's answers, kept while a run works so that a resumed run does not evaluate the base model again.
BASE_EVAL = "eval-base.json"
# Everything the run printed (the screen may be gone: a closed pipe, a closed terminal); a resume appends to it.
RUN_LOG = "run.log"


@record
class Resume:
    """A run to continue: its folder, plan, manifest, newest complete checkpoint and current data fingerprint."""

    folder: Path
    plan: dict
    manifest: dict
    checkpoint: object  # (step, folder) or None
    data_fp: dict

    def shared(self) -> dict:
        """What the other processes of a distributed resume get from rank 0 (JSON): they read the plan themselves."""
        ckpt = self.checkpoint
        return {"folder": str(self.folder), "manifest": self.manifest,
                "checkpoint": [ckpt[0], str(ckpt[1])] if ckpt else None}

    @classmethod
    def from_shared(cls, shared: dict, plan: dict) -> "Resume":
        ckpt = shared["checkpoint"]
        return cls(Path(shared["folder"]), plan, shared["manifest"], (ckpt[0], Path(ckpt[1])) if ckpt else None, {})


# ---- before a run --------------------------------------------------------------------------------------------

def check_saved_plan(plan: dict, target: str, allow_changed: bool, rep: Reporter, recompile=None) -> None:
    """A saved plan runs exactly as saved: refuse it (VT530) when its recorded inputs changed since.

    The recipe counts as changed when what it means changed, not its bytes: when its text differs, ``recompile()``
    (given by vtc.commands: the runtime never imports the compiler) returns the plan the recipe makes now, or None
    when it no longer compiles, and a recipe whose plan is the saved one (comments, blank lines, layout, clause
    order) is no change.
    """
    from vtc.lockfile import input_changes, recipe_fingerprint

    inputs = plan.get("inputs")  # `vtc plan -o` adds it, `vtc plan --json` does not
    if inputs is None:
        # Without fingerprints nothing can be compared: a plan edited (its inputs removed) would run unchecked.
        why = (f"{target} records no fingerprints of its inputs (no \"inputs\" section: it was not saved with "
               "`vtc plan -o`, or the section was removed), so vtc cannot tell whether its recipe, data or model "
               "changed since it was made")
        if allow_changed:
            rep.line(f"warning: {why} (running anyway: --allow-changed)")
            return
        save = O.command("vtc", "plan", plan["recipe"]["file"], "-o", Path(target).name)
        raise VtcError(error(
            "VT530", why, Span(str(target)),
            help=f"save the plan with its fingerprints (`{save}`) and review it, or run this one anyway with "
                 f"`{O.command('vtc', 'run', target, '--allow-changed')}`"))
    recipe_now = recipe_fingerprint(plan)
    recorded = inputs.get("recipe") or {}
    meaning: list[str] = []
    if recompile is not None and recorded.get("sha256") != recipe_now["sha256"] and not recipe_now["missing"]:
        now = recompile()
        meaning = ["the recipe no longer compiles (`vtc check` says why)"] if now is None else \
            plan_differences(plan, now)
        if not meaning:  # the same plan: take the recipe's new text as the recorded one
            inputs = {**inputs, "recipe": {**recorded, "sha256": recipe_now["sha256"]}}
            rep.line(f"note: the text of {', '.join(recipe_now['files'])} changed since {target} was made, not what "
                     "it means (the plan it compiles to is the same)")
    changes = input_changes(inputs, plan)
    if meaning and changes:
        changes.append("in the recipe now, " + "; ".join(meaning))
    if not changes:
        rep.line("inputs              recipe, data and model unchanged since the plan was made")
        return
    if allow_changed:
        for change in changes:
            rep.line(f"warning: {change} since {target} was made (running anyway: --allow-changed)")
        return
    raise VtcError(error(
        "VT530", f"{target} no longer matches its inputs: " + "; ".join(changes), Span(str(target)),
        help=f"make the plan again (`{O.command('vtc', 'plan', plan['recipe']['file'], '-o', Path(target).name)}`) "
             f"and review it, or run this one anyway with `{O.command('vtc', 'run', target, '--allow-changed')}`"))


def allow_remote_code(plan: dict, rep: Reporter, *, plan_file: str | None = None, flag: bool = False,
                      again: str = "") -> None:
    """Code that comes with the model runs only when the recipe said `with trust_remote_code` (the plan's
    model.trust_remote_code) and, for a plan read from a file (``plan_file``: a saved plan, a run's plan.json for
    --resume or `vtc ask`), when the command line says --trust-remote-code as well (``flag``): a plan file is easy to
    edit, and the code of a model folder runs with the user's rights and tokens. Refused: VT508. Allowed: a warning
    line, among the run's first, naming where the code comes from. ``again``: the command to give in the help."""
    if not plan["model"]["trust_remote_code"]:
        return
    source = remote_code_source(plan)
    if plan_file is not None and not flag:
        raise VtcError(error(
            "VT508", f"{plan_file} lets the model run its own Python code (trust_remote_code), from {source}; a "
            "plan file alone cannot allow that", Span(str(plan_file)),
            help="only if you trust the model's authors and whoever wrote this plan: add `--trust-remote-code`"
                 + (f" (`{again}`)" if again else "") + "; otherwise make the plan again from a recipe without "
                 "`with trust_remote_code`"))
    why = "--trust-remote-code" if plan_file is not None else "the recipe's `with trust_remote_code`"
    rep.line(f"warning: the model's own Python code will run on this machine (trust_remote_code, allowed by {why}): "
             f"{source}")


def check_runs_folder(plan: dict, runs_dir: str | None, plan_file: str | None = None) -> Path:
    """The folder the run folder goes into (``runs_dir`` from --runs-dir, else the plan's outputs.dir), checked
    before any work: not a dangerous place (VT537: vtc.plans.runs_folder_problem, the rule of the compiler's VT265)
    and writable (VT538: the nearest folder that exists is a folder this process can write into)."""
    from vtc.plans import runs_folder_problem
    from vtc.runtime.backends.base import plan_span

    folder = Path(os.path.expanduser(runs_dir)) if runs_dir else outputs_dir(plan)
    why = runs_folder_problem(str(folder))
    if why is not None:
        given = f"--runs-dir {runs_dir}" if runs_dir else f"the plan's outputs.dir, {plan['outputs']['dir']}"
        where = Span(str(folder)) if runs_dir else Span(plan_file) if plan_file else plan_span(plan, "/outputs/dir")
        raise VtcError(error(
            "VT537", f"run folders cannot go into {folder} ({given}): {why}", where,
            help="give a folder of their own: " + ("`--runs-dir ./runs/xray`" if runs_dir else
                                                   "`save to ./runs/xray` in the recipe, or `--runs-dir ./runs/xray`")
                 + " (an empty or new folder, or one that already holds run-NNN folders)"))
    unwritable = _unwritable(folder)
    if unwritable:
        raise VtcError(error("VT538", f"cannot create run folders in {folder}: {unwritable}", Span(str(folder)),
                             help="make it writable, or put runs elsewhere with `--runs-dir`"))
    return folder


def _unwritable(folder: Path) -> str | None:
    """Why this process cannot create or change entries in ``folder`` (or, while it does not exist yet, in the
    nearest folder above it that does), or None. A read-only file system counts for root too."""
    here = Path(os.path.abspath(folder))
    while not os.path.lexists(here) and here.parent != here:
        here = here.parent
    if not here.is_dir():
        return f"{here} is a file, not a folder"
    if not os.access(here, os.W_OK | os.X_OK):
        return f"{here} is read-only for this process"
    return None


def read_manifest(folder: Path) -> dict | None:
    """A run folder's manifest.json (a regular file of at most 16 MB holding a JSON object), or None."""
    from vtc.confine import Refused, read_confined

    try:
        manifest = json.loads(read_confined(folder / "manifest.json", None, 16 * 2**20).decode("utf-8"))
    except (Refused, ValueError, RecursionError):
        return None
    return manifest if isinstance(manifest, dict) else None




def plan_differences(saved: dict, now: dict, shown: int = 3) -> list[str]:
    """What differs between two plans in the values that decide a run (JSON pointer: the value now, was), the first
    ``shown`` of them; [] when they would run the same."""
    out: list[str] = []

    def walk(a, b, pointer: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if pointer == "" and key in NOT_MEANING:
                    continue
                walk(a.get(key), b.get(key), f"{pointer}/{key}")
        elif a != b:
            out.append(f"{pointer or '/'} is {_value(b)} (the plan has {_value(a)})")

    walk(saved, now, "")
    # Derived from the others (the estimates, the memory table of the batch's split): those say more.
    out.sort(key=lambda text: text.startswith(("/estimates/", "/training/batching/memory_gib")))
    return out[:shown] + ([f"{len(out) - shown} more"] if len(out) > shown else [])


def _value(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:59] + "…"


def resumable(folder: Path, allow_changed: bool, rep: Reporter) -> Resume:
    """A run folder that `vtc run --resume` can continue (VT531 otherwise), whose data and model are those it
    started with (VT532 otherwise, unless ``allow_changed``)."""
    from vtc.lockfile import model_fingerprint

    where = Span(str(folder))
    with rep.stage("read run") as st:
        if not folder.is_dir():
            raise VtcError(error("VT531", f"run folder not found: {folder}", where, help="give the folder that the "
                                 "interrupted run printed, e.g. runs/xray/run-003.interrupted"))
        state = O.state_of(folder)
        if state is None or not (folder / "plan.json").is_file() or not (folder / "manifest.json").is_file():
            raise VtcError(error("VT531", f"{folder} is not a vtc run folder (run-NNN with plan.json and "
                                 "manifest.json)", where, help="give the folder that the interrupted run printed"))
        if state == "finished":
            raise VtcError(error("VT531", f"{folder.name} finished already; there is nothing to resume", where,
                                 help=f"use it (`{O.command('vtc', 'ask', shown(folder))} <image>`), or start a new "
                                      "run with `vtc run`"))
        plan = read_plan(folder / "plan.json")
        manifest = read_manifest(folder)
        if manifest is None:
            raise VtcError(error("VT531", f"cannot read {folder / 'manifest.json'}: it is not a run's manifest "
                                 "(a JSON object of at most 16 MB)", where,
                                 help="the folder is damaged; start a new run")) from None
        unwritable = _unwritable(folder)
        if unwritable:
            raise VtcError(error("VT538", f"cannot resume {folder.name}: {unwritable}", where,
                                 help="make the folder writable again, then resume"))
        if state == "running":
            pid, host = manifest.get("pid"), manifest.get("host")
            if host == platform.node() and isinstance(pid, int) and pid != os.getpid() and C.process_alive(pid):
                raise VtcError(error("VT531", f"{folder.name} is still running (process {pid})", where,
                                     help="wait for it, or stop it first (Ctrl-C in its terminal, or `kill "
                                          f"{pid}`), then resume"))
        ckpt = C.latest_checkpoint(folder)
        total = plan["training"]["steps"]
        of = f" of {total}" if total else ""
        st.detail = (f"{folder.name} ({state}), checkpoint at step {ckpt[0]}{of}" if ckpt
                     else f"{folder.name} ({state}), no checkpoint: training starts again")
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
            raise VtcError(error(
                "VT532", f"cannot resume {folder.name}: " + "; ".join(changes), where,
                help="resuming with other inputs would mix two trainings; start a new run, or resume anyway with "
                     f"`{C.resume_command(folder, shown(folder), '--allow-changed')}`"))
        for change in changes:
            rep.line(f"warning: {change} (resuming anyway: --allow-changed)")
        st.detail = "data and model as when the run started" if not changes else "changed (allowed)"
    return Resume(folder, plan, manifest, ckpt, data_fp)


def check_lock(plan: dict, data_fp: dict, rep: Reporter) -> dict | None:
    """Warn about every difference from recipe.vt.lock (when there is one); returned for the manifest."""
    from vtc.lockfile import lock_differences, lock_path, read_lock

    path = lock_path(plan)
    if not path.is_file():
        return None
    lock = read_lock(path)
    if lock is None:
        rep.line(f"warning: cannot read the lock file {path.name}; make it again with "
                 f"`{O.command('vtc', 'lock', plan['recipe']['file'])}`")
        return {"file": path.name, "differences": ["unreadable"]}
    diffs = lock_differences(lock, plan, data_fp["sources"])
    for d in diffs:
        rep.line(f"warning: {d} ({path.name})")
    if not diffs:
        rep.line(f"lock                matches {path.name}")
    return {"file": path.name, "differences": diffs}


# ---- the folder ------------------------------------------------------------------------------------------------

def start(plan: dict, target: str, runs_dir: str | None, be, reason: str, started: float, model_path: str,
          data_check, rep: Reporter, batch: dict | None = None, processes: dict | None = None) -> tuple[Path, dict]:
    """A new run-NNN.partial with plan.json, manifest.json, skipped_rows.jsonl, an empty metrics.jsonl and the
    checkpoints/ folder. ``batch``: how the run splits its batch (vtc.runtime.batching.Split.record), kept under
    "batch"; ``processes``: the run's processes (distributed.Single.record: world size, rank, host, pid, device of
    each), kept under "distributed". Only rank 0 of a distributed run calls it."""
    from vtc.lockfile import model_fingerprint

    data_fp = O.data_fingerprint(plan)
    lock = check_lock(plan, data_fp, rep)
    parent = Path(os.path.expanduser(runs_dir)) if runs_dir else outputs_dir(plan)
    try:
        run_dir = O.next_run_dir(parent)
    except OSError as exc:  # checked writable before the model loaded (check_runs_folder); no longer so
        doing = "creating the run folder"
        if F.is_disk_full(exc):
            raise VtcError(F.disk_full_error(parent, shown(parent), doing)) from None
        exc.filename = exc.filename if exc.filename is not None else str(parent)
        raise VtcError(F.write_error(parent, shown(parent), doing, exc)) from None
    train_rows, eval_rows = data_check.train, data_check.eval
    manifest = {
        "vtc_version": __version__,
        "state": "running",
        "pid": os.getpid(),  # with host: `vtc run --resume` refuses a folder whose run is still alive
        "host": platform.node(),
        "target": str(Path(target).resolve()),
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "backend": {"name": be.name, "reason": reason},
        "notes": list(be.notes),
        "device": O.device_info(),
        "libraries": O.library_versions(),
        "model": {"id": plan["model"]["id"], "source": plan["model"]["source"], "path": model_path,
                  "fingerprint": model_fingerprint(plan, content=False)},
        "data": {"fingerprint": data_fp, "train_rows": len(train_rows), "eval_rows": len(eval_rows),
                 "train": train_rows.description, "eval": eval_rows.description,
                 "skipped_rows": len(data_check.skipped), **answer_summary(train_rows, getattr(getattr(data_check, "report", None), "image_sizes", None))},
        "checkpoint_every_steps": C.every_steps(plan),
        "compile_cache": CC.manifest_record(be.name),  # where compiled code went, warm or cold (compile_cache.py)
        "batch": batch,  # a resumed run splits its batch the same way (batching.recorded)
        "distributed": processes,
        "timings": dict(rep.timings),
        "lock": lock,
    }
    try:
        O.write_json(run_dir / "plan.json", plan)
        O.write_json(run_dir / "manifest.json", manifest)
        data_check.write_skipped(run_dir)
        (run_dir / "metrics.jsonl").touch()
        (run_dir / C.CHECKPOINTS).mkdir(exist_ok=True)  # before the other processes' trainers save into it
    except OSError as exc:
        rep.current = "start"
        raise failed(run_dir, manifest, exc, rep, plan) from None
    return run_dir, manifest


# Training answers counted as classes (the run report's "Training rows per class") when they are this few at most.
MOST_CLASSES = 50
# The run report's training image sizes: this many most common sizes, and the longest sides counted in these
# bands (the lower edge of each; report.py labels them), which cover the 300-1000 px sweet spot and photographs.
MOST_SIZES = 12
SIDE_EDGES = (0, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


def answer_summary(rows, image_sizes: dict | None = None) -> dict:
    """What the run report shows of the training rows (the run folder keeps no copy of them): the number of rows per
    answer when the answers are a small set of short labels (classes), the number of rows per answer length in
    words, and the training images' sizes (``image_sizes``: (path, page) -> (width, height), from the data scan):
    the most common ones, and the longest sides counted by band."""
    from collections import Counter

    answers = [rows.answer(i) for i in range(len(rows))] if hasattr(rows, "answer") else []
    counts = Counter(a.strip() for a in answers)
    labels = len(counts) <= MOST_CLASSES and all(len(a.split()) <= 4 for a in counts)
    sizes: Counter = Counter()
    if image_sizes and hasattr(rows, "images"):
        for i in range(len(rows)):
            for path, page in zip(rows.images(i), rows.frames(i)):
                size = image_sizes.get((str(path), page))
                if size:
                    sizes[tuple(size)] += 1
    sides: Counter = Counter()
    for (w, h), k in sizes.items():
        sides[max(e for e in SIDE_EDGES if e <= max(w, h))] += k
    return {"train_answers": dict(counts.most_common()) if answers and labels else None,
            "train_answer_words": {str(n): k for n, k in sorted(Counter(len(a.split()) for a in answers).items())},
            "train_image_sizes": {f"{w}x{h}": k for (w, h), k in sizes.most_common(MOST_SIZES)} if sizes else None,
            "train_image_longest": {str(e): k for e, k in sorted(sides.items())} if sides else None}


def reopen(resume: Resume, be, reason: str, batch: dict | None = None,
           processes: dict | None = None) -> tuple[Path, dict, list[dict], str | None]:
    """An interrupted or failed run's folder, running again: (run_dir, manifest, the metrics logged up to its
    checkpoint, the checkpoint's folder name or None). ``batch``: the split it resumes with (another number of
    processes splits it again), ``processes``: its processes now (both kept in the manifest, and the number of
    processes in the resume's record)."""
    try:
        run_dir = O.move_run_dir(resume.folder, "running")
    except OSError as exc:
        raise VtcError(error("VT538", f"cannot resume {resume.folder.name}: renaming it failed ({exc.strerror or exc})",
                             Span(str(resume.folder)), help="make the folder writable again, then resume")) from None
    manifest = resume.manifest
    step = resume.checkpoint[0] if resume.checkpoint else 0
    checkpoint = resume.checkpoint[1].name if resume.checkpoint else None
    history = C.trim_metrics(run_dir / "metrics.jsonl", step)
    manifest.update(state="running", pid=os.getpid(), host=platform.node())
    manifest.pop("error", None)
    if batch is not None:
        manifest["batch"] = batch
    if processes is not None:
        manifest["distributed"] = processes
    manifest.setdefault("resumes", []).append({
        "at": now(), "from_step": step, "backend": {"name": be.name, "reason": reason},
        "processes": processes["world_size"] if processes else 1,
        "libraries": O.library_versions(), "device": O.device_info(),
        "compile_cache": CC.manifest_record(be.name)})
    O.write_json(run_dir / "manifest.json", manifest)
    (run_dir / C.CHECKPOINTS).mkdir(exist_ok=True)
    return run_dir, manifest, history, checkpoint


def outputs_dir(plan: dict) -> Path:
    d = Path(os.path.expanduser(plan["outputs"]["dir"]))
    return d if d.is_absolute() else Path(plan["base_dir"]) / d


def read_base_eval(run_dir: Path, n: int):
    """(answers, scores) of the base model saved by an interrupted run, or None."""
    from vtc.confine import Refused, read_confined

    try:  # a regular file of bounded size: a run folder may come from elsewhere
        saved = json.loads(read_confined(run_dir / BASE_EVAL, None, 256 * 2**20).decode("utf-8"))
    except (Refused, ValueError, RecursionError):
        return None
    if not isinstance(saved, dict):
        return None
    answers, scores = saved.get("answers"), saved.get("scores")
    if not isinstance(answers, list) or len(answers) != n or not isinstance(scores, dict):
        return None
    return answers, scores


def save_base_eval(run_dir: Path, answers: list[str], scores: dict) -> None:
    O.write_json(run_dir / BASE_EVAL, {"answers": answers, "scores": scores})


def finish(run_dir: Path, manifest: dict, be, rep: Reporter) -> Path:
    """Mark the run finished: the manifest, no checkpoints (they serve an unfinished run only; the adapter is the
    result and the optimizer state is ~3x its size), and the folder renamed run-NNN. The training's speed,
    utilisation and peak memory (throughput.py) go into the manifest and are said in plain words."""
    speed = _keep_throughput(run_dir, manifest)
    manifest.update(state="finished", finished=now(), timings=rep.timings, notes=list(be.notes))
    O.write_json(run_dir / "manifest.json", manifest)
    shutil.rmtree(run_dir / C.CHECKPOINTS, ignore_errors=True)
    (run_dir / BASE_EVAL).unlink(missing_ok=True)
    final = O.finish_run_dir(run_dir)
    rep.log_to(final / RUN_LOG)  # the folder moved: its log with it
    if speed is not None:
        rep.line()
        for line in T.lines(speed, rep.NAME_WIDTH):
            rep.line(line)
        slow = T.data_wait_warning(speed)
        if slow is not None:
            rep.line(slow.render())
    return final


def _keep_throughput(run_dir: Path, manifest: dict) -> dict | None:
    """The training's figures (throughput.keep), under the manifest's "throughput"."""
    speed = T.take(run_dir)
    if speed is not None:
        manifest["throughput"] = speed
    return speed


def interrupted(run_dir: Path, manifest: dict, name: str, rep: Reporter, plan: dict) -> C.RunInterrupted:
    """Mark the folder interrupted and say how to resume."""
    ckpt = C.latest_checkpoint(run_dir)
    _keep_throughput(run_dir, manifest)
    manifest.update(state="interrupted", finished=now(), timings=rep.timings,
                    interrupted={"signal": name, "checkpoint_step": ckpt[0] if ckpt else None})
    _try_write_manifest(run_dir, manifest)
    folder = _try_move(run_dir, "interrupted")
    rep.log_to(folder / RUN_LOG)
    command = C.resume_command(folder, shown(folder))
    rep.line()
    total = plan["training"]["steps"]
    of = f" of {total}" if total else ""
    if ckpt:
        rep.line(f"stopped by {name}: checkpoint saved at step {ckpt[0]}{of}")
    else:
        rep.line(f"stopped by {name} before the first checkpoint: resuming trains from the beginning")
    rep.line(f"run folder: {shown(folder)} (interrupted)")
    rep.line(f"resume with: {command}")
    return C.RunInterrupted(name, folder, ckpt[0] if ckpt else None, command)


# What the run was doing in each stage, for failure messages.
_DOING = {"train": "training", "evaluate base": "evaluating the base model",
          "evaluate fine-tuned": "evaluating the fine-tuned model", "save": "saving the results",
          "start": "writing the run folder's first files"}


def failed(run_dir: Path, manifest: dict, exc: BaseException, rep: Reporter, plan: dict,
           resumed_from: str | None = None, failure=None) -> BaseException:
    """Mark the folder failed (its manifest, its name) and return the exception to raise: a diagnostic for every
    failure the user can act on -- out of GPU memory (VT520), a full disk (VT522), a write the file system refuses
    (VT538), a checkpoint that cannot be read back (VT539, ``resumed_from``: the checkpoint's folder name), the
    model's own code (VT509), another process of a distributed run that failed or stopped answering (VT547,
    ``failure``: distributed.Failure, from the roll call) -- else ``exc`` itself (a bug in vtc or a library)."""
    from vtc.runtime.collator import carried, worker_died, worker_died_error

    exc = carried(exc)  # an error of a data-loading worker, as raised there
    disk_full = F.is_disk_full(exc)
    if disk_full:
        # What filled the disk is usually the checkpoint being written: without it there is room for the manifest.
        C.prune(run_dir / C.CHECKPOINTS)
    _keep_throughput(run_dir, manifest)
    manifest.update(state="failed", error=F.redact(f"{type(exc).__name__}: {exc}"), timings=rep.timings,
                    finished=now())
    _try_write_manifest(run_dir, manifest)
    folder = _try_move(run_dir, "failed")
    rep.log_to(folder / RUN_LOG)
    rep.log(f"error: {manifest['error']}")
    rep.line(f"run failed; its folder is {shown(folder)}")
    ckpt = C.latest_checkpoint(folder)
    again = C.resume_command(folder, shown(folder), *(["--trust-remote-code"] if plan["model"]["trust_remote_code"]
                                                      else []))
    resume = f"; then continue from its checkpoint at step {ckpt[0]} with `{again}`" if ckpt else ""
    doing = _DOING.get(rep.current or "", rep.current or "training")
    if failure is not None and not failure.own:  # a collective failed: another process is the cause
        from vtc.runtime.distributed import group

        manifest["error"] = F.redact(f"{manifest['error']} ({'; '.join(f'rank {r}: {w}' for r, w in failure.culprits)})")
        _try_write_manifest(folder, manifest)
        return VtcError(F.rank_failed_error(group(), failure, plan, doing, resume))
    if F.is_oom(exc):
        F.free_gpu_memory()
        return VtcError(F.oom_error(plan, doing, recipe_span(plan), resume))
    if disk_full:
        return VtcError(F.disk_full_error(folder, shown(folder), doing, resume))
    died = worker_died(exc)  # a data-loading worker killed (out of memory, shared memory full): VT542
    if died is not None:
        return VtcError(worker_died_error(died, doing, recipe_span(plan), resume))
    if resumed_from is not None and F.checkpoint_unreadable(exc):
        checkpoint = folder / C.CHECKPOINTS / resumed_from
        return VtcError(F.checkpoint_error(checkpoint, shown(checkpoint), exc, again))
    from vtc.runtime.model_path import model_code_error

    code = model_code_error(plan, exc, doing, manifest.get("model", {}).get("path"))
    if code is not None:
        return VtcError(code)
    refused = F.refused_write(exc, [run_dir, folder, run_dir.parent])
    if refused is not None:
        return VtcError(F.write_error(folder, shown(folder), doing, refused, resume))
    return exc


def _try_write_manifest(run_dir: Path, manifest: dict) -> None:
    """The manifest, written atomically; on a full disk (no room for a second copy) in place, which reuses the old
    file's space: a manifest that says "running" in a failed run's folder would be wrong."""
    path = run_dir / "manifest.json"
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
    try:
        O.write_text(path, text)
    except OSError:
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError:  # nothing more to try: the folder's name still says the state
            pass


def _try_move(run_dir: Path, state: str) -> Path:
    """The folder renamed for ``state``, or left where it is when the file system refuses (read-only)."""
    try:
        return O.move_run_dir(run_dir, state)
    except OSError:
        return run_dir


def shown(path: Path) -> str:
    """A path as the user should type it: relative to the working folder when it lies inside it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
