"""The data check of clips (vtc.runtime.video.check_clip through vtc.runtime.validate): every problem a row
diagnostic with its data file and row, counted in the summary table, honoured by `bad rows skip`; DICOM header
text in no output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from video_helpers import (CINE_SECRETS, hide_pyav, moving_square, video_settings, write_cine_dicom,
                           write_frame_folder, write_tiff_stack, write_video)

from vtc.diagnostics import Span
from vtc.runtime.sources.rows import Record, Rows
from vtc.runtime.validate import DataReport, _scan_rows

pytest.importorskip("av")

GEOMETRY = {"kind": "patches", "patch_size": 14, "merge_size": 2, "min_pixels": 3136, "max_pixels": 12845056}




def plan_for(video: dict | None, *, max_length=2048, family="qwen2_5_vl") -> dict:
    return {"images": {"resize": {"mode": "longest", "size": 56}, "window": None}, "video": video,
            "training": {"max_length": max_length}, "model": {"family": family, "geometry": GEOMETRY},
            "data": {"bad_rows": "stop", "eval": None, "holdout": None}}


def scan(tmp_path, clips: list, plan: dict) -> tuple[list, DataReport, Rows]:
    """_scan_rows over one row per clip (metadata.jsonl rows 1, 2, ...)."""
    data = tmp_path / "metadata.jsonl"
    records = [Record(origin=Span(str(data), i + 1), answer="right", videos=(c,)) for i, c in enumerate(clips)]
    rows = Rows(records, description="test rows", instruction="Which way?", system=None,
                resize=plan["images"]["resize"], window=None, video=plan["video"])
    report = DataReport()
    found = _scan_rows(rows, plan, None, 1, {}, report, {"fresh": set(), "hits": []})
    return found, report, rows


def codes(found) -> list[str]:
    return [d.code for d in found]


def clip40(tmp_path, name="clip.mp4", n=40, fps=10):
    return write_video(tmp_path / name, moving_square("right", n=n, size=64), fps=fps)


def test_a_good_clip_has_no_problem_and_is_counted(tmp_path):
    found, report, _ = scan(tmp_path, [clip40(tmp_path)], plan_for(video_settings()))
    assert found == []
    assert report.clips == 1 and report.text_only_rows == 0
    (checked,) = report.clip_checks.values()
    assert checked["info"]["sampled"] == 8 and checked["info"]["frame_size"] == (56, 56)
    assert checked["info"]["tokens"] == 4 * 2 * 2  # ceil(8 / 2) x (56 / 28) x (56 / 28)
    assert "1 clip" in report.table()


def test_unreadable_truncated_and_not_a_video(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video at all" * 100)
    empty = tmp_path / "empty.webm"
    empty.write_bytes(b"")
    good = clip40(tmp_path, "whole.mp4", n=60)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    found, report, rows = scan(tmp_path, [garbage, empty, cut, text], plan_for(video_settings()))
    assert codes(found) == ["VT450"] * 4
    assert [d.span.line for d in found] == [1, 2, 3, 4]
    assert all(d.span.file.endswith("metadata.jsonl") and d.help for d in found)
    assert "empty (0 bytes)" in found[1].message
    assert "garbage.mp4" in found[0].message and "cut.mp4" in found[2].message
    assert len(report.bad) == 4
    report.diagnostics = found
    assert "unreadable or truncated clip" in report.table() and "rows with errors" in report.table()


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".avi", ".mkv", ".mov"])
def test_a_clip_cut_short_is_truncated_in_every_container(tmp_path, suffix):
    whole = write_video(tmp_path / f"whole{suffix}", moving_square("right", n=60, size=64), fps=10)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    found, _, _ = scan(tmp_path, [whole, cut], plan_for(video_settings()))
    (d,) = found
    assert d.code == "VT450" and d.span.line == 2 and "cut" + suffix in d.message
    assert "truncated" in d.message


def test_missing_file_and_folder(tmp_path):
    found, report, _ = scan(tmp_path, [tmp_path / "gone.mp4", tmp_path / "gone_folder"], plan_for(video_settings()))
    assert codes(found) == ["VT410", "VT410"]
    assert "gone.mp4" in found[0].message and "gone_folder" in found[1].message


def test_zero_frames(tmp_path):
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    found, _, _ = scan(tmp_path, [empty_folder, ()], plan_for(video_settings()))
    assert codes(found) == ["VT452", "VT452"]


def test_a_clip_shorter_than_one_sample_gives_the_numbers(tmp_path):
    short = clip40(tmp_path, "blink.mp4", n=4, fps=10)  # 0.4 s
    found, _, _ = scan(tmp_path, [short], plan_for(video_settings(fps=1.0)))
    (d,) = found
    assert d.code == "VT453" and d.is_error
    assert "0.4 s" in d.message and "1 fps" in d.message and "0.4 frames" in d.message
    assert "fps" in d.help


def test_a_window_outside_the_clip(tmp_path):
    found, _, _ = scan(tmp_path, [clip40(tmp_path)], plan_for(video_settings(window={"start": 10.0, "end": 20.0})))
    (d,) = found
    assert d.code == "VT454" and "10 s" in d.message and "4 s" in d.message
    assert "between" in d.help


def test_a_clip_far_longer_than_the_cap_warns_with_the_rates(tmp_path):
    found, report, _ = scan(tmp_path, [clip40(tmp_path)], plan_for(video_settings(max_frames=2)))
    (d,) = found
    assert d.code == "VT455" and not d.is_error
    assert "sampled at 0.5 fps instead of 2" in d.message and "8 frames" in d.message
    assert report.bad == {}
    # at 2 x the cap exactly: no warning
    found, _, _ = scan(tmp_path, [clip40(tmp_path)], plan_for(video_settings(max_frames=4)))
    assert found == []


def test_mismatched_frame_sizes_name_the_odd_frame(tmp_path):
    folder = write_frame_folder(tmp_path / "loop", moving_square("right", n=5, size=64))
    Image.new("RGB", (80, 48)).save(folder / "frame_003.png")
    found, _, _ = scan(tmp_path, [folder], plan_for(video_settings()))
    (d,) = found
    assert d.code == "VT456"
    assert "frame_003.png" in d.message and "80 x 48" in d.message and "64 x 64" in d.message
    assert "frame_000.png" in d.message


def test_a_frame_linked_from_outside_its_folder_is_never_opened(tmp_path):
    folder = write_frame_folder(tmp_path / "loop", moving_square("right", n=3, size=64))
    secret = tmp_path / "elsewhere" / "private.png"
    secret.parent.mkdir()
    Image.new("RGB", (64, 64)).save(secret)
    (folder / "frame_003.png").symlink_to(secret)
    found, _, _ = scan(tmp_path, [folder], plan_for(video_settings()))
    (d,) = found
    assert d.code == "VT415" and "frame_003.png" in d.message


def test_tokens_over_max_length_warn_with_the_numbers(tmp_path):
    plan = plan_for(video_settings(resize={"mode": "longest", "size": 112, "multiple": 28}), max_length=40)
    found, _, _ = scan(tmp_path, [clip40(tmp_path)], plan)
    (d,) = found
    assert d.code == "VT457" and not d.is_error
    # 8 frames of 112 x 112: ceil(8/2) x 4 x 4 = 64 tokens
    assert "8 frames of 112 x 112 px are 64 video tokens" in d.message and "max length 40" in d.message


def test_a_family_without_video_names_those_with_it(tmp_path):
    found, report, _ = scan(tmp_path, [clip40(tmp_path), tmp_path / "never_opened.mp4"],
                            plan_for(None, family="mllama"))
    assert codes(found) == ["VT458", "VT458"]
    assert "Llama 3.2 Vision" in found[0].message and "Qwen2.5-VL" in found[0].help
    assert report.clips == 0 and len(report.bad) == 2


def test_without_pyav_the_check_names_the_extra(tmp_path, monkeypatch):
    clip = clip40(tmp_path)
    folder = write_frame_folder(tmp_path / "f", moving_square("up", n=4, size=64))
    hide_pyav(monkeypatch)
    found, _, _ = scan(tmp_path, [clip, folder], plan_for(video_settings()))
    (d,) = found
    assert d.code == "VT451" and "pip install 'vtc[video]'" in d.help and d.span.line == 1


def test_a_clip_in_two_rows_is_checked_once_and_reported_for_each(tmp_path):
    bad = tmp_path / "bad.mov"
    bad.write_bytes(b"\x00" * 500)
    found, report, _ = scan(tmp_path, [bad, bad], plan_for(video_settings()))
    assert codes(found) == ["VT450", "VT450"] and [d.span.line for d in found] == [1, 2]
    assert report.clips == 1 and len(report.bad) == 2


def test_cine_dicom_and_tiff_stack_pass(tmp_path):
    pytest.importorskip("pydicom")
    cine = write_cine_dicom(tmp_path / "echo.dcm", moving_square("left", n=12, size=64), frame_time_ms=100)
    stack = write_tiff_stack(tmp_path / "stack.tif", moving_square("left", n=6, size=64))
    found, report, _ = scan(tmp_path, [cine, stack], plan_for(video_settings()))
    assert found == [] and report.clips == 2


# --- through the real `vtc check --data` --------------------------------------------------------------------------

RECIPE = """finetune all on tiny-qwen2.5-vl
using lora
from ./data
ask "Which way does the square move?"
answer from column text
{video}
train for 2 steps
save to ./runs/out
"""


def vtc_check(recipe: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vtc", "check", "--data", str(recipe), *args], capture_output=True,
                          text=True, cwd=recipe.parent, timeout=300)


def clip_folder(tmp_path: Path) -> Path:
    """A data folder of clips with one of each problem, listed in metadata.jsonl (column `video`)."""
    data = tmp_path / "data"
    data.mkdir()
    write_video(data / "good.mp4", moving_square("right", n=40, size=64), fps=10)
    write_video(data / "short.mp4", moving_square("left", n=2, size=64), fps=10)
    (data / "broken.mp4").write_bytes(b"not a video" * 50)
    odd = write_frame_folder(data / "odd", moving_square("up", n=4, size=64))
    Image.new("RGB", (32, 32)).save(odd / "frame_002.png")
    write_cine_dicom(data / "echo.dcm", moving_square("down", n=10, size=64), frame_time_ms=100)
    cut = write_cine_dicom(data / "echo_cut.dcm", moving_square("down", n=10, size=64), frame_time_ms=100)
    cut.write_bytes(cut.read_bytes()[:-64 * 64 * 3 * 5])  # half its pixel data gone
    rows = [("good.mp4", "right"), ("short.mp4", "left"), ("broken.mp4", "left"), ("odd", "up"),
            ("echo.dcm", "down"), ("echo_cut.dcm", "down")]
    (data / "metadata.jsonl").write_text("".join(json.dumps({"video": v, "text": t}) + "\n" for v, t in rows))
    return data


def test_check_data_cli_reports_every_clip_problem_without_header_text(tmp_path):
    pytest.importorskip("pydicom")
    clip_folder(tmp_path)
    recipe = tmp_path / "clips.vt"
    recipe.write_text(RECIPE.format(video="video 2 fps, at most 16 frames, frame size 56"))
    text = vtc_check(recipe)
    as_json = vtc_check(recipe, "--format", "json")
    outputs = text.stdout + text.stderr, as_json.stdout + as_json.stderr
    assert "Traceback" not in outputs[0] + outputs[1]
    for code, line in (("VT453", 2), ("VT450", 3), ("VT456", 4), ("VT411", 6)):
        assert f"[{code}]" in outputs[0], outputs[0]
        assert f"metadata.jsonl:{line}" in outputs[0]
    assert "6 clips" in outputs[0]
    assert "rows with errors" in outputs[0]
    assert "VT420" not in outputs[0]  # a frame folder's frames and a cine DICOM are listed (as clips)
    assert "`video 5 fps` takes one frame" in outputs[0]  # 0.2 s: 5 fps is the slowest rate that takes one
    assert text.returncode != 0
    for out in outputs:
        for secret in CINE_SECRETS.values():
            for piece in secret.replace("^", " ").split():
                assert piece not in out, f"header text {piece!r} leaked"


def test_check_data_cli_bad_rows_skip_keeps_going(tmp_path):
    clip_folder(tmp_path)
    recipe = tmp_path / "clips.vt"
    recipe.write_text(RECIPE.format(video="video 2 fps, frame size 56") + "bad rows skip\n")
    out = vtc_check(recipe)
    text = out.stdout + out.stderr
    assert "Traceback" not in text
    assert "skipped_rows.jsonl" in text or "leaves them out" in text, text


def test_check_data_cli_a_family_without_video(tmp_path):
    data = tmp_path / "data"
    write_video(data / "a.mp4", moving_square("right", n=8, size=64), fps=4)
    (data / "metadata.jsonl").write_text(json.dumps({"video": "a.mp4", "text": "right"}) + "\n")
    recipe = tmp_path / "llama.vt"
    recipe.write_text(RECIPE.format(video="").replace("tiny-qwen2.5-vl", "tiny-llama-3.2-vision"))
    out = vtc_check(recipe)
    text = out.stdout + out.stderr
    assert "error[VT458]" in text and "metadata.jsonl:1" in text and "Qwen2.5-VL" in text, text
    assert "Traceback" not in text and out.returncode != 0
