"""Streaming, parallel preparation (prepare.prepare_images): same results in workers as in-process, tasks read
lazily, a prepared dataset starts no worker, a changed file is redone."""

from __future__ import annotations

import itertools
import multiprocessing

import pytest
from PIL import Image

from vtc.runtime import prepare
from vtc.runtime.cache import ImageCache

RESIZE = {"mode": "longest", "size": 48}


@pytest.fixture
def images(tmp_path):
    paths = []
    for i in range(40):
        p = tmp_path / "src" / f"{i:02d}.png"
        p.parent.mkdir(exist_ok=True)
        Image.new("RGB", (30 + i, 20 + 2 * i), (i * 5, 255 - i * 5, 100)).save(p)
        paths.append(p)
    (tmp_path / "src" / "broken.png").write_bytes(b"junk")
    return paths + [tmp_path / "src" / "broken.png"]


def strip(r: dict) -> dict:
    return {k: v for k, v in r.items() if k != "cached"}


def test_workers_give_the_same_results_as_one_process(images, tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "CHUNK", 4)
    tasks = [(str(p), 0) for p in images]
    serial = list(prepare.prepare_images(tasks, resize=RESIZE, cache=None, workers=1))
    cache = ImageCache(tmp_path / "cache")
    parallel = list(prepare.prepare_images(tasks, resize=RESIZE, cache=cache, workers=2, count=10**6))
    assert sorted(map(repr, map(strip, serial))) == sorted(map(repr, map(strip, parallel)))
    assert sum(r["ok"] for r in parallel) == 40 and next(r for r in parallel if not r["ok"])["code"] == "VT411"
    assert cache.stats()[0] == 41


def test_tasks_are_read_lazily(images, tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "CHUNK", 2)
    consumed = itertools.count()

    def tasks():
        for p in itertools.cycle(images[:40]):
            next(consumed)
            yield str(p), 0

    stream = prepare.prepare_images(tasks(), resize=RESIZE, cache=None, workers=2, count=10**6)
    first = next(stream)
    # At most workers * 4 chunks in flight plus the chunk being filled: the source is never read ahead.
    assert first["ok"] and next(consumed) <= 2 * 4 * 2 + 2 + 1
    stream.close()


def test_a_prepared_dataset_starts_no_worker_and_a_changed_file_is_redone(images, tmp_path, monkeypatch):
    cache = ImageCache(tmp_path / "cache")
    tasks = [(str(p), 0) for p in images]
    list(prepare.prepare_images(tasks, resize=RESIZE, cache=cache, workers=1))

    def no_workers(*a, **k):
        raise AssertionError("a worker was started for cached images")

    monkeypatch.setattr(multiprocessing, "get_context", no_workers)
    again = list(prepare.prepare_images(tasks, resize=RESIZE, cache=cache, workers=2, count=10**6))
    assert all(r["cached"] for r in again) and len(again) == 41
    Image.new("RGB", (33, 33), "black").save(images[3])
    redo = list(prepare.prepare_images(tasks, resize=RESIZE, cache=cache, workers=2, count=10**6))
    assert [r["path"] for r in redo if not r["cached"]] == [str(images[3])]
    other_size = list(prepare.prepare_images(tasks[:2], resize={"mode": "longest", "size": 49}, cache=cache,
                                             workers=1))
    assert not any(r["cached"] for r in other_size)


def test_the_stat_index_skips_reading_unchanged_files_but_not_changed_ones(images, tmp_path, monkeypatch):
    import os

    from vtc.runtime import cache as cache_mod

    cache = ImageCache(tmp_path / "cache")
    tasks = [(str(p), 0) for p in images[:5]]
    memo: dict = {}
    for r in prepare.prepare_images(tasks, resize=RESIZE, cache=cache, workers=1, memo=memo):
        prepare.remember(memo, r, RESIZE, None)
    cache.write_index("src", memo)
    memo = cache.read_index("src")
    assert len(memo) == 5
    reads = []
    real = cache_mod.digest_file
    monkeypatch.setattr(cache_mod, "digest_file", lambda p: reads.append(p) or real(p))
    again = list(prepare.prepare_images(tasks, resize=RESIZE, cache=cache, workers=1, memo=memo))
    assert all(r["cached"] for r in again) and reads == []
    # Same size, the old mtime put back: the ctime still changes, so the file is read and redone.
    st = os.stat(images[2])
    Image.new("RGB", Image.open(images[2]).size, (1, 2, 3)).save(images[2])
    os.utime(images[2], ns=(st.st_atime_ns, st.st_mtime_ns))
    redo = list(prepare.prepare_images(tasks, resize=RESIZE, cache=cache, workers=1, memo=memo))
    assert [r["path"] for r in redo if not r["cached"]] == [str(images[2])] and reads == [str(images[2])]
    cache.clear()
    assert cache.read_index("src") == {}
