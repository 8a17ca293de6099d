"""Issue 10, the data traps: where a name is read from (a folder beside the recipe or a Hub id, never the working
directory), a `from` folder that is not there, the hold-out drawn from the good rows, evaluation sets too small to
score a model, free-text answers scored by exact_match, and honest image counts in the data check."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from vtc.compiler.pipeline import compile_file, compile_source  # noqa: E402
from vtc.diagnostics import VtcError  # noqa: E402
from vtc.runtime.sources import describe_sources, hold_out, load_rows, source_rows  # noqa: E402
from vtc.runtime.validate import MIN_EVAL_ROWS, scan_data, validate_for_run  # noqa: E402


@pytest.fixture(autouse=True)
def image_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VTC_IMAGE_CACHE", str(tmp_path / "image-cache"))


def imagefolder(folder: Path, answers: list[str], *, bad: set[int] = frozenset(), same_image: bool = False) -> Path:
    """An imagefolder: one 160x120 PNG a row (each its own colour unless ``same_image``), the rows in ``bad`` with
    an empty file instead (VT411)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, answer in enumerate(answers):
        name = f"{k:03d}.png"
        if k in bad:
            (folder / name).write_bytes(b"")
        else:
            colour = (10, 20, 30) if same_image else (k * 7 % 256, k * 13 % 256, k * 29 % 256)
            Image.new("RGB", (160, 120), colour).save(folder / name)
        rows.append({"file_name": name, "text": answer})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def recipe(folder: Path, *lines: str, name: str = "study.vt") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def found(result, code: str) -> list:
    return [d for d in result.diagnostics if d.code == code]


# --- item 1: a folder beside the recipe, or a Hub id; never the working directory --------------------------------


def test_an_org_name_folder_beside_the_recipe_is_read_from_there_whatever_the_working_directory(tmp_path, monkeypatch):
    study = tmp_path / "study"
    imagefolder(study / "data" / "xrays", ["left", "right"])
    path = recipe(study, "finetune all on tiny-qwen2.5-vl", "from data/xrays", "resize 64")
    # The working directory has a `data/xrays` of its own, with other rows: it must not matter.
    elsewhere = tmp_path / "elsewhere"
    imagefolder(elsewhere / "data" / "xrays", ["a", "b", "c"])
    monkeypatch.chdir(elsewhere)
    result = compile_file(str(path))
    assert result.plan is not None
    assert result.plan["data"]["train"] == {"source": "data/xrays", "kind": "path", "split": None, "format": "auto"}
    [d] = found(result, "VT270")
    assert d.severity.value == "note" and (d.span.line, d.span.column) == (2, 6)
    assert str(study / "data" / "xrays") in d.message and "not from the Hugging Face Hub" in d.message
    assert "`./data/xrays`" in d.help and "`hf://data/xrays`" in d.help
    rows = load_rows(result.plan)
    assert [rows.answer(i) for i in range(len(rows))] == ["left", "right"]
    monkeypatch.chdir(study)  # and from the recipe's own folder: the same
    assert compile_file("study.vt").plan["data"]["train"]["kind"] == "path"


def test_dot_slash_says_folder_and_the_note_goes(tmp_path):
    study = tmp_path / "study"
    imagefolder(study / "data" / "xrays", ["left"])
    result = compile_file(str(recipe(study, "finetune all on tiny-qwen2.5-vl", "from ./data/xrays")))
    assert result.plan["data"]["train"]["kind"] == "path" and not found(result, "VT270")
    assert not found(result, "VT401")


def test_an_org_name_not_beside_the_recipe_is_a_hub_dataset_and_plan_says_why(tmp_path):
    path = recipe(tmp_path / "study", "finetune all on tiny-qwen2.5-vl", "from data/xrays", "evaluate on org/test")
    result = compile_file(str(path))
    assert result.plan["data"]["train"] == {"source": "data/xrays", "kind": "hub", "split": None, "format": "auto"}
    assert result.plan["data"]["eval"]["kind"] == "hub"
    assert not [d for d in result.diagnostics if d.code in ("VT270", "VT401")]
    described = dict(describe_sources(result.plan))
    assert "no folder data/xrays beside the recipe: read as a Hub dataset" in described["train"]
    assert "no folder org/test beside the recipe: read as a Hub dataset" in described["evaluation"]


def test_hf_prefix_reads_the_hub_even_with_the_folder_there(tmp_path):
    study = tmp_path / "study"
    imagefolder(study / "data" / "xrays", ["left"])
    result = compile_file(str(recipe(study, "finetune all on tiny-qwen2.5-vl", "from hf://data/xrays",
                                     "evaluate on hf://datasets/org/test split validation")))
    data = result.plan["data"]
    assert data["train"] == {"source": "data/xrays", "kind": "hub", "split": None, "format": "auto"}
    assert data["eval"] == {"source": "org/test", "kind": "hub", "split": "validation", "format": "auto"}
    assert not [d for d in result.diagnostics if d.code in ("VT270", "VT401")]
    assert result.plan["provenance"]["/data/train/source"] == "study.vt:2"
    assert "the folder data/xrays beside the recipe is not read" in dict(describe_sources(result.plan))["train"]


def test_a_hub_plan_never_reads_a_same_named_folder_in_the_working_directory(tmp_path, monkeypatch):
    """`datasets.load_dataset("org/name")` reads ./org/name when the working directory has one; a plan that says
    Hub must not (here, offline, it cannot reach the Hub: an error, not the local folder's rows)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = compile_file(str(recipe(tmp_path / "study", "finetune all on tiny-qwen2.5-vl", "from org/name")))
    assert result.plan["data"]["train"]["kind"] == "hub"
    elsewhere = tmp_path / "elsewhere"
    imagefolder(elsewhere / "org" / "name", ["from the working directory"])
    monkeypatch.chdir(elsewhere)
    with pytest.raises(VtcError) as exc:
        source_rows(result.plan, "train")
    assert all(d.code != "VT402" for d in exc.value.diagnostics)
    assert any("org/name" in d.message for d in exc.value.diagnostics)


def test_a_model_folder_beside_the_recipe_follows_the_same_rule(tmp_path):
    study = tmp_path / "study"
    (study / "models" / "mine").mkdir(parents=True)
    (study / "models" / "mine" / "config.json").write_text('{"model_type": "qwen2_5_vl"}', encoding="utf-8")
    imagefolder(study / "xrays", ["left"])
    result = compile_file(str(recipe(study, "finetune all on models/mine", "from ./xrays")))
    model = result.plan["model"]
    assert (model["source"], model["id"], model["family"]) == ("local", "models/mine", "qwen2_5_vl")
    [d] = found(result, "VT270")
    assert (d.span.line, d.span.column) == (1, 17) and "the model is read from there" in d.message
    assert not found(result, "VT203")  # its config.json was read
    # Not beside the recipe: a Hub id, as before; `hf://` says Hub explicitly, and from_pretrained gets the id.
    hub = compile_file(str(recipe(study, "finetune all on models/theirs", "from ./xrays", name="b.vt"))).plan["model"]
    assert hub["source"] == "hub" and hub["id"] == "models/theirs"
    explicit = compile_file(str(recipe(study, "finetune all on hf://models/mine", "from ./xrays", name="c.vt")))
    assert (explicit.plan["model"]["source"], explicit.plan["model"]["id"]) == ("hub", "models/mine")
    assert not found(explicit, "VT270")


# --- item 9: a `from` folder that is not there -----------------------------------------------------------------


def test_a_missing_from_folder_is_a_warning_with_the_path_as_resolved(tmp_path):
    study = tmp_path / "study"
    result = compile_file(str(recipe(study, "finetune all on tiny-qwen2.5-vl", "from ./xrays",
                                     "evaluate on ../shared/val.jsonl")))
    assert result.plan is not None  # a warning: a recipe may be checked where its data is not
    train, evaluation = sorted(found(result, "VT401"), key=lambda d: d.span.line)
    assert train.severity.value == "warning" and (train.span.line, train.span.column) == (2, 6)
    assert str(study / "xrays") in train.message and "vtc run will stop here" in train.message
    assert str(tmp_path / "shared" / "val.jsonl") in evaluation.message and evaluation.span.line == 3
    assert str(study) in train.help


def test_a_hub_name_whose_first_folder_is_beside_the_recipe_warns_of_a_typo(tmp_path):
    study = tmp_path / "study"
    imagefolder(study / "data" / "xrays", ["left"])
    result = compile_file(str(recipe(study, "finetune all on tiny-qwen2.5-vl", "from data/xray")))
    assert result.plan["data"]["train"]["kind"] == "hub"
    [d] = found(result, "VT401")
    assert d.severity.value == "warning" and "though data/ is there" in d.message
    assert "did you mean the folder `./data/xrays`?" in d.help and "`hf://data/xray`" in d.help


def test_a_recipe_compiled_from_text_has_no_folder_to_look_in():
    result = compile_source("finetune all on tiny-qwen2.5-vl\nfrom ./xrays\nevaluate on data/val\n", "r.vt",
                            base_dir="/nonexistent-vtc-folder")
    assert result.plan is not None and not result.diagnostics
    assert result.plan["data"]["eval"]["kind"] == "hub"


# --- item 5: the hold-out from the good rows; evaluation sets too small -------------------------------------------


def test_the_hold_out_is_drawn_from_the_good_rows(tmp_path):
    bad = {1, 4, 7, 9, 12}
    imagefolder(tmp_path / "d", [f"answer {k}" for k in range(15)], bad=bad)
    result = compile_file(str(recipe(tmp_path, "finetune all on tiny-qwen2.5-vl", "from ./d", "bad rows skip",
                                     "holdout 20%", "resize 64", "seed 5")))
    check = validate_for_run(result.plan, workers=1)
    assert len(check.skipped) == 5
    # 20% of the 10 good rows, not of the 15 written: 2 evaluation rows, 8 training rows, none of them bad.
    assert (len(check.train), len(check.eval)) == (8, 2)
    bad_lines = {k + 1 for k in bad}
    assert not {check.eval.origin(i).line for i in range(2)} & bad_lines
    assert not {check.train.origin(i).line for i in range(8)} & bad_lines
    # The same seeded split that hold_out makes of the good rows (of all 15, it would hold out 3, some bad).
    whole = source_rows(result.plan, "train")
    good = whole.subset([i for i in range(len(whole)) if whole.origin(i).line not in bad_lines])
    _, held = hold_out(good, 0.2, 5)
    assert [held.key(i) for i in range(len(held))] == [check.eval.key(i) for i in range(2)]
    assert len(hold_out(whole, 0.2, 5)[1]) == 3
    # ... and 2 rows cannot score a model: VT435 says so, with the number.
    [d] = [d for d in check.report.diagnostics if d.code == "VT435"]
    assert d.severity.value == "warning" and "has 2 rows" in d.message and "10 usable training rows" in d.message
    assert "50 points" in d.message and f"{MIN_EVAL_ROWS} rows or more" in d.help
    assert Path(d.span.file).name == "metadata.jsonl"


def test_a_hold_out_that_cannot_be_drawn_shows_in_check_data(tmp_path):
    imagefolder(tmp_path / "d", ["a", "b", "c"], bad={0, 1})
    result = compile_file(str(recipe(tmp_path, "finetune all on tiny-qwen2.5-vl", "from ./d", "bad rows skip",
                                     "holdout 20%", "resize 64")))
    report = scan_data(result.plan, workers=1)
    assert "VT418" in {d.code for d in report.errors}
    with pytest.raises(VtcError) as exc:
        validate_for_run(result.plan, workers=1)
    assert [d.code for d in exc.value.diagnostics] == ["VT418"]


def test_an_evaluation_set_of_twenty_rows_is_enough(tmp_path):
    imagefolder(tmp_path / "train", ["circle"] * 3)
    imagefolder(tmp_path / "val", ["circle"] * MIN_EVAL_ROWS)
    small = imagefolder(tmp_path / "small", ["circle"] * (MIN_EVAL_ROWS - 1))
    path = recipe(tmp_path, "finetune all on tiny-qwen2.5-vl", "from ./train", "evaluate on ./val", "resize 64")
    assert not [d for d in scan_data(compile_file(str(path)).plan, workers=1).diagnostics if d.code == "VT435"]
    path = recipe(tmp_path, "finetune all on tiny-qwen2.5-vl", "from ./train", "evaluate on ./small", "resize 64",
                  name="small.vt")
    [d] = [d for d in scan_data(compile_file(str(path)).plan, workers=1).diagnostics if d.code == "VT435"]
    assert f"has {MIN_EVAL_ROWS - 1} rows" in d.message and d.span.file == str(small / "metadata.jsonl")


def test_no_evaluation_data_is_not_a_small_evaluation_set(tmp_path):
    imagefolder(tmp_path / "d", ["a", "b"])
    result = compile_file(str(recipe(tmp_path, "finetune all on tiny-qwen2.5-vl", "from ./d", "resize 64")))
    assert not scan_data(result.plan, workers=1).diagnostics


# --- item 11: exact_match on free text -------------------------------------------------------------------------

REPORT = "The heart is normal in size. The lungs are clear, with no effusion or pneumothorax."


@pytest.mark.parametrize("metric, answers, warned", [
    (None, [REPORT] * 3, True),  # the default metric on reports
    ("metric exact_match", [REPORT] * 3, True),
    ("metric cer", [REPORT] * 3, False),
    ("metric exact_match, wer", [REPORT] * 3, False),
    (None, ["pneumonia", "normal", "effusion"], False),  # labels: exact_match is the right metric
])
def test_exact_match_alone_on_long_answers_warns(tmp_path, metric, answers, warned):
    imagefolder(tmp_path / "d", ["a"] * 3)
    imagefolder(tmp_path / "val", answers)
    lines = ["finetune all on tiny-qwen2.5-vl", "from ./d", "evaluate on ./val", "resize 64"] + ([metric] if metric
                                                                                                   else [])
    report = scan_data(compile_file(str(recipe(tmp_path, *lines))).plan, workers=1)
    got = [d for d in report.diagnostics if d.code == "VT436"]
    assert bool(got) == warned
    if warned:
        [d] = got
        assert d.severity.value == "warning" and "near 0%" in d.message and "`metric cer`" in d.help
        assert ("the default metric" in d.message) == (metric is None)
        assert metric is None or "study.vt:5" in d.message


def test_long_answers_in_the_hold_out_warn_in_the_run_too(tmp_path):
    imagefolder(tmp_path / "d", [f"{REPORT} ({k})" for k in range(10)])
    result = compile_file(str(recipe(tmp_path, "finetune all on tiny-qwen2.5-vl", "from ./d", "holdout 20%",
                                     "resize 64")))
    check = validate_for_run(result.plan, workers=1)
    assert {"VT435", "VT436"} <= {d.code for d in check.report.diagnostics}


# --- item 11: the data check's counts -------------------------------------------------------------------------


def test_duplicate_images_are_not_counted_as_cache_hits(tmp_path):
    folder = imagefolder(tmp_path / "d", ["a", "b", "c", "d"], same_image=True)  # 4 files, one content
    Image.new("RGB", (160, 120), (200, 0, 0)).save(folder / "003.png")  # now 2 contents: 3 copies + 1
    plan = compile_file(str(recipe(tmp_path, "finetune all on tiny-qwen2.5-vl", "from ./d", "resize 64"))).plan
    cold = scan_data(plan, workers=1)
    assert (cold.images, cold.cached, cold.same_content) == (4, 0, 2)
    assert "4 images (0 from the cache, 2 the same as another image, prepared once)" in cold.table()
    warm = scan_data(plan, workers=1)
    assert (warm.images, warm.cached, warm.same_content) == (4, 4, 0)
    assert "4 images (4 from the cache)" in warm.table()


def test_images_inside_a_datasets_dataset_are_counted(tmp_path):
    datasets = pytest.importorskip("datasets")
    images = [Image.new("RGB", (160, 120), (k * 40, 0, 0)) for k in range(3)]
    ds = datasets.Dataset.from_dict({"image": images, "text": ["a", "b", "c"]})
    ds = ds.cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "saved"))
    plan = compile_file(str(recipe(tmp_path, "finetune all on tiny-qwen2.5-vl", "from ./saved", "resize 64"))).plan
    report = scan_data(plan, workers=1)
    assert (report.rows, report.images) == (3, 3) and "3 images" in report.table()
