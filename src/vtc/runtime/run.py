"""`vtc run`: a plan executed end to end, one printed line per stage.

    choose the backend -> scan the data -> load rows -> split the batch (batching.py) -> load the model and apply
    LoRA -> collator -> length check -> evaluate the base model -> train -> evaluate the fine-tuned model -> save

    run_plan(plan, target, ...) -> the finished run folder
    resume_run(run_dir, ...)    -> the same, for an interrupted or failed run, from its newest checkpoint

The runtime reads the plan (checked against its schema by whoever read or compiled it: vtc.commands) and never
the recipe. Everything that can be wrong with the data or the model is found before the run folder exists, and
raised as a VtcError (rendered by the CLI, exit 1). The folder's life (created, interrupted, failed, finished,
resumed) is lifecycle.py's; training is train.py's; checkpoints, Ctrl-C and SIGTERM are checkpoints.py's.

Under torchrun with several processes (distributed.py; docs/distributed.md) every process runs these same stages:
rank 0 checks the data while the others wait, then they read the rows from the warm image cache and confirm they
are the same; rank 0 alone checks the lengths and makes the run folder (the others get its path); all train their
share of each batch and answer their share of the evaluation rows; rank 0 alone prints, writes and finishes the
folder. One process (no torchrun, or one process) starts no process group and makes no collective.
"""

from __future__ import annotations

import time
from pathlib import Path

from vtc.diagnostics import VtcError, error, render_all
from vtc.runtime import batching as B
from vtc.runtime import checkpoints as C
from vtc.runtime import distributed as D
from vtc.runtime import lifecycle as L
from vtc.runtime import outputs as O
from vtc.runtime.backends.base import plan_span
from vtc.runtime.model_path import load_model, model_code_error, recipe_span, resolve_model_path
from vtc.runtime.progress import Reporter
from vtc.runtime.train import check_lengths, train

# Rows shown in the printed before/after examples.
EXAMPLES_SHOWN = 5


def run_plan(plan: dict, target: str, *, rep: Reporter, started: float, sources: dict | None = None,
             backend: str = "auto", runs_dir: str | None = None, plan_file: str | None = None,
             trust_remote_code: bool = False) -> Path:
    """Run a plan end to end and return the finished run folder. ``target`` is the recipe or plan file it came
    from (for the manifest), ``sources`` the recipe texts (for rendering data diagnostics). ``plan_file``: the plan
    was read from this file (not compiled from a recipe here), so the model's own code runs only with
    ``trust_remote_code`` (--trust-remote-code) as well as the plan's (VT508). Where the run folder goes (``runs_dir``
    or the plan's) is checked first (VT537, VT538). Raises VtcError for problems, checkpoints.RunInterrupted after
    Ctrl-C or SIGTERM.

    Under torchrun with several processes (distributed.py), every process runs this with the same plan: rank 0
    checks, prints and writes; the others wait for it, train their share and print only their own problems."""
    from vtc.runtime.backends.base import choose_backend

    with D.running(plan) as group:
        B.check_world(plan, group.size)  # VT548: the batch must divide over the processes

        def before():  # rank 0 alone, the others waiting: the checks before any work, and the data check
            L.allow_remote_code(plan, rep, plan_file=plan_file, flag=trust_remote_code,
                                again=O.command("vtc", "run", plan_file, "--trust-remote-code") if plan_file else "")
            L.check_runs_folder(plan, runs_dir, plan_file)
        be, reason = choose_backend(backend, plan=plan)  # before anything imports transformers (unsloth first)
        rep.line(reason)
        from vtc.runtime.progress import quiet_libraries

        with quiet_libraries(), B.scope():
            return _run(plan, sources or {}, target, be, reason, runs_dir, rep, started, before=before)


def resume_run(run_dir: str, *, backend: str = "auto", allow_changed: bool = False,
               trust_remote_code: bool = False) -> Path:
    """Continue an interrupted or failed run in its own folder, from its newest complete checkpoint, with the
    run's own plan.json, to the same final step. Refuses (VT531) a folder that is not a resumable run, (VT532)
    one whose data or model changed since it started, unless ``allow_changed``, and (VT508) a plan that lets the
    model run its own code, unless ``trust_remote_code`` (--trust-remote-code): the plan is read from a file.

    Under torchrun, with the number of processes the run had or another (docs/distributed.md, "Resume"): the batch
    per update stays, the split per process is made again for the new number (batching.resplit)."""
    from vtc.runtime.backends.base import choose_backend

    rep = Reporter()
    started = time.time()
    folder = Path(run_dir)
    # Under torchrun every process reads the run's own plan first: it says how the processes meet (the timeouts).
    own_plan = L.read_plan(folder / "plan.json") if D.world().distributed else None
    with D.running(own_plan) as group:
        def check():  # rank 0 alone: the folder, its inputs and the split it recorded
            resume = L.resumable(folder, allow_changed, rep)
            L.allow_remote_code(resume.plan, rep, plan_file=str(resume.folder / "plan.json"),
                                flag=trust_remote_code,
                                again=C.resume_command(resume.folder, L.shown(resume.folder), "--trust-remote-code"))
            B.recorded(resume.manifest, resume.plan, resume.folder)  # VT541: the split it started with, or none
            return resume

        resume = group.leader_first("resume", check, share=L.Resume.shared)
        if not group.leader:
            resume = L.Resume.from_shared(resume, own_plan)
        split = B.recorded(resume.manifest, resume.plan, resume.folder)
        B.check_world(resume.plan, group.size)
        if split.processes != group.size:  # another number of processes: the same batch, split again
            was = split.processes
            split = B.resplit(split, group.size)
            rep.line(f"note: the run had {was} process{'es' * (was != 1)}, this resume has {group.size}: "
                     f"{split.split_words()} (docs/distributed.md, \"Resume\")")
        be, reason = choose_backend(backend, plan=resume.plan)
        rep.line(reason)
        from vtc.runtime.progress import quiet_libraries

        with quiet_libraries(), B.scope():
            return _run(resume.plan, {}, resume.manifest.get("target") or str(resume.folder / "plan.json"), be,
                        reason, None, rep, started, resume=resume, split=split)


def _run(plan, sources, target, be, reason, runs_dir, rep: Reporter, started: float,
         resume: L.Resume | None = None, split: B.Split | None = None, before=None) -> Path:
    group = D.group()

    # Every row is checked (and its standardised image prepared into the cache) before any model loads. Under
    # `bad rows stop` (the default) any bad row stops here with every problem listed; under `bad rows skip` the bad
    # rows are left out and listed in the run folder's skipped_rows.jsonl. Under torchrun rank 0 checks while the
    # others wait; they then read the same rows with the image cache warm, and every process confirms that it sees
    # the same rows (VT546).
    with rep.stage("scan data") as st:
        from vtc.runtime.validate import validate_for_run

        def check_data():
            if before is not None:
                before()
            try:
                return validate_for_run(plan)
            except VtcError as exc:
                exc.sources = sources
                raise

        data_check = group.leader_first("data", check_data)
        if not group.leader:
            data_check = validate_for_run(plan)  # the cache is warm: no image is decoded again
        report = data_check.report
        if report.diagnostics:
            rep.line(render_all(report.shown(), sources))
            rep.line(report.table(plan["data"]["bad_rows"]))
        warnings = len(report.diagnostics)
        st.detail = (f"{len(data_check.skipped)} bad rows left out" if data_check.skipped else
                     f"{warnings} warning{'s' * (warnings != 1)}" if warnings else "no problems")

    with rep.stage("load rows") as st:
        train_rows, eval_rows = data_check.train, data_check.eval
        if len(train_rows) == 0:
            raise VtcError(error("VT402", f"no training rows in {train_rows.description}", recipe_span(plan),
                                 help="check the folder after `from`: it needs images and their answers"))
        D.same_rows(group, train_rows, eval_rows)  # VT546 when a process sees other rows
        st.detail = f"{len(train_rows)} train, {len(eval_rows)} eval ({train_rows.description})"

    # How the batch is split, decided before the model loads (the free memory is then the card's): the recipe's
    # pin or vtc's choice from the free memory (the least over the processes: every process splits alike);
    # resuming, ``split`` is what the run chose when it started (split again for another number of processes).
    split = split or B.choose(plan, be.name)
    B.use(split)
    rep.line(split.line())
    too_big = B.does_not_fit(split, plan_span(plan, "/training/batch"))
    if too_big is not None:
        rep.line(too_big.render())

    notes = Notes(be, rep)
    with rep.stage("load model") as st:
        model_path = resolve_model_path(plan)
        model, processor = load_model(be, plan, model_path)
        st.detail = f"{plan['model']['id']}, {parameter_counts(plan, model)}"
    notes.show()

    try:
        with rep.stage("collator") as st:
            collator = be.collator(plan, model, processor)
            st.detail = ("loss on answers only" if plan["training"]["responses_only"] else "loss on the whole text") \
                + f", max {plan['training']['max_length']} tokens"
        notes.show()

        def folder():  # rank 0 alone: the length check (the same rows everywhere), then the run folder
            with rep.stage("length check") as st:
                st.detail = check_lengths(plan, processor, collator, train_rows, eval_rows)
            if resume is None:
                run_dir, manifest = L.start(plan, target, runs_dir, be, reason, started, model_path, data_check, rep,
                                            batch=split.record(), processes=group.record())
                history, checkpoint = [], None
            else:
                run_dir, manifest, history, checkpoint = L.reopen(resume, be, reason, batch=split.record(),
                                                                  processes=group.record())
            return run_dir, manifest, history, checkpoint

        opened = group.leader_first("folder", folder, share=lambda r: {"run_dir": str(r[0]), "checkpoint": r[3]})
    except VtcError:
        raise
    except Exception as exc:  # the processor's own code (trust_remote_code) runs here too
        code = model_code_error(plan, exc, "preparing the first batches", model_path)
        if code is None:
            raise
        raise VtcError(code) from None
    if group.leader:
        run_dir, manifest, history, checkpoint = opened
        rep.log_to(run_dir / L.RUN_LOG)
        notes.keep_in(run_dir, manifest)
        rep.line(f"run folder: {L.shown(run_dir)}")
        if group.distributed:
            rep.line(f"processes: {group.size} ({D.describe(group)}); rank 0 prints and writes the run folder")
    else:  # the other processes write nothing there but their own part of each checkpoint (the trainer's)
        run_dir, manifest, history, checkpoint = Path(opened["run_dir"]), None, [], opened["checkpoint"]

    with C.StopSignals(rep.stream, distributed=group.distributed, prefix=group.prefix()) as stop:
        try:
            return _train_and_save(plan, be, model, processor, collator, train_rows, eval_rows, run_dir, rep,
                                   manifest, stop=stop, history=history, checkpoint=checkpoint, notes=notes)
        except KeyboardInterrupt:
            stop.shield()  # another signal now (torchrun's, the scheduler's) must not cut the folder's marking short
            name = stop.received or "SIGINT"
            if group.distributed:
                stop.exit_with(C.EXIT_CODES.get(name, 130))
            if not group.leader:
                group.barrier_quietly()  # rank 0 marks the folder; then every process exits alike
                raise C.RunInterrupted(name, run_dir, None, "") from None
            interrupted = L.interrupted(run_dir, manifest, name, rep, plan)
            group.barrier_quietly()
            raise interrupted from None
        except Exception as exc:
            stop.shield()
            if group.distributed:  # torchrun stops the others when one exits: each exits with its own status
                stop.exit_with(1)
            failure = group.failure(exc)  # one process: None; several: who failed, and why (the roll call)
            if not group.leader:
                raise D.other_rank_error(group, failure, exc, plan) from None
            raise L.failed(run_dir, manifest, exc, rep, plan, resumed_from=checkpoint, failure=failure) from None


def _train_and_save(plan, be, model, processor, collator, train_rows, eval_rows, run_dir: Path, rep: Reporter,
                    manifest: dict, *, stop: C.StopSignals | None = None, history: list[dict] | None = None,
                    checkpoint: str | None = None, notes: Notes | None = None) -> Path:
    from vtc.runtime import evaluate as E

    # Under torchrun every process answers its share of the evaluation rows and rank 0 scores them all; rank 0
    # alone writes the folder's files. The processes agree on a stop signal after every training step, and once
    # more after the evaluation of the fine-tuned model (a signal then stops them all before saving).
    group = D.group()
    leader = group.leader
    names = list(plan["evaluation"]["metrics"])
    n_eval = len(eval_rows)
    before = before_answers = None
    expected = E.expected_answers(eval_rows) if n_eval else []
    if n_eval:
        saved = L.read_base_eval(run_dir, n_eval) if leader else None
        if group.broadcast(saved is not None):  # a resumed run: the base model was evaluated before the interruption
            if leader:
                before_answers, before = saved
                rep.line(f"{'evaluate base':<{rep.NAME_WIDTH}}  {_scores(before)}  (from before the interruption)")
        else:
            with rep.stage("evaluate base") as st:
                before_answers = E.answer_rows(be, model, processor, eval_rows, plan)
                if leader:
                    before = E.score(names, before_answers, expected)
                    st.detail = _scores(before)
            if leader:
                L.save_base_eval(run_dir, before_answers, before)
    else:
        rep.line("evaluate base       skipped: no evaluation data (add `holdout 10%` or `evaluate on <folder>`)")

    with rep.stage("train", announce=True) as st:
        if checkpoint:
            rep.line(f"  resuming from {checkpoint}")
        history = train(be, plan, model, processor, train_rows, collator, run_dir, rep, stop=stop,
                        history=history, resume_from=checkpoint, on_notes=notes.show if notes else None,
                        on_retry=lambda split: _record_batch(run_dir, manifest, split))
        if stop is not None and C.agree(stop, group):  # (several processes: any of them)
            raise KeyboardInterrupt(stop.received)  # the step finished and its checkpoint is saved
        last = history[-1]["loss"] if history else float("nan")
        first = history[0]["loss"] if history else float("nan")
        st.detail = f"{len(history)} logged steps, loss {first:.4f} -> {last:.4f}"

    after = after_answers = None
    if n_eval:
        with rep.stage("evaluate fine-tuned") as st:
            after_answers = E.answer_rows(be, model, processor, eval_rows, plan)
            if leader:
                after = E.score(names, after_answers, expected)
                st.detail = _scores(after)
    if group.distributed and stop is not None and C.agree(stop, group):
        raise KeyboardInterrupt(stop.received)  # a signal after the last step: its checkpoint is saved
    if not leader:  # rank 0 saves the adapter, the exports and the report, and finishes the folder
        if getattr(be, "sharded_weights", lambda m: False)(model):
            _take_part_in_saving(be, model, processor, plan)
        return run_dir

    with rep.stage("save") as st:
        # Each saved folder is written under a temporary name and renamed when complete (outputs.atomic_dir).
        # Progress: one step a folder saved (the adapter or model, each export), then the results.
        name = "model" if plan["method"] == "full" else "adapter"
        exports = [e for e in plan["outputs"]["exports"] if e == "merged"]
        progress = rep.bar("saving", 2 + len(exports), "steps")  # closed with the stage
        with O.atomic_dir(run_dir / name) as tmp:
            be.save_adapter(model, processor, str(tmp))
            progress.update(1)
        saved = [name + "/"]
        if "merged" in exports:
            with O.atomic_dir(run_dir / "merged") as tmp:
                be.save_merged(model, processor, str(tmp))
            progress.update(1)
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
        progress.update(1)
        st.detail = ", ".join(saved)

    final = L.finish(run_dir, manifest, be, rep)
    from vtc.runtime.report import at_end

    if at_end(final, plan, rep, processor=processor, collator=collator, rows=train_rows) is not None:
        rep.line(f"report: {L.shown(final / 'report.html')} (opens in any browser)")
    if n_eval:
        before_is = O.before_meaning(plan)
        rep.line()
        rep.line(O.before_after_table(names, before, after, n_eval, "evaluation rows", before_is=before_is))
        rep.line()
        rep.line(O.examples_table(records[:EXAMPLES_SHOWN], before_is=before_is))
    rep.line()
    rep.line(f"finished: {L.shown(final)}")
    trust = ["--trust-remote-code"] if plan["model"]["trust_remote_code"] else []
    rep.line(f"  try it: {O.command('vtc', 'ask', L.shown(final))} <image>" + "".join(f" {w}" for w in trust))
    return final


def _take_part_in_saving(be, model, processor, plan) -> None:
    """A process other than rank 0 of a sharded model (FSDP2): gathering the whole weights for rank 0's saving is a
    collective, so it makes the same calls as rank 0, in the same order; it writes nothing (the backend returns)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        be.save_adapter(model, processor, tmp)
        if "merged" in plan["outputs"]["exports"]:
            be.save_merged(model, processor, tmp)


def _record_batch(run_dir: Path, manifest: dict, split) -> None:
    """The split the run trains with now (after the out-of-memory retry), in its manifest at once."""
    manifest["batch"] = split.record()
    O.write_json(run_dir / "manifest.json", manifest)


class Notes:
    """What the backend changed to run on this machine (an optimizer, a precision): each note printed once, when it
    is made (loading the model, making the collator, making the trainer), and kept in the manifest."""

    def __init__(self, be, rep: Reporter) -> None:
        self.be, self.rep = be, rep
        self.shown: set[str] = set()
        self.run_dir: Path | None = None
        self.manifest: dict | None = None

    def keep_in(self, run_dir: Path, manifest: dict) -> None:
        """From now on, a new note is also written into the run's manifest at once (an interrupted or failed run
        keeps it too)."""
        self.run_dir, self.manifest = run_dir, manifest
        self.show()

    def show(self) -> None:
        new = [note for note in self.be.notes if note not in self.shown]
        for note in new:
            self.shown.add(note)
            self.rep.line(f"note: {note}")
        if self.manifest is not None and self.manifest.get("notes") != list(self.be.notes):
            self.manifest["notes"] = list(self.be.notes)
            O.write_json(self.run_dir / "manifest.json", self.manifest)


def parameter_counts(plan: dict, model) -> str:
    """What trains, counted as `vtc plan` counts it: the model's own parameters (without the LoRA adapter that was
    added to it, so the total is the plan's `total_parameters`) and the trainable ones (the adapter's, for LoRA)."""
    trainable = own = 0
    for name, p in model.named_parameters():
        n = _numel(p)
        if "lora_" not in name:  # the adapter's own parameters are not the model's
            own += n
        if p.requires_grad:
            trainable += n
    pct = f"{100 * trainable / max(own, 1):.2f}%"
    if plan["method"] == "full":
        return f"full fine-tuning: {trainable:,} of {own:,} parameters trainable ({pct})"
    return f"LoRA adapter: {trainable:,} trainable parameters, {pct} of the model's {own:,}"


def _numel(p) -> int:
    """Elements of a parameter; a 4-bit (bitsandbytes) weight is packed two to a byte, its quant_state knows its
    real shape."""
    shape = getattr(getattr(p, "quant_state", None), "shape", None)
    if shape is not None:
        import math

        return math.prod(shape)
    return p.numel()


def _prediction_records(plan, rows, expected, before, after, names) -> list[dict]:
    from vtc.runtime import metrics as M

    question = plan["data"]["instruction"]
    # A conversation's question is its last user turn (rows.question), the recipe's `ask` otherwise.
    return [{"row": i, "origin": rows.origin(i).location, "images": [str(p) for p in rows.images(i)],
             "videos": [_clip_name(v) for v in rows.videos(i)],
             "question": rows.question(i) if hasattr(rows, "question") else question, "expected": expected[i],
             "before": before[i] if before is not None else None,
             "after": after[i], "after_scores": M.row_scores(names, after[i], expected[i])}
            for i in range(len(rows))]


def _clip_name(clip) -> str | list[str]:
    """A clip as predictions.jsonl records it: its file or frame folder, or its frame files (a clip given as a list)."""
    return [str(p) for p in clip] if isinstance(clip, tuple) else str(clip)


def _scores(scores: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" if k == "bleu" else f"{k} {100 * v:.1f}%" for k, v in scores.items())
