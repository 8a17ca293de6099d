"""Decoding clips (vtc.runtime.video): every container, frame folders and frame lists, cine DICOM with and without
frame timing, TIFF stacks; the sampled frames and rate on known clips; the frame size; PyAV missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from video_helpers import (CINE_SECRETS, hide_pyav, moving_square, video_settings, write_cine_dicom,
                           write_frame_folder, write_tiff_stack, write_video)

from vtc.diagnostics import VtcError
from vtc.runtime import video as V

pytest.importorskip("av")

CONTAINERS = [".mp4", ".webm", ".avi", ".mkv", ".mov"]




def centre_x(image) -> float:
    """The x of the white square's centre (the brightest pixels)."""
    a = np.asarray(image.convert("L"), dtype=np.float64)
    ys, xs = np.nonzero(a > 128)
    assert len(xs), "no square in the frame"
    return float(xs.mean())


@pytest.mark.parametrize("suffix", CONTAINERS)
def test_each_container_decodes_to_the_sampled_frames_in_order(tmp_path, suffix):
    # 4 s at 10 fps; 2 fps -> 8 frames evenly over the 40 (Qwen-VL's rule), 2 fps really sampled.
    frames = moving_square("right", n=40, size=64, seed=3)
    path = write_video(tmp_path / f"clip{suffix}", frames, fps=10)
    info = V.probe(path)
    assert (info.frames, info.fps, info.duration, info.width, info.height, info.kind) == (40, 10.0, 4.0, 64, 64,
                                                                                         "video")
    clip = V.read_clip(path, video_settings())
    assert clip.indices == [0, 6, 11, 17, 22, 28, 33, 39]
    assert clip.fps == pytest.approx(2.0)
    assert clip.times == pytest.approx([i / 10 for i in clip.indices])
    assert all(f.mode == "RGB" and f.size == (56, 56) for f in clip.frames)
    # The frames are the right ones, in order: the square moves right through them (lossy codecs: approximate).
    xs = [centre_x(f) for f in clip.frames]
    want = [centre_x(frames[i]) * 56 / 64 for i in clip.indices]
    assert xs == pytest.approx(want, abs=2.0)
    assert xs == sorted(xs) and xs[-1] - xs[0] > 10


def test_a_window_samples_only_its_seconds(tmp_path):
    path = write_video(tmp_path / "clip.mp4", moving_square("down", n=40, size=64), fps=10)
    clip = V.read_clip(path, video_settings(window={"start": 1.0, "end": 3.0}))
    # frames 10..29 (1 s to 3 s), 2 s x 2 fps = 4 frames.
    assert clip.indices == [10, 16, 23, 29]
    assert clip.fps == pytest.approx(2.0)
    assert clip.times[0] == pytest.approx(1.0)
    # to the end of the clip: end None
    clip = V.read_clip(path, video_settings(window={"start": 2.0, "end": None}))
    assert clip.indices[0] == 20 and clip.indices[-1] == 39 and len(clip.indices) == 4


def test_the_cap_thins_a_long_clip_and_the_floor_keeps_short_ones(tmp_path):
    path = write_video(tmp_path / "clip.mp4", moving_square("left", n=40, size=64), fps=10)
    capped = V.read_clip(path, video_settings(max_frames=4))
    assert capped.indices == [0, 13, 26, 39] and capped.fps == pytest.approx(1.0)
    slow = V.read_clip(path, video_settings(fps=0.5))  # 4 s x 0.5 = 2 frames, raised to min_frames 4
    assert len(slow.indices) == 4


def test_clip_part_is_what_the_collator_reads(tmp_path):
    path = write_video(tmp_path / "clip.mp4", moving_square("up", n=12, size=64), fps=4)
    part = V.read_clip(path, video_settings(resize={"mode": "pixels", "min_pixels": 28 * 28, "max_pixels": 56 * 84,
                                              "multiple": 28})).part()
    assert part["type"] == "video" and part["fps"] == pytest.approx(2.0)
    assert isinstance(part["video"], list) and len(part["video"]) == 6
    assert {im.size for im in part["video"]} == {(part["resized_width"], part["resized_height"])}
    assert (part["resized_width"], part["resized_height"]) == (56, 56)


def test_a_frame_folder_is_read_in_name_order_numbers_as_numbers(tmp_path):
    frames = moving_square("right", n=11, size=64)
    folder = tmp_path / "loop"
    folder.mkdir()
    for i, im in enumerate(frames):  # 0.png 1.png ... 10.png: "10" after "9", not after "1"
        im.save(folder / f"{i}.png")
    (folder / ".DS_Store").write_bytes(b"junk")
    (folder / "notes.txt").write_text("not a frame")
    info = V.probe(folder)
    assert (info.frames, info.fps, info.duration, info.kind) == (11, None, None, "frames")
    clip = V.read_clip(folder, video_settings())
    assert clip.indices == list(range(11))  # no timing: every frame is a sample
    assert clip.fps == pytest.approx(2.0)
    xs = [centre_x(f) for f in clip.frames]
    assert xs == sorted(xs) and xs[-1] > xs[0]
    thinned = V.read_clip(folder, video_settings(max_frames=4))
    assert thinned.indices == [0, 3, 7, 10]


def test_a_tuple_of_frame_paths_is_a_clip(tmp_path):
    folder = write_frame_folder(tmp_path / "f", moving_square("left", n=6, size=64), suffix=".jpg")
    paths = tuple(sorted(folder.iterdir()))
    clip = V.read_clip(paths, video_settings())
    assert len(clip.frames) == 6 and clip.source == paths
    assert V.probe(paths).kind == "frames"


@pytest.mark.parametrize("grey", [True, False])
def test_cine_dicom_with_frame_time(tmp_path, grey):
    pytest.importorskip("pydicom")
    frames = moving_square("right", n=20, size=64)
    if grey:
        frames = [f.convert("L") for f in frames]
    path = write_cine_dicom(tmp_path / "echo.dcm", frames, frame_time_ms=100)
    info = V.probe(path)
    assert (info.frames, info.fps, info.duration, info.kind) == (20, 10.0, 2.0, "dicom")
    clip = V.read_clip(path, video_settings())
    assert len(clip.indices) == 4 and clip.indices[0] == 0 and clip.indices[-1] == 19
    xs = [centre_x(f) for f in clip.frames]
    assert xs == sorted(xs) and xs[-1] > xs[0]
    assert all(f.mode == "RGB" and not f.info for f in clip.frames)


def test_cine_dicom_without_frame_time_counts_frames(tmp_path):
    pytest.importorskip("pydicom")
    path = write_cine_dicom(tmp_path / "loop.dcm", moving_square("up", n=7, size=64))
    info = V.probe(path)
    assert (info.frames, info.fps, info.kind) == (7, None, "dicom")
    assert V.read_clip(path, video_settings()).indices == list(range(7))


def test_dicom_frame_rate_tags():
    pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset

    from vtc.runtime.dicom import frame_rate

    ds = Dataset()
    assert frame_rate(ds) is None
    ds.CineRate = 25
    assert frame_rate(ds) == 25.0
    ds.RecommendedDisplayFrameRate = 30
    assert frame_rate(ds) == 30.0
    ds.FrameTime = 40.0
    assert frame_rate(ds) == 25.0
    ds.FrameTime = 0
    assert frame_rate(ds) == 30.0


def test_a_broken_cine_dicom_never_quotes_its_header(tmp_path):
    pytest.importorskip("pydicom")
    path = write_cine_dicom(tmp_path / "echo.dcm", moving_square("up", n=6, size=64), frame_time_ms=50)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 64 * 64 * 3 * 4])  # pixel data cut short
    with pytest.raises(VtcError) as caught:
        V.read_clip(path, video_settings())
    text = repr(caught.value.diagnostics)
    assert "echo.dcm" in text
    for secret in CINE_SECRETS.values():
        assert secret.split("^")[0] not in text


def test_a_tiff_stack_is_a_clip(tmp_path):
    path = write_tiff_stack(tmp_path / "stack.tif", moving_square("down", n=5, size=64))
    info = V.probe(path)
    assert (info.frames, info.fps, info.kind) == (5, None, "tiff")
    clip = V.read_clip(path, video_settings())
    assert clip.indices == list(range(5))
    ys = [float(np.nonzero(np.asarray(f.convert("L")) > 128)[0].mean()) for f in clip.frames]
    assert ys == sorted(ys) and ys[-1] > ys[0]


def test_is_video_file():
    assert V.is_video_file("a/b.MP4") and V.is_video_file(Path("x.webm")) and V.is_video_file("c.m4v")
    assert not V.is_video_file("a.png") and not V.is_video_file("loop/") and not V.is_video_file(("a.png",))


def test_without_pyav_a_video_file_names_the_extra_and_frames_still_read(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", moving_square("right", n=8, size=64), fps=4)
    folder = write_frame_folder(tmp_path / "f", moving_square("right", n=4, size=64))
    hide_pyav(monkeypatch)
    with pytest.raises(VtcError) as caught:
        V.probe(path)
    (d,) = caught.value.diagnostics
    assert d.code == "VT451" and "pip install 'vtc[video]'" in d.help and "clip.mp4" in d.message
    assert len(V.read_clip(folder, video_settings()).frames) == 4


def test_importing_the_module_does_not_import_pyav():
    import subprocess
    import sys

    code = "import sys, vtc.runtime.video; print('av' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".webm"])
def test_a_video_opened_as_an_image_says_it_is_a_clip(tmp_path, suffix):
    from vtc.runtime.images import open_image

    path = write_video(tmp_path / f"clip{suffix}", moving_square("right", n=4, size=64), fps=4)
    with pytest.raises(VtcError) as caught:
        open_image(path)
    (d,) = caught.value.diagnostics
    assert d.code == "VT421" and "clip" in d.message and "`video` column" in d.help
    assert "PNG or JPEG" not in d.help


def test_a_folder_of_one_frame_dicom_files_is_a_clip(tmp_path):
    pytest.importorskip("pydicom")
    folder = tmp_path / "series"
    for i, frame in enumerate(moving_square("right", n=5, size=64)):
        write_cine_dicom(folder / f"IM{i + 1}.dcm", [frame.convert("L")])
    info = V.probe(folder)
    assert (info.frames, info.kind, info.width) == (5, "frames", 64)
    xs = [centre_x(f) for f in V.read_clip(folder, video_settings()).frames]
    assert xs == sorted(xs) and xs[-1] > xs[0]
