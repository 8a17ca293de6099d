"""Hostile data sets (issue 11, finding 2 and "Clean output" for data): a data set is a stranger's input.

Every file a data source opens obeys one rule (vtc.confine, through vtc.runtime.sources.files): its real path, links
followed, stays inside the data folder; it is a regular file (no FIFO, device, socket, /proc file); a text file read
whole is under a size limit. What is refused is a diagnostic naming the file and never read, so that its content
reaches no message, row, prediction or run folder. Names that come from the data are shown escaped in text output
and exact in JSON.

Each test here failed before the fix (a caption linked to a secret became a training answer, a FIFO blocked the
check for ever, an escape sequence reached the terminal, a folder that vanished gave a traceback).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from runtime_helpers import quoted, recipe_plan
from vtc.cli import cli
from vtc.diagnostics import VtcError
from vtc.runtime.sources import detect_source, load_rows
from vtc.runtime.validate import DataReport, scan_data, validate_for_run

SECRET = "hf_FAKEsecretTOKENfromTheHomeCache0123456789"
ESC = "\x1b[2K\x1b[1A"  # erase the line, cursor up: how a file name could print a fake "ok"


@pytest.fixture(autouse=True)
def image_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VTC_IMAGE_CACHE", str(tmp_path / "image-cache"))


def png(path: Path, colour=(200, 30, 30), size=(160, 120)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def plan_for(base: Path, source: str, *clauses: str) -> dict:
    return recipe_plan(base, f"from {quoted(source)}", 'ask "What is it?"', "resize 64", *clauses)


def secret_file(tmp_path: Path) -> Path:
    """A file outside every data folder holding a fake token (what ~/.cache/huggingface/token holds)."""
    path = tmp_path / "home" / ".cache" / "huggingface" / "token"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SECRET + "\n")
    return path


def everything_said(report_or_exc) -> str:
    """Every message, help and span of a DataReport's or VtcError's diagnostics, and the table."""
    diags = report_or_exc.diagnostics
    text = "\n".join(f"{d.message} {d.help} {d.span and d.span.location}" for d in diags)
    if isinstance(report_or_exc, DataReport):
        text += report_or_exc.table()
    return text


def rows_text(rows) -> str:
    return json.dumps([{"answer": rows.answer(i), "origin": rows.origin(i).location,
                        "images": [str(p) for p in rows.images(i)]} for i in range(len(rows))])


def no_hang(fn, *args, fifos=(), **kwargs):
    """fn(*args) in a thread; a call still blocked (on a FIFO) after a minute fails the test instead of hanging the
    suite (the FIFOs are then opened for writing, which releases a blocked reader)."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the test below
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(60)
    if thread.is_alive():
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        thread.join(5)
        pytest.fail(f"{getattr(fn, '__name__', fn)} blocked on a FIFO")
    if "error" in out:
        raise out["error"]
    return out.get("value")


# --- finding 2: captions and class folders follow links out of the data folder ------------------------------------


@pytest.fixture
def linked_caption(tmp_path) -> Path:
    """A captions folder whose a.txt is a link to the token file; b.png/b.txt are fine."""
    root = tmp_path / "caps"
    png(root / "a.png")
    png(root / "b.png", (30, 30, 200))
    (root / "a.txt").symlink_to(secret_file(tmp_path))
    (root / "b.txt").write_text("blue")
    return root


def test_a_caption_linked_out_of_the_folder_is_refused_and_never_read(linked_caption, tmp_path, monkeypatch):
    plan = plan_for(tmp_path, "caps")
    report = scan_data(plan)
    refused = [d for d in report.errors if d.code == "VT415"]
    assert [Path(d.span.file).name for d in refused] == ["a.txt"], report.diagnostics
    assert SECRET not in everything_said(report)
    # The rows a run would train on: the linked caption is a bad row, left out (skip) or stopping the run (stop).
    problems: list = []
    rows = load_rows(plan, problems=problems)
    assert [rows.answer(i) for i in range(len(rows))] == ["blue"] and SECRET not in rows_text(rows)
    assert [d.code for d in problems] == ["VT415"]
    with pytest.raises(VtcError) as exc:
        load_rows(plan)
    assert [d.code for d in exc.value.diagnostics] == ["VT415"] and SECRET not in everything_said(exc.value)
    check = validate_for_run(plan_for(tmp_path, "caps", "bad rows skip"), tmp_path / "run")
    assert len(check.train) == 1 and check.train.answer(0) == "blue"
    assert SECRET not in (tmp_path / "run" / "skipped_rows.jsonl").read_text()
    # vtc check --data, text and JSON.
    recipe = tmp_path / "r.vt"
    recipe.write_text("finetune all on tiny-qwen2.5-vl\nfrom ./caps\nresize 64\n")
    for fmt in ("text", "json"):
        res = CliRunner().invoke(cli, ["check", "--data", "--format", fmt, str(recipe)])
        assert res.exit_code == 1 and "VT415" in res.output and SECRET not in res.output, res.output


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="Linux's /proc only")
def test_a_caption_linked_to_the_process_environment_is_refused(tmp_path):
    """/proc/self/environ holds the environment of the process that reads it: the CI's tokens."""
    root = tmp_path / "caps"
    png(root / "a.png")
    (root / "a.txt").symlink_to("/proc/self/environ")
    png(root / "b.png", (30, 30, 200))
    (root / "b.txt").write_text("blue")
    (tmp_path / "r.vt").write_text("finetune all on tiny-qwen2.5-vl\nfrom ./caps\nresize 64\n")
    # In-process: refused before anything is read.
    report = scan_data(plan_for(tmp_path, "caps"))
    assert [(d.code, Path(d.span.file).name) for d in report.errors] == [("VT415", "a.txt")]
    # Through the CLI, with a token in the environment the reading process starts with.
    vtc = str(Path(sys.executable).with_name("vtc"))
    env = {**os.environ, "HF_TOKEN": SECRET, "VTC_IMAGE_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    for fmt in ("text", "json"):
        res = subprocess.run([vtc, "check", "--data", "--format", fmt, "r.vt"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 1 and "VT415" in res.stdout + res.stderr
        assert SECRET not in res.stdout + res.stderr and "HF_TOKEN" not in res.stdout + res.stderr


def test_an_image_linked_out_of_a_captions_folder_is_refused(tmp_path):
    root = tmp_path / "caps"
    outside = png(tmp_path / "private" / "face.png", (1, 2, 3))
    (root).mkdir()
    (root / "a.png").symlink_to(outside)
    (root / "a.txt").write_text("a face")
    png(root / "b.png")
    (root / "b.txt").write_text("red")
    problems: list = []
    rows = load_rows(plan_for(tmp_path, "caps"), problems=problems)
    assert [rows.answer(i) for i in range(len(rows))] == ["red"]
    assert [(d.code, Path(d.span.file).name) for d in problems] == [("VT415", "a.png")]
    assert all("private" not in str(p) for i in range(len(rows)) for p in rows.images(i))


def test_a_class_folder_linked_out_of_the_data_folder_is_refused(tmp_path):
    root = tmp_path / "animals"
    png(root / "cat" / "1.png")
    png(root / "cat" / "2.png", (0, 0, 200))
    png(tmp_path / "elsewhere" / "dog" / "1.png", (0, 200, 0))
    (root / "dog").symlink_to(tmp_path / "elsewhere" / "dog", target_is_directory=True)
    report = scan_data(plan_for(tmp_path, "animals"))
    assert [(d.code, Path(d.span.file).name) for d in report.errors] == [("VT415", "dog")], report.diagnostics
    problems: list = []
    rows = load_rows(plan_for(tmp_path, "animals"), problems=problems)
    assert [rows.answer(i) for i in range(len(rows))] == ["cat", "cat"]
    assert "elsewhere" not in rows_text(rows)


def test_an_image_linked_out_of_a_class_folder_is_refused(tmp_path):
    root = tmp_path / "animals"
    png(root / "cat" / "1.png")
    png(root / "dog" / "1.png", (0, 200, 0))
    (root / "dog" / "2.png").symlink_to(png(tmp_path / "private.png", (9, 9, 9)))
    problems: list = []
    rows = load_rows(plan_for(tmp_path, "animals"), problems=problems)
    assert [(d.code, Path(d.span.file).name) for d in problems] == [("VT415", "2.png")]
    assert [rows.answer(i) for i in range(len(rows))] == ["cat", "dog"]


def test_links_inside_the_data_folder_still_work(tmp_path):
    """The rule is about where a link leads: a link to a file of the same data folder is fine."""
    root = tmp_path / "caps"
    png(root / "store" / "a.png")
    (root / "a.png").symlink_to(root / "store" / "a.png")
    (root / "a.txt").write_text("red")
    (tmp_path / "data-elsewhere").mkdir()
    rows = load_rows(plan_for(tmp_path, "caps"))
    assert len(rows) == 1 and rows.answer(0) == "red"
    # A data folder that is itself a link (data on another disk) is the data folder: its real path is the root.
    (tmp_path / "link-to-caps").symlink_to(root, target_is_directory=True)
    rows = load_rows(plan_for(tmp_path, "link-to-caps"))
    assert len(rows) == 1


def test_metadata_linked_out_of_the_folder_is_refused(tmp_path):
    root = tmp_path / "d"
    png(root / "a.png")
    (tmp_path / "meta.jsonl").write_text(json.dumps({"file_name": "a.png", "text": SECRET}) + "\n")
    (root / "metadata.jsonl").symlink_to(tmp_path / "meta.jsonl")
    with pytest.raises(VtcError) as exc:
        load_rows(plan_for(tmp_path, "d"))
    d = exc.value.diagnostics[0]
    assert d.code == "VT415" and "metadata.jsonl" in d.message and SECRET not in everything_said(exc.value)


def test_a_data_file_named_by_from_that_links_out_is_refused(tmp_path):
    """`from ./rows.csv` where rows.csv is a link to the token file: the token would be the CSV's column name."""
    secret = secret_file(tmp_path)
    secret.write_text(f"{SECRET}\nsecond line\n")  # with a row, the first line would be the column names
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "rows.csv").symlink_to(secret)
    report = scan_data(plan_for(repo, "rows.csv"))
    assert [d.code for d in report.errors] == ["VT415"] and SECRET not in everything_said(report)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_metadata_linked_to_a_device_is_refused_without_reading(tmp_path):
    """/dev/zero read whole fills the memory; it is refused before it is opened."""
    root = tmp_path / "d"
    png(root / "a.png")
    (root / "metadata.jsonl").symlink_to("/dev/zero")
    with pytest.raises(VtcError) as exc:
        no_hang(load_rows, plan_for(tmp_path, "d"))
    assert exc.value.diagnostics[0].code in ("VT415", "VT437")


# --- FIFOs, devices: never opened --------------------------------------------------------------------------------


needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")


@needs_fifo
def test_a_fifo_as_a_caption_is_refused_without_blocking(tmp_path):
    root = tmp_path / "caps"
    png(root / "a.png")
    os.mkfifo(root / "a.txt")
    png(root / "b.png", (0, 0, 200))
    (root / "b.txt").write_text("blue")
    report = no_hang(scan_data, plan_for(tmp_path, "caps"), fifos=[root / "a.txt"])
    assert [(d.code, Path(d.span.file).name) for d in report.errors] == [("VT437", "a.txt")], report.diagnostics
    assert "FIFO" in report.errors[0].message


@needs_fifo
def test_a_fifo_as_an_image_is_refused_without_blocking(tmp_path):
    # In a captions folder ...
    root = tmp_path / "caps"
    root.mkdir()
    os.mkfifo(root / "a.png")
    (root / "a.txt").write_text("red")
    png(root / "b.png", (0, 0, 200))
    (root / "b.txt").write_text("blue")
    report = no_hang(scan_data, plan_for(tmp_path, "caps"), fifos=[root / "a.png"])
    assert [(d.code, Path(d.span.file).name) for d in report.errors] == [("VT437", "a.png")], report.diagnostics
    # ... and listed by a metadata file.
    meta = tmp_path / "meta"
    png(meta / "good.png")
    os.mkfifo(meta / "pipe.png")
    (meta / "metadata.jsonl").write_text(json.dumps({"file_name": "good.png", "text": "ok"}) + "\n"
                                         + json.dumps({"file_name": "pipe.png", "text": "x"}) + "\n")
    report = no_hang(scan_data, plan_for(tmp_path, "meta"), fifos=[meta / "pipe.png"])
    assert [(d.code, d.span.line) for d in report.errors] == [("VT437", 2)], report.diagnostics


@needs_fifo
def test_a_fifo_image_reaching_preparation_is_refused_without_blocking(tmp_path):
    """Should a file become a FIFO after the rows were read, preparation (and the cache's hash) still refuses it."""
    from vtc.runtime.prepare import prepare_images
    from vtc.runtime.cache import ImageCache

    os.mkfifo(tmp_path / "late.png")
    results = no_hang(lambda: list(prepare_images([(str(tmp_path / "late.png"), 0)], resize={"mode": "none"},
                                                  cache=ImageCache(tmp_path / "c"), workers=1)),
                      fifos=[tmp_path / "late.png"])
    assert results[0]["code"] == "VT437"


@needs_fifo
def test_a_fifo_as_the_metadata_file_is_refused_without_blocking(tmp_path):
    root = tmp_path / "d"
    png(root / "a.png")
    os.mkfifo(root / "metadata.jsonl")
    with pytest.raises(VtcError) as exc:
        no_hang(load_rows, plan_for(tmp_path, "d"), fifos=[root / "metadata.jsonl"])
    d = exc.value.diagnostics[0]
    assert d.code == "VT437" and "metadata.jsonl" in d.message and "FIFO" in d.message


@needs_fifo
def test_a_fifo_named_by_from_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "rows.jsonl")
    with pytest.raises(VtcError) as exc:
        no_hang(detect_source, tmp_path / "rows.jsonl", fifos=[tmp_path / "rows.jsonl"])
    assert exc.value.diagnostics[0].code == "VT437"


# --- sizes ---------------------------------------------------------------------------------------------------------


def test_a_huge_caption_is_refused_before_it_is_read_whole(tmp_path):
    from vtc.runtime.sources.files import CAPTION_LIMIT

    root = tmp_path / "caps"
    png(root / "a.png")
    with open(root / "a.txt", "wb") as f:
        f.truncate(CAPTION_LIMIT + 1)  # sparse: no disk used
    png(root / "b.png", (0, 0, 200))
    (root / "b.txt").write_text("blue")
    report = scan_data(plan_for(tmp_path, "caps"))
    assert [(d.code, Path(d.span.file).name) for d in report.errors] == [("VT438", "a.txt")]
    assert "1 MB" in report.errors[0].message


def test_a_metadata_file_over_the_limit_is_refused(tmp_path, monkeypatch):
    import vtc.runtime.sources.files as files

    root = tmp_path / "d"
    png(root / "a.png")
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "x" * 200}) + "\n")
    monkeypatch.setattr(files, "TABLE_LIMIT", 100)
    with pytest.raises(VtcError) as exc:
        load_rows(plan_for(tmp_path, "d"))
    d = exc.value.diagnostics[0]
    assert d.code == "VT438" and "metadata.jsonl" in d.message and "parquet" in d.help


# --- clean output ----------------------------------------------------------------------------------------------------


def test_escape_sequences_in_data_file_names_are_shown_escaped_in_text_and_exact_in_json(tmp_path):
    root = tmp_path / "caps"
    evil = f"{ESC}ok: 1 recipe checked\x1b[8m.png"
    png(root / evil)  # no caption: VT412 names the image
    png(root / "b.png", (0, 0, 200))
    (root / "b.txt").write_text(f"blue{ESC}")
    recipe = tmp_path / "r.vt"
    recipe.write_text("finetune all on tiny-qwen2.5-vl\nfrom ./caps\nresize 64\n")
    res = CliRunner().invoke(cli, ["check", "--data", str(recipe)])
    assert res.exit_code == 1
    assert "\x1b" not in res.output, repr(res.output)
    assert "\\x1b[2K\\x1b[1Aok: 1 recipe checked\\x1b[8m.png" in res.output
    res = CliRunner().invoke(cli, ["check", "--data", "--format", "json", str(recipe)])
    found = json.loads(res.stdout)
    assert any(evil in d["message"] for d in found), found
    # The answer itself stays exact in the rows (what training and predictions.jsonl get).
    problems: list = []
    rows = load_rows(plan_for(tmp_path, "caps"), problems=problems)
    assert rows.answer(0) == f"blue{ESC}"


def test_vtc_plan_shows_data_source_names_escaped(tmp_path):
    from vtc.runtime.sources import describe_sources

    root = tmp_path / "d"
    png(root / "a.png")
    (root / "a.txt").write_text("x")
    plan = plan_for(tmp_path, "d")
    plan["data"]["train"]["source"] = f"d/../d{ESC}"  # as a plan file could say it (the folder does not exist)
    sentences = " ".join(s for _, s in describe_sources(plan))
    assert "\x1b" not in sentences and "\\x1b" in sentences


# --- every failure a diagnostic ------------------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_an_unreadable_metadata_file_is_a_diagnostic(tmp_path):
    root = tmp_path / "d"
    png(root / "a.png")
    meta = root / "metadata.jsonl"
    meta.write_text(json.dumps({"file_name": "a.png", "text": "x"}) + "\n")
    meta.chmod(0)
    try:
        with pytest.raises(VtcError) as exc:
            load_rows(plan_for(tmp_path, "d"))
    finally:
        meta.chmod(0o644)
    d = exc.value.diagnostics[0]
    assert d.code == "VT419" and "metadata.jsonl" in d.message and "ermission" in d.message


def test_a_file_that_cannot_be_opened_is_a_diagnostic(tmp_path, monkeypatch):
    """The same as the chmod 000 test, for a root user too: opening the metadata file fails with EACCES."""
    root = tmp_path / "d"
    png(root / "a.png")
    meta = root / "metadata.jsonl"
    meta.write_text(json.dumps({"file_name": "a.png", "text": "x"}) + "\n")
    real_open = os.open

    def denied(path, *args, **kwargs):
        if str(path).endswith("metadata.jsonl"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(VtcError) as exc:
        load_rows(plan_for(tmp_path, "d"))
    d = exc.value.diagnostics[0]
    assert d.code == "VT419" and "metadata.jsonl" in d.message and "Permission denied" in d.message
    assert d.span.file == str(meta)


def test_a_folder_that_vanishes_mid_scan_is_a_diagnostic(tmp_path):
    from vtc.runtime.sources import load as load_mod
    from vtc.runtime.sources.request import Request

    for kind in ("classes", "captions"):
        root = tmp_path / kind
        if kind == "classes":
            png(root / "cat" / "1.png")
            png(root / "dog" / "1.png")
        else:
            png(root / "a.png")
            (root / "a.txt").write_text("x")
        plan = plan_for(tmp_path, kind)
        info = detect_source(root)
        assert info.kind == kind
        shutil.rmtree(root)
        with pytest.raises(VtcError) as exc:
            load_mod.READERS[kind].read(info, Request.of(plan, None, None))
        d = exc.value.diagnostics[0]
        assert d.code == "VT439" and str(root) in d.span.file, (kind, d)


def test_an_unlistable_class_folder_is_a_diagnostic(tmp_path, monkeypatch):
    root = tmp_path / "animals"
    png(root / "cat" / "1.png")
    png(root / "dog" / "1.png")
    plan = plan_for(tmp_path, "animals")
    real_scandir = os.scandir

    def denied(path="."):
        if str(path).endswith("dog"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(VtcError) as exc:
        load_rows(plan)
    d = exc.value.diagnostics[0]
    assert d.code == "VT439" and d.span.file.endswith("dog") and "Permission denied" in d.message


# --- `datasets` sources: saved folders and parquet -----------------------------------------------------------------


def test_a_parquet_file_linked_out_is_refused(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"image": [Image.new("RGB", (8, 8))], "text": ["x"]},
                                    features=datasets.Features({"image": datasets.Image(),
                                                                "text": datasets.Value("string")}))
    ds.to_parquet(str(tmp_path / "elsewhere.parquet"))
    (tmp_path / "pq").mkdir()
    (tmp_path / "pq" / "train.parquet").symlink_to(tmp_path / "elsewhere.parquet")
    with pytest.raises(VtcError) as exc:
        load_rows(plan_for(tmp_path, "pq"))
    assert exc.value.diagnostics[0].code == "VT415"


def test_a_saved_dataset_with_a_file_linked_out_is_refused(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"image": [Image.new("RGB", (8, 8))], "text": ["x"]},
                                    features=datasets.Features({"image": datasets.Image(),
                                                                "text": datasets.Value("string")}))
    ds.save_to_disk(str(tmp_path / "saved"))
    arrow = next((tmp_path / "saved").glob("*.arrow"))
    shutil.move(str(arrow), tmp_path / "elsewhere.arrow")
    arrow.symlink_to(tmp_path / "elsewhere.arrow")
    with pytest.raises(VtcError) as exc:
        load_rows(plan_for(tmp_path, "saved"))
    assert exc.value.diagnostics[0].code == "VT415" and arrow.name in exc.value.diagnostics[0].message


def test_image_paths_in_a_parquet_file_stay_in_the_data_folder(tmp_path):
    """A `datasets` Image column may hold a path instead of bytes (to_parquet keeps paths), and a plain column may
    hold paths: one that leads outside the data folder is refused, never opened (`datasets` would open it)."""
    datasets = pytest.importorskip("datasets")
    import pyarrow as pa
    import pyarrow.parquet as pq

    png(tmp_path / "private.png", (7, 7, 7))
    ok = png(tmp_path / "pq" / "ok.png", (200, 0, 0))
    paths = [str(ok), str(tmp_path / "private.png"), "../private.png"]
    texts = ["ok", "private", "private too"]
    # A plain column of paths (relative paths start at the data folder).
    pq.write_table(pa.table({"image": paths, "text": texts}), tmp_path / "pq" / "train.parquet")
    report = scan_data(plan_for(tmp_path, "pq"))
    assert sorted((d.code, d.span.line) for d in report.errors) == [("VT415", 2), ("VT415", 3)], report.diagnostics
    # An Image feature that stores paths.
    (tmp_path / "pq2").mkdir()
    shutil.copy(ok, tmp_path / "pq2" / "ok.png")
    ds = datasets.Dataset.from_dict({"image": [{"path": str(tmp_path / "pq2" / "ok.png"), "bytes": None},
                                               {"path": str(tmp_path / "private.png"), "bytes": None}],
                                     "text": texts[:2]},
                                    features=datasets.Features({"image": datasets.Image(),
                                                                "text": datasets.Value("string")}))
    ds.to_parquet(str(tmp_path / "pq2" / "train.parquet"))
    report = scan_data(plan_for(tmp_path, "pq2"))
    assert [(d.code, d.span.line) for d in report.errors] == [("VT415", 2)], report.diagnostics
    assert report.images == 1


# --- end to end: a run over a hostile captions folder ----------------------------------------------------------------


@pytest.mark.slow
def test_a_run_over_linked_captions_leaks_nothing(tmp_path):
    """`vtc run` with `bad rows skip` on captions linked to the token file and to /proc/self/environ (with a token in
    the environment): the linked rows are skipped, and the token is in no printed line and no file of the run
    folder (predictions.jsonl, skipped_rows.jsonl, the manifest, the log)."""
    root = tmp_path / "caps"
    colours = {"red": (220, 30, 30), "green": (30, 170, 30), "blue": (30, 60, 220), "yellow": (240, 210, 20)}
    for k, (name, rgb) in enumerate(list(colours.items()) * 2):
        png(root / f"{k}.png", rgb, (64, 64))
        (root / f"{k}.txt").write_text(name)
    png(root / "x1.png", (1, 1, 1), (64, 64))
    (root / "x1.txt").symlink_to(secret_file(tmp_path))
    if Path("/proc/self/environ").exists():
        png(root / "x2.png", (2, 2, 2), (64, 64))
        (root / "x2.txt").symlink_to("/proc/self/environ")
    (tmp_path / "r.vt").write_text("finetune all on tiny-qwen2.5-vl\nusing lora\nfrom ./caps\nbad rows skip\n"
                                   "holdout 25%\ntrain for 2 steps\nresize 64\nsave to ./runs\n")
    vtc = str(Path(sys.executable).with_name("vtc"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_TOKEN": SECRET, "VTC_IMAGE_CACHE": str(tmp_path / "cache")}
    res = subprocess.run([vtc, "run", "r.vt"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    printed = res.stdout + res.stderr
    assert res.returncode == 0, printed
    assert "VT415" in printed and SECRET not in printed and "HF_TOKEN=" not in printed
    files = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert any(p.name == "predictions.jsonl" for p in files), [p.name for p in files]
    skipped = next(p for p in files if p.name == "skipped_rows.jsonl").read_text()
    assert "x1.txt" in skipped
    leaked = [str(p) for p in files if SECRET.encode() in p.read_bytes() or b"HF_TOKEN=" in p.read_bytes()]
    assert not leaked, leaked


def test_the_evaluation_source_obeys_the_same_rule(tmp_path):
    """`evaluate on` reads through the same readers: a caption linked out of its folder is refused there too."""
    train = tmp_path / "train"
    png(train / "a.png")
    (train / "a.txt").write_text("red")
    evaluation = tmp_path / "eval"
    png(evaluation / "b.png")
    (evaluation / "b.txt").symlink_to(secret_file(tmp_path))
    report = scan_data(plan_for(tmp_path, "train", "evaluate on ./eval"))
    assert [(d.code, Path(d.span.file).name) for d in report.errors] == [("VT415", "b.txt")]
    assert SECRET not in everything_said(report)


def test_names_no_file_can_have_are_row_problems_not_tracebacks(tmp_path):
    """A NUL byte or a lone surrogate in a row's file name (JSON allows both) makes the OS layer raise ValueError."""
    root = tmp_path / "d"
    png(root / "a.png")
    (root / "metadata.jsonl").write_text(
        json.dumps({"file_name": "a.png", "text": "ok"}) + "\n"
        + json.dumps({"file_name": "a\u0000.png", "text": "x"}) + "\n"
        + '{"file_name": "b\\ud800.png", "text": "x"}\n')
    report = scan_data(plan_for(tmp_path, "d"))
    assert [(d.code, d.span.line) for d in report.errors] == [("VT409", 2), ("VT409", 3)], report.diagnostics
    chat = tmp_path / "c"
    png(chat / "a.png")
    (chat / "chat.jsonl").write_text(json.dumps({"messages": [
        {"role": "user", "content": [{"type": "image", "image": "a\u0000.png"}]},
        {"role": "assistant", "content": "x"}]}) + "\n")
    report = scan_data(plan_for(tmp_path, "c/chat.jsonl"))
    assert [d.code for d in report.errors] == ["VT409"]


def test_a_saved_dataset_naming_files_outside_is_refused(tmp_path):
    """state.json names the data files and dataset_dict.json the split folders `datasets` opens: "../.." in either
    would load another data set's rows (its answers into training and predictions)."""
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"image": [Image.new("RGB", (8, 8))], "text": [SECRET]},
                                    features=datasets.Features({"image": datasets.Image(),
                                                                "text": datasets.Value("string")}))
    ds.save_to_disk(str(tmp_path / "private"))
    ds.save_to_disk(str(tmp_path / "saved"))
    state = json.loads((tmp_path / "saved" / "state.json").read_text())
    name = state["_data_files"][0]["filename"]
    state["_data_files"][0]["filename"] = f"../private/{name}"
    (tmp_path / "saved" / "state.json").write_text(json.dumps(state))
    with pytest.raises(VtcError) as exc:
        load_rows(plan_for(tmp_path, "saved"))
    assert exc.value.diagnostics[0].code == "VT415" and SECRET not in everything_said(exc.value)
    # A DatasetDict whose split is "../private".
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "dict"))
    (tmp_path / "dict" / "dataset_dict.json").write_text(json.dumps({"splits": ["../private"]}))
    with pytest.raises(VtcError) as exc:
        load_rows(plan_for(tmp_path, "dict"))
    assert exc.value.diagnostics[0].code in ("VT415", "VT404") and SECRET not in everything_said(exc.value)
