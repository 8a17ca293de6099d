"""vtc check / plan / explain / schema through click's runner."""

import json
from pathlib import Path

from click.testing import CliRunner

from vtc.cli import cli
from vtc.plans import PLAN_VERSION

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "recipes" / "demo-shapes.vt")


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_check_ok_and_error(tmp_path):
    assert run("check", DEMO).exit_code == 0
    bad = tmp_path / "bad.vt"
    bad.write_text("finetune vision,mlp on qwen2.5-vl with respones_only from ./xrays resize 512\n")
    result = run("check", str(bad))
    assert result.exit_code == 1
    assert "error[VT101]: unknown option `respones_only`" in result.output
    assert "did you mean `responses_only`?" in result.output and "bad.vt:1:40" in result.output


def test_check_warnings_only_exit_0(tmp_path):
    f = tmp_path / "w.vt"
    f.write_text("finetune all on qwen2.5-vl\nfrom ./x\nusing lora\nshard model\n")
    result = run("check", str(f))
    assert result.exit_code == 0 and "VT267" in result.output


def test_check_json(tmp_path):
    f = tmp_path / "b.vt"
    f.write_text("finetune all on qwen2.5-vl\nfrom ./x\nbatch 0\n")
    (tmp_path / "x").mkdir()  # the data folder exists: the one problem is the batch
    result = run("check", str(f), "--format", "json")
    assert result.exit_code == 1
    [d] = json.loads(result.stdout)
    assert d["code"] == "VT104" and d["span"]["line"] == 3


def test_plan_summary_json_and_output(tmp_path):
    result = run("plan", DEMO)
    assert result.exit_code == 0 and "demo-shapes.vt:12" in result.output
    result = run("plan", DEMO, "--json")
    plan = json.loads(result.stdout)
    assert plan["plan_version"] == PLAN_VERSION and plan["training"]["steps"] == 80
    out = tmp_path / "plan.json"
    result = run("plan", DEMO, "-o", str(out))
    saved = json.loads(out.read_text())
    # -o adds the fingerprints of the plan's inputs (vtc.lockfile.plan_inputs), checked by `vtc run plan.json`.
    assert set(saved.pop("inputs")) == {"fingerprint", "recipe", "data", "model"}
    assert result.exit_code == 0 and saved == plan


def test_plan_error_exit_1(tmp_path):
    f = tmp_path / "b.vt"
    f.write_text("finetune all on nothing-known\nfrom ./x\n")
    assert run("plan", str(f)).exit_code == 1


def test_explain():
    result = run("explain", DEMO)
    assert result.exit_code == 0
    assert "80 update steps" in result.output and "LoRA adapter" in result.output


def test_schema_is_valid_json_schema():
    import jsonschema

    result = run("schema")
    assert result.exit_code == 0
    jsonschema.Draft202012Validator.check_schema(json.loads(result.output))


def test_check_accepts_a_base_recipe_with_a_note_but_plan_needs_a_full_one(tmp_path):
    from click.testing import CliRunner

    from vtc.cli import cli

    base = tmp_path / "base.vt"
    base.write_text("batch 4\nlearning rate 1e-4\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", str(base)])
    assert result.exit_code == 0, result.output
    assert "note[VT109]" in result.output and "VT105" not in result.output
    # its own values are still checked
    base.write_text("batch 0\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", str(base)])
    assert result.exit_code == 1 and "VT104" in result.output
    # a file with one of the two required clauses is a recipe missing the other, not a base
    half = tmp_path / "half.vt"
    half.write_text("finetune all on qwen2.5-vl\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", str(half)])
    assert result.exit_code == 1 and "VT105" in result.output
    assert CliRunner().invoke(cli, ["plan", str(tmp_path / "base.vt")]).exit_code == 1


def test_plan_shows_the_detected_data_sources(tmp_path):
    from click.testing import CliRunner

    from vtc.cli import cli

    demo = Path(__file__).resolve().parents[1] / "recipes" / "demo-shapes.vt"
    result = CliRunner().invoke(cli, ["plan", str(demo)])
    assert result.exit_code == 0, result.output
    shown = result.output.split("data sources (detected now)", 1)[1]
    assert "train" in shown and "imagefolder train with metadata.jsonl" in shown
    assert "imagefolder test with metadata.jsonl" in shown
    missing = tmp_path / "r.vt"
    missing.write_text("finetune all on tiny-qwen2.5-vl\nfrom ./nowhere\nholdout 10%\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["plan", str(missing)])
    assert result.exit_code == 0 and "problem: data folder or file not found" in result.output
    assert "10% of the training rows, held out" in result.output
