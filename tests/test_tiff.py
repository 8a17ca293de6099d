"""Multi-page TIFF: `tiff pages first` (the default) gives one sample a file, `tiff pages all` one sample a page."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from runtime_helpers import recipe_plan
from vtc.runtime.images import frame_count, open_image
from vtc.runtime.validate import scan_data, validate_for_run

COLOURS = [(250, 0, 0), (0, 250, 0), (0, 0, 250)]


@pytest.fixture(autouse=True)
def image_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VTC_IMAGE_CACHE", str(tmp_path / "image-cache"))


def stack(path, colours=COLOURS, size=(150, 120)):
    pages = [Image.new("RGB", size, c) for c in colours]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    return path


def dataset(tmp_path):
    root = tmp_path / "scans"
    root.mkdir()
    stack(root / "three.tif")
    Image.new("RGB", (150, 120), (9, 9, 9)).save(root / "single.tif")
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "three.tif", "text": "stack"}) + "\n"
                                         + json.dumps({"file_name": "single.tif", "text": "one"}) + "\n")
    return root


def plan(tmp_path, pages, *clauses):
    return recipe_plan(tmp_path, "from ./scans", 'ask "What?"', "resize none", f"tiff pages {pages}", "seed 1",
                       *clauses)


def colour_of(row):
    return row["messages"][0]["content"][1]["image"].getpixel((5, 5))


def test_pages_open_one_by_one(tmp_path):
    path = stack(tmp_path / "s.tif")
    assert frame_count(path) == 3
    assert [open_image(path, frame=k).getpixel((0, 0)) for k in range(3)] == COLOURS


def test_first_page_only_by_default(tmp_path):
    rows = validate_for_run(plan(dataset(tmp_path).parent, "first")).train
    assert len(rows) == 2 and colour_of(rows[0]) == COLOURS[0]


def test_all_pages_give_one_sample_a_page(tmp_path):
    p = plan(dataset(tmp_path).parent, "all")
    report = scan_data(p)
    assert report.diagnostics == [] and report.images == 4 and report.rows == 4
    rows = validate_for_run(p).train
    assert [rows.answer(i) for i in range(len(rows))] == ["stack", "stack", "stack", "one"]
    assert [colour_of(rows[i]) for i in range(3)] == COLOURS
    assert [rows.frames(i) for i in range(4)] == [[0], [1], [2], [0]]
    assert rows.origin(0) == rows.origin(2) and rows.key(0) != rows.key(2)


def test_a_broken_page_is_reported_with_its_page(tmp_path, monkeypatch):
    root = dataset(tmp_path)
    from vtc.runtime import prepare

    real = prepare._decode

    def flaky(path, data, frame, window):
        if frame == 1:
            return None, {"ok": False, "code": "VT411", "problem": "the file is truncated", "size": None,
                          "format": "TIFF", "frames": 3}
        return real(path, data, frame, window)

    monkeypatch.setattr(prepare, "_decode", flaky)
    p = plan(root.parent, "all", "bad rows skip")
    check = validate_for_run(p)
    assert len(check.train) == 3 and check.skipped == [
        {"file": str(root / "metadata.jsonl"), "row": 1, "page": 2, "code": "VT411",
         "reason": "cannot read image three.tif (page 2): the file is truncated"}]
