"""Row-level validation (validate.scan_data / validate_for_run): every broken row named with its file and line,
the summary table, and the `bad rows skip|stop` policy. Fixtures are generated here."""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from vtc.diagnostics import VtcError
from vtc.runtime.cache import ImageCache
from runtime_helpers import quoted, recipe_plan
from vtc.runtime.sources import load_rows
from vtc.runtime.images import standardise
from vtc.runtime.validate import scan_data, scan_plan_data, validate_for_run


@pytest.fixture(autouse=True)
def image_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VTC_IMAGE_CACHE", str(tmp_path / "image-cache"))
    return tmp_path / "image-cache"


def plan_for(base: Path, source: str, *clauses: str) -> dict:
    """The compiled plan of a recipe in ``base`` reading ``source`` at 128 px, with ``clauses`` (`bad rows skip`)."""
    return recipe_plan(base, f"from {quoted(source)}", 'ask "What is it?"', "resize 128", *clauses)


def noise(path: Path, size=(320, 240), seed=0) -> Path:
    """A PNG that does not compress to nothing (so that cutting it really truncates pixel data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3) if seed is None else
                    bytes((i * 7 + seed * 13) % 251 for i in range(size[0] * size[1] * 3))).save(path)
    return path


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height (a decompression bomb needs no more to be refused)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    body = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    body += chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(body)
    return path


@pytest.fixture
def broken(tmp_path) -> Path:
    """An imagefolder with one of every problem, each on a known line of metadata.jsonl."""
    root = tmp_path / "data"
    noise(root / "good1.png", seed=1)
    noise(root / "good2.png", seed=2)
    (root / "zero.png").write_bytes(b"")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    full = noise(root / "full.png", seed=3).read_bytes()
    (root / "truncated.png").write_bytes(full[: len(full) // 2])
    png_header(root / "bomb.png", 30_000, 30_000)
    png_header(root / "bigscan.png", 10_000, 10_000)
    (root / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    Image.new("RGB", (1000, 4), "white").save(root / "strip.png")
    Image.new("RGB", (40, 30), "white").save(root / "thumb.png")
    noise(root / "stray.png", seed=4)
    (tmp_path / "secret.png").write_bytes(full)
    lines = [
        json.dumps({"file_name": "good1.png", "text": "one"}),          # 1 ok
        json.dumps({"file_name": "zero.png", "text": "x"}),             # 2 zero bytes
        json.dumps({"file_name": "corrupt.png", "text": "x"}),          # 3 corrupt
        json.dumps({"file_name": "truncated.png", "text": "x"}),        # 4 truncated
        json.dumps({"file_name": "../secret.png", "text": "x"}),        # 5 escapes the folder
        json.dumps({"file_name": "bomb.png", "text": "x"}),             # 6 decompression bomb (> 2x limit)
        json.dumps({"file_name": "bigscan.png", "text": "x"}),          # 7 over the limit (1x-2x)
        json.dumps({"file_name": "photo.heic", "text": "x"}),           # 8 unsupported format
        json.dumps({"file_name": "missing.png", "text": "x"}),          # 9 listed but missing
        json.dumps({"file_name": "good2.png", "text": ""}),             # 10 empty answer
        json.dumps({"file_name": "good2.png"}),                         # 11 missing answer
        json.dumps({"file_name": "strip.png", "text": "x"}),            # 12 aspect ratio 250
        json.dumps({"file_name": "thumb.png", "text": "x"}),            # 13 tiny (warning)
        json.dumps({"file_name": "good1.png", "text": "one"}),          # 14 duplicate of 1 (warning)
        '{"file_name": "good2.png", "text": "caf\xe9"}',                # 15 not UTF-8 (written below)
        '{"file_name": "good2.png", "text": ',                          # 16 not JSON
        json.dumps({"file_name": "good2.png", "text": "two"}),          # 17 ok
    ]
    data = "\n".join(lines).encode("utf-8").replace("caf\xe9".encode("utf-8"), b"caf\xe9") + b"\n"
    (root / "metadata.jsonl").write_bytes(data)
    return root


EXPECTED = {2: "VT411", 3: "VT411", 4: "VT411", 5: "VT415", 6: "VT425", 7: "VT425", 8: "VT421", 9: "VT409",
            10: "VT412", 11: "VT412", 12: "VT424", 13: "VT423", 14: "VT422", 15: "VT419", 16: "VT408"}


def test_every_broken_row_is_named_with_its_line(broken):
    report = scan_data(plan_for(broken.parent, "data"))
    by_line = {}
    for d in report.diagnostics:
        if d.code != "VT420":
            assert d.span.file == str(broken / "metadata.jsonl")
            by_line.setdefault(d.span.line, []).append(d.code)
    assert {line: codes[0] for line, codes in by_line.items()} == EXPECTED
    assert all(len(codes) == 1 for codes in by_line.values())
    messages = {d.span.line: d.message for d in report.diagnostics if d.code != "VT420"}
    assert "0 bytes" in messages[2] and "truncated" in messages[4] and "zero.png" in messages[2]
    assert "30000" in messages[6] or "900,000,000" in messages[6] or "900000000" in messages[6]
    assert "10000 x 10000 px" in messages[7] and "not decoded" in messages[7]
    assert "HEIC" in messages[8] and "1000 x 4" in messages[12] and "250" in messages[12]
    assert "repeats row 1" in messages[14] and "not UTF-8" in messages[15]
    unlisted = [d for d in report.diagnostics if d.code == "VT420"]
    assert len(unlisted) == 1 and "stray.png" in unlisted[0].message and "full.png" in unlisted[0].message
    assert not any(d.is_error for d in report.diagnostics if d.code in ("VT420", "VT422", "VT423"))
    # 13 rows with errors: everything above but the two warnings on lines 13 and 14.
    assert len(report.bad) == 13


def test_the_summary_table_counts_every_kind(broken):
    report = scan_data(plan_for(broken.parent, "data"))
    table = report.table("stop")
    assert "17 rows" in table and "images/s" in table
    for code, n in {"VT411": 3, "VT425": 2, "VT412": 2, "VT415": 1, "VT421": 1, "VT424": 1, "VT409": 1}.items():
        line = next(x for x in table.splitlines() if x.rstrip().endswith(code))
        assert f" {n}  {code}" in line
    assert "rows with errors" in table and "13  of 17" in table and "bad rows skip" in table
    assert "skipped_rows.jsonl" in report.table("skip")


def test_paths_outside_the_folder_are_never_opened(broken, monkeypatch):
    opened = []
    real_read = Path.read_bytes
    real_open = Image.open

    def spy_read(self):
        opened.append(str(self))
        return real_read(self)

    def spy_open(fp, *a, **k):
        opened.append(str(getattr(fp, "name", fp)))
        return real_open(fp, *a, **k)

    real_os_open = os.open

    def spy_os_open(path, *a, **k):  # preparation and the data files' readers open files with os.open
        opened.append(str(path))
        return real_os_open(path, *a, **k)

    monkeypatch.setattr(Path, "read_bytes", spy_read)
    monkeypatch.setattr(Image, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    scan_data(plan_for(broken.parent, "data"), use_cache=False, workers=1)
    assert any(p.endswith("good1.png") for p in opened) and not any("secret" in p for p in opened)


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    root = tmp_path / "d"
    noise(root / "a.png")
    noise(tmp_path / "outside.png", seed=5)
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "a"}) + "\n"
                                         + json.dumps({"file_name": "link.png", "text": "b"}) + "\n")
    found = scan_plan_data(plan_for(tmp_path, "d"))
    assert [(d.code, d.span.line) for d in found if d.is_error] == [("VT415", 2)]


def test_stop_is_the_default_and_names_the_rows(broken, tmp_path):
    with pytest.raises(VtcError) as exc:
        validate_for_run(plan_for(broken.parent, "data"), tmp_path / "run")
    codes = [d.code for d in exc.value.diagnostics]
    assert codes[-1] == "VT427" and "VT411" in codes and "VT415" in codes
    assert "bad rows skip" in exc.value.diagnostics[-1].help
    assert not (tmp_path / "run" / "skipped_rows.jsonl").exists()


def test_skip_leaves_bad_rows_out_and_lists_them_in_the_run_folder(broken, tmp_path, image_cache, monkeypatch):
    plan = plan_for(broken.parent, "data", "bad rows skip")
    check = validate_for_run(plan, tmp_path / "run")
    assert [check.train.answer(i) for i in range(len(check.train))] == ["one", "x", "two"]  # lines 1, 13, 17
    listed = [json.loads(line) for line in (tmp_path / "run" / "skipped_rows.jsonl").read_text().splitlines()]
    assert [(e["row"], e["code"]) for e in listed] == sorted(
        (line, code) for line, code in EXPECTED.items() if line != 13)
    assert all(e["file"] == str(broken / "metadata.jsonl") and e["reason"] for e in listed)
    # The rows read their images from the cache that the check filled, identical to a fresh standardise.
    import vtc.runtime.sources.rows as data_mod

    monkeypatch.setattr(data_mod, "open_image", lambda *a, **k: pytest.fail("decoded again instead of the cache"))
    image = check.train[0]["messages"][0]["content"][1]["image"]
    fresh = standardise(Image.open(broken / "good1.png").convert("RGB"), plan["images"]["resize"])
    assert image.size == (128, 96) and image.tobytes() == fresh.tobytes()
    assert check.train.cache is not None and ImageCache(image_cache).stats()[0] > 0


def test_skip_with_every_row_bad_is_an_error(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "a.png").write_bytes(b"")
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "a"}) + "\n")
    with pytest.raises(VtcError) as exc:
        validate_for_run(plan_for(tmp_path, "d", "bad rows skip"))
    assert exc.value.diagnostics[0].code == "VT402"


def test_non_utf8_captions_beside_images(tmp_path):
    root = tmp_path / "caps"
    noise(root / "a.png")
    noise(root / "b.png", seed=2)
    (root / "a.txt").write_text("a circle", encoding="utf-8")
    (root / "b.txt").write_bytes("un cercle bleu fonc\xe9".encode("latin-1"))
    found = scan_plan_data(plan_for(tmp_path, "caps"))
    assert [(d.code, Path(d.span.file).name) for d in found] == [("VT419", "b.txt")]


def test_several_images_a_row_and_text_only_rows(tmp_path):
    root = tmp_path / "conv"
    noise(root / "x.png")
    noise(root / "y.png", seed=2)
    rows = [
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Compare"}, {"type": "image",
                       "image": "x.png"}, {"type": "image", "image": "y.png"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "different"}]}]},
        {"messages": [{"role": "user", "content": "What is 2 + 2?"},
                      {"role": "assistant", "content": "4"}]},
        {"messages": [{"role": "user", "content": [{"type": "image", "image": "../escape.png"}]},
                      {"role": "assistant", "content": "no"}]},
    ]
    (root / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = scan_data(plan_for(tmp_path, "conv/chat.jsonl"))
    assert [(d.code, d.span.line) for d in report.diagnostics] == [("VT415", 3)]
    assert report.images == 2 and report.text_only_rows == 1 and "1 text-only row" in report.table()
    check = validate_for_run(plan_for(tmp_path, "conv/chat.jsonl", "bad rows skip"))
    assert len(check.train) == 2
    assert [p["type"] for p in check.train[0]["messages"][0]["content"]] == ["text", "image", "image"]
    assert all(p["type"] == "text" for m in check.train[1]["messages"] for p in m["content"])


def test_holdout_after_skipping_keeps_eval_rows_apart(broken):
    check = validate_for_run(plan_for(broken.parent, "data", "bad rows skip", "holdout 34%"))
    assert len(check.train) + len(check.eval) == 3 and len(check.eval) == 1
    assert {check.train.origin(i) for i in range(len(check.train))}.isdisjoint(
        {check.eval.origin(i) for i in range(len(check.eval))})


def read_once_sources(tmp_path: Path, case: str) -> tuple[list[str], list[Path]]:
    """A small source (and its recipe clauses) for each way a run gets its evaluation rows; the data files."""
    def rows(n: int, start: int = 0) -> list[dict]:
        return [{"file_name": f"{k}.png", "text": f"answer {k}"} for k in range(start, start + n)]

    def images(folder: Path, table: list[dict]) -> None:
        for r in table:
            noise(folder / r["file_name"], size=(120, 100), seed=int(r["file_name"].split(".")[0]))

    if case == "split folders":  # evaluation: the test/ split folder beside train/
        files = []
        for split, table in (("train", rows(6)), ("test", rows(3, 6))):
            images(tmp_path / "ds" / split, table)
            files.append(tmp_path / "ds" / split / "metadata.jsonl")
            files[-1].write_text("".join(json.dumps(r) + "\n" for r in table))
        return ["from ./ds"], files
    if case == "holdout":  # evaluation: a seeded share of the training rows
        images(tmp_path / "many", rows(8))
        meta = tmp_path / "many" / "metadata.csv"
        meta.write_text("file_name,text\n" + "".join(f"{r['file_name']},{r['text']}\n" for r in rows(8)))
        return ["from ./many", "holdout 25%", "seed 11"], [meta]
    # conversations, evaluated on a separate table
    images(tmp_path / "chat", rows(4))
    chat = tmp_path / "chat" / "chat.jsonl"
    chat.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": [{"type": "image", "image": r["file_name"]}]},
        {"role": "assistant", "content": r["text"]}]}) + "\n" for r in rows(4)))
    images(tmp_path / "chat", rows(2, 4))
    table = tmp_path / "chat" / "eval.csv"
    table.write_text("image,answer\n" + "".join(f"{r['file_name']},{r['text']}\n" for r in rows(2, 4)))
    return ["from ./chat/chat.jsonl", "evaluate on ./chat/eval.csv"], [chat, table]


@pytest.mark.parametrize("case", ["split folders", "holdout", "conversations"])
def test_a_run_reads_each_data_file_once_and_hands_over_what_load_rows_gives(tmp_path, monkeypatch, case):
    """validate_for_run reads each data file once (the scan's rows are the rows trained on), and those rows are
    load_rows's: the same rows in the same order, the same hold-out."""
    clauses, files = read_once_sources(tmp_path, case)
    plan = recipe_plan(tmp_path, *clauses, "resize 64")
    reads = Counter()
    import vtc.runtime.sources.files as files_mod

    real = files_mod.read_confined  # every data file is read whole through the confinement rule

    def spy(path, *a, **k):
        reads[Path(path)] += 1
        return real(path, *a, **k)

    monkeypatch.setattr(files_mod, "read_confined", spy)
    check = validate_for_run(plan, workers=1)
    assert {f: reads[f] for f in files} == {f: 1 for f in files}
    reads.clear()
    for which, handed in (("train", check.train), ("eval", check.eval)):
        loaded = load_rows(plan, which)
        assert len(handed) > 0 and handed.description == loaded.description
        assert [handed.key(i) for i in range(len(handed))] == [loaded.key(i) for i in range(len(loaded))]
        assert [handed.answer(i) for i in range(len(handed))] == [loaded.answer(i) for i in range(len(loaded))]
    assert sum(reads[f] for f in files) >= len(files)  # the spy sees load_rows read them


def test_load_rows_collects_row_problems_instead_of_raising(broken):
    problems = []
    rows = load_rows(plan_for(broken.parent, "data"), problems=problems)
    assert sorted({d.span.line for d in problems}) == [5, 9, 10, 11, 15, 16]
    assert len(rows) == 11
    with pytest.raises(VtcError):
        load_rows(plan_for(broken.parent, "data"))


# --- the recipe clauses and `vtc check --data` ---------------------------------------------------------------------


def test_recipe_clauses_reach_the_plan_and_format(tmp_path):
    from vtc.compiler.fmt import format_source
    from vtc.compiler.pipeline import compile_file

    (tmp_path / "d").mkdir()
    recipe = tmp_path / "r.vt"
    recipe.write_text("finetune vision on qwen2.5-vl from ./d   bad rows skip window -600 1500 tiff pages all\n")
    plan = compile_file(str(recipe)).plan
    assert plan["data"]["bad_rows"] == "skip" and plan["images"]["tiff_pages"] == "all"
    assert plan["images"]["window"] == {"center": -600, "width": 1500}
    assert plan["provenance"]["/data/bad_rows"].endswith("r.vt:1")
    text, _ = format_source(recipe.read_text(), "r.vt")
    assert "\nbad rows skip\nwindow -600 1500\ntiff pages all\n" in text
    recipe.write_text("finetune vision on qwen2.5-vl from ./d\n")
    plan = compile_file(str(recipe)).plan
    assert (plan["data"]["bad_rows"], plan["images"]["window"], plan["images"]["tiff_pages"]) == ("stop", None,
                                                                                                  "first")


@pytest.mark.parametrize("clause,code,words", [
    ("bad rows skipp", "VT102", "skip"), ("tiff pages every", "VT102", "all"), ("window 40 0", "VT104", "width"),
    ("window 40", "VT011", "number"), ("bad rows", "VT011", "skip or stop"),
])
def test_recipe_clause_mistakes(tmp_path, clause, code, words):
    from vtc.compiler.pipeline import compile_file

    (tmp_path / "d").mkdir()
    recipe = tmp_path / "r.vt"
    recipe.write_text(f"finetune vision on qwen2.5-vl from ./d\n{clause}\n")
    result = compile_file(str(recipe))
    d = next(d for d in result.diagnostics if d.is_error)
    assert result.plan is None and d.code == code and d.span.line == 2
    assert words in d.message + (d.help or "")


def test_vtc_check_data_prints_the_problems_and_the_table(broken, tmp_path):
    from click.testing import CliRunner

    from vtc.cli import cli

    recipe = broken.parent / "r.vt"
    recipe.write_text("finetune vision on qwen2.5-vl from ./data bad rows skip\n")
    res = CliRunner().invoke(cli, ["check", "--data", str(recipe)])
    assert res.exit_code == 1
    assert "metadata.jsonl:6" in res.output and "VT425" in res.output and "data check: 17 rows" in res.output
    assert "skipped_rows.jsonl" in res.output
    res = CliRunner().invoke(cli, ["check", "--data", "--format", "json", str(recipe)])
    found = json.loads(res.output)
    assert {d["span"]["line"] for d in found if d["code"] != "VT420"} == set(EXPECTED)
