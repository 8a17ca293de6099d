"""report.html and `vtc report` (issue 14, items 1 and 2): the page of a real tiny run has every section; the gallery
holds one entry per evaluation row, worst first, regressions flagged; nothing is loaded from the network; the
review CSV; the folders of failed runs; a 5,000-row set. The page in a real browser: tests/test_report_browser.py."""

from __future__ import annotations

import csv
import html
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime_helpers import make_shapes
from vtc.cli import cli
from vtc.diagnostics import VtcError
from vtc.runtime import report as R

SECTIONS = ("run", "metrics", "curves", "answers", "data", "plan", "preview")


def page_data(page: str) -> dict:
    """The JSON the page's script renders the gallery from."""
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert m, "no report-data script"
    assert "<" not in m.group(1)  # nothing in the data can close its script element
    return json.loads(m.group(1))


def gallery_attrs(page: str) -> dict:
    m = re.search(r'<div id="gallery"([^>]*)>', page)
    assert m, "no #gallery"
    return dict(re.findall(r'(data-[a-z]+)="([^"]*)"', m.group(1)))


def network_references(page: str) -> list[str]:
    """Anything that would make a browser fetch from the network: src/href/action/poster/srcset to http(s) or a
    protocol-relative URL, CSS url() or @import of one, <link> or <iframe> or <base> elements."""
    found = re.findall(r'''(?:src|href|action|poster|srcset|data)\s*=\s*["']?\s*(?:https?:|//)[^"' >]*''', page, re.I)
    found += re.findall(r'''url\(\s*["']?\s*(?:https?:|//)[^)]*\)''', page, re.I)
    found += re.findall(r"@import", page, re.I)
    found += re.findall(r"<(?:link|iframe|base|object|embed)\b[^>]*>", page, re.I)
    found += re.findall(r"\bfetch\(|XMLHttpRequest|WebSocket|EventSource", page)
    return found


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A tiny real run (3 steps, 6 evaluation rows) from a recipe on disk, through vtc.commands.run_target."""
    from vtc.commands import run_target

    base = tmp_path_factory.mktemp("report-run")
    make_shapes(base / "train", n=8, seed=1)
    make_shapes(base / "val", n=6, seed=2)
    recipe = base / "shapes.vt"
    recipe.write_text(
        "# a tiny run for the report's tests\n"
        "finetune all on tiny-qwen2.5-vl\nusing lora\nfrom ./train\nevaluate on ./val\n"
        'ask "What colour is the shape?"\nanswer from column text\nresize 112\nlora rank 8 alpha 8\n'
        "train for 3 steps\nbatch 4\nmicro batch 4\nlearning rate 2e-3\nwarmup 0 steps\nschedule constant\n"
        "optimizer adamw_torch\nmetric exact_match, cer\nsave to ./runs\n", encoding="utf-8")
    run = run_target(str(recipe))
    return run


@pytest.mark.slow
def test_the_report_of_a_real_run_has_every_section(real_run):
    path = real_run / "report.html"
    assert path.is_file(), "vtc run writes report.html at the end"
    page = path.read_text(encoding="utf-8")
    for key in SECTIONS:
        assert f'<section id="{key}">' in page, key
    # The run in plain words: state, model, the recipe as written (its comment too), explain's paragraph.
    assert "<b>finished</b>" in page and "tiny-qwen2.5-vl" in page
    assert "# a tiny run for the report&#x27;s tests" in page
    assert '<p class="explain">' in page
    assert "<svg" in page and "<polyline" in page  # the loss curve, drawn inline
    assert "tokens/s" in page and "left out as warm-up" in page  # the speed in the words the run printed
    # One gallery entry per evaluation row, each with an embedded thumbnail.
    data = page_data(page)
    preds = [json.loads(line) for line in (real_run / "predictions.jsonl").open()]
    assert len(data["rows"]) == len(preds) == 6
    assert gallery_attrs(page)["data-total"] == "6"
    assert sorted(r["n"] for r in data["rows"]) == list(range(6))
    assert all(data["thumbs"][r["t"]].startswith("data:image/jpeg;base64,") for r in data["rows"])
    assert all(r["b"] is not None for r in data["rows"])  # a small set: a larger copy of each image
    # The preview of the first training rows (vtc.runtime.preview), kept in the folder for `vtc report` later.
    preview = json.loads((real_run / R.PREVIEW).read_text())
    assert len(preview) == 3 and all(p["trained"] > 0 for p in preview)
    assert page.count('<pre class="preview">') == 3 and '<span class="img-marker">[image: ' in page
    # Provenance: a value written in the recipe names its line; a default says so.
    assert "shapes.vt:10" in page and ">default<" in page
    # The training rows per class and their answer lengths, from the manifest (the folder keeps no copy of them).
    trained = json.loads((real_run / "manifest.json").read_text())["data"]
    assert sum(trained["train_answers"].values()) == trained["train_rows"] == sum(trained["train_answer_words"].values())
    assert "<h3>Training rows per class</h3>" in page and "(words, training rows)</h3>" in page
    # The training images' sizes as the data scan found them (before resize), every image counted once per use.
    from PIL import Image

    found = Counter("%dx%d" % Image.open(p).size for p in sorted((real_run.parent.parent / "train").glob("*.png")))
    assert trained["train_image_sizes"] == dict(found)
    assert sum(trained["train_image_longest"].values()) == trained["train_rows"]
    assert "<h3>Image sizes (training images, as found, before `resize`)</h3>" in page
    assert network_references(page) == []


@pytest.mark.slow
def test_vtc_report_writes_the_page_again_and_the_review_queue(real_run, tmp_path):
    (real_run / "report.html").unlink()
    review = tmp_path / "review.csv"
    result = CliRunner().invoke(cli, ["report", str(real_run), "--review", str(review), "--worst", "4"])
    assert result.exit_code == 0, result.output
    assert (real_run / "report.html").is_file()
    with open(review, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and list(rows[0]) == list(R.REVIEW_COLUMNS)
    assert all(Path(r["image"]).is_file() for r in rows)
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores)  # exact match: the worst (lowest) first


def test_worst_first_and_regressions_flagged(tmp_path):
    run = R.synthetic_run(tmp_path / "run", 60, distinct_images=8)
    page = R.write_report(run).read_text(encoding="utf-8")
    data = page_data(page)
    rows = data["rows"]
    assert len(rows) == 60 and gallery_attrs(page) == {"data-total": "60", "data-shown": "60", "data-rendered": "0"}
    assert len(data["thumbs"]) == 8 * 2  # one thumbnail per distinct image, and its larger copy (60 rows: small)
    after = [r["sa"] for r in rows]
    assert after == sorted(after)  # exact match: the lowest score first
    for r in rows:
        assert r["r"] == (r["sb"] > r["sa"]), r
    regressions = [r for r in rows if r["r"]]
    assert regressions, "the synthetic run has regressions"
    wrong = [r for r in rows if r["sa"] == 0]
    # Among the rows wrong after, the regressions come first.
    assert [r["r"] for r in wrong] == sorted((r["r"] for r in wrong), reverse=True)
    assert f"{len(regressions)} rows got worse" in page
    # Classification (colours): per-class table and the confusion matrices.
    assert "<h3>Per class</h3>" in page and page.count('class="confusion"') == 2
    # The data section: splits, per class, image sizes, answer lengths, the skipped row and why.
    assert "Image sizes" in page and "answer length" in page and "image cannot be read" in page
    assert network_references(page) == []
    assert "http://" not in page and "https://" not in page


def test_text_answers_get_character_and_word_error_rates(tmp_path):
    run = R.synthetic_run(tmp_path / "run", 10, distinct_images=2)
    texts = [("the shape is a red circle on white", "the shape is a red circle on white", "a blue thing"),
             ("two words", "two words here", "nothing")]
    preds = []
    for i in range(10):
        expected, after, before = texts[i % 2] if i < 8 else (f"unique answer {i}", f"unique answer {i}", "x")
        preds.append({"row": i, "origin": f"m.jsonl:{i + 1}", "images": [], "question": "Describe.",
                      "expected": expected, "before": before, "after": after,
                      "after_scores": {"exact_match": float(after == expected)}})
    (run / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds), encoding="utf-8")
    (run / "eval.json").unlink()
    page = R.write_report(run).read_text(encoding="utf-8")
    assert ">cer <small>" in page and ">wer <small>" in page
    assert "Per class" not in page
    # The score counted again from predictions.jsonl: 6 of 10 exactly right after, none before.
    assert "60.0%" in page and "+60.0 points" in page
    data = page_data(page)
    assert all(r["t"] is None for r in data["rows"])  # no image: the gallery says so instead of a thumbnail


def test_a_failed_run_gets_a_report_that_says_what_is_missing(tmp_path):
    run = R.synthetic_run(tmp_path / "run-002.failed", 5, distinct_images=1, state="failed")
    for name in ("predictions.jsonl", "eval.json", "metrics.jsonl"):
        (run / name).unlink()
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["error"] = "OutOfMemoryError: CUDA out of memory"
    (run / "manifest.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(cli, ["report", str(run)])
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "<b>failed</b>" in page and "OutOfMemoryError" in page
    assert "metrics.jsonl, eval.json, predictions.jsonl" in page
    assert "No evaluation results" in page and "No training steps were logged" in page
    assert gallery_attrs(page)["data-total"] == "0" and page_data(page)["rows"] == []
    # No evaluation rows: nothing to review (VT563); the page is still written.
    with pytest.raises(VtcError) as info:
        R.write_review(run, tmp_path / "review.csv")
    assert info.value.diagnostics[0].code == "VT563"
    result = CliRunner().invoke(cli, ["report", str(run), "--review", str(tmp_path / "review.csv")])
    assert result.exit_code == 1 and "VT563" in result.output


def test_vtc_report_on_a_folder_that_is_not_a_run(tmp_path):
    for target in (tmp_path, tmp_path / "nope"):
        with pytest.raises(VtcError) as info:
            R.check_run_folder(target)
        d = info.value.diagnostics[0]
        assert d.code == "VT561" and d.help
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "error[VT561]" in result.output and "Traceback" not in result.output


def test_a_review_file_that_cannot_be_written(tmp_path):
    run = R.synthetic_run(tmp_path / "run", 4, distinct_images=1)
    with pytest.raises(VtcError) as info:
        R.write_review(run, tmp_path / "no" / "such" / "review.csv")
    assert info.value.diagnostics[0].code == "VT562"


def test_answers_cannot_break_out_of_the_page(tmp_path):
    run = R.synthetic_run(tmp_path / "run", 3, distinct_images=1)
    evil = '</script><script>alert(1)</script><img src="http://example.com/x.png">'
    preds = [json.loads(line) for line in (run / "predictions.jsonl").open()]
    preds[0]["after"] = evil
    preds[1]["question"] = "\u2028<b>bold</b>"
    (run / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds), encoding="utf-8")
    page = R.write_report(run).read_text(encoding="utf-8")
    assert page.count("<script") == 2  # the data and the code, nothing more
    assert network_references(page) == []
    rows = {r["n"]: r for r in page_data(page)["rows"]}
    assert rows[0]["af"] == evil and rows[1]["q"] == "\u2028<b>bold</b>"


def test_five_thousand_rows_stay_small(tmp_path):
    run = R.synthetic_run(tmp_path / "run", 5000, distinct_images=20)
    page = R.write_report(run).read_text(encoding="utf-8")
    data = page_data(page)
    assert len(data["rows"]) == 5000 and gallery_attrs(page)["data-total"] == "5000"
    assert len(data["thumbs"]) == 20  # thumbnails only: no larger copies above BIG_IMAGES_UP_TO rows
    assert all(r["b"] is None for r in data["rows"])
    assert "thumbnail enlarged" in page
    assert f"PAGE = {R.PAGE_ROWS}" in page  # the gallery draws a page at a time


def test_the_preview_section_renders_the_trained_tokens(tmp_path):
    run = R.synthetic_run(tmp_path / "run", 2, distinct_images=1)
    # vtc.runtime.preview's row previews (its module docstring).
    preview = [{"row": 1, "origin": "metadata.jsonl:1", "tokens": 30, "max_length": 512, "trained": 2,
                "truncated": False, "problem": None,
                "segments": [{"kind": "text", "text": "<|user|>What colour?", "trained": False, "cut": False},
                             {"kind": "image", "tokens": 16, "cut": False},
                             {"kind": "text", "text": "red<|end|>", "trained": True, "cut": False}]},
               {"row": 2, "origin": "metadata.jsonl:2", "tokens": 40, "max_length": 20, "trained": 0,
                "truncated": True, "problem": "row 2 would train on no token",
                "segments": [{"kind": "text", "text": "kept", "trained": False, "cut": False},
                             {"kind": "text", "text": "blue", "trained": False, "cut": True}]}]
    page = R.write_report(run, preview=preview).read_text(encoding="utf-8")
    assert json.loads((run / R.PREVIEW).read_text()) == preview  # kept for `vtc report` later
    assert '<span class="trained">red&lt;|end|&gt;</span>' in page
    assert '<span class="img-marker">[image: 16 tokens]</span>' in page
    assert "answer cut by max length" in page and "row 2 would train on no token" in page
    assert '<span class="context cut">blue</span>' in page
    again = R.write_report(run).read_text(encoding="utf-8")
    assert '<span class="img-marker">[image: 16 tokens]</span>' in again


def test_the_page_has_the_browser_tests_contract(tmp_path):
    page = R.write_report(R.synthetic_run(tmp_path / "run", 3, distinct_images=1)).read_text(encoding="utf-8")
    assert '<input id="filter"' in page and "window.vtcReportReady = true" in page
    assert 'div.className = "row"' in page.replace("\n", " ") or 'className = "row" +' in page
    assert html.unescape(page).count('id="gallery"') == 1
