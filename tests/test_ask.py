"""`vtc ask`: one image, a folder to CSV / JSONL, the default question, and the refusals."""

import csv
import json
from pathlib import Path

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
    run = run_target(str(write_plan(plan, root / "plan.json")), allow_changed=True)  # a plan made here: no inputs
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
    assert "remove the row" not in text and "replace the file with a valid PNG or JPEG" in text
    result, text = ask(run, tmp_path / "missing.png")
    assert result.exit_code == 1 and "error[VT512]" in text


def _truncated_jpeg(path, colour="red"):
    """A JPEG cut in half: pillow opens its header, then fails to decode it ("image file is truncated")."""
    import io

    buffer = io.BytesIO()
    shape_image(colour, "circle", seed=9).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def test_a_truncated_jpeg_in_a_folder_gets_an_error_row_and_the_others_are_answered(trained, tmp_path):
    root, run, val, preds = trained
    folder = tmp_path / "new-images"
    folder.mkdir()
    for i, colour in enumerate(["red", "green", "blue", "yellow", "red", "blue"]):
        shape_image(colour, "square", seed=20 + i).save(folder / f"ok-{i}.png" if i % 2 else folder / f"ok-{i}.jpg")
    _truncated_jpeg(folder / "ok-3-broken.jpg")
    result, text = ask(run, folder, "-o", tmp_path / "answers.csv")
    assert result.exit_code == 0, text
    assert "Traceback" not in text
    with open(tmp_path / "answers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["image", "question", "answer", "error"]
    assert len(rows) == 7 and [r["image"] for r in rows] == sorted(str(p) for p in folder.iterdir())
    broken = [r for r in rows if r["error"]]
    assert [r["image"] for r in broken] == [str(folder / "ok-3-broken.jpg")]
    assert broken[0]["error"].startswith("VT411: ") and "truncated" in broken[0]["error"]
    assert broken[0]["answer"] == ""
    assert all(r["answer"] for r in rows if not r["error"])  # the trained model names a colour for each
    # The summary: counts, the reason, and help that fits a folder (there is no data row to remove).
    assert "answered 6 of 7 images; 1 could not be read" in text
    assert "ok-3-broken.jpg" in text and "VT411" in text and "truncated" in text
    assert "remove the row" not in text and "move it out of the folder" in text
    assert "6 answers written to" in text and "1 row with an error" in text

    # JSONL: the same, with "error": null on the answered rows.
    result, text = ask(run, folder, "-o", tmp_path / "answers.jsonl")
    assert result.exit_code == 0, text
    got = [json.loads(line) for line in (tmp_path / "answers.jsonl").open()]
    assert [g["error"] is None for g in got] == [not r["error"] for r in rows]
    assert {g["image"]: g["answer"] for g in got if g["error"] is None} == \
        {r["image"]: r["answer"] for r in rows if not r["error"]}


def test_each_answer_is_written_as_it_is_made(trained, tmp_path, monkeypatch):
    """A crash in the second batch keeps the first batch's answers in the file (written and flushed per row)."""
    from vtc.runtime import evaluate

    root, run, val, preds = trained
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(10):  # the ask batch is 8 (twice the training batch): two batches
        shape_image("blue", "circle", seed=40 + i).save(folder / f"img-{i:02d}.png")
    real, calls = evaluate.generate, []

    def generate_then_crash(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the machine went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "generate", generate_then_crash)
    result, text = ask(run, folder, "-o", tmp_path / "answers.csv")
    assert isinstance(result.exception, RuntimeError), text
    with open(tmp_path / "answers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["image"]).name for r in rows] == [f"img-{i:02d}.png" for i in range(8)]
    assert all(r["answer"] and not r["error"] for r in rows)


def test_a_folder_where_nothing_can_be_read_exits_1_with_the_reasons(trained, tmp_path):
    root, run, val, preds = trained
    folder = tmp_path / "bad"
    folder.mkdir()
    _truncated_jpeg(folder / "a.jpg")
    (folder / "b.png").write_bytes(b"")
    result, text = ask(run, folder, "-o", tmp_path / "answers.csv")
    assert result.exit_code == 1 and "Traceback" not in text
    assert "error[VT411]" in text and "a.jpg" in text and "b.png" in text and "empty" in text
    assert "no image in" in text and "could be answered" in text and "remove the row" not in text
    with open(tmp_path / "answers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["image"]).name for r in rows] == ["a.jpg", "b.png"] and all(r["error"] for r in rows)


def test_an_answers_file_that_cannot_be_written(trained, tmp_path):
    root, run, val, preds = trained
    result, text = ask(run, val, "-o", tmp_path / "no-such-folder" / "answers.csv")
    assert result.exit_code == 1 and "error[VT536]" in text and "no-such-folder" in text
    assert "Traceback" not in text
