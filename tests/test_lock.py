"""`vtc lock recipe.vt` writes recipe.vt.lock (deterministic JSON, no heavy imports); `vtc run` warns about every
difference from it."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime_helpers import make_shapes
from vtc.cli import cli

RECIPE = "finetune all on {model}\nusing lora\nfrom ./shapes\ntrain for 2 steps\nresize 112\n"


def run_cli(*args):
    result = CliRunner().invoke(cli, list(args))
    return result, result.output + (getattr(result, "stderr", "") or "")


@pytest.fixture
def project(tmp_path):
    make_shapes(tmp_path / "shapes", n=4)
    (tmp_path / "r.vt").write_text(RECIPE.format(model="tiny-qwen2.5-vl"))
    return tmp_path


def test_lock_records_model_data_and_versions(project):
    from importlib import metadata

    result, text = run_cli("lock", str(project / "r.vt"))
    assert result.exit_code == 0, text
    path = project / "r.vt.lock"
    first = path.read_bytes()
    lock = json.loads(first)
    assert set(lock) == {"lock_version", "vtc", "recipe", "model", "data", "libraries"}
    assert lock["model"]["kind"] == "tiny" and lock["model"]["id"] == "tiny-qwen2.5-vl"
    assert isinstance(lock["model"]["version"], int)
    assert lock["data"]["train"]["files"] == 5 and len(lock["data"]["train"]["sha256"]) == 64
    assert set(lock["libraries"]) == {"torch", "transformers", "trl", "peft", "unsloth"}
    assert lock["libraries"]["torch"] == metadata.version("torch")
    try:
        expected = metadata.version("unsloth")
    except metadata.PackageNotFoundError:
        expected = "not installed"
    assert lock["libraries"]["unsloth"] == expected
    # Deterministic: the same inputs give the same bytes, and nothing machine-specific is in it.
    assert run_cli("lock", str(project / "r.vt"))[0].exit_code == 0
    assert path.read_bytes() == first
    assert str(project) not in first.decode()
    # The data's content, not just its names and sizes.
    meta = project / "shapes" / "metadata.jsonl"
    meta.write_text(meta.read_text().replace('"text": "', '"text": "X', 1)[:-1] + "\n")
    run_cli("lock", str(project / "r.vt"))
    assert json.loads(path.read_text())["data"]["train"]["sha256"] != lock["data"]["train"]["sha256"]


def test_lock_imports_no_training_library(project):
    code = textwrap.dedent(f"""
        import sys
        from click.testing import CliRunner
        from vtc.cli import cli
        r = CliRunner().invoke(cli, ["lock", {str(project / 'r.vt')!r}])
        assert r.exit_code == 0, r.output
        heavy = [m for m in ("torch", "transformers", "trl", "peft", "datasets", "unsloth") if m in sys.modules]
        assert not heavy, heavy
        print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stdout + res.stderr


def test_local_and_hub_models(tmp_path, monkeypatch):
    from vtc.lockfile import build_lock

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    (folder / "model.safetensors").write_bytes(b"weights")
    plan = {"base_dir": str(tmp_path), "recipe": {"file": "r.vt", "files": ["r.vt"]},
            "model": {"source": "local", "id": "./m"}, "data": {"train": None, "eval": None}}
    (tmp_path / "r.vt").write_text("x")
    one = build_lock(plan)["model"]
    assert one["kind"] == "local" and one["files"] == 2 and len(one["sha256"]) == 64
    (folder / "model.safetensors").write_bytes(b"WEIGHTS")
    assert build_lock(plan)["model"]["sha256"] != one["sha256"]

    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    plan["model"] = {"source": "hub", "id": "org/vlm"}
    assert build_lock(plan)["model"] == {"kind": "hub", "id": "org/vlm", "revision": "unresolved"}
    repo = tmp_path / "hf" / "models--org--vlm"
    (repo / "snapshots" / ("c" * 40)).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("c" * 40 + "\n")
    assert build_lock(plan)["model"]["revision"] == "c" * 40


def test_every_difference_from_the_lock_is_a_warning(project):
    from vtc.compiler.pipeline import compile_file
    from vtc.lockfile import lock_differences

    run_cli("lock", str(project / "r.vt"))
    path = project / "r.vt.lock"
    lock = json.loads(path.read_text())
    lock["libraries"]["torch"] = "0.0.1"
    lock["libraries"]["unsloth"] = "2099.1.1"
    lock["model"]["version"] = 0
    path.write_text(json.dumps(lock))
    (project / "shapes" / "img-000.png").unlink()
    (project / "r.vt").write_text(RECIPE.format(model="tiny-qwen2.5-vl") + "seed 7\n")
    plan = compile_file(str(project / "r.vt")).plan
    diffs = lock_differences(lock, plan)
    text = "\n".join(diffs)
    assert "the recipe differs from the locked one" in text
    assert "the train data differs from the locked one: ./shapes has 4 files (was 5)" in text
    assert "build 0" in text and "torch is " in text and "the lock has 0.0.1" in text
    assert "unsloth is " in text and "the lock has 2099.1.1" in text
    assert len(diffs) == 5


@pytest.mark.slow
def test_run_prints_the_lock_warnings(project):
    run_cli("lock", str(project / "r.vt"))
    path = project / "r.vt.lock"
    lock = json.loads(path.read_text())
    lock["libraries"]["transformers"] = "1.0.0"
    path.write_text(json.dumps(lock))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([str(Path(sys.executable).with_name("vtc")), "run", str(project / "r.vt")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "warning: transformers is " in res.stdout and "the lock has 1.0.0 (r.vt.lock)" in res.stdout
    [run] = list((project / "runs" / "r").iterdir())
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["lock"]["file"] == "r.vt.lock" and len(manifest["lock"]["differences"]) == 1


def test_lock_warns_when_a_hub_input_is_not_pinned(tmp_path, monkeypatch):
    """A Hub model or dataset that is not in the local cache is locked as "unresolved": VT533 says that nothing is
    pinned, at the recipe line that names it, and what to do; once it is cached, the revision is pinned, no warning."""
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    make_shapes(tmp_path / "shapes", n=2)
    recipe = tmp_path / "r.vt"
    recipe.write_text("finetune all on vtctest/qwen2.5-vl-small\nfrom vtctest/xrays\nevaluate on ./shapes\n")
    result, text = run_cli("lock", "--format", "json", str(recipe))
    assert result.exit_code == 0, text
    found = [d for d in json.loads(result.stdout) if d["code"] == "VT533"]
    assert [(d["severity"], d["span"]["line"]) for d in found] == [("warning", 1), ("warning", 2)]
    assert found[0]["message"].startswith("the lock pins no revision of model vtctest/qwen2.5-vl-small: it is not in "
                                          "the local Hugging Face cache")
    assert "hf download vtctest/qwen2.5-vl-small" in found[0]["help"] and "vtc lock" in found[0]["help"]
    assert found[1]["message"].startswith("the lock pins no revision of the train dataset vtctest/xrays")
    lock = json.loads((tmp_path / "r.vt.lock").read_text())
    assert lock["model"]["revision"] == "unresolved" and lock["data"]["train"]["revision"] == "unresolved"
    # Cached (as a download leaves them): pinned, and nothing to say.
    for kind, repo in (("models", "vtctest--qwen2.5-vl-small"), ("datasets", "vtctest--xrays")):
        folder = tmp_path / "hf" / f"{kind}--{repo}"
        (folder / "snapshots" / ("e" * 40)).mkdir(parents=True)
        (folder / "refs").mkdir()
        (folder / "refs" / "main").write_text("e" * 40)
    result, text = run_cli("lock", str(recipe))
    assert result.exit_code == 0 and "VT533" not in text, text
    lock = json.loads((tmp_path / "r.vt.lock").read_text())
    assert lock["model"]["revision"] == "e" * 40 and lock["data"]["train"]["revision"] == "e" * 40


def test_the_data_fingerprint_reads_no_fifo_device_or_proc_file(tmp_path):
    """A stranger's data folder with a FIFO and links into /proc and /dev: the fingerprint skips them (reading a
    FIFO blocks for ever, /dev/zero never ends) and counts the regular file only."""
    import os
    import threading

    from vtc.lockfile import folder_fingerprint

    (tmp_path / "a.txt").write_text("x")
    os.mkfifo(tmp_path / "pipe")
    os.symlink("/dev/zero", tmp_path / "zero")
    os.symlink("/proc/self/environ", tmp_path / "env.txt")
    result = {}
    worker = threading.Thread(target=lambda: result.update(folder_fingerprint(tmp_path, content=True)), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the fingerprint blocked on a FIFO or a device"
    assert result["files"] == 1 and result["bytes"] == 1


def test_a_comment_or_layout_change_is_not_a_difference_from_the_lock(project):
    """The lock records the recipe's bytes and its meaning (the plan's values that decide a run): a new comment
    or another layout keeps the meaning, so `vtc run` does not warn; a changed value does."""
    from vtc.compiler.pipeline import compile_file
    from vtc.lockfile import lock_differences

    run_cli("lock", str(project / "r.vt"))
    lock = json.loads((project / "r.vt.lock").read_text())
    assert len(lock["recipe"]["meaning"]) == 64
    text = RECIPE.format(model="tiny-qwen2.5-vl")
    (project / "r.vt").write_text("# reviewed by the radiology team\n" + text.replace("\n", "  \n", 1))
    assert lock_differences(lock, compile_file(str(project / "r.vt")).plan) == []
    (project / "r.vt").write_text(text + "seed 7\n")
    assert lock_differences(lock, compile_file(str(project / "r.vt")).plan) == [
        "the recipe differs from the locked one"]
    del lock["recipe"]["meaning"]  # a lock from before: bytes only
    (project / "r.vt").write_text("# a comment\n" + text)
    assert lock_differences(lock, compile_file(str(project / "r.vt")).plan) == [
        "the recipe differs from the locked one"]
