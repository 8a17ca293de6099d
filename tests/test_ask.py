"""`vtc ask`: one image, a folder to CSV / JSONL, the default question, and the refusals."""

import csv
import json

import pytest
from click.testing import CliRunner

from runtime_helpers import make_plan, make_shapes, shape_image, write_plan
from vtc.cli import cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small finished run (tiny Qwen, 30 steps) shared by the tests below."""
    from vtc.commands import run_target

    root = tmp_path_factory.mktemp("ask")
    train = make_shapes(root / "train", n=24, seed=1)
    val = make_shapes(root / "val", n=6, seed=2)
    plan = make_plan(train, eval_dir=val, steps=30, outputs_dir=root / "runs")
    run = run_target(str(write_plan(plan, root / "plan.json")))
    preds = [json.loads(line) for line in (run / "predictions.jsonl").open()]
    return root, run, val, preds


def ask(*args):
    result = CliRunner().invoke(cli, ["ask", *map(str, args)])
    return result, result.output + (getattr(result, "stderr", "") or "")


def test_one_image_prints_the_runs_answer(trained):
    root, run, val, preds = trained
    result, text = ask(run, preds[0]["images"][0])
    assert result.exit_code == 0, text
    assert result.stdout.strip().splitlines()[-1] == preds[0]["after"]


def test_a_folder_to_csv_and_jsonl(trained, tmp_path):
    root, run, val, preds = trained
    expected = {p["images"][0]: p["after"] for p in preds}
    result, text = ask(run, val, "-o", tmp_path / "answers.csv")
    assert result.exit_code == 0, text
    with open(tmp_path / "answers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["image"]: r["answer"] for r in rows} == expected
    assert all(r["question"] == "What colour is the shape?" for r in rows)  # the recipe's instruction

    result, text = ask(run, val, "-o", tmp_path / "answers.jsonl")
    assert result.exit_code == 0, text
    got = [json.loads(line) for line in (tmp_path / "answers.jsonl").open()]
    assert {g["image"]: g["answer"] for g in got} == expected


def test_a_folder_without_output_prints_json_lines(trained):
    root, run, val, preds = trained
    result, text = ask(run, val)
    assert result.exit_code == 0, text
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(preds)


def test_the_parent_folder_means_the_newest_finished_run_and_a_question_can_be_given(trained, tmp_path):
    root, run, val, preds = trained
    image = tmp_path / "new.png"
    shape_image("blue", "square", seed=5).save(image)
    result, text = ask(run.parent, image, "What colour is the shape?")
    assert result.exit_code == 0, text
    assert "using the newest finished run" in text and run.name in text


def test_refusals(trained, tmp_path):
    root, run, val, preds = trained
    result, text = ask(run, val, "-o", tmp_path / "answers.xlsx")
    assert result.exit_code == 1 and "error[VT513]" in text and "Traceback" not in text
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    result, text = ask(run, bad)
    assert result.exit_code == 1 and "error[VT411]" in text and "broken.png" in text and "Traceback" not in text
    result, text = ask(run, tmp_path / "missing.png")
    assert result.exit_code == 1 and "error[VT512]" in text
