"""The run report's gallery for video rows: a strip of the clip's sampled frames instead of one image.

A synthetic finished run (report.synthetic_run) gets video settings in its plan and clips in some of its
predictions (frame folders: no decoder needed); the page's data must hold, for each video row, the thumbnails of
the frames the model saw (sampled with the plan's settings, at most STRIP_FRAMES), and the browser must draw them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vtc.runtime import report as R
from vtc.runtime.tiny_data import moving_square

VIDEO = {"fps": 2.0, "max_frames": 16, "min_frames": 4, "window": None,
         "resize": {"mode": "longest", "size": 56, "multiple": 28}, "temporal_patch": 2,
         "multi_frame_files": "images"}


def page_data(page: str) -> dict:
    import re

    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert m, "no report-data script"
    return json.loads(m.group(1))


def video_run(tmp_path: Path, frames: int = 12) -> tuple[Path, Path]:
    """A synthetic run of 6 rows whose rows 0 and 1 are clips: a frame folder of ``frames`` frames and a frame list
    (ShareGPT style); row 2's clip is gone since the run."""
    run = R.synthetic_run(tmp_path / "run", 6)
    plan = json.loads((run / "plan.json").read_text())
    plan["video"] = VIDEO
    (run / "plan.json").write_text(json.dumps(plan))
    clip = tmp_path / "clip"
    clip.mkdir()
    for i, frame in enumerate(moving_square("right", n=frames, size=56, seed=3)):
        frame.save(clip / f"frame_{i:03d}.png")
    listed = sorted(str(p) for p in clip.iterdir())[:6]
    preds = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    by_row = {p["row"]: p for p in preds}
    by_row[0].update(images=[], videos=[str(clip)])
    by_row[1].update(images=[], videos=[listed])
    by_row[2].update(images=[], videos=[str(tmp_path / "gone")])
    (run / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    return run, clip


def test_video_rows_show_a_strip_of_sampled_frames(tmp_path):
    run, clip = video_run(tmp_path, frames=12)
    page = R.write_report(run).read_text(encoding="utf-8")
    data = page_data(page)
    rows = {r["n"]: r for r in data["rows"]}
    # 12 frames without timing: each one sample at 2 fps, capped at 16 -> 12 frames; the strip shows 8 of them
    strip = rows[0]["v"]
    assert len(strip) == R.STRIP_FRAMES
    assert all(data["thumbs"][k].startswith("data:image/jpeg;base64,") for k in strip)
    assert rows[0]["t"] == strip[0] and rows[0]["b"] is not None  # a small set: a big strip for the lightbox
    assert rows[0]["p"] == [str(clip)]
    # a frame list of 6 frames: all 6 shown
    assert len(rows[1]["v"]) == 6
    # a clip gone since the run: no strip, the gallery says "no image"; the report is still written
    assert "v" not in rows[2] and rows[2]["t"] is None
    # image rows keep their one thumbnail
    assert "v" not in rows[3] and rows[3]["t"] is not None
    assert ".strip img" in page


def test_strip_frames_are_the_frames_the_model_saw(tmp_path):
    """The strip's frames are those read_clip samples with the plan's settings: with `at most 4 frames` the first
    and last thumbnails are the clip's first and last frames, in order (the square moves right)."""
    import base64
    import io

    from PIL import Image

    run, clip = video_run(tmp_path, frames=12)
    plan = json.loads((run / "plan.json").read_text())
    plan["video"] = dict(VIDEO, max_frames=4)
    (run / "plan.json").write_text(json.dumps(plan))
    data = page_data(R.write_report(run).read_text(encoding="utf-8"))
    row = next(r for r in data["rows"] if r["n"] == 0)
    assert len(row["v"]) == 4

    def brightest_x(uri: str) -> int:
        im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("L")
        cols = [sum(im.getpixel((x, y)) for y in range(im.height)) for x in range(im.width)]
        return max(range(im.width), key=cols.__getitem__)

    xs = [brightest_x(data["thumbs"][k]) for k in row["v"]]
    assert xs != sorted(xs, reverse=True) and xs[0] != xs[-1]


@pytest.mark.browser
def test_strip_in_a_browser(tmp_path):
    pytest.importorskip("selenium")
    from test_report_browser import find_chromium, open_report, start_browser

    if find_chromium()[0] is None:
        pytest.skip("chromium and chromedriver are not installed")
    run, _clip = video_run(tmp_path)
    html = R.write_report(run)
    driver = start_browser()
    try:
        loaded = open_report(driver, html)
        assert not loaded["severe"], loaded["severe"]
        frames = driver.execute_script(
            "return Array.from(document.querySelectorAll('#gallery .strip')).map("
            "s => [s.closest('.row').dataset.row, s.querySelectorAll('img').length,"
            " s.querySelector('img').naturalWidth > 0])")
        got = {row: (n, drawn) for row, n, drawn in frames}
        assert got["0"] == (R.STRIP_FRAMES, True) and got["1"][0] == 6
        assert "2" not in got
    finally:
        driver.quit()
