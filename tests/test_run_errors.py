"""Bad input to `vtc run` / `vtc ask`: a diagnostic naming the file or row, exit code 1, no traceback, and nothing
that looks like a finished run."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime_helpers import make_plan, make_shapes, write_plan
from vtc.cli import cli


def run_cli(*args):
    result = CliRunner().invoke(cli, list(args))
    text = result.output + (getattr(result, "stderr", "") or "")
    return result, text


def assert_refused(result, text, code_prefix, *words, runs: Path | None = None):
    assert result.exit_code == 1, text
    assert "Traceback" not in text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert f"error[{code_prefix}" in text, text
    for w in words:
        assert w in text, f"{w!r} not in:\n{text}"
    if runs is not None and runs.exists():
        finished = [p.name for p in runs.iterdir() if not p.name.endswith((".partial", ".failed"))]
        assert not finished, finished


@pytest.fixture
def shapes(tmp_path):
    return make_shapes(tmp_path / "shapes", n=6)


def plan_file(tmp_path, data, **kw):
    plan = make_plan(data, outputs_dir=tmp_path / "runs", steps=2, **kw)
    return write_plan(plan, tmp_path / "plan.json"), tmp_path / "runs"


def test_missing_data_folder(tmp_path):
    target, runs = plan_file(tmp_path, tmp_path / "no-such-folder")
    result, text = run_cli("run", str(target), "--allow-changed")
    assert_refused(result, text, "VT4", "no-such-folder", runs=runs)
    assert not runs.exists()


def test_empty_dataset(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "metadata.jsonl").write_text("", encoding="utf-8")
    target, runs = plan_file(tmp_path, empty)
    result, text = run_cli("run", str(target), "--allow-changed")
    assert_refused(result, text, "VT4", "metadata.jsonl", runs=runs)


def test_unreadable_image(tmp_path, shapes):
    (shapes / "img-002.png").write_bytes(b"this is not a png")
    target, runs = plan_file(tmp_path, shapes)
    result, text = run_cli("run", str(target), "--allow-changed")
    assert_refused(result, text, "VT4", "img-002.png", runs=runs)


def test_row_without_an_answer(tmp_path, shapes):
    lines = (shapes / "metadata.jsonl").read_text().splitlines()
    row = json.loads(lines[3])
    del row["text"]
    lines[3] = json.dumps(row)
    (shapes / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    target, runs = plan_file(tmp_path, shapes)
    result, text = run_cli("run", str(target), "--allow-changed")
    assert_refused(result, text, "VT4", "metadata.jsonl:4", runs=runs)


def test_text_only_model_folder(tmp_path, shapes):
    folder = tmp_path / "my-llm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    target, runs = plan_file(tmp_path, shapes, model=str(folder), responses_only=False)
    result, text = run_cli("run", str(target), "--allow-changed")
    assert_refused(result, text, "VT502", "not a vision-language model", "llama", runs=runs)


def test_missing_model_folder(tmp_path, shapes):
    target, runs = plan_file(tmp_path, shapes, model="./no-model-here", responses_only=False)
    result, text = run_cli("run", str(target), "--allow-changed")
    assert_refused(result, text, "VT501", "no-model-here", runs=runs)


def test_hub_model_offline_and_not_cached(tmp_path, shapes, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    target, runs = plan_file(tmp_path, shapes, model="vtc-test/not-a-cached-model", responses_only=False)
    result, text = run_cli("run", str(target), "--allow-changed")
    assert_refused(result, text, "VT503", "not in the local Hugging Face cache and there is no network", runs=runs)


def test_qlora_without_a_gpu(tmp_path, shapes):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: qlora is allowed")
    target, runs = plan_file(tmp_path, shapes, method="qlora")
    result, text = run_cli("run", str(target), "--allow-changed")
    assert_refused(result, text, "VT504", "CUDA GPU", "using lora", runs=runs)


def test_not_a_plan(tmp_path):
    bad = tmp_path / "plan.json"
    bad.write_text('{"hello": 1}')
    result, text = run_cli("run", str(bad))
    assert_refused(result, text, "VT510", "not a vtc plan")
    bad.write_text("{not json")
    result, text = run_cli("run", str(bad))
    assert_refused(result, text, "VT510", "cannot read")


def test_recipe_errors_are_rendered_with_the_source(tmp_path):
    recipe = tmp_path / "bad.vt"
    recipe.write_text("finetune vision on tiny-qwen2.5-vl\nusing lora\nfrom ./nowhere\nbatch banana\n")
    result, text = run_cli("run", str(recipe))
    assert result.exit_code == 1 and "Traceback" not in text
    assert "bad.vt:" in text and "error[VT" in text


def test_ask_missing_run_folder(tmp_path):
    result, text = run_cli("ask", str(tmp_path / "runs" / "run-007"), str(tmp_path / "x.png"))
    assert_refused(result, text, "VT511", "run-007")


def test_ask_unfinished_run(tmp_path):
    partial = tmp_path / "run-001.partial"
    partial.mkdir()
    result, text = run_cli("ask", str(partial), str(tmp_path / "x.png"))
    assert_refused(result, text, "VT511", "has not finished: it is still running", f"vtc run --resume {partial}")


@pytest.mark.slow
def test_a_failure_while_training_leaves_a_failed_folder(tmp_path, shapes, monkeypatch):
    from vtc.runtime.backends.transformers_backend import TransformersBackend
    from vtc.commands import run_target

    def broken(self, *a, **kw):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(TransformersBackend, "trainer", broken)
    target, runs = plan_file(tmp_path, shapes, holdout=0.34)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_target(str(target), allow_changed=True)
    assert [p.name for p in runs.iterdir()] == ["run-001.failed"]
    manifest = json.loads((runs / "run-001.failed" / "manifest.json").read_text())
    assert manifest["state"] == "failed" and "simulated crash" in manifest["error"]
    assert not (runs / "run-001.failed" / "adapter").exists()


def test_bad_rows_skip_trains_on_the_rest_and_lists_what_it_left_out(tmp_path, shapes):
    (shapes / "img-002.png").write_bytes(b"this is not a png")
    plan = make_plan(shapes, outputs_dir=tmp_path / "runs", steps=2)
    plan["data"]["bad_rows"] = "skip"
    target = write_plan(plan, tmp_path / "plan.json")
    result, text = run_cli("run", str(target), "--allow-changed")
    assert result.exit_code == 0, text
    assert "Traceback" not in text and "1 bad rows left out" in text
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    skipped = [json.loads(line) for line in (run_dir / "skipped_rows.jsonl").read_text().splitlines()]
    assert [(s["code"], Path(s["file"]).name) for s in skipped] == [("VT411", "metadata.jsonl")]
    assert "img-002.png" in skipped[0]["reason"]
    assert json.loads((run_dir / "manifest.json").read_text())["data"]["skipped_rows"] == 1


def test_a_world_of_one_is_one_process(tmp_path, shapes, monkeypatch):
    """WORLD_SIZE=1: one process, as without it (vtc starts no process group); several processes under torchrun are
    tests/test_distributed.py's."""
    target, runs = plan_file(tmp_path, shapes)
    monkeypatch.setenv("WORLD_SIZE", "1")
    result, text = run_cli("run", str(target), "--allow-changed")
    assert result.exit_code == 0, text
    manifest = json.loads(next(runs.glob("run-*/manifest.json")).read_text())
    assert manifest["distributed"]["world_size"] == 1 and manifest["batch"]["processes"] == 1
