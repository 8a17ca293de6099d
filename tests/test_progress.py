"""Progress on every long stage (issue 14, item 4): vtc.runtime.progress.Progress, and the stages that use it.

On a terminal a tqdm bar (rewritten in place, with the time left); elsewhere (CI, a log file, `| tee`) one line each
tenth of the stage and no control characters; run.log gets the tenth lines, never a bar's redraws; a quiet reporter
(a process other than rank 0) shows nothing.
"""

from __future__ import annotations

import importlib
import io
import json
import re

import pytest

from runtime_helpers import make_plan, make_shapes, write_plan
from vtc.runtime import progress as P
from vtc.runtime.progress import Reporter

CONTROL = re.compile(r"[\r\x1b\x00-\x08\x0b-\x1f\x7f]")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _progress_lines(text: str, label: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"  {label}  ")]


def test_not_a_terminal_one_line_each_tenth_no_control_characters(tmp_path):
    out = io.StringIO()
    rep = Reporter(out, quiet=False)
    rep.log_to(tmp_path / "run.log")
    with rep.stage("evaluate base") as st:
        with P.bar("answers", 57, "rows", delay=0) as bar:
            for _ in range(57):
                bar.update(1)
        st.detail = "exact_match 10.0%"
    text = out.getvalue()
    assert not CONTROL.search(text), repr(text)
    lines = _progress_lines(text, "answers")
    assert len(lines) == 10, text  # 10%, 20%, ... 100%: one line each, never one per row
    assert lines[0].startswith("  answers  6/57 rows (10%), ") and lines[0].endswith(" left")
    assert lines[-1].startswith("  answers  57/57 rows (100%), ")
    assert text.splitlines()[-1].startswith("evaluate base         exact_match 10.0%  (")
    # Everything printed is in the log, and only that.
    assert (tmp_path / "run.log").read_text().splitlines() == text.splitlines()


def test_a_few_large_steps_give_a_line_each_not_ten():
    out = io.StringIO()
    rep = Reporter(out, quiet=False)
    with rep.stage("save"):
        bar = rep.bar("saving", 3, "steps", delay=0)
        for _ in range(3):
            bar.update(1)
    lines = _progress_lines(out.getvalue(), "saving")
    assert [line.split(",")[0] for line in lines] == ["  saving  1/3 steps (33%)", "  saving  2/3 steps (66%)",
                                                       "  saving  3/3 steps (100%)"]


def test_on_a_terminal_a_bar_on_screen_and_only_the_tenth_lines_in_the_log(tmp_path):
    screen = _Terminal()
    rep = Reporter(screen, quiet=False)
    rep.log_to(tmp_path / "run.log")
    with rep.stage("scan data") as st:
        bar = P.bar("images", 200, "images", delay=0)
        for _ in range(200):
            bar.update(1)
        st.detail = "no problems"  # the stage closes the bar it left open
    shown = screen.getvalue()
    assert "\r" in shown and "  images " in shown and " left" in shown  # tqdm's bar, rewritten in place
    log = (tmp_path / "run.log").read_text()
    assert "\r" not in log and "\x1b" not in log
    lines = log.splitlines()
    assert len(_progress_lines(log, "images")) == 10 and len(lines) == 11, log
    assert lines[-1].startswith("scan data             no problems  (")
    assert rep._bars == []


def test_a_short_stage_shows_no_progress_only_its_line():
    out = io.StringIO()
    rep = Reporter(out, quiet=False)
    with rep.stage("scan data"):
        with rep.bar("images", 50, "images", delay=3600) as bar:
            bar.update(50)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scan data  "), lines


def test_a_quiet_reporter_other_ranks_shows_nothing(tmp_path):
    out = io.StringIO()
    rep = Reporter(out, quiet=True)
    rep.log_to(tmp_path / "run.log")
    with rep.stage("evaluate base"):
        with P.bar("answers", 10, delay=0) as bar:
            bar.update(10)
    assert out.getvalue() == "" and not (tmp_path / "run.log").exists()


def test_a_closed_output_stops_the_bar_and_the_log_keeps_the_lines(tmp_path, capsys):
    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    rep = Reporter(Closed(), quiet=False)
    rep.log_to(tmp_path / "run.log")
    with rep.stage("evaluate base"):
        with P.bar("answers", 10, delay=0) as bar:
            bar.update(10)
    assert rep.closed
    assert "  answers  10/10 rows (100%)" in (tmp_path / "run.log").read_text()


def test_no_stage_in_progress_and_no_terminal_plain_lines_on_stderr(capsys):
    """`vtc check --data` in CI: the scan's tenth lines go to stderr, plain; stdout (the diagnostics, perhaps JSON)
    stays as it was."""
    with P.bar("images", 10, "images", delay=0) as bar:
        for _ in range(10):
            bar.update(1)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[-1].startswith("  images  10/10 images (100%)"), captured.err
    assert len(captured.err.splitlines()) == 10 and not CONTROL.search(captured.err)


def test_the_data_scan_shows_its_progress(tmp_path, monkeypatch):
    from vtc.runtime.cache import ImageCache
    from vtc.runtime.validate import validate_for_run

    monkeypatch.setattr(P, "DELAY", 0)
    train = make_shapes(tmp_path / "train", n=12, seed=1)
    plan = make_plan(train, steps=1, outputs_dir=tmp_path / "runs")
    out = io.StringIO()
    rep = Reporter(out, quiet=False)
    with rep.stage("scan data"):
        check = validate_for_run(plan, cache=ImageCache(tmp_path / "cache"))
    lines = _progress_lines(out.getvalue(), "images")
    assert len(check.train) + len(check.eval) == 12
    assert lines[-1].startswith("  images  12/12 images (100%)"), out.getvalue()
    assert not CONTROL.search(out.getvalue())


def test_evaluation_shows_the_rows_answered(monkeypatch):
    """answer_rows passes generate an on_batch hook that moves the bar a batch at a time."""
    from vtc.runtime import evaluate as E

    monkeypatch.setattr(P, "DELAY", 0)
    calls = []

    def fake_generate(model, processor, conversations, *, max_new_tokens, batch_size, on_batch=None, **kw):
        answers = []
        for start in range(0, len(conversations), batch_size):
            answers += ["a"] * len(conversations[start:start + batch_size])
            calls.append(len(answers))
            on_batch(len(answers), len(conversations))
        return answers

    class Rows(list):
        def answer(self, i):
            return "a"

    class Backend:
        def for_inference(self, model):
            pass

    monkeypatch.setattr(E, "generate", fake_generate)
    monkeypatch.setattr(E, "answer_token_limit", lambda *a: 4)
    monkeypatch.setattr(E, "eval_batch_size", lambda plan: 4)
    rows = Rows({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
                for _ in range(20))
    out = io.StringIO()
    rep = Reporter(out, quiet=False)
    with rep.stage("evaluate base"):
        answers = E.answer_rows(Backend(), None, None, rows, {"evaluation": {"max_new_tokens": 8}})
    assert answers == ["a"] * 20 and calls == [4, 8, 12, 16, 20]
    lines = _progress_lines(out.getvalue(), "answers")
    assert [line.split(" (")[0] for line in lines] == [f"  answers  {n}/20 rows" for n in (4, 8, 12, 16, 20)]


def test_ask_on_a_folder_counts_the_images_on_stderr(capsys, monkeypatch):
    from vtc.runtime.ask import _Answers

    monkeypatch.setattr(P, "DELAY", 0)
    sink = _Answers(None, folder=True)
    sink.total = 20
    sink.write({"image": "bad.png", "question": "q", "answer": None, "error": "VT411: unreadable"})
    sink.begin()  # the model is loaded: the one failed image already counts
    for i in range(19):
        sink.write({"image": f"{i}.png", "question": "q", "answer": "a", "error": None})
    sink.progress.close()
    captured = capsys.readouterr()
    assert [json.loads(line)["image"] for line in captured.out.splitlines()][:2] == ["bad.png", "0.png"]
    assert not CONTROL.search(captured.err)
    lines = _progress_lines(captured.err, "images answered")
    assert lines[-1].startswith("  images answered  20/20 images (100%)") and len(lines) == 10, captured.err


def test_the_hubs_download_bars_stay_on():
    """quiet_libraries hides the weight-loading bars, not huggingface_hub's download bars."""
    pytest.importorskip("transformers")
    from huggingface_hub.utils import are_progress_bars_disabled

    if are_progress_bars_disabled():
        pytest.skip("HF_HUB_DISABLE_PROGRESS_BARS is set in this environment")
    with P.quiet_libraries():
        assert not are_progress_bars_disabled()


def _hub_download(total: int, chunks: int) -> None:
    """What huggingface_hub's file download does with its progress (file_download.http_get): the bar from
    _get_progress_bar_context, updated with each chunk written."""
    import logging

    from huggingface_hub.utils.tqdm import _get_progress_bar_context

    with _get_progress_bar_context(desc="model.safetensors", log_level=logging.INFO, total=total,
                                   name="huggingface_hub.http_get") as progress:
        for _ in range(chunks):
            progress.update(total // chunks)


def test_a_download_not_on_a_terminal_prints_plain_lines_through_the_stage(tmp_path, monkeypatch):
    """A model download in CI or a log: the Hub's bar becomes a line each tenth (size, share, time left) through
    the stage's reporter, logged, with no carriage return; the Hub's own class is back afterwards."""
    pytest.importorskip("transformers")
    hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")
    from huggingface_hub.utils import are_progress_bars_disabled

    if are_progress_bars_disabled():
        pytest.skip("HF_HUB_DISABLE_PROGRESS_BARS is set in this environment")
    monkeypatch.setattr(P, "DELAY", 0)
    own = hub_tqdm.tqdm
    out = io.StringIO()
    rep = Reporter(out, quiet=False)
    rep.log_to(tmp_path / "run.log")
    with rep.stage("load model"), P.quiet_libraries():
        _hub_download(total=40_000_000, chunks=20)
    assert hub_tqdm.tqdm is own
    lines = _progress_lines(out.getvalue(), "download model.safetensors")
    assert len(lines) == 10, out.getvalue()
    assert lines[-1].startswith("  download model.safetensors  40.0MB/40.0MB (100%)"), lines[-1]
    assert "left" in lines[0] and not CONTROL.search(out.getvalue())
    assert lines[-1] in (tmp_path / "run.log").read_text()


def test_a_download_on_a_terminal_keeps_the_hubs_own_bar(monkeypatch):
    pytest.importorskip("transformers")
    hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")

    own = hub_tqdm.tqdm
    monkeypatch.setattr(P, "_isatty", lambda stream: True)
    with P.hub_download_lines():
        assert hub_tqdm.tqdm is own
    with P.hub_download_lines(on=False):
        assert hub_tqdm.tqdm is own


@pytest.mark.slow
def test_a_run_shows_every_stage_progress_in_a_log(tmp_path, monkeypatch, capsys):
    """A whole tiny run, its output not a terminal: the data scan, both evaluations and the save report their
    progress as plain lines, and run.log holds exactly what was printed."""
    from vtc.commands import run_target

    monkeypatch.setattr(P, "DELAY", 0)
    train = make_shapes(tmp_path / "train", n=8, seed=1)
    val = make_shapes(tmp_path / "val", n=4, seed=2)
    plan = make_plan(train, eval_dir=val, steps=2, outputs_dir=tmp_path / "runs")
    run = run_target(str(write_plan(plan, tmp_path / "plan.json")), allow_changed=True)
    out = capsys.readouterr().out
    assert not CONTROL.search(out.replace("\n", ""))
    assert _progress_lines(out, "images")
    assert len([line for line in _progress_lines(out, "answers") if "4/4 rows (100%)" in line]) == 2
    assert _progress_lines(out, "saving")[-1].startswith("  saving  2/2 steps (100%)")
    assert (run / "run.log").read_text().splitlines() == out.splitlines()
