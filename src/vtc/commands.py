"""Where the compiler and the runtime meet: `vtc run recipe.vt` is compile, then run the plan; `vtc run plan.json`
is read (and check) the plan, then run it. The runtime never imports the compiler; this module imports both.

    run_target(target, backend=..., runs_dir=..., allow_changed=..., trust_remote_code=...) -> the finished run folder
    resume(resume_dir, backend=..., allow_changed=..., trust_remote_code=...) -> the run folder   `vtc run --resume`
    report_run(run_dir, review=None, worst=50) -> (report.html, (review.csv, rows) | None)   `vtc report`
    plan_of(target | None, resume_dir | None) -> (plan | None, compiled)   what `vtc run --gpus` reads to decide
                                                                          how many processes to start (launch.py)
"""

from __future__ import annotations

import time
from pathlib import Path

from vtc.diagnostics import VtcError, render_all


def plan_of(target: str | None, resume_dir: str | None = None) -> tuple[dict | None, object]:
    """The plan a `vtc run` would run, read without printing anything, for its ``hardware`` (how many processes to
    start: vtc.runtime.launch); and the compile result of a recipe, for run_target(compiled=...) to use instead of
    compiling again. The plan is None when it cannot be read: the run (in this process) then reports why."""
    if resume_dir is not None:
        from vtc.plans import read_plan

        try:
            return read_plan(Path(resume_dir) / "plan.json"), None
        except (VtcError, OSError):
            return None, None
    if target.lower().endswith(".json"):
        try:
            return _read_plan(target)[0], None
        except (VtcError, OSError):
            return None, None
    from vtc.compiler.pipeline import compile_file

    result = compile_file(target)
    return result.plan, result


def run_target(target: str, *, backend: str = "auto", runs_dir: str | None = None,
               allow_changed: bool = False, trust_remote_code: bool = False, compiled=None) -> Path:
    """Run a recipe (.vt) or a saved plan (.json) end to end and return the finished run folder.

    A saved plan is checked against the plan schema (VT510/VT514), and refused (VT530) when its recipe (what it
    means: the plan it compiles to, not its bytes), data or model changed since `vtc plan -o` made it, or when it
    records no fingerprints to compare, unless ``allow_changed``; and (VT508) when it lets the model run its own
    code (trust_remote_code) without ``trust_remote_code`` here too (--trust-remote-code: a plan file is easy to
    edit; a recipe's `with trust_remote_code` is enough for a recipe). Raises VtcError for problems (with
    ``.sources`` for rendering), checkpoints.RunInterrupted after Ctrl-C or SIGTERM. ``compiled``: the recipe's
    compile result when the caller has it already (plan_of), so that it is not compiled twice.
    """
    from vtc.runtime.progress import Reporter
    from vtc.runtime.run import run_plan

    rep = Reporter()
    started = time.time()
    saved_plan = target.lower().endswith(".json")
    with rep.stage("read plan" if saved_plan else "compile") as st:
        plan, sources = _read_plan(target) if saved_plan else _compile(target, rep, compiled)
        st.detail = f"{plan['method']} on {plan['model']['id']} ({plan['model']['family'] or '?'})"
    if saved_plan:
        from vtc.runtime.lifecycle import check_saved_plan

        check_saved_plan(plan, target, allow_changed, rep, recompile=lambda: _recompile(plan))
    from vtc.runtime import report

    report.remember(plan, explain=_explain, sources=sources)  # for report.html at the end of the run
    return run_plan(plan, target, rep=rep, started=started, sources=sources, backend=backend, runs_dir=runs_dir,
                    plan_file=target if saved_plan else None, trust_remote_code=trust_remote_code)


def report_run(run_dir: str, review: str | None = None, worst: int = 50) -> tuple:
    """`vtc report RUN_DIR [--review review.csv]`: report.html written again from the run folder's files (any run:
    finished, failed or interrupted), with `vtc explain`'s paragraph from its plan; and the ``worst`` worst rows as
    CSV when ``review``. Returns (report path, (review path, rows) or None). Raises VtcError (VT561-VT563)."""
    from vtc.runtime import report as R

    folder = R.check_run_folder(run_dir)
    plan = R.Run(folder).plan
    page = R.write_report(folder, explain=lambda counts: _explain(plan, counts), sources={})
    queue = R.write_review(folder, review, worst) if review else None
    return page, queue


def resume(resume_dir: str, **options) -> Path:
    """`vtc run --resume RUN_DIR`: runtime.run.resume_run, with `vtc explain`'s paragraph for its report."""
    from vtc.runtime import report
    from vtc.runtime.run import resume_run

    report.remember(None, explain=_explain)  # the resumed run's own plan, read from its folder
    return resume_run(resume_dir, **options)


def _explain(plan: dict, counts: dict) -> str:
    """`vtc explain`'s paragraph for a plan and the rows counted ({"train", "eval"})."""
    from vtc.compiler.explain import explain_plan

    return explain_plan(plan, counts)


def _read_plan(target: str) -> tuple[dict, dict]:
    from vtc.plans import read_plan

    return read_plan(target), {}


def _recompile(plan: dict) -> dict | None:
    """The plan that a saved plan's recipe compiles to now (None when it has errors): lifecycle.check_saved_plan
    compares it with the saved one, so that a comment or layout change to the recipe does not count as a change."""
    from vtc.compiler.pipeline import compile_file

    result = compile_file(str(Path(plan["base_dir"]) / plan["recipe"]["file"]))
    return result.plan


def _compile(target: str, rep, compiled=None) -> tuple[dict, dict]:
    """The plan of a recipe (``compiled``: its compile result, when made already); its warnings are printed, its
    errors raised (VtcError with the recipe texts)."""
    from vtc.compiler.pipeline import compile_file

    result = compiled if compiled is not None else compile_file(target)
    if result.plan is None:
        exc = VtcError(result.diagnostics)
        exc.sources = result.sources
        raise exc
    if result.diagnostics:  # warnings and notes only: a plan is made only when there is no error
        rep.line(render_all(result.diagnostics, result.sources))
    return result.plan, result.sources
