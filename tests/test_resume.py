"""Checkpoints and resume: a run stopped by SIGINT or SIGTERM saves a checkpoint, says how to resume, exits
non-zero; `vtc run --resume` continues it to the same final step, and its loss curve continues the interrupted one
(the same losses as a run that was never interrupted)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime_helpers import make_plan, make_shapes, write_plan
from vtc.cli import cli

TOKEN = "hf_plantedResumeToken0123456789abcdef"


def small_plan(tmp_path, steps=6, every=2, **kw):
    data = make_shapes(tmp_path / "shapes", n=8, seed=3)
    plan = make_plan(data, steps=steps, batch=2, holdout=0.25, outputs_dir=tmp_path / "runs", **kw)
    plan["checkpoint"] = {"every_steps": every}
    return write_plan(plan, tmp_path / "plan.json"), tmp_path / "runs"


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def signal_at_step(monkeypatch, step: int, sig=signal.SIGINT):
    """Send ``sig`` to this process when training reaches ``step`` (a real signal through vtc's handler)."""
    from transformers import TrainerCallback

    from vtc.runtime.backends.transformers_backend import TransformersBackend

    real = TransformersBackend.trainer

    class Kill(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == step - 1:
                os.kill(os.getpid(), sig)  # arrives while step `step` trains

    def trainer(self, *a, **kw):
        t = real(self, *a, **kw)
        t.add_callback(Kill())
        return t

    monkeypatch.setattr(TransformersBackend, "trainer", trainer)


@pytest.mark.slow
def test_interrupt_then_resume_continues_the_loss_curve(tmp_path, monkeypatch, capsys):
    from vtc.runtime.checkpoints import RunInterrupted
    from vtc.commands import run_target
    from vtc.runtime.run import resume_run

    target, runs = small_plan(tmp_path)
    reference = run_target(str(target), allow_changed=True)  # never interrupted: the curve to match
    ref = metrics(reference)
    assert [r["step"] for r in ref] == [1, 2, 3, 4, 5, 6]

    signal_at_step(monkeypatch, 3)
    with pytest.raises(RunInterrupted) as info:
        run_target(str(target), allow_changed=True)
    out = capsys.readouterr().out
    stopped = runs / "run-002.interrupted"
    assert info.value.exit_code == 130 and info.value.run_dir == stopped and info.value.step == 3
    assert f"resume with: vtc run --resume {stopped}" in out
    manifest = json.loads((stopped / "manifest.json").read_text())
    assert manifest["state"] == "interrupted" and manifest["interrupted"]["checkpoint_step"] == 3
    # The step that was training when the signal came finished, and was saved with its optimizer and RNG state.
    assert [r["step"] for r in metrics(stopped)] == [1, 2, 3]
    ckpt = stopped / "checkpoints" / "checkpoint-3"
    for name in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth",
                 "trainer_state.json", "vtc-complete.json"):
        assert (ckpt / name).is_file(), name
    assert (stopped / "checkpoints" / "checkpoint-2" / "vtc-complete.json").is_file()  # every 2 steps
    assert not (stopped / "adapter").exists()  # nothing that looks like a finished adapter

    monkeypatch.undo()
    final = resume_run(str(stopped))
    out = capsys.readouterr().out
    assert final == runs / "run-002" and not stopped.exists()
    assert "resuming from checkpoint-3" in out and "(from before the interruption)" in out
    resumed = metrics(final)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]  # the same final step, no step twice
    # The curve continues: steps 4-6 after the resume are the steps the uninterrupted run took.
    for a, b in zip(resumed, ref):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3, abs=1e-4), (a, b)
    assert all(b["elapsed"] >= a["elapsed"] for a, b in zip(resumed, resumed[1:]))
    manifest = json.loads((final / "manifest.json").read_text())
    assert manifest["state"] == "finished" and manifest["resumes"][0]["from_step"] == 3
    assert (final / "adapter" / "adapter_model.safetensors").is_file()
    assert not (final / "checkpoints").exists() and not (final / "eval-base.json").exists()


@pytest.mark.slow
def test_sigterm_from_outside_then_resume_from_the_printed_command(tmp_path):
    """A real `vtc run` process, sent SIGTERM by another process once metrics.jsonl shows step 2."""
    target, runs = small_plan(tmp_path, steps=16, every=50)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    vtc = str(Path(sys.executable).with_name("vtc"))
    proc = subprocess.Popen([vtc, "run", str(target), "--allow-changed"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    deadline = time.time() + 120
    sent = False
    while time.time() < deadline and proc.poll() is None:
        partial = runs / "run-001.partial" / "metrics.jsonl"
        if partial.is_file() and len(partial.read_text().splitlines()) >= 2:
            proc.send_signal(signal.SIGTERM)
            sent = True
            break
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    assert sent, out + err
    assert proc.returncode == 143, out[-2000:] + err[-2000:]
    assert "Traceback" not in out + err
    stopped = runs / "run-001.interrupted"
    assert stopped.is_dir() and not (stopped / "adapter").exists()
    step = json.loads((stopped / "manifest.json").read_text())["interrupted"]["checkpoint_step"]
    assert 2 <= step < 16
    assert [r["step"] for r in metrics(stopped)] == list(range(1, step + 1))
    command = next(line for line in out.splitlines() if line.startswith("resume with: "))
    assert command == "resume with: vtc run --resume runs/run-001.interrupted"  # relative to the working folder
    # No Hub token anywhere in what the run wrote (checkpoints included) or printed.
    for p in stopped.rglob("*"):
        if p.is_file():
            assert TOKEN.encode() not in p.read_bytes(), p
    assert TOKEN not in out + err

    res = subprocess.run([vtc, *command.removeprefix("resume with: vtc ").split()], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    final = runs / "run-001"
    assert [r["step"] for r in metrics(final)] == list(range(1, 17))
    assert json.loads((final / "manifest.json").read_text())["state"] == "finished"


def test_incomplete_checkpoints_are_ignored_and_pruned(tmp_path):
    from vtc.runtime import checkpoints as C

    folder = tmp_path / "run-001.interrupted" / "checkpoints"
    for step in (2, 4, 6, 8):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
    for step in (2, 4, 6):
        C.mark_complete(folder / f"checkpoint-{step}", step)
    # checkpoint-8 has no mark: the process died while saving it.
    assert C.latest_checkpoint(folder.parent) == (6, folder / "checkpoint-6")
    C.prune(folder, keep=2)
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-4", "checkpoint-6"]


def test_trim_metrics_drops_steps_after_the_checkpoint(tmp_path):
    from vtc.runtime.checkpoints import trim_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(1, 6)) + '{"step": 6, "lo')
    kept = trim_metrics(path, 3)
    assert [r["step"] for r in kept] == [1, 2, 3]
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 3]


def fake_run(tmp_path, name, state, fingerprint="0" * 64, **manifest):
    from runtime_helpers import make_plan as mk

    data = make_shapes(tmp_path / "shapes", n=3)
    folder = tmp_path / "runs" / name
    folder.mkdir(parents=True)
    write_plan(mk(data), folder / "plan.json")
    (folder / "manifest.json").write_text(json.dumps({"state": state, "data": {"fingerprint": {"sha256": fingerprint}},
                                                      **manifest}))
    return folder


def run_cli(*args):
    result = CliRunner().invoke(cli, list(args))
    return result, result.output + (getattr(result, "stderr", "") or "")


def test_resume_refuses_a_finished_run(tmp_path):
    folder = fake_run(tmp_path, "run-001", "finished")
    result, text = run_cli("run", "--resume", str(folder))
    assert result.exit_code == 1 and "error[VT531]" in text and "finished already" in text
    assert "Traceback" not in text


def test_resume_refuses_a_run_that_is_still_running(tmp_path):
    import platform

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        folder = fake_run(tmp_path, "run-001.partial", "running", pid=child.pid, host=platform.node())
        result, text = run_cli("run", "--resume", str(folder))
        assert result.exit_code == 1 and "error[VT531]" in text and f"still running (process {child.pid})" in text
    finally:
        child.kill()
        child.wait()


def test_resume_refuses_changed_data_unless_allowed(tmp_path):
    folder = fake_run(tmp_path, "run-001.interrupted", "interrupted")  # recorded fingerprint: zeros
    result, text = run_cli("run", "--resume", str(folder))
    assert result.exit_code == 1 and "error[VT532]" in text and "data changed" in text
    assert "--allow-changed" in text and folder.is_dir()


def test_resume_needs_a_run_folder(tmp_path):
    result, text = run_cli("run", "--resume", str(tmp_path / "nowhere"))
    assert result.exit_code == 1 and "error[VT531]" in text
    result, text = run_cli("run")
    assert result.exit_code == 2 and "--resume" in text
