"""sources/ and validate.py: source detection, the rows, hold-out, and every data mistake as a diagnostic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from vtc.diagnostics import Span, VtcError  # noqa: E402
from runtime_helpers import quoted, recipe_plan  # noqa: E402
from vtc.runtime.sources import detect_source, load_rows  # noqa: E402
from vtc.runtime.validate import scan_plan_data  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "recipes" / "data" / "shapes"


@pytest.fixture(autouse=True)
def image_cache(tmp_path, monkeypatch):
    """The data check stores prepared images in the image cache: keep the tests' out of the user's."""
    monkeypatch.setenv("VTC_IMAGE_CACHE", str(tmp_path / "image-cache"))


def make_plan(base, source, *clauses, split=None):
    """The compiled plan of a recipe in ``base`` reading ``source`` (`org/name` is a Hub dataset: write ./org/name
    for a folder) with ``clauses``; images keep their size unless a clause says `resize`."""
    where = f"from {quoted(source)}" + (f" split {split}" if split else "")
    keep_size = [] if any(c.startswith("resize") for c in clauses) else ["resize none"]
    return recipe_plan(base, where, 'ask "What colour is the shape?"', *keep_size, *clauses)


def png(path: Path, colour=(255, 0, 0), size=(160, 120)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def codes(exc) -> list[str]:
    return [d.code for d in exc.value.diagnostics]


# --- the shipped demo dataset ------------------------------------------------------------------------------------


def test_demo_dataset_is_small_balanced_and_in_imagefolder_form():
    total = sum(p.stat().st_size for p in SHAPES.rglob("*") if p.is_file())
    assert total < 1_000_000
    for split, n in (("train", 48), ("test", 20)):
        rows = [json.loads(line) for line in (SHAPES / split / "metadata.jsonl").read_text().splitlines()]
        assert len(rows) == n
        assert set(rows[0]) == {"file_name", "text", "shape"}
        colours = [r["text"] for r in rows]
        assert {c: colours.count(c) for c in set(colours)} == {c: n // 4 for c in ("red", "green", "blue", "yellow")}
        for r in rows:
            with Image.open(SHAPES / split / r["file_name"]) as im:
                assert im.size == (112, 112)


def test_demo_rows_train_and_test_split():
    plan = make_plan(REPO / "recipes", "./data/shapes", "resize 112")
    train, test = load_rows(plan, "train"), load_rows(plan, "eval")
    assert (len(train), len(test)) == (48, 20)
    assert "shapes/train" in train.description and "48 rows" in train.description
    assert "shapes/test" in test.description
    row = train[0]
    user, assistant = row["messages"]
    assert user["role"] == "user" and assistant["role"] == "assistant"
    assert user["content"][0] == {"type": "text", "text": "What colour is the shape?"}
    assert user["content"][1]["type"] == "image" and user["content"][1]["image"].size == (112, 112)
    first = json.loads((SHAPES / "train" / "metadata.jsonl").read_text().splitlines()[0])
    assert assistant["content"] == [{"type": "text", "text": first["text"]}]
    assert train.answer(0) == first["text"]
    assert train.images(0) == [SHAPES / "train" / first["file_name"]]
    assert train.origin(6) == Span(str(SHAPES / "train" / "metadata.jsonl"), 7)


def test_detect_source_describes_the_demo():
    info = detect_source(SHAPES)
    assert info.kind == "imagefolder" and info.splits == ("train", "test")
    assert info.description == "imagefolder shapes/train with metadata.jsonl"
    assert detect_source(SHAPES, "test").root == SHAPES / "test"


# --- imagefolder parity with Hugging Face datasets ----------------------------------------------------------------


@pytest.fixture
def imagefolder(tmp_path):
    root = tmp_path / "xrays"
    names = ["b.png", "c.png", "a.png", "sub/d.png", "e.png"]  # metadata order is not file order
    for k, n in enumerate(names):
        png(root / n, (k * 40, 0, 0))
    write_jsonl(root / "metadata.jsonl", [{"file_name": n, "caption": f"report {k}", "extra": k}
                                          for k, n in enumerate(names)])
    return root


def test_imagefolder_rows_match_load_dataset(imagefolder):
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("imagefolder", data_dir=str(imagefolder), split="train")
    rows = load_rows(make_plan(imagefolder.parent, "xrays"))
    assert len(rows) == len(ds)
    for i in range(len(ds)):
        assert Path(ds[i]["image"].filename).resolve() == rows.images(i)[0].resolve()
        assert ds[i]["caption"] == rows.answer(i)
        assert ds[i]["image"].convert("RGB").tobytes() == rows[i]["messages"][0]["content"][1]["image"].tobytes()


def test_imagefolder_split_folders_match_load_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    root = tmp_path / "ds"
    for split, n in (("train", 3), ("test", 2)):
        for k in range(n):
            png(root / split / f"img{k}.png")
        write_jsonl(root / split / "metadata.jsonl",
                    [{"file_name": f"img{k}.png", "text": f"{split} {k}"} for k in reversed(range(n))])
    plan = make_plan(tmp_path, "ds")
    for split, which in (("train", "train"), ("test", "eval")):
        ds = datasets.load_dataset("imagefolder", data_dir=str(root), split=split)
        rows = load_rows(plan, which)
        assert [rows.answer(i) for i in range(len(rows))] == ds["text"]
    plan_test = make_plan(tmp_path, "ds", split="test")
    assert load_rows(plan_test).answer(0) == "test 1"


def test_metadata_csv_and_answer_column(tmp_path):
    root = tmp_path / "forms"
    png(root / "1.png")
    png(root / "2.png")
    (root / "metadata.csv").write_text('file_name,report,total\n1.png,"a, b",3\n2.png,c,4\n')
    rows = load_rows(make_plan(tmp_path, "forms"))
    assert [rows.answer(0), rows.answer(1)] == ["a, b", "c"]
    assert rows.origin(1) == Span(str(root / "metadata.csv"), 3)
    rows = load_rows(make_plan(tmp_path, "forms", "answer from column total"))
    assert [rows.answer(0), rows.answer(1)] == ["3", "4"]


def test_several_images_per_metadata_row(tmp_path):
    root = tmp_path / "pairs"
    png(root / "l.png")
    png(root / "r.png")
    write_jsonl(root / "metadata.jsonl", [{"file_names": ["l.png", "r.png"], "text": "same"}])
    row = load_rows(make_plan(tmp_path, "pairs"))[0]
    assert [p["type"] for p in row["messages"][0]["content"]] == ["text", "image", "image"]


# --- the other source kinds ----------------------------------------------------------------------------------------


def test_captions_beside_images(tmp_path):
    root = tmp_path / "cap"
    png(root / "b.png")
    png(root / "a.jpg")
    (root / "a.txt").write_text("first caption\n")
    (root / "b.txt").write_text("second")
    info = detect_source(root)
    assert info.kind == "captions"
    rows = load_rows(make_plan(tmp_path, "cap"))
    assert [rows.answer(0), rows.answer(1)] == ["first caption", "second"]
    assert rows.origin(0) == Span(str(root / "a.txt"), 1)


def test_class_folders(tmp_path):
    root = tmp_path / "cls"
    png(root / "normal" / "1.png")
    png(root / "normal" / "2.png")
    png(root / "pneumonia" / "x.png")
    assert detect_source(root).kind == "classes"
    rows = load_rows(make_plan(tmp_path, "cls", "answer from folders"))
    assert [rows.answer(i) for i in range(3)] == ["normal", "normal", "pneumonia"]
    assert rows.origin(2) == Span(str(root / "pneumonia" / "x.png"))


def test_conversations_jsonl_with_several_images_and_a_system_prompt(tmp_path):
    png(tmp_path / "img" / "1.png", size=(10, 10))
    png(tmp_path / "img" / "2.png", size=(20, 10))
    rows_file = write_jsonl(tmp_path / "chats.jsonl", [
        {"messages": [
            {"role": "user", "content": [{"type": "text", "text": "Compare"}, {"type": "image", "image": "img/1.png"},
                                         {"type": "image", "image": "img/2.png"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "the second is wider"}]}]},
        "",
        {"messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]},
            {"role": "assistant", "content": "a square"}], "images": ["img/1.png"]},
    ])
    assert detect_source(rows_file).kind == "conversations"
    rows = load_rows(make_plan(tmp_path, "chats.jsonl", 'system "Be brief."'))
    assert len(rows) == 2
    first = rows[0]["messages"]
    assert first[0] == {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}
    sizes = [p["image"].size for p in first[1]["content"] if p["type"] == "image"]
    assert sizes == [(10, 10), (20, 10)]
    assert rows.answer(1) == "a square"
    assert rows.origin(1) == Span(str(rows_file), 3)
    assert rows.images(0) == [tmp_path / "img" / "1.png", tmp_path / "img" / "2.png"]


def test_conversations_json_array_reports_the_line_of_a_bad_row(tmp_path):
    png(tmp_path / "a.png")
    good = {"messages": [{"role": "user", "content": [{"type": "image", "image": "a.png"}]},
                         {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}]}
    bad = {"messages": [{"role": "user", "content": [{"type": "image", "image": "a.png"}]}]}
    (tmp_path / "rows.json").write_text("[\n" + json.dumps(good) + ",\n\n" + json.dumps(bad) + "\n]\n")
    with pytest.raises(VtcError) as exc:
        load_rows(make_plan(tmp_path, "rows.json"))
    d = exc.value.diagnostics[0]
    assert d.code == "VT412" and d.span == Span(str(tmp_path / "rows.json"), 4)


def test_flat_jsonl_table(tmp_path):
    png(tmp_path / "p" / "1.png")
    write_jsonl(tmp_path / "rows.jsonl", [{"image": "p/1.png", "answer": "one"}])
    info = detect_source(tmp_path / "rows.jsonl")
    assert info.kind == "table"
    rows = load_rows(make_plan(tmp_path, "rows.jsonl"))
    assert rows.answer(0) == "one" and rows.images(0) == [tmp_path / "p" / "1.png"]


def test_saved_dataset_and_parquet(tmp_path):
    datasets = pytest.importorskip("datasets")
    images = [Image.new("RGB", (8 + k, 8), (k * 50, 0, 0)) for k in range(3)]
    ds = datasets.Dataset.from_dict({"image": images, "caption": ["x", "y", "z"]},
                                    features=datasets.Features({"image": datasets.Image(),
                                                                "caption": datasets.Value("string")}))
    ds.save_to_disk(str(tmp_path / "saved"))
    ds.to_parquet(str(tmp_path / "pq" / "train.parquet"))
    for source, kind in (("saved", "saved"), ("pq", "parquet"), ("pq/train.parquet", "parquet")):
        assert detect_source(tmp_path / source).kind == kind
        rows = load_rows(make_plan(tmp_path, source))
        assert [rows.answer(i) for i in range(3)] == ["x", "y", "z"]
        assert rows[2]["messages"][0]["content"][1]["image"].size == (10, 8)
        assert rows.origin(1).line == 2


def test_hub_dataset_offline_is_a_clear_error(monkeypatch, tmp_path):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    with pytest.raises(VtcError) as exc:
        load_rows(make_plan(tmp_path, "unsloth/Radiology_mini", split="train"))
    d = exc.value.diagnostics[0]
    assert d.code == "VT416"
    assert "cannot download dataset unsloth/Radiology_mini" in d.message and "not in the local cache" in d.message


# --- hold-out ------------------------------------------------------------------------------------------------------


def test_holdout_is_seeded_disjoint_and_order_keeping(tmp_path):
    root = tmp_path / "many"
    for k in range(20):
        png(root / f"{k:02d}.png")
    write_jsonl(root / "metadata.jsonl", [{"file_name": f"{k:02d}.png", "text": str(k)} for k in range(20)])
    plan = make_plan(tmp_path, "many", "holdout 20%", "seed 11")
    train, held = load_rows(plan, "train"), load_rows(plan, "eval")
    a = [int(train.answer(i)) for i in range(len(train))]
    b = [int(held.answer(i)) for i in range(len(held))]
    assert (len(a), len(b)) == (16, 4)
    assert sorted(a + b) == list(range(20)) and a == sorted(a) and b == sorted(b)
    # The same seed holds out the same rows; the rule is a seeded shuffle of the indices.
    import random

    order = list(range(20))
    random.Random(11).shuffle(order)
    assert b == sorted(order[:4])
    assert [held.answer(i) for i in range(4)] == [load_rows(plan, "eval").answer(i) for i in range(4)]
    other = load_rows(make_plan(tmp_path, "many", "holdout 20%", "seed 12"), "eval")
    assert [other.answer(i) for i in range(4)] != [held.answer(i) for i in range(4)]
    assert "held out" in held.description


def test_no_eval_data_gives_empty_rows(tmp_path):
    png(tmp_path / "d" / "a.png")
    (tmp_path / "d" / "a.txt").write_text("x")
    assert len(load_rows(make_plan(tmp_path, "d"), "eval")) == 0


# --- mistakes -------------------------------------------------------------------------------------------------------


def test_missing_folder(tmp_path):
    with pytest.raises(VtcError) as exc:
        load_rows(make_plan(tmp_path, "nowhere"))
    assert codes(exc) == ["VT401"] and "nowhere" in exc.value.diagnostics[0].message


def test_empty_folder_and_empty_metadata(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VtcError) as exc:
        load_rows(make_plan(tmp_path, "empty"))
    assert codes(exc) == ["VT402"]
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "metadata.jsonl").write_text("")
    with pytest.raises(VtcError) as exc:
        load_rows(make_plan(tmp_path, "meta"))
    assert codes(exc) == ["VT402"]


def test_images_without_answers(tmp_path):
    png(tmp_path / "raw" / "a.png")
    with pytest.raises(VtcError) as exc:
        load_rows(make_plan(tmp_path, "raw"))
    assert codes(exc) == ["VT403"] and "metadata.jsonl" in exc.value.diagnostics[0].help


def test_every_bad_row_is_reported_with_its_line(tmp_path):
    root = tmp_path / "bad"
    png(root / "ok.png")
    meta = write_jsonl(root / "metadata.jsonl", [
        {"file_name": "ok.png", "text": "fine"},
        {"file_name": "gone.png", "text": "lost"},
        {"file_name": "ok.png", "text": "  "},
        {"file_name": "ok.png"},
    ])
    with pytest.raises(VtcError) as exc:
        load_rows(make_plan(tmp_path, "bad"))
    got = [(d.code, d.span) for d in exc.value.diagnostics]
    assert got == [("VT409", Span(str(meta), 2)), ("VT412", Span(str(meta), 3)), ("VT412", Span(str(meta), 4))]
    assert "gone.png" in exc.value.diagnostics[0].message


def test_unknown_answer_column_suggests_the_right_one(tmp_path):
    root = tmp_path / "cols"
    png(root / "a.png")
    write_jsonl(root / "metadata.jsonl", [{"file_name": "a.png", "report": "x"}])
    with pytest.raises(VtcError) as exc:
        load_rows(make_plan(tmp_path, "cols", "answer from column reprot"))
    d = exc.value.diagnostics[0]
    assert d.code == "VT405" and d.help == "did you mean `report`?"


def test_no_recognisable_answer_column(tmp_path):
    root = tmp_path / "cols"
    png(root / "a.png")
    write_jsonl(root / "metadata.jsonl", [{"file_name": "a.png", "diagnosis": "x"}])
    with pytest.raises(VtcError) as exc:
        load_rows(make_plan(tmp_path, "cols"))
    d = exc.value.diagnostics[0]
    assert d.code == "VT406" and "answer from column diagnosis" in d.help


def test_bad_json_line(tmp_path):
    root = tmp_path / "j"
    png(root / "a.png")
    write_jsonl(root / "metadata.jsonl", [{"file_name": "a.png", "text": "x"}, '{"file_name": "a.png", text}'])
    with pytest.raises(VtcError) as exc:
        load_rows(make_plan(tmp_path, "j"))
    assert codes(exc) == ["VT408"] and exc.value.diagnostics[0].span.line == 2


def test_path_escaping_the_dataset_is_refused(tmp_path):
    png(tmp_path / "secret.png")
    root = tmp_path / "esc"
    write_jsonl(root / "metadata.jsonl", [{"file_name": "../secret.png", "text": "x"}])
    with pytest.raises(VtcError) as exc:
        load_rows(make_plan(tmp_path, "esc"))
    assert codes(exc) == ["VT415"]


def test_answer_mode_that_does_not_fit_the_source(tmp_path):
    with pytest.raises(VtcError) as exc:
        load_rows(make_plan(REPO / "recipes", "./data/shapes", "answer from captions"))
    assert codes(exc) == ["VT413"]


def test_unknown_split(tmp_path):
    with pytest.raises(VtcError) as exc:
        load_rows(make_plan(REPO / "recipes", "./data/shapes", split="validation"))
    assert codes(exc) == ["VT404"] and "train, test" in exc.value.diagnostics[0].message


def test_images_open_lazily_and_unreadable_ones_name_the_row(tmp_path):
    root = tmp_path / "lazy"
    png(root / "a.png")
    (root / "b.png").write_bytes(b"garbage")
    meta = write_jsonl(root / "metadata.jsonl", [{"file_name": "a.png", "text": "x"},
                                                 {"file_name": "b.png", "text": "y"}])
    rows = load_rows(make_plan(tmp_path, "lazy"))  # no image opened yet: no error
    assert rows[0]["messages"][1]["content"][0]["text"] == "x"
    with pytest.raises(VtcError) as exc:
        rows[1]
    d = exc.value.diagnostics[0]
    assert d.code == "VT411" and d.span == Span(str(meta), 2) and "b.png" in d.message


# --- validate.scan_plan_data -----------------------------------------------------------------------------------------


def test_scan_reports_every_problem_at_once(tmp_path):
    root = tmp_path / "scan"
    png(root / "train" / "ok.png")
    (root / "train" / "zero.png").write_bytes(b"")
    (root / "train" / "junk.png").write_bytes(b"not a png")
    png(root / "train" / "stray.png")
    write_jsonl(root / "train" / "metadata.jsonl", [
        {"file_name": "ok.png", "text": "a"},
        {"file_name": "zero.png", "text": "b"},
        {"file_name": "junk.png", "text": "c"},
    ])
    png(root / "test" / "t.png")
    write_jsonl(root / "test" / "metadata.jsonl", [{"file_name": "t.png", "text": ""},
                                                   {"file_name": "missing.png", "text": "d"}])
    found = scan_plan_data(make_plan(tmp_path, "scan"))
    got = sorted((d.code, Path(d.span.file).parent.name, d.span.line) for d in found)
    # VT435: both rows of test/ are bad, so no evaluation row is left.
    assert got == [("VT409", "test", 2), ("VT411", "train", 2), ("VT411", "train", 3), ("VT412", "test", 1),
                   ("VT420", "train", 0), ("VT435", "test", 0)]
    zero = next(d for d in found if d.code == "VT411" and d.span.line == 2)
    assert "zero.png" in zero.message and "0 bytes" in zero.message
    stray = next(d for d in found if d.code == "VT420")
    assert not stray.is_error and "stray.png" in stray.message


def test_scan_of_good_data_is_empty():
    assert scan_plan_data(make_plan(REPO / "recipes", "./data/shapes")) == []


def test_scan_of_a_missing_folder():
    found = scan_plan_data(make_plan(REPO, "no/such/folder"))
    assert [d.code for d in found] == ["VT401"]


def test_scan_and_rows_never_import_torch(tmp_path):
    code = (
        "import sys, json\n"
        "from vtc.runtime.validate import scan_plan_data\n"
        "from vtc.runtime.sources import load_rows\n"
        f"plan = json.loads({json.dumps(json.dumps(make_plan(REPO / 'recipes', './data/shapes')))})\n"
        "assert scan_plan_data(plan) == []\n"
        "rows = load_rows(plan); rows[0]\n"
        "import vtc.runtime, vtc.runtime.images\n"
        "bad = [m for m in ('torch', 'transformers', 'datasets', 'trl', 'peft') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
