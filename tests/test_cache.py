"""The image cache: keys follow the content and the settings, entries round-trip exactly, the size cap, `vtc cache`."""

from __future__ import annotations

import os
import time

import pytest
from click.testing import CliRunner
from PIL import Image

from vtc.cli import cli
from vtc.runtime.cache import ImageCache, cache_dir, digest_file, entry_key, parse_size
from vtc.runtime.prepare import prepare_one

RESIZE = {"mode": "longest", "size": 64}


def picture(path, colour=(200, 30, 30), size=(120, 90)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def test_the_folder_follows_the_vtc_cache_root(monkeypatch, tmp_path):
    monkeypatch.delenv("VTC_IMAGE_CACHE", raising=False)
    monkeypatch.setenv("VTC_CACHE", str(tmp_path / "root"))
    assert cache_dir() == tmp_path / "root" / "images"
    monkeypatch.setenv("VTC_IMAGE_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"


def test_keys_follow_content_page_and_settings(tmp_path):
    a = picture(tmp_path / "a.png")
    b = picture(tmp_path / "copy-of-a.png")
    c = picture(tmp_path / "c.png", colour=(0, 0, 255))
    da, db, dc = digest_file(a), digest_file(b), digest_file(c)
    assert da == db != dc
    settings = {"resize": RESIZE}
    assert entry_key(da, 0, settings) == entry_key(db, 0, settings)
    assert entry_key(da, 0, settings) != entry_key(da, 1, settings)
    assert entry_key(da, 0, settings) != entry_key(da, 0, {"resize": {"mode": "longest", "size": 65}})


def test_an_entry_round_trips_exactly_and_a_changed_file_is_redone(tmp_path):
    cache = ImageCache(tmp_path / "cache")
    src = tmp_path / "noise.png"
    Image.frombytes("RGB", (97, 61), os.urandom(97 * 61 * 3)).save(src)
    first = prepare_one(str(src), 0, RESIZE, None, str(cache.root))
    assert first["ok"] and not first["cached"] and first["size"] == [97, 61]
    again = prepare_one(str(src), 0, RESIZE, None, str(cache.root))
    assert again["cached"] and again["key"] == first["key"]
    from vtc.runtime.images import open_image, standardise

    assert cache.load(first["key"]).tobytes() == standardise(open_image(src), RESIZE).tobytes()
    picture(src, colour=(1, 2, 3))
    changed = prepare_one(str(src), 0, RESIZE, None, str(cache.root))
    assert not changed["cached"] and changed["key"] != first["key"]
    assert cache.stats()[0] == 2


def test_failures_are_cached_too(tmp_path):
    cache = ImageCache(tmp_path / "cache")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnope")
    first = prepare_one(str(bad), 0, RESIZE, None, str(cache.root))
    second = prepare_one(str(bad), 0, RESIZE, None, str(cache.root))
    assert first["code"] == second["code"] == "VT411" and second["cached"] and second["problem"] == first["problem"]


def test_the_size_cap_removes_the_least_recently_used(tmp_path):
    cache = ImageCache(tmp_path / "cache")
    keys = []
    for i in range(4):
        src = tmp_path / f"{i}.png"
        Image.frombytes("RGB", (80, 80), os.urandom(80 * 80 * 3)).save(src)
        keys.append(prepare_one(str(src), 0, RESIZE, None, str(cache.root))["key"])
        old = time.time() - 1000 + i * 10
        os.utime(cache._paths(keys[-1])[0], (old, old))
    cache.touch(keys[0])  # used just now: kept
    entries, size = cache.stats()
    assert entries == 4
    removed = cache.trim(size * 3 // 4)
    assert removed >= 1
    assert cache.meta(keys[0]) is not None and cache.meta(keys[1]) is None
    assert cache.stats()[1] <= size * 3 // 4


def test_parse_size():
    assert parse_size("20G") == 20 * 1024**3 and parse_size("500M") == 500 * 1024**2
    assert parse_size("1.5GiB") == int(1.5 * 1024**3) and parse_size("123") == 123
    with pytest.raises(ValueError):
        parse_size("lots")


def test_vtc_cache_shows_and_clears(tmp_path, monkeypatch):
    monkeypatch.setenv("VTC_IMAGE_CACHE", str(tmp_path / "cache"))
    src = picture(tmp_path / "a.png")
    prepare_one(str(src), 0, RESIZE, None, str(tmp_path / "cache"))
    runner = CliRunner()
    shown = runner.invoke(cli, ["cache"])
    assert shown.exit_code == 0 and str(tmp_path / "cache") in shown.output and "1 image," in shown.output
    assert "cap 10.0 GiB" in shown.output
    cleared = runner.invoke(cli, ["cache", "clear"])
    assert cleared.exit_code == 0 and "removed 1 cached image" in cleared.output
    assert ImageCache(tmp_path / "cache").stats() == (0, 0)
    assert "0 images" in runner.invoke(cli, ["cache"]).output
