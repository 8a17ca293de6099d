"""The clip cache (vtc.runtime.cache.ClipCache, vtc.runtime.video.read_clip's ``cache``): a clip read twice is
decoded once, the cached frames are pixel for pixel the decoded ones, any change of content or settings is a new
entry, a damaged entry is decoded again, concurrent fills are safe, the cap trims clip entries; the rows of a run,
the data check, the report and `vtc cache` use it."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from video_helpers import (moving_square, video_settings, write_cine_dicom, write_frame_folder, write_tiff_stack,
                           write_video)

from vtc.diagnostics import Span, VtcError
from vtc.runtime import video as V
from vtc.runtime.cache import ClipCache, clip_cache_dir


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A clip cache in the test's folder (and the default one there too, for code that takes the default)."""
    monkeypatch.setenv("VTC_CLIP_CACHE", str(tmp_path / "clips"))
    return ClipCache(tmp_path / "clips")


class Counter:
    """Counts the calls of vtc.runtime.video's decoder and prober (monkeypatched over them)."""

    def __init__(self, monkeypatch):
        self.decodes = self.probes = 0
        decode, probe = V._decode, V.probe

        def counted_decode(*args, **kwargs):
            self.decodes += 1
            return decode(*args, **kwargs)

        def counted_probe(*args, **kwargs):
            self.probes += 1
            return probe(*args, **kwargs)

        monkeypatch.setattr(V, "_decode", counted_decode)
        monkeypatch.setattr(V, "probe", counted_probe)


def same_clip(a: V.Clip, b: V.Clip) -> None:
    assert (a.fps, a.indices, a.times, tuple(a.size)) == (b.fps, b.indices, b.times, tuple(b.size))
    assert len(a.frames) == len(b.frames)
    for x, y in zip(a.frames, b.frames):
        assert x.mode == y.mode == "RGB" and x.size == y.size
        assert np.array_equal(np.asarray(x), np.asarray(y))


def sources(tmp_path: Path) -> dict:
    frames = moving_square("right", n=20, size=64, seed=5)
    out = {"folder": write_frame_folder(tmp_path / "loop", frames[:10]),
           "list": tuple(sorted(str(p) for p in write_frame_folder(tmp_path / "listed", frames[10:]).iterdir())),
           "tiff": write_tiff_stack(tmp_path / "stack.tif", frames[:8])}
    try:
        import av  # noqa: F401

        out["mp4"] = write_video(tmp_path / "clip.mp4", frames, fps=10)
    except ImportError:
        pass
    try:
        import pydicom  # noqa: F401

        out["dicom"] = write_cine_dicom(tmp_path / "cine.dcm", frames[:12], frame_time_ms=100)
    except ImportError:
        pass
    return out


def test_the_second_read_decodes_nothing_and_gives_the_same_frames(tmp_path, cache, monkeypatch):
    found = sources(tmp_path)
    decoded = {name: V.read_clip(src, video_settings()) for name, src in found.items()}  # no cache: decoding
    calls = Counter(monkeypatch)
    first = {name: V.read_clip(src, video_settings(), cache=cache) for name, src in found.items()}
    assert calls.decodes == len(found)
    assert cache.stats()[0] == len(found)
    again = {name: V.read_clip(src, video_settings(), cache=cache) for name, src in found.items()}
    assert calls.decodes == len(found) and calls.probes == len(found)  # the second reads: neither probed nor decoded
    for name in found:
        same_clip(first[name], decoded[name])
        same_clip(again[name], decoded[name])
        assert again[name].source == found[name]
        assert again[name].part()["video"][0].size == decoded[name].part()["video"][0].size


def test_the_cache_is_off_unless_asked(tmp_path, cache, monkeypatch):
    folder = write_frame_folder(tmp_path / "loop", moving_square("up", n=6, size=32))
    calls = Counter(monkeypatch)
    V.read_clip(folder, video_settings())
    V.read_clip(folder, video_settings(), cache=False)
    assert calls.decodes == 2 and cache.stats() == (0, 0)
    V.read_clip(folder, video_settings(), cache=True)  # True: the default cache ($VTC_CLIP_CACHE here)
    V.read_clip(folder, video_settings(), cache=True)
    assert calls.decodes == 3 and cache.stats()[0] == 1


def test_a_changed_file_gives_a_new_entry(tmp_path, cache):
    pytest.importorskip("av")
    path = tmp_path / "clip.mp4"
    write_video(path, moving_square("right", n=20, size=64, seed=1), fps=10)
    key = V.clip_key(path, video_settings())
    right = V.read_clip(path, video_settings(), cache=cache)
    write_video(path, moving_square("left", n=20, size=64, seed=1), fps=10)  # same name, other bytes
    assert V.clip_key(path, video_settings()) != key
    left = V.read_clip(path, video_settings(), cache=cache)
    assert cache.stats()[0] == 2
    same_clip(left, V.read_clip(path, video_settings()))
    assert not np.array_equal(np.asarray(left.frames[0]), np.asarray(right.frames[0]))


def test_a_changed_frame_in_a_folder_gives_a_new_entry(tmp_path, cache):
    frames = moving_square("right", n=8, size=32, seed=2)
    folder = write_frame_folder(tmp_path / "loop", frames)
    keys = {V.clip_key(folder, video_settings())}
    V.read_clip(folder, video_settings(), cache=cache)
    moving_square("left", n=8, size=32, seed=9)[3].save(folder / "frame_003.png")  # one frame replaced
    keys.add(V.clip_key(folder, video_settings()))
    changed = V.read_clip(folder, video_settings(), cache=cache)
    same_clip(changed, V.read_clip(folder, video_settings()))
    frames[0].save(folder / "frame_008.png")  # a frame added
    keys.add(V.clip_key(folder, video_settings()))
    (folder / "notes.txt").write_text("not a frame")  # not a frame: the same clip
    keys.add(V.clip_key(folder, video_settings()))
    assert len(keys) == 3
    # the same frames listed (not a folder) are another entry: the frames are the same, the key says how it was given
    listed = tuple(str(p) for p in V.folder_frames(folder))
    assert V.clip_key(listed, video_settings()) not in keys


@pytest.mark.parametrize("change", [
    {"fps": 1.0}, {"max_frames": 4}, {"min_frames": 8}, {"window": {"start": 0.5, "end": None}},
    {"window": {"start": 0.0, "end": 2.0}}, {"resize": {"mode": "longest", "size": 28, "multiple": 28}},
    {"temporal_patch": 1},
])
def test_changed_video_settings_give_a_new_entry(tmp_path, cache, change):
    folder = write_frame_folder(tmp_path / "loop", moving_square("down", n=10, size=64, seed=4))
    base = V.read_clip(folder, video_settings(), cache=cache)
    other = V.read_clip(folder, video_settings(**change), cache=cache)
    assert V.clip_key(folder, video_settings(**change)) != V.clip_key(folder, video_settings())
    assert cache.stats()[0] == 2
    same_clip(other, V.read_clip(folder, video_settings(**change)))
    same_clip(V.read_clip(folder, video_settings(), cache=cache), base)


def test_the_dicom_window_is_part_of_the_key(tmp_path, cache):
    folder = write_frame_folder(tmp_path / "loop", moving_square("down", n=4, size=32))
    keys = {V.clip_key(folder, video_settings(), window=w) for w in (None, {"center": 40.0, "width": 400.0},
                                                                      {"center": 50.0, "width": 400.0})}
    assert len(keys) == 3


@pytest.mark.parametrize("damage", ["truncate a frame", "remove a frame", "remove the JSON", "garble the JSON"])
def test_a_damaged_entry_is_decoded_again(tmp_path, cache, monkeypatch, damage):
    folder = write_frame_folder(tmp_path / "loop", moving_square("right", n=8, size=64, seed=6))
    want = V.read_clip(folder, video_settings(), cache=cache)
    key = V.clip_key(folder, video_settings())
    meta_path, frame = cache._paths(key)[0], cache.frame_path(key, 2)
    if damage == "truncate a frame":
        frame.write_bytes(frame.read_bytes()[:40])
    elif damage == "remove a frame":
        frame.unlink()
    elif damage == "remove the JSON":
        meta_path.unlink()
    else:
        meta_path.write_text('{"frames": 8, "fps": ')
    calls = Counter(monkeypatch)
    same_clip(V.read_clip(folder, video_settings(), cache=cache), want)
    assert calls.decodes == 1
    same_clip(V.read_clip(folder, video_settings(), cache=cache), want)  # the entry was written again, whole
    assert calls.decodes == 1


def test_threads_filling_one_entry_at_once_are_safe(tmp_path, cache):
    folder = write_frame_folder(tmp_path / "loop", moving_square("left", n=12, size=64, seed=7))
    want = V.read_clip(folder, video_settings())
    got, errors = [], []
    start = threading.Barrier(8)

    def read():
        try:
            start.wait()
            got.append(V.read_clip(folder, video_settings(), cache=ClipCache(cache.root)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 8
    for clip in got:
        same_clip(clip, want)
    assert cache.stats()[0] == 1
    files = [p.name for p in cache.root.rglob("*") if p.is_file()]
    assert not [n for n in files if n.startswith(".tmp-")]  # every write renamed into place or removed
    assert len(files) == 1 + len(want.frames)
    same_clip(V.read_clip(folder, video_settings(), cache=cache), want)


def _fill(root: str, folder: str, out: str) -> None:  # a child process's work (spawned: module-level)
    clip = V.read_clip(Path(folder), video_settings(), cache=ClipCache(root))
    np.save(out, np.stack([np.asarray(f) for f in clip.frames]))


def test_processes_filling_one_entry_at_once_are_safe(tmp_path, cache):
    import multiprocessing

    folder = write_frame_folder(tmp_path / "loop", moving_square("up", n=12, size=64, seed=8))
    want = np.stack([np.asarray(f) for f in V.read_clip(folder, video_settings()).frames])
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_fill, args=(str(cache.root), str(folder), str(tmp_path / f"out{k}.npy")))
             for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4
    for k in range(4):
        assert np.array_equal(np.load(tmp_path / f"out{k}.npy"), want)
    assert cache.stats()[0] == 1
    assert not [p for p in cache.root.rglob(".tmp-*")]


def test_the_cap_trims_clip_entries(tmp_path):
    folders = [write_frame_folder(tmp_path / f"loop{k}", moving_square("right", n=8, size=64, seed=k))
               for k in range(4)]
    one = ClipCache(tmp_path / "probe")
    V.read_clip(folders[0], video_settings(), cache=one)
    entry_bytes = one.stats()[1]
    # room for two entries and a half: each write trims (it wrote over 1 % of the cap), the oldest go first
    small = ClipCache(tmp_path / "clips", limit=int(entry_bytes * 2.5))
    import os
    import time

    for k, folder in enumerate(folders):
        V.read_clip(folder, video_settings(), cache=small)
        key = V.clip_key(folder, video_settings())
        old = time.time() - 10_000 + k * 100  # an older use for each earlier entry (the JSON's time is the use)
        os.utime(small._paths(key)[0], (old, old))
    entries, size = small.stats()
    assert entries <= 3 and size <= small.limit
    assert small.meta(V.clip_key(folders[-1], video_settings())) is not None  # the newest stays
    assert small.meta(V.clip_key(folders[0], video_settings())) is None  # the oldest went
    assert not list(small.root.rglob(f"{V.clip_key(folders[0], video_settings())}.*"))  # its frames too


def test_no_key_for_what_cannot_be_hashed_safely(tmp_path, cache):
    assert V.clip_key(tmp_path / "gone.mp4", video_settings()) is None
    (tmp_path / "empty").mkdir()
    assert V.clip_key(tmp_path / "empty", video_settings()) is None
    # a frame linking outside its folder: never read for a key; the decoder reports it (VT415), nothing is cached
    outside = tmp_path / "elsewhere.png"
    moving_square("up", n=1, size=32)[0].save(outside)
    folder = write_frame_folder(tmp_path / "loop", moving_square("up", n=4, size=32))
    (folder / "frame_004.png").symlink_to(outside)
    assert V.clip_key(folder, video_settings()) is None
    with pytest.raises(VtcError) as err:
        V.read_clip(folder, video_settings(), Span("data.csv", 3), cache=cache)
    assert err.value.diagnostics[0].code == "VT415"
    with pytest.raises(VtcError) as err:
        V.read_clip(tmp_path / "gone", video_settings(), Span("data.csv", 4), cache=cache)
    assert err.value.diagnostics[0].code == "VT410"
    assert cache.stats() == (0, 0)


def test_the_data_check_fills_the_cache_that_rows_read(tmp_path, cache, monkeypatch):
    from vtc.runtime.cache import ImageCache
    from vtc.runtime.sources.rows import Record, Rows

    folder = write_frame_folder(tmp_path / "loop", moving_square("right", n=10, size=64, seed=3))
    assert V.check_clip(folder, video_settings(), Span("data.csv", 2)) == []  # the default cache: fills it
    assert cache.stats()[0] == 1
    calls = Counter(monkeypatch)
    resize = {"mode": "longest", "size": 56, "multiple": 28}
    record = Record(origin=Span("data.csv", 2), answer="right", videos=(folder,))
    rows = Rows([record], description="train", instruction="Which way?", system=None, resize=resize, window=None,
                video=video_settings(), cache=ImageCache(tmp_path / "images"))
    for _epoch in range(3):
        part = rows[0]["messages"][0]["content"][1]
        assert part["type"] == "video" and len(part["video"]) == 10
    assert calls.decodes == 0
    uncached = Rows([record], description="train", instruction="Which way?", system=None, resize=resize,
                    window=None, video=video_settings())  # no image cache (not a run): decoded, as before
    uncached[0]
    assert calls.decodes == 1


def test_the_clip_cache_follows_the_image_cache_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("VTC_CLIP_CACHE", raising=False)
    monkeypatch.setenv("VTC_IMAGE_CACHE", str(tmp_path / "images"))
    assert clip_cache_dir() == tmp_path / "images" / "clips"
    monkeypatch.delenv("VTC_IMAGE_CACHE")
    monkeypatch.setenv("VTC_CACHE", str(tmp_path / "root"))
    assert clip_cache_dir() == tmp_path / "root" / "clips"


def test_vtc_cache_shows_and_clears_clips(tmp_path, monkeypatch):
    from vtc.cli import cli
    from vtc.runtime.cache import ImageCache

    monkeypatch.setenv("VTC_IMAGE_CACHE", str(tmp_path / "images"))
    monkeypatch.delenv("VTC_CLIP_CACHE", raising=False)
    for k in range(2):
        V.read_clip(write_frame_folder(tmp_path / f"loop{k}", moving_square("up", n=6, size=32, seed=k)),
                    video_settings(), cache=True)
    runner = CliRunner()
    shown = runner.invoke(cli, ["cache"])
    assert shown.exit_code == 0, shown.output
    assert f"clip cache: {tmp_path / 'images' / 'clips'}" in shown.output and "2 clips," in shown.output
    assert runner.invoke(cli, ["cache", "clear", "images"]).exit_code == 0
    assert ClipCache().stats()[0] == 2  # only the images
    cleared = runner.invoke(cli, ["cache", "clear"])
    assert cleared.exit_code == 0 and "removed 2 cached clips" in cleared.output
    assert ClipCache().stats() == (0, 0) and ImageCache().stats() == (0, 0)
    V.read_clip(tmp_path / "loop0", video_settings(), cache=True)
    cleared = runner.invoke(cli, ["cache", "clear", "clips"])
    assert "removed 1 cached clip " in cleared.output and "cached image" not in cleared.output
    assert "0 clips" in runner.invoke(cli, ["cache"]).output


def _video_run(tmp_path: Path):
    from vtc.runtime import report as R

    run = R.synthetic_run(tmp_path / "run", 4)
    plan = json.loads((run / "plan.json").read_text())
    plan["video"] = video_settings(max_frames=16)
    # a DICOM window (it changes no PNG frame, but it is part of the key: the report must pass the run's)
    plan["images"] = {**plan.get("images", {}), "window": {"center": 40.0, "width": 400.0}}
    (run / "plan.json").write_text(json.dumps(plan))
    folder = write_frame_folder(tmp_path / "loop", moving_square("right", n=12, size=56, seed=3))
    listed = [str(p) for p in sorted(folder.iterdir())][:6]
    preds = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    for p in preds:
        if p["row"] == 0:
            p.update(images=[], videos=[str(folder)])
        if p["row"] == 1:
            p.update(images=[], videos=[listed])
    (run / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    return run, plan, folder, listed, preds


def test_the_report_reads_clips_from_the_cache(tmp_path, cache, monkeypatch):
    from vtc.runtime import report as R

    run, plan, folder, listed, _ = _video_run(tmp_path)
    for clip in (folder, tuple(listed)):  # as the run read them
        V.read_clip(clip, plan["video"], window=plan["images"]["window"], cache=True)
    calls = Counter(monkeypatch)
    page = R.write_report(run).read_text(encoding="utf-8")
    assert calls.decodes == 0 and calls.probes == 0
    assert '"v": [' in page or '"v":[' in page


def test_review_csv_lists_a_clip_rows_clip(tmp_path, cache):
    import csv

    from vtc.runtime import report as R

    run, _plan, folder, listed, preds = _video_run(tmp_path)
    path, n = R.write_review(run, tmp_path / "review.csv", worst=10)
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    by_origin = {r["origin"]: r for r in rows}
    pred = {p["row"]: p for p in preds}
    assert by_origin[pred[0]["origin"]]["image"] == str(folder)
    assert by_origin[pred[1]["origin"]]["image"] == f"{listed[0]} (+5 frames)"
    assert by_origin[pred[2]["origin"]]["image"] == ";".join(pred[2]["images"])  # an image row: as before
