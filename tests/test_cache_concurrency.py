"""The image cache under several processes at once (the processes of a run over several GPUs, several machines on a
shared file system): real processes prepare the same images while another trims, and the cache is whole after."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import time

from PIL import Image

from vtc.runtime.cache import ImageCache, _temp_prefix
from vtc.runtime.images import open_image, standardise
from vtc.runtime.prepare import prepare_one

RESIZE = {"mode": "longest", "size": 48}


def _images(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    paths = []
    for i in range(n):
        path = folder / f"{i:03d}.png"
        Image.frombytes("RGB", (40 + i % 7, 30 + i % 5), rng.randbytes((40 + i % 7) * (30 + i % 5) * 3)).save(path)
        paths.append(str(path))
    return paths


def _prepare_all(root, paths, seed, rounds, out):
    """A process preparing every image ``rounds`` times in its own order (the cache's entries come and go)."""
    rng = random.Random(seed)
    try:
        for _ in range(rounds):
            order = list(paths)
            rng.shuffle(order)
            for path in order:
                result = prepare_one(path, 0, RESIZE, None, root)
                assert result["ok"], result
                image = ImageCache(root).load(result["key"])  # may be trimmed meanwhile: None, never a crash
                assert image is None or image.size == tuple(standardise(open_image(path), RESIZE).size)
        out.put((seed, "ok"))
    except BaseException as exc:  # pragma: no cover - what the test reports when it fails
        out.put((seed, f"{type(exc).__name__}: {exc}"))


def _trim_often(root, seconds, name, out):
    """A process trimming the cache to a tiny cap again and again while the others write (and, for "clear", emptying
    it now and then, as `vtc cache clear` on another machine would)."""
    cache = ImageCache(root, limit=6000)
    removed, stop, turn = 0, time.time() + seconds, 0
    try:
        while time.time() < stop:
            turn += 1
            if name == "clear" and turn % 20 == 0:
                removed += cache.clear()[0]
            removed += cache.trim()
            cache.stats()
        out.put((name, removed))
    except BaseException as exc:  # pragma: no cover
        out.put((name, f"{type(exc).__name__}: {exc}"))


def test_processes_preparing_the_same_images_while_another_trims_leave_a_whole_cache(tmp_path):
    paths = _images(tmp_path / "images", 24)
    root = str(tmp_path / "cache")
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    writers = [ctx.Process(target=_prepare_all, args=(root, paths, seed, 3, out)) for seed in range(3)]
    trimmers = [ctx.Process(target=_trim_often, args=(root, 4.0, name, out)) for name in ("trim", "clear")]
    for p in (*writers, *trimmers):
        p.start()
    results = dict(out.get(timeout=120) for _ in range(5))
    for p in (*writers, *trimmers):
        p.join(timeout=60)
        assert p.exitcode == 0
    assert all(results[seed] == "ok" for seed in range(3)), results
    for name in ("trim", "clear"):  # they did remove entries while the others wrote
        assert isinstance(results[name], int) and results[name] > 0, results
    cache = ImageCache(root)
    # No temporary file is left behind; every JSON left is whole; every image left is exactly what preparation makes.
    files = [os.path.join(d, f) for d, _, names in os.walk(root) for f in names]
    assert not [f for f in files if os.path.basename(f).startswith(".tmp-")]
    for f in files:
        if f.endswith(".json") and "index" not in f:
            json.loads(open(f, encoding="utf-8").read())
    expected = {prepare_one(p, 0, RESIZE, None, None)["key"]: standardise(open_image(p), RESIZE).tobytes()
                for p in paths}
    for f in files:
        if f.endswith(".png"):
            key = os.path.basename(f)[:-4]
            assert key in expected and cache.load(key).tobytes() == expected[key]
    # Another pass fills whatever the trim removed: then every image is in the cache, whole.
    for p in paths:
        prepare_one(p, 0, RESIZE, None, root)
    assert cache.stats()[0] == len(expected)
    assert all(cache.load(key).tobytes() == data for key, data in expected.items())


def test_a_reader_tolerates_an_entry_trimmed_between_its_json_and_its_image(tmp_path):
    (path,) = _images(tmp_path / "images", 1)
    cache = ImageCache(tmp_path / "cache")
    key = prepare_one(path, 0, RESIZE, None, str(cache.root))["key"]
    meta_path, image_path = cache._paths(key)
    assert cache.meta(key)["ok"]
    os.unlink(image_path)  # another process's trim, half done
    assert cache.meta(key)["ok"] and cache.load(key) is None  # the caller decodes the source instead
    os.unlink(meta_path)
    assert cache.meta(key) is None and cache.stats() == (0, 0)
    assert prepare_one(path, 0, RESIZE, None, str(cache.root))["cached"] is False  # prepared again
    assert cache.load(key) is not None


def test_a_write_whose_folder_was_just_removed_makes_it_again(tmp_path):
    (path,) = _images(tmp_path / "images", 1)
    cache = ImageCache(tmp_path / "cache")
    key = prepare_one(path, 0, RESIZE, None, str(cache.root))["key"]
    cache.clear()  # `vtc cache clear` in another process: the entry's folder is gone
    meta_path, _ = cache._paths(key)
    assert not meta_path.parent.exists()
    from vtc.runtime import cache as C

    C._atomic(meta_path, lambda f: f.write(b"{}"))
    assert json.loads(meta_path.read_text()) == {}


def test_temporary_files_are_named_after_host_process_and_thread_and_stale_ones_are_trimmed(tmp_path):
    import platform
    import threading

    prefix = _temp_prefix()
    assert str(os.getpid()) in prefix and str(threading.get_ident()) in prefix
    assert platform.node().split(".")[0][:10].replace(" ", "_") in prefix
    paths = _images(tmp_path / "images", 3)
    cache = ImageCache(tmp_path / "cache", limit=1)
    keys = [prepare_one(p, 0, RESIZE, None, str(cache.root))["key"] for p in paths]
    folder = cache._paths(keys[0])[0].parent
    stale, fresh = folder / ".tmp-deadhost-1-1-abc", folder / ".tmp-livehost-2-2-def"
    (cache.root / "index").mkdir()
    stale_index = cache.root / "index" / ".tmp-deadhost-1-1-xyz"
    for f in (stale, fresh, stale_index):
        f.write_bytes(b"half")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    os.utime(stale_index, (old, old))
    assert cache.stats()[0] == 3  # temporary files are not entries
    cache.trim()
    assert not stale.exists() and not stale_index.exists()
    assert fresh.exists()  # a write at work elsewhere


def test_an_image_without_its_json_yet_is_not_taken_for_the_oldest_entry(tmp_path):
    paths = _images(tmp_path / "images", 3)
    cache = ImageCache(tmp_path / "cache")
    keys = [prepare_one(p, 0, RESIZE, None, str(cache.root))["key"] for p in paths]
    for i, key in enumerate(keys):  # used 1000, 990, 980 s ago
        old = time.time() - 1000 + i * 10
        os.utime(cache._paths(key)[0], (old, old))
    os.unlink(cache._paths(keys[2])[0])  # keys[2]: its image written just now, its JSON not yet (a write at work)
    sizes = {k: sum(p.stat().st_size for p in cache._paths(k) if p.exists()) for k in keys}
    cache.trim(limit=sizes[keys[2]] + sizes[keys[1]])
    assert cache._paths(keys[2])[1].exists()  # kept: the oldest complete entry went instead
    assert not cache._paths(keys[0])[0].exists() and cache.meta(keys[1]) is not None


def test_index_writes_keep_the_entries_other_processes_added(tmp_path):
    cache = ImageCache(tmp_path / "cache")
    mine = cache.read_index("dataset")  # read before the other process wrote
    other = dict(cache.read_index("dataset"))
    other["b.png|0|x"] = [[1, 2, 3, 4], "kb", "db", {"ok": True}]
    cache.write_index("dataset", other)
    mine["a.png|0|x"] = [[5, 6, 7, 8], "ka", "da", {"ok": True}]
    cache.write_index("dataset", mine)
    assert set(cache.read_index("dataset")) == {"a.png|0|x", "b.png|0|x"}
    # A write that cannot be made (the index folder is a file here) is a lost memo, not an error.
    cache._drop_indexes()
    (cache.root / "index").write_text("not a folder")
    cache.write_index("dataset", mine)
    assert cache.read_index("dataset") == {}
