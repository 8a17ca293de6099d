"""Traps a new user hit in `vtc run` and `vtc ask` (issue 10): notes printed when they are made, a run that outlives
its closed output (`| head`), one parameter count in `vtc plan` and `vtc run`, the "before" column said to be an
untrained model, and `vtc ask` on an unfinished or missing run folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime_helpers import make_plan, make_shapes, shape_image, write_plan
from vtc.cli import cli


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ---- the run's notes, its log, the tables' headings -------------------------------------------------------------

@pytest.mark.slow
def test_notes_show_when_made_and_the_before_column_says_what_it_is(tmp_path, capsys):
    if _cuda():
        pytest.skip("the notes below are the CPU's")
    from vtc.commands import run_target

    train = make_shapes(tmp_path / "train", n=8, seed=1)
    val = make_shapes(tmp_path / "val", n=4, seed=2)
    plan = make_plan(train, eval_dir=val, steps=3, outputs_dir=tmp_path / "runs")
    assert plan["training"]["optimizer"] == "adamw_8bit"  # the default: bitsandbytes, CUDA only
    run = run_target(str(write_plan(plan, tmp_path / "plan.json")), allow_changed=True)  # no inputs: made here
    out = capsys.readouterr().out
    lines = out.splitlines()

    # Item 4: the notes the trainer's set-up makes are printed, before the first step, and kept in the manifest.
    optim = "note: optimizer adamw_8bit needs bitsandbytes on a CUDA GPU (no CUDA GPU): using adamw_torch"
    precision = "note: no CUDA GPU: training in 32-bit floating point on the CPU"
    assert optim in lines and precision in lines, out
    first_step = next(i for i, line in enumerate(lines) if line.startswith("  [") and "/3" in line)
    assert lines.index(optim) < first_step and lines.index(precision) < first_step
    assert lines.count(optim) == 1
    manifest = json.loads((run / "manifest.json").read_text())
    assert optim[len("note: "):] in manifest["notes"] and precision[len("note: "):] in manifest["notes"]

    # The "before" column of a tiny model is random text: the headings say so.
    assert "before = the untrained tiny model, whose random weights give random text; after = the fine-tuned " \
           "model" in out
    assert "examples (before = the untrained tiny model, whose random weights give random text)" in out

    # One parameter count: the plan's trainable and total figures, labelled.
    trainable = plan["estimates"]["trainable_parameters"]["total"]
    total = plan["estimates"]["total_parameters"]
    assert f"LoRA adapter: {trainable:,} trainable parameters, {100 * trainable / total:.2f}% of the model's " \
           f"{total:,}" in out

    # Everything printed is in the run's log, from the first line to the last.
    log = (run / "run.log").read_text()
    assert log.splitlines()[0].startswith("read plan") and optim in log and "finished: " in log
    assert log.splitlines() == lines


@pytest.mark.parametrize("model,method,parts", [
    ("tiny-qwen2.5-vl", "lora", None),
    ("tiny-qwen2.5-vl", "lora", {"vision": False, "language": True, "attention": True, "mlp": False}),
    ("tiny-qwen2.5-vl", "full", {"vision": True, "language": False, "attention": True, "mlp": True}),
    ("tiny-llama-3.2-vision", "lora", None),
    ("tiny-llama-3.2-vision", "full", None),
])
def test_the_run_counts_parameters_as_the_plan_does(tmp_path, model, method, parts):
    """`vtc plan` and the run's `load model` line give the same two numbers (the registry's sizes are the real
    module's): trainable parameters, and the model's own (without the LoRA adapter added to it)."""
    from vtc.runtime.backends.transformers_backend import TransformersBackend
    from vtc.runtime.model_path import load_model, resolve_model_path
    from vtc.runtime.run import parameter_counts

    plan = make_plan(make_shapes(tmp_path / "d", n=2), model=model, method=method, parts=parts)
    model_obj, _processor = load_model(TransformersBackend(), plan, resolve_model_path(plan))
    trainable = plan["estimates"]["trainable_parameters"]["total"]
    total = plan["estimates"]["total_parameters"]
    assert sum(p.numel() for p in model_obj.parameters() if p.requires_grad) == trainable
    line = parameter_counts(plan, model_obj)
    if method == "full":
        assert line == f"full fine-tuning: {trainable:,} of {total:,} parameters trainable " \
                       f"({100 * trainable / total:.2f}%)"
    else:
        assert line == f"LoRA adapter: {trainable:,} trainable parameters, {100 * trainable / total:.2f}% of the " \
                       f"model's {total:,}"


# ---- a closed output -------------------------------------------------------------------------------------------

class _ClosedPipe:
    """A stream whose reader has gone: every write raises BrokenPipeError."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, text):
        self.writes += 1
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")

    def isatty(self):
        return False


def test_the_reporter_survives_a_closed_output_and_keeps_its_lines_in_the_log(tmp_path, capsys):
    from vtc.runtime.progress import Reporter

    stream = _ClosedPipe()
    rep = Reporter(stream)
    rep.line("before the folder exists")
    with rep.stage("train") as st:
        st.detail = "3 steps"
    rep.log_to(tmp_path / "run.log")
    rep.line("after")
    assert rep.closed and stream.writes == 1  # tried once, then no more
    assert "the output was closed" in capsys.readouterr().err
    lines = (tmp_path / "run.log").read_text().splitlines()
    assert lines[0] == "before the folder exists" and lines[1].startswith("train                 3 steps")
    assert lines[2] == "after"


@pytest.mark.slow
def test_vtc_run_into_a_pipe_closed_early_finishes(tmp_path):
    """`vtc run plan.json | head -1`: the reader goes after the first line; the run goes on and finishes."""
    train = make_shapes(tmp_path / "train", n=8, seed=1)
    plan = make_plan(train, steps=3, outputs_dir=tmp_path / "runs")
    target = write_plan(plan, tmp_path / "plan.json")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    vtc = str(Path(sys.executable).with_name("vtc"))
    proc = subprocess.Popen([vtc, "run", str(target), "--allow-changed"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    first = proc.stdout.readline()
    proc.stdout.close()  # like `head -1` exiting
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err[-3000:]
    assert first.startswith(b"read plan")
    assert "BrokenPipeError" not in err and "Traceback" not in err and "Exception ignored" not in err
    assert "the output was closed" in err and "run.log" in err
    run = tmp_path / "runs" / "run-001"
    assert json.loads((run / "manifest.json").read_text())["state"] == "finished"
    log = (run / "run.log").read_text()
    assert "train                 3 logged steps" in log and "finished: " in log


# ---- `vtc ask` on a folder that is not a finished run -----------------------------------------------------------

def ask(*args):
    result = CliRunner().invoke(cli, ["ask", *map(str, args)])
    return result, result.output + (getattr(result, "stderr", "") or "")


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "circle.png"
    shape_image("red", "circle").save(path)
    return path


def _run_folder(parent: Path, name: str) -> Path:
    folder = parent / name
    folder.mkdir(parents=True)
    (folder / "plan.json").write_text("{}")
    (folder / "manifest.json").write_text(json.dumps({"state": "?", "error": "RuntimeError: boom"}))
    return folder


def test_ask_an_interrupted_run_says_how_to_resume(tmp_path, image):
    folder = _run_folder(tmp_path / "runs", "run-002.interrupted")
    result, text = ask(folder, image)
    assert result.exit_code == 1 and "Traceback" not in text
    assert "error[VT511]" in text and "was interrupted before it finished" in text
    assert f"vtc run --resume {folder}" in text and "run the recipe again" not in text


def test_ask_a_failed_or_running_run(tmp_path, image):
    failed = _run_folder(tmp_path / "runs", "run-003.failed")
    result, text = ask(failed, image)
    assert result.exit_code == 1 and "failed (RuntimeError: boom)" in text and "run the recipe again" in text
    running = _run_folder(tmp_path / "runs", "run-004.partial")
    result, text = ask(running, image)
    assert result.exit_code == 1 and "has not finished: it is still running" in text
    assert f"vtc run --resume {running}" in text


def test_ask_a_run_folder_that_does_not_exist(tmp_path, image):
    runs = tmp_path / "runs"
    _run_folder(runs, "run-001")
    _run_folder(runs, "run-002.interrupted")
    # A name that is not there: said so, with the runs that are there.
    result, text = ask(runs / "run-007", image)
    assert result.exit_code == 1 and "error[VT511]" in text and "run folder not found" in text
    assert "still running" not in text
    assert "run-001, run-002.interrupted" in text and f"vtc ask {runs / 'run-001'} <image>" in text
    # A `.partial` name that is not there is not "still running".
    result, text = ask(runs / "run-009.partial", image)
    assert "run folder not found" in text and "still running" not in text
    # The run's number under another state's name: that folder, and what to do with it.
    result, text = ask(runs / "run-002", image)
    assert "run folder not found" in text and "run-002.interrupted was interrupted" in text and "--resume" in text
    # Nothing near at all.
    result, text = ask(tmp_path / "elsewhere" / "run-001", image)
    assert result.exit_code == 1 and "run folder not found" in text and "`vtc run` printed at its end" in text


def test_ask_the_runs_folder_when_no_run_has_finished(tmp_path, image):
    runs = tmp_path / "runs"
    _run_folder(runs, "run-001.failed")
    newest = _run_folder(runs, "run-002.interrupted")
    result, text = ask(runs, image)
    assert result.exit_code == 1 and f"no finished run in {runs}" in text
    assert f"vtc run --resume {newest}" in text
