"""`vtc plan recipe.vt -o plan.json` then `vtc run plan.json`: exactly that plan runs, and it is refused, saying what
changed, when the recipe, the data or the model changed since the plan was made (`--allow-changed` overrides)."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime_helpers import make_shapes
from vtc.cli import cli

RECIPE = """finetune all on {model}
using lora
from ./shapes
train for 2 steps
batch 2
accumulate 1
optimizer adamw_torch
resize 112
"""


def run_cli(*args):
    result = CliRunner().invoke(cli, list(args))
    return result, result.output + (getattr(result, "stderr", "") or "")


@pytest.fixture
def project(tmp_path):
    make_shapes(tmp_path / "shapes", n=6)
    (tmp_path / "r.vt").write_text(RECIPE.format(model="tiny-qwen2.5-vl"))
    return tmp_path


def save_plan(project) -> Path:
    out = project / "plan.json"
    result, text = run_cli("plan", str(project / "r.vt"), "-o", str(out))
    assert result.exit_code == 0, text
    return out


def test_saved_plan_records_its_inputs(project):
    plan = json.loads(save_plan(project).read_text())
    inputs = plan["inputs"]
    assert inputs["recipe"]["files"] == ["r.vt"] and len(inputs["recipe"]["sha256"]) == 64
    assert inputs["data"]["train"]["files"] == 7 and inputs["data"]["train"]["source"] == "./shapes"
    assert inputs["model"] == {"kind": "tiny", "id": "tiny-qwen2.5-vl", "version": inputs["model"]["version"],
                               "sha256": inputs["model"]["sha256"]}
    # Deterministic: saving again gives the same bytes.
    first = (project / "plan.json").read_bytes()
    assert save_plan(project).read_bytes() == first


@pytest.mark.parametrize("change,words", [
    ("recipe", ["the recipe changed (r.vt)", "in the recipe now, /training/batch is 1 (the plan has 2)"]),
    ("broken recipe", ["the recipe changed (r.vt)", "the recipe no longer compiles"]),
    ("caption", ["the train data changed", "./shapes", "renamed or edited"]),
    ("image", ["the train data changed", "has 8 files (was 7)"]),
])
def test_run_refuses_a_plan_whose_inputs_changed(project, change, words):
    plan_path = save_plan(project)
    if change == "recipe":
        (project / "r.vt").write_text(RECIPE.format(model="tiny-qwen2.5-vl").replace("batch 2", "batch 1"))
    elif change == "broken recipe":
        (project / "r.vt").write_text(RECIPE.format(model="tiny-qwen2.5-vl").replace("batch 2", "batch two"))
    elif change == "caption":  # same size: "red" -> "RED"
        meta = project / "shapes" / "metadata.jsonl"
        text = meta.read_text()
        first = json.loads(text.splitlines()[0])["text"]
        meta.write_text(text.replace(f'"text": "{first}"', f'"text": "{first.upper()}"', 1))
    else:
        shutil.copy(project / "shapes" / "img-000.png", project / "shapes" / "img-extra.png")
    result, text = run_cli("run", str(plan_path))
    assert result.exit_code == 1 and "Traceback" not in text
    assert "error[VT530]" in text and "no longer matches its inputs" in text and "--allow-changed" in text
    for w in words:
        assert w in text, text
    assert not (project / "runs").exists()


def test_allow_changed_runs_anyway_with_warnings(project):
    from vtc.runtime.progress import Reporter
    from vtc.plans import read_plan
    from vtc.runtime.lifecycle import check_saved_plan

    plan_path = save_plan(project)
    (project / "r.vt").write_text(RECIPE.format(model="tiny-qwen2.5-vl") + "seed 1\n")
    lines = []
    rep = Reporter()
    rep.line = lambda text="": lines.append(text)
    check_saved_plan(read_plan(plan_path), str(plan_path), True, rep)
    assert any(line.startswith("warning: the recipe changed") and "--allow-changed" in line for line in lines)


def test_model_changes_are_seen(tmp_path, monkeypatch):
    from vtc.lockfile import input_changes, plan_inputs

    # A local model folder: a weight file rewritten with the same size.
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    (folder / "model.safetensors").write_bytes(b"\1" * 1000)
    plan = {"base_dir": str(tmp_path), "recipe": {"file": "r.vt", "files": ["r.vt"]},
            "model": {"source": "local", "id": "./my-model"}, "data": {"train": None, "eval": None}}
    (tmp_path / "r.vt").write_text("x")
    recorded = plan_inputs(plan)
    assert input_changes(recorded, plan) == []
    (folder / "model.safetensors").write_bytes(b"\2" * 1000)
    assert input_changes(recorded, plan) == ["the model changed: the files in ./my-model differ"]

    # A Hub model: the revision the local cache resolves `main` to.
    hub = tmp_path / "hf"
    repo = hub / "models--org--vlm"
    for rev in ("a" * 40, "b" * 40):
        (repo / "snapshots" / rev).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(hub))
    plan["model"] = {"source": "registry", "id": "org/vlm"}
    recorded = plan_inputs(plan)
    assert recorded["model"] == {"kind": "hub", "id": "org/vlm", "revision": "a" * 40}
    (repo / "refs" / "main").write_text("b" * 40)
    assert input_changes(recorded, plan) == ["the model changed: org/vlm revision bbbbbbbbbbbb (was aaaaaaaaaaaa)"]


@pytest.mark.slow
def test_the_saved_plan_runs_exactly(project, capsys):
    plan_path = save_plan(project)
    saved = json.loads(plan_path.read_text())
    result, text = run_cli("run", str(plan_path))
    assert result.exit_code == 0, text
    assert "recipe, data and model unchanged since the plan was made" in text
    [run] = list((project / "runs" / "r").iterdir())
    assert run.name == "run-001"
    assert json.loads((run / "plan.json").read_text()) == saved
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


@pytest.mark.slow
def test_a_comment_or_layout_change_to_the_recipe_is_no_change(project):
    """What the recipe means decides, not its bytes: comments, blank lines and a clause moved give the same plan."""
    plan_path = save_plan(project)
    lines = RECIPE.format(model="tiny-qwen2.5-vl").splitlines()
    lines[2] += "   # the shapes, beside the recipe"
    lines[3], lines[4] = lines[4], lines[3]  # `batch 2` before `train for 2 steps`
    (project / "r.vt").write_text("# my recipe\n\n" + "\n".join(lines) + "\n\n# the end\n")
    result, text = run_cli("run", str(plan_path))
    assert result.exit_code == 0, text
    assert "error[VT530]" not in text
    assert "note: the text of r.vt changed since" in text and "not what it means" in text
    [run] = list((project / "runs" / "r").iterdir())
    assert run.name == "run-001"


def test_plan_differences_name_the_values_that_decide_a_run():
    from vtc.runtime.lifecycle import plan_differences

    saved = {"training": {"batch": 2, "steps": 2}, "provenance": {"/training/batch": "r.vt:5"},
             "recipe": {"file": "r.vt"}, "inputs": {}, "vtc_version": "0.1.0"}
    moved = {**saved, "provenance": {"/training/batch": "r.vt:9"}, "vtc_version": "0.1.1"}
    assert plan_differences(saved, moved) == []
    assert plan_differences(saved, {**saved, "training": {"batch": 2, "steps": 5}}) == \
        ["/training/steps is 5 (the plan has 2)"]
