"""The `vtc` command line.

check, plan, explain, fmt and schema import only the compiler (lark, jsonschema, click); run and ask import the
training stack inside their own code path. Every command turns problems into rendered diagnostics and an exit
code, never a traceback.
"""

from __future__ import annotations

import os
import sys

import click

from vtc import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="vtc")
def cli() -> None:
    """vtc, the vision tuning compiler.

    Write a recipe (a .vt file), check it, see the plan, run it:

    \b
        vtc check xray.vt
        vtc explain xray.vt
        vtc run xray.vt
    """


def _emit(diagnostics, sources, fmt: str, stream=None) -> None:
    from vtc.diagnostics import render_all, to_json

    if fmt == "json":
        click.echo(to_json(diagnostics))
    elif diagnostics:
        click.echo(render_all(diagnostics, sources), err=True if stream is None else False)


FORMAT_OPTION = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="How to print problems: text for people, json for editors and CI.",
)


@cli.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@FORMAT_OPTION
@click.option("--data", is_flag=True, help="Also scan every data row (reads the images; slower).")
def check(files, fmt, data):
    """Check recipes: every problem, with file:line:col and what to write instead.

    Exit code 0 when there is no error (warnings allowed), 1 otherwise. Fit for a pre-commit hook.

    \b
    Examples:
        vtc check xray.vt
        vtc check recipes/*.vt --format json
    """
    from vtc.compiler.pipeline import compile_file

    diagnostics, sources, tables = [], {}, []
    errors = False
    for path in files:
        result = compile_file(path, base_ok=True)
        diagnostics.extend(result.diagnostics)
        sources.update(result.sources)
        if data and result.plan is not None:
            from vtc.runtime.validate import scan_data_rows  # imports only pillow

            report, split = scan_data_rows(result.plan)
            errors = errors or bool(report.errors)
            # Text shows the first few of each kind (the table counts them all); JSON lists every one.
            diagnostics.extend(report.shown() if fmt == "text" else report.diagnostics)
            tables.append(report.table(result.plan["data"].get("bad_rows") or "stop"))
            if not report.errors and split is not None:
                # Every row trains on its whole answer (VT430/VT431/VT564/VT565), measured with the model's
                # processor when it is on this machine (this imports transformers: with --data only).
                from vtc.diagnostics import VtcError
                from vtc.runtime.preview import token_check

                try:
                    found, line = token_check(result.plan, *split)
                except VtcError as exc:  # the tiny model cannot be built here (VT503)
                    found, line = list(exc.diagnostics), "token lengths: not checked"
                diagnostics.extend(found)
                tables.append(line)
    _emit(diagnostics, sources, fmt)
    if fmt == "text":
        for table in tables:
            click.echo(table, err=True)
    errors = errors or any(d.is_error for d in diagnostics)
    if fmt == "text" and not errors:
        click.echo(f"ok: {len(files)} recipe{'s' * (len(files) != 1)} checked", err=True)
    sys.exit(1 if errors else 0)


@cli.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON instead of a summary.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the plan (JSON) to this file.")
@FORMAT_OPTION
def plan(file, as_json, output, fmt):
    """Compile a recipe into its execution plan and show exactly what will run.

    \b
    Examples:
        vtc plan xray.vt                 # a readable summary, with where each value came from
        vtc plan xray.vt --json          # the plan itself
        vtc plan xray.vt -o plan.json    # save it; `vtc run plan.json` runs exactly that
    """
    from vtc.compiler.pipeline import compile_file
    from vtc.compiler.plan import summarize_plan
    from vtc.diagnostics import printable
    from vtc.plans import plan_to_json

    result = compile_file(file)
    _emit(result.diagnostics, result.sources, fmt)
    if result.plan is None:
        sys.exit(1)
    text = plan_to_json(result.plan)
    if output:
        # A saved plan records fingerprints of its inputs, so that `vtc run plan.json` can refuse it when the
        # recipe, the data or the model changed since (vtc.lockfile; the compiler itself does no such I/O).
        from vtc.lockfile import plan_inputs

        with open(output, "w", encoding="utf-8") as f:
            f.write(plan_to_json({**result.plan, "inputs": plan_inputs(result.plan)}))
        click.echo(f"plan written to {printable(output)}", err=True)
    if as_json:
        click.echo(text, nl=False)
    elif not output:
        click.echo(summarize_plan(result.plan))
        # What the data folders are, looked at now (the compiler itself reads no data; `vtc run` reads the same way).
        from vtc.runtime.sources import describe_sources

        click.echo("data sources (detected now)")
        for label, sentence in describe_sources(result.plan):  # names of files on disk: control characters escaped
            click.echo(printable(f"  {label:<24} {sentence}"))


@cli.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False))
@FORMAT_OPTION
@click.option("--data", is_flag=True, help="Also scan the data (as `vtc check --data` does) to count the rows, the "
                                           "training steps and the time they take.")
def explain(file, fmt, data):
    """Say in plain English what a recipe will do: what trains, on which data, how long, where results go,
    how much GPU memory.

    \b
    Examples:
        vtc explain xray.vt
        vtc explain xray.vt --data      # also: rows, steps, and an estimate of the training time
    """
    from vtc.compiler.explain import explain_plan
    from vtc.compiler.pipeline import compile_file

    result = compile_file(file)
    if result.plan is None:
        _emit(result.diagnostics, result.sources, fmt)
        sys.exit(1)
    diagnostics, rows = list(result.diagnostics), None
    if data:
        # The rows a run would train and evaluate on: the data check of a run (bad rows and the hold-out left out).
        from vtc.diagnostics import VtcError
        from vtc.runtime.validate import validate_for_run  # imports only pillow (and datasets for a Hub dataset)

        try:
            check = validate_for_run(result.plan)
        except VtcError as exc:
            _emit(diagnostics + exc.diagnostics, result.sources, fmt)
            click.echo(explain_plan(result.plan))
            click.echo("The data check found problems that stop a run (listed above), so vtc cannot count the "
                       "training steps yet.")
            sys.exit(1)
        diagnostics += check.report.shown() if fmt == "text" else check.report.diagnostics
        rows = {"train": len(check.train), "eval": len(check.eval)}
    _emit(diagnostics, result.sources, fmt)
    click.echo(explain_plan(result.plan, rows))


@cli.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--check", "check_only", is_flag=True, help="Change nothing; exit 1 if a file is not formatted.")
@FORMAT_OPTION
def fmt(files, check_only, fmt):
    """Rewrite recipes in the canonical layout (one clause a line, comments kept).

    \b
    Examples:
        vtc fmt xray.vt
        vtc fmt --check recipes/*.vt     # in CI or a pre-commit hook
    """
    from vtc.compiler.fmt import format_file
    from vtc.diagnostics import printable

    failed = False
    for path in files:
        formatted, diagnostics, sources = format_file(path)
        _emit(diagnostics, sources, fmt)
        if formatted is None:
            failed = True
            continue
        original = sources.get(path)
        if formatted == original:
            continue
        if check_only:
            click.echo(f"would reformat {printable(path)}", err=True)
            failed = True
        else:
            with open(path, "w", encoding="utf-8", newline="\n") as f:
                f.write(formatted)
            click.echo(f"reformatted {printable(path)}", err=True)
    sys.exit(1 if failed else 0)


@cli.command("diff", context_settings=CONTEXT)
@click.argument("sides", nargs=-1, required=True, metavar="OLD NEW")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True,
              help="text for people, markdown for a pull-request comment, json for CI.")
@click.option("--textconv", is_flag=True, help="Print the resolved view of one recipe (git's diff driver: "
                                               "`git config diff.vtc.textconv \"vtc diff --textconv\"`).")
def diff(sides, fmt, textconv):
    """What changes for the run between two recipes, plans or run folders (docs/diff.md).

    Exit code 0 when nothing changes for the run, 1 when something does, 2 when a side cannot be read or compiled.

    \b
    Examples:
        vtc diff old.vt new.vt
        vtc diff HEAD~1 recipe.vt                  # the file in HEAD~1 against the file now
        vtc diff main:recipes/x.vt recipes/x.vt --format markdown
        vtc diff runs/x/run-001 runs/x/run-002     # plans, recorded inputs and metrics
    """
    from vtc import diff as D
    from vtc.diagnostics import VtcError

    if textconv:
        if len(sides) != 1:
            raise click.UsageError("--textconv takes one recipe file")
        click.echo(D.textconv(sides[0]), nl=False)
        return  # exit 0 whatever the recipe holds: git stops the whole diff on a textconv that fails
    if len(sides) != 2:
        raise click.UsageError("give two sides: OLD NEW (recipes, plans, run folders, or REV:path)")
    try:
        old, new = D.sides(*sides)
    except VtcError as exc:
        _emit(exc.diagnostics, {}, "json" if fmt == "json" else "text")
        sys.exit(2)
    if old.plan is None or new.plan is None:  # the problems of the side(s) that do not compile, as `vtc check`
        failed = [side for side in (old, new) if side.plan is None]
        _emit([d for side in failed for d in side.diagnostics], {k: v for side in failed for k, v in
                                                                 side.sources.items()},
              "json" if fmt == "json" else "text")
        sys.exit(2)
    result = D.compare(old, new)
    if result["_problems"] and fmt != "json":  # a run folder's file that cannot be read (the recipes' own
        _emit(result["_problems"], {}, "text")   # warnings are `vtc check`'s job, not repeated here)
    render = {"text": D.render_text, "markdown": D.render_markdown, "json": D.render_json}[fmt]
    click.echo(render(result), nl=False)
    sys.exit(1 if D.differs(result) else 0)


@cli.command(context_settings=CONTEXT)
@click.option("--plan", "of_plan", is_flag=True, help="The schema of a plan (what `vtc plan --json` writes and "
              "`vtc run` reads) instead of a recipe document's.")
def schema(of_plan):
    """Print the JSON Schema that every compiled recipe document is validated against (or, with --plan, that
    every plan is validated against).

    \b
    Examples:
        vtc schema > vt.schema.json
        vtc schema --plan > plan.schema.json
    """
    if of_plan:
        from vtc.plans import plan_schema_text

        click.echo(plan_schema_text(), nl=False)
        return
    from vtc.compiler.validate import schema_text

    click.echo(schema_text(), nl=False)


@cli.group(context_settings=CONTEXT, invoke_without_command=True)
@click.pass_context
def cache(ctx):
    """Show what vtc keeps between runs (standardised images, compiled code), or clear it.

    \b
    Examples:
        vtc cache                  # where, how many, how big: images, clips, then compiled code by library versions
        vtc cache clear            # remove every cached image and clip (they are made again when needed)
        vtc cache clear clips      # only the clips (sampled, sized video frames)
        vtc cache clear compiled   # remove the compiled code (the next GPU run compiles again, ~1 min)
        vtc cache clear all        # all three
    """
    if ctx.invoked_subcommand is None:
        from vtc.runtime.cache import ImageCache

        c = ImageCache()
        entries, size = c.stats()
        click.echo(f"image cache: {c.root}")
        click.echo(f"  {entries:,} image{'s' * (entries != 1)}, {_bytes(size)} (cap {_bytes(c.limit)}; "
                   "set VTC_CACHE_MAX, e.g. 20G, to change it)")
        from vtc.runtime.cache import ClipCache

        clips = ClipCache()
        entries, size = clips.stats()
        click.echo(f"clip cache: {clips.root}")
        click.echo(f"  {entries:,} clip{'s' * (entries != 1)}, {_bytes(size)} (cap {_bytes(clips.limit)})")
        _show_compiled()


def _show_compiled() -> None:
    """The compile caches (vtc.runtime.compile_cache): one folder per set of library versions."""
    import time as _time

    from vtc.diagnostics import printable
    from vtc.runtime import compile_cache as CC

    caches = CC.list_caches()
    click.echo(f"compiled code (the Unsloth backend's warm start): {CC.compile_root()}")
    if not caches:
        click.echo("  none yet")
        return
    for c in caches:
        when = _time.strftime("%Y-%m-%d %H:%M", _time.localtime(c["last_used"])) if c["last_used"] else "never"
        tags = [t for t, on in (("these libraries", c["current"]), ("in use by a run now", c["in_use"])) if on]
        click.echo(f"  {c['key']}: {_bytes(c['bytes'])}, {c['files']:,} file{'s' * (c['files'] != 1)}, last used "
                   f"{when}" + (f" ({', '.join(tags)})" if tags else ""))
        click.echo(f"    {printable(CC.describe(c['made_of']), newlines=False)}")
        parts = ", ".join(f"{name} {_bytes(p['bytes'])}" for name, p in c["parts"].items())
        gpus = printable(", ".join(c["gpus"]), newlines=False) or "none yet"
        click.echo(f"    {parts}; GPUs: {gpus}")


@cache.command("clear", context_settings=CONTEXT)
@click.argument("what", type=click.Choice(["images", "clips", "compiled", "all"]), required=False)
def cache_clear(what):
    """Remove every cached image and clip (the default), only the images or the clips, the compiled code, or all.

    Compiled code that a running run uses is kept (said so)."""
    if what in (None, "images", "all"):
        from vtc.runtime.cache import ImageCache

        c = ImageCache()
        entries, size = c.clear()
        click.echo(f"removed {entries:,} cached image{'s' * (entries != 1)} ({_bytes(size)}) from {c.root}")
    if what in (None, "clips", "all"):
        from vtc.runtime.cache import ClipCache

        c = ClipCache()
        entries, size = c.clear()
        click.echo(f"removed {entries:,} cached clip{'s' * (entries != 1)} ({_bytes(size)}) from {c.root}")
    if what in ("compiled", "all"):
        from vtc.runtime import compile_cache as CC

        removed, size, kept = CC.clear()
        click.echo(f"removed {removed:,} compiled-code folder{'s' * (removed != 1)} ({_bytes(size)}) from "
                   f"{CC.compile_root()}")
        for folder in kept:
            click.echo(f"  kept {folder}: a running run uses it (or it could not be removed)")


def _bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"  # pragma: no cover


@cli.command(context_settings=CONTEXT)
@click.argument("target", type=click.Path(dir_okay=False), required=False)
@click.option(
    "--backend", type=click.Choice(["auto", "transformers", "unsloth"]), default="auto", show_default=True,
    help="auto: unsloth when CUDA is present and unsloth is installed, otherwise transformers.",
)
@click.option("--runs-dir", type=click.Path(file_okay=False), help="Put the run folder here instead of the plan's.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
              help="Continue an interrupted or failed run folder from its last checkpoint.")
@click.option("--allow-changed", is_flag=True,
              help="Run a saved plan (or resume a run) even though its recipe, data or model changed since (or it "
                   "records no fingerprints to compare).")
@click.option("--trust-remote-code", is_flag=True,
              help="A saved plan (or a resumed run's plan) says trust_remote_code: let the model's own Python code "
                   "run. A recipe's `with trust_remote_code` needs no flag; a plan file does.")
@click.option("--gpus", metavar="N|all",
              help="Processes on this machine, one per GPU: a number, or all (one for every visible GPU). Default: "
                   "the recipe's `gpus` (1: this process alone). Without CUDA, N CPU processes (for testing).")
@click.option("--nodes", type=int, metavar="N", help="Machines taking part (each runs the same command with its own "
                                                     "--node-rank).")
@click.option("--node-rank", type=int, metavar="R", help="This machine's number, 0 to N-1 (0: the one --master names).")
@click.option("--master", metavar="ADDR:PORT", help="Where the machines meet: node rank 0's address and a free port.")
@FORMAT_OPTION
def run(target, backend, runs_dir, resume_dir, allow_changed, trust_remote_code, gpus, nodes, node_rank, master, fmt):
    """Train, evaluate and save: a recipe (.vt) or a saved plan (.json), end to end.

    Each run gets a new folder (adapter, plan.json, manifest.json, metrics.jsonl, eval.json, loss.png,
    predictions.jsonl, report.html: the run in one page for a browser, run.log: everything printed, also when the output was closed, as by `| head`). Ctrl-C (or SIGTERM) finishes the current step, saves a checkpoint and prints the command
    that resumes.

    With `--gpus N` (or the recipe's `gpus N`) it starts N processes through torchrun, one per GPU, training
    together (data parallel; docs/distributed.md); `--nodes`, `--node-rank` and `--master` spread them over
    several machines.

    \b
    Examples:
        vtc run recipes/demo-shapes.vt
        vtc run plan.json --backend transformers
        vtc run --resume runs/demo-shapes/run-003.interrupted
        vtc run xray.vt --gpus 4
        vtc run xray.vt --gpus all --nodes 2 --node-rank 0 --master 10.0.0.1:29500
    """
    from vtc.runtime import distributed as D

    if (target is None) == (resume_dir is None):
        raise click.UsageError("give a recipe or plan to run, or `--resume RUN_DIR` (not both)")
    # A process that joined a process group (several under torchrun), at its end: everything is written and closed
    # (run.log and metrics.jsonl are closed after each write, the run folder's files written whole); the process
    # leaves without the interpreter's finalisation, where gloo's worker threads, still holding tensors of the
    # process group that the DDP-wrapped model keeps alive, take the GIL of an interpreter being torn down and abort
    # the process (SIGABRT, "terminate called without an active exception": pytorch/pytorch PR #179291), which
    # torchrun would report as a failure after a finished run. A Python exception other than SystemExit still goes
    # the usual way (torchrun names it).
    try:
        _run(target, backend, runs_dir, resume_dir, allow_changed, trust_remote_code, gpus, nodes, node_rank, master,
             fmt)
    except SystemExit as exc:
        if D.made_process_groups():
            _leave(exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1))
        raise
    if D.made_process_groups():
        _leave(0)


def _leave(code: int) -> None:
    """Flush what is buffered (stdout, stderr, logging) and end the process now, with ``code``."""
    import logging

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed under us (`| head`): nothing left to say
            pass
    logging.shutdown()
    os._exit(code)


def _run(target, backend, runs_dir, resume_dir, allow_changed, trust_remote_code, gpus, nodes, node_rank, master, fmt):
    from vtc.diagnostics import VtcError
    from vtc.runtime.checkpoints import RunInterrupted  # light: no torch
    from vtc.runtime.distributed import under_launcher

    try:
        from vtc.commands import plan_of
        from vtc.runtime import launch as LA
        from vtc.runtime.backends.base import plan_span

        # Read (or compile) the plan once, for its `gpus`: one process on one machine runs here, as always; more
        # are started through torchrun, each running this command without the launch options.
        plan, compiled = plan_of(target, resume_dir)
        span = plan_span(plan, "/hardware/gpus") if plan is not None else None
        launch, notes = LA.decide(gpus, plan, nodes, node_rank, master, span=span)
        _emit(notes, {}, fmt)
        if launch is not None:
            command = LA.run_command(target, resume_dir, backend=backend, runs_dir=runs_dir,
                                     allow_changed=allow_changed, trust_remote_code=trust_remote_code, fmt=fmt)
            sys.exit(LA.start(launch, command, plan))
        if resume_dir is not None:
            from vtc.commands import resume

            resume(resume_dir, backend=backend, allow_changed=allow_changed, trust_remote_code=trust_remote_code)
        else:
            from vtc.commands import run_target

            run_target(target, backend=backend, runs_dir=runs_dir, allow_changed=allow_changed,
                       trust_remote_code=trust_remote_code, compiled=compiled)
    except VtcError as exc:
        _emit(exc.diagnostics, getattr(exc, "sources", {}), fmt)
        sys.exit(1)
    except RunInterrupted as exc:  # the run printed where it stopped and the command that resumes it
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if under_launcher():  # a process torchrun started: its parent names it (VT557) from the error file
            from vtc.runtime.launch import record_error

            record_error(exc)
        raise


@cli.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--rows", "n_rows", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many training rows to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON (segments, counts) instead of text.")
@FORMAT_OPTION
def preview(file, n_rows, as_json, fmt):
    """Show the first training rows exactly as the model will see them.

    The chat text the model reads, each image as one marker with its token count, and every token marked by
    whether it is trained (green, or between ⟦ ⟧ without colours or with NO_COLOR); per row the number of trained
    tokens and whether `max length` cuts the answer. Exit code 1 when a shown row would stop `vtc run`.

    \b
    Examples:
        vtc preview xray.vt
        vtc preview xray.vt --rows 10
    """
    import json

    from vtc.compiler.pipeline import compile_file
    from vtc.diagnostics import VtcError

    result = compile_file(file)
    if result.plan is None or result.diagnostics:
        _emit(result.diagnostics, result.sources, fmt)
    if result.plan is None:
        sys.exit(1)
    try:
        from vtc.runtime.preview import preview_plan, render_text, use_color

        previews = preview_plan(result.plan, n_rows)
    except VtcError as exc:
        exc_sources = getattr(exc, "sources", None) or result.sources
        _emit(exc.diagnostics, exc_sources, fmt)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(previews, ensure_ascii=False, indent=1))
    else:
        click.echo(render_text(previews, use_color(sys.stdout)))
    sys.exit(1 if any(p["problem"] for p in previews) else 0)


@cli.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the lock here (default FILE.lock).")
@FORMAT_OPTION
def lock(file, output, fmt):
    """Write FILE.lock for version control: the resolved model, the data's content fingerprint, and the versions
    of torch, transformers, trl, peft and unsloth. `vtc run` then warns about every difference.

    \b
    Example:
        vtc lock xray.vt        # writes xray.vt.lock
    """
    from vtc.compiler.pipeline import compile_file
    from vtc.lockfile import build_lock, lock_path, lock_text, unpinned

    result = compile_file(file)
    if result.plan is None:
        _emit(result.diagnostics, result.sources, fmt)
        sys.exit(1)
    path = output or str(lock_path(result.plan))
    lock_data = build_lock(result.plan)
    _emit(list(result.diagnostics) + unpinned(lock_data, result.plan), result.sources, fmt)  # VT533: not pinned
    try:
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(lock_text(lock_data))
    except OSError as exc:
        from vtc.diagnostics import Span, error

        _emit([error("VT538", f"cannot write the lock file {path}: {exc.strerror or exc}", Span(str(path)),
                     help="give a file in a folder that exists and that you can write to (`-o xray.vt.lock`)")],
              {}, fmt)
        sys.exit(1)
    model = lock_data["model"]
    what = model.get("revision") or model.get("sha256") or "?"
    click.echo(f"lock written to {path}: model {model.get('id') or model.get('path')} ({what}), "
               f"{sum(d.get('files', 0) for d in lock_data['data'].values())} data files", err=True)


@cli.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("image", type=click.Path())
@click.argument("question", required=False)
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="For a folder of images: write answers here (.jsonl or .csv).")
@click.option("--backend", type=click.Choice(["auto", "transformers", "unsloth"]), default="auto", show_default=True)
@click.option("--trust-remote-code", is_flag=True,
              help="The run's plan says trust_remote_code: let the model's own Python code run.")
@FORMAT_OPTION
def ask(run_dir, image, question, output, backend, trust_remote_code, fmt):
    """Ask a trained model about an image (or every image in a folder).

    The question defaults to the recipe's instruction. A folder's answers are written as they are made; an image
    that cannot be read gets a row with its `error` and the others are still answered (exit 1 only when no image
    could be answered).

    \b
    Examples:
        vtc ask runs/demo-shapes/run-001 circle.png
        vtc ask runs/demo-shapes/run-001 circle.png "What colour is the shape?"
        vtc ask runs/demo-shapes/run-001 ./new-images -o answers.csv
    """
    from vtc.diagnostics import VtcError

    try:
        from vtc.runtime.ask import ask_command

        ask_command(run_dir, image, question, output=output, backend=backend, trust_remote_code=trust_remote_code)
    except VtcError as exc:
        _emit(exc.diagnostics, getattr(exc, "sources", {}), fmt)
        sys.exit(1)


@cli.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path())
@click.option("--review", type=click.Path(dir_okay=False),
              help="Also write the worst evaluation rows to this CSV file, for an expert to correct.")
@click.option("--worst", type=click.IntRange(min=1), default=50, show_default=True,
              help="How many rows --review writes.")
@FORMAT_OPTION
def report(run_dir, review, worst, fmt):
    """Write report.html for a run (finished, failed or interrupted): one page that opens in any browser, offline,
    with the run in plain words, before and after, the loss curve, every evaluation row with its image, the data
    and the plan. `vtc run` writes it at the end of every run; this writes it again, or for a run that stopped.

    \b
    Examples:
        vtc report runs/demo-shapes/run-001
        vtc report runs/demo-shapes/run-001 --review review.csv --worst 100
    """
    from vtc.diagnostics import VtcError, printable

    try:
        from vtc.commands import report_run

        page, queue = report_run(run_dir, review, worst)
    except VtcError as exc:
        _emit(exc.diagnostics, getattr(exc, "sources", {}), fmt)
        sys.exit(1)
    click.echo(f"report written to {printable(str(page))} (opens in any browser)", err=True)
    if queue is not None:
        path, n = queue
        click.echo(f"{n} worst row{'s' * (n != 1)} written to {printable(str(path))}: correct the `expected` column "
                   "(docs/running.md, \"The run report\")", err=True)


@cli.command(context_settings=CONTEXT)
@click.option("--stdio", is_flag=True, help="Speak the protocol over stdin and stdout (the only transport, and the "
                                            "default).")
def lsp(stdio):
    """The language server for .vt files (LSP over stdio) for any editor: diagnostics as you type, completion,
    hover, go to an include, formatting, quick fixes (docs/editors.md). Needs the `lsp` extra."""
    from vtc.lsp import missing_server

    problem = missing_server()
    if problem is not None:
        _emit([problem], {}, "text")
        sys.exit(1)
    from vtc.lsp.server import serve

    serve()


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - a Ctrl-C outside a command body
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
