"""report.html: one self-contained page about a run, and the review queue for experts.

    write_report(run_dir, *, explain=None, sources=None, preview=None) -> Path   report.html in the run folder
    write_review(run_dir, csv_path, worst=50) -> (Path, rows written)           the N worst rows, as CSV
    check_run_folder(run_dir) -> Path                                           VT561 when it is not a run folder
    synthetic_run(folder, rows, distinct_images=None) -> Path                   a fake finished run (tests, benches)
    remember(plan, explain=None, sources=None)                                  what `vtc run` (vtc.commands) knows
                                                                                that the runtime does not
    at_end(run_dir, plan, rep, ...)                                             report.html at the end of `vtc run`

The page reads only the run folder's files (plan.json, manifest.json, metrics.jsonl, eval.json, predictions.jsonl,
skipped_rows.jsonl, preview.json, and the evaluation images that predictions.jsonl names); it works for finished,
failed and interrupted runs and says in the page what is missing. Everything is inline: CSS, JS, the SVG charts
(drawn here in Python), the thumbnails (96 px JPEG data: URIs). Nothing is fetched from the network.

Contract for the browser tests (tests/test_report_browser.py relies on it, keep it exactly):
    - the gallery container is ``<div id="gallery" data-total="N" data-shown="M" data-rendered="K">``: N evaluation
      rows in all, M matching the filter, K of those drawn (the gallery draws 200 at a time, more on "show more"
      or when scrolled to the end); every drawn evaluation row is an element with class "row" inside it;
    - the filter box is ``<input id="filter">`` (narrows as you type: case-insensitive, over the question, the
      answers, the file);
    - ``window.vtcReportReady === true`` once the first rendering finished.

Rows are sorted worst first by the first metric of the recipe (its per-row score after fine-tuning), regressions
(better before than after) first among equals, and flagged. Clicking a thumbnail shows the image larger: a
512 px copy is embedded when the set has at most BIG_IMAGES_UP_TO rows, otherwise the thumbnail enlarged, with the
image's file path either way.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections import Counter
from pathlib import Path

from vtc.runtime import metrics as M

REPORT = "report.html"
PREVIEW = "preview.json"
THUMB_PX = 96
BIG_PX = 512
BIG_IMAGES_UP_TO = 200
PAGE_ROWS = 200
CLASSES_UP_TO = 20  # answers from at most this many distinct values (and each seen twice on average): classification
CLASS_WORDS_UP_TO = 4  # ... and each of at most this many words
REVIEW_WORST = 50

_CONTEXT: dict = {}


def remember(plan: dict | None = None, explain=None, sources: dict | None = None) -> None:
    """What the caller of the runtime knows and the run folder does not: ``explain(plan, rows) -> str`` (`vtc
    explain`'s paragraph, from the compiler) and the recipe texts as written (``{file: text}``, with its includes),
    for the run of ``plan`` (this very dict; None: the next run, whatever its plan: a resumed run reads its own). The
    report written at the end of that run uses them (at_end)."""
    _CONTEXT.clear()
    _CONTEXT.update(plan=plan, explain=explain, sources=sources)


def at_end(run_dir: Path, plan: dict, rep, *, processor=None, collator=None, rows=None) -> Path | None:
    """report.html at the end of `vtc run` (rank 0 alone calls this): with what remember() kept for this plan, and
    the preview of the first training rows when vtc.runtime.preview is there. A page that cannot be written does
    not fail a finished run: it is said, and `vtc report RUN_DIR` writes it later."""
    from vtc.diagnostics import VtcError

    kept = _CONTEXT.get("plan")
    context = dict(_CONTEXT) if kept is None or kept is plan else {}
    _CONTEXT.clear()
    explain = context.get("explain")
    paragraph = (lambda counts: explain(plan, counts)) if callable(explain) else None
    preview = None
    if processor is not None and collator is not None and rows is not None:
        from vtc.runtime.preview import preview_rows

        try:
            preview = preview_rows(plan, processor, collator, rows, 3)
        except Exception as exc:  # the preview is a nicety here: the run's result does not depend on it
            rep.line(f"note: the preview of the training rows was left out of the report ({type(exc).__name__})")
    try:
        return write_report(run_dir, explain=paragraph, sources=context.get("sources") or {},
                            preview=preview)
    except VtcError as exc:
        rep.line(exc.diagnostics[0].render() if exc.diagnostics else str(exc))
    except Exception as exc:  # the run finished; its report can be made again with `vtc report`
        rep.line(f"note: report.html was not written ({type(exc).__name__}: {exc}); `vtc report {run_dir}` "
                 "writes it")
    return None


def _speed_rows(speed: dict, memory: dict) -> list[tuple[str, str]]:
    """The training's speed, utilisation, memory and data wait in the words the run printed at its end
    (throughput.lines); a run that recorded none, or an older record: what is there, or "not recorded"."""
    from vtc.runtime import throughput as T

    if speed:
        try:
            return [(line[:T_NAME].strip(), line[T_NAME:].strip()) for line in T.lines(speed, T_NAME)]
        except (KeyError, TypeError, ValueError, AttributeError):
            pass
    peak = ", ".join(f"{k.replace('_', ' ')} {v:.2f} GiB" for k, v in memory.items() if isinstance(v, (int, float)))
    return [("peak memory", peak or "not recorded"), ("speed", "not recorded")]


# The name column of throughput.lines, split off again here.
T_NAME = 12


# --- reading the folder ----------------------------------------------------------------------------------------

def check_run_folder(run_dir) -> Path:
    """The run folder, or VT561 when it is not one (no plan.json and manifest.json in it)."""
    from vtc.diagnostics import Span, VtcError, error

    folder = Path(run_dir)
    if not folder.is_dir():
        raise VtcError(error("VT561", f"{run_dir} is not a folder", Span(str(run_dir)),
                             help="give a run folder, e.g. `vtc report runs/demo-shapes/run-001` (`vtc run` prints "
                                  "its path)"))
    missing = [n for n in ("plan.json", "manifest.json") if not (folder / n).is_file()]
    if missing:
        raise VtcError(error("VT561", f"{run_dir} is not a run folder: it has no {' and no '.join(missing)}",
                             Span(str(run_dir)),
                             help="give a folder that `vtc run` made (runs/<recipe>/run-NNN, also .failed or "
                                  ".interrupted ones)"))
    return folder


# A run folder's files are read as regular files of bounded size (a run folder may come from elsewhere: vtc.confine).
FILE_LIMIT = 256 * 2**20


def _text(path: Path) -> str | None:
    from vtc.confine import Refused, read_regular

    try:
        return read_regular(path, FILE_LIMIT).decode("utf-8")
    except (Refused, UnicodeDecodeError):
        return None


def _json(path: Path):
    text = _text(path)
    try:
        return json.loads(text) if text is not None else None
    except (ValueError, RecursionError):
        return None


def _jsonl(path: Path) -> list[dict] | None:
    text = _text(path)
    if text is None:
        return None
    out = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue  # a line cut by an interruption
        if isinstance(value, dict):
            out.append(value)
    return out


class Run:
    """The run folder's files, each None when missing."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.plan = _json(folder / "plan.json") or {}
        self.manifest = _json(folder / "manifest.json") or {}
        self.metrics = _jsonl(folder / "metrics.jsonl")
        self.eval = _json(folder / "eval.json")
        self.predictions = _jsonl(folder / "predictions.jsonl")
        self.skipped = _jsonl(folder / "skipped_rows.jsonl")
        self.preview = _json(folder / PREVIEW)
        self.names = list((self.plan.get("evaluation") or {}).get("metrics") or ["exact_match"])
        self.names = [n for n in self.names if n in M.METRICS] or ["exact_match"]

    @property
    def primary(self) -> str:
        return self.names[0]


def scored_rows(run: Run) -> list[dict]:
    """Every evaluation row with its scores before and after (primary metric), a regression flag and a badness
    key; worst first."""
    name = run.primary
    higher = M.HIGHER_IS_BETTER.get(name, True)
    rows = []
    for rec in run.predictions or []:
        expected = str(rec.get("expected") or "")
        after = rec.get("after")
        before = rec.get("before")
        s_after = (rec.get("after_scores") or {}).get(name)
        if s_after is None and after is not None:
            s_after = M.row_scores([name], str(after), expected)[name]
        s_before = M.row_scores([name], str(before), expected)[name] if before is not None else None
        regression = s_before is not None and s_after is not None and (
            s_before > s_after if higher else s_before < s_after)
        badness = -(s_after if s_after is not None else -math.inf) if higher else (
            s_after if s_after is not None else math.inf)
        drop = ((s_before - s_after) if higher else (s_after - s_before)) if regression else 0.0
        rows.append({**rec, "score_before": s_before, "score_after": s_after, "regression": regression,
                     "_key": (-badness, not regression, -drop, rec.get("row", 0))})
    rows.sort(key=lambda r: r["_key"])
    for r in rows:
        del r["_key"]
    return rows


# --- the review queue ------------------------------------------------------------------------------------------

REVIEW_COLUMNS = ("image", "question", "expected", "before", "after", "score", "regression", "origin")


def write_review(run_dir, csv_path, worst: int = REVIEW_WORST) -> tuple[Path, int]:
    """The ``worst`` worst evaluation rows as CSV, for an expert to correct (edit `expected`). Column `image`: the
    row's image files and then its clips (a clip's file or frame folder, or its first frame and how many follow),
    separated by ";". VT563 when the run has no evaluation rows; VT562 when the file cannot be written."""
    from vtc.diagnostics import Span, VtcError, error

    folder = check_run_folder(run_dir)
    run = Run(folder)
    if not run.predictions:
        raise VtcError(error("VT563", f"{run_dir} has no evaluation rows (no predictions.jsonl): nothing to review",
                             Span(str(folder / "predictions.jsonl")),
                             help="the run needs evaluation data (`holdout 10%` or `evaluate on <folder>`) and must "
                                  "have finished; `vtc run --resume` finishes an interrupted one"))
    rows = scored_rows(run)[:max(worst, 0)]
    path = Path(csv_path)
    try:
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(REVIEW_COLUMNS)
            for r in rows:
                files = [str(p) for p in r.get("images") or []] + [_clip_name(c) for c in r.get("videos") or []]
                w.writerow([";".join(files), r.get("question") or "", r.get("expected") or "",
                            "" if r.get("before") is None else r["before"], r.get("after") or "",
                            "" if r["score_after"] is None else f"{r['score_after']:.4g}",
                            "yes" if r["regression"] else "", r.get("origin") or ""])
    except OSError as exc:
        raise VtcError(error("VT562", f"cannot write {csv_path}: {exc.strerror or exc}", Span(str(csv_path)),
                             help="give a file in a folder that exists and that you can write to "
                                  "(`--review review.csv`)")) from None
    return path, len(rows)


# --- the page --------------------------------------------------------------------------------------------------

def write_report(run_dir, *, explain=None, sources: dict | None = None, preview: list | None = None) -> Path:
    """Write report.html into the run folder and return its path. ``explain``: `vtc explain`'s paragraph (a string,
    or a function of the rows {"train", "eval"}); ``sources``: the recipe texts (default: the recipe files read
    now). ``preview``: vtc.runtime.preview.preview_rows's rows, kept in
    preview.json for later reports. VT562 when the page cannot be written."""
    from vtc.diagnostics import Span, VtcError, error
    from vtc.runtime import outputs as O

    folder = Path(run_dir)
    if preview is not None:
        O.write_json(folder / PREVIEW, preview)
    page = render(folder, explain=explain, sources=sources)
    path = folder / REPORT
    try:
        O.write_text(path, page)
    except OSError as exc:
        raise VtcError(error("VT562", f"cannot write {path}: {exc.strerror or exc}", Span(str(path)),
                             help="the run folder must be writable; copy it somewhere you can write and run "
                                  "`vtc report` on the copy")) from None
    return path


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _num(name: str, v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3f}" if name == "bleu" else f"{100 * v:.1f}%"


def render(folder: Path, *, explain=None, sources: dict | None = None) -> str:
    run = Run(folder)
    rows = scored_rows(run)
    missing = []
    for name, value in (("metrics.jsonl", run.metrics), ("eval.json", run.eval),
                        ("predictions.jsonl", run.predictions)):
        if not value:
            missing.append(name)
    thumbs, sizes, row_json = _gallery(rows, video=run.plan.get("video"),
                                       window=(run.plan.get("images") or {}).get("window"))
    sections = [
        _section("run", "The run", _run_section(run, explain, sources, missing)),
        _section("metrics", "Before and after", _metrics_section(run, rows)),
        _section("curves", "Loss and learning rate", _curves_section(run)),
        _section("answers", "Every evaluation row", _gallery_section(rows)),
        _section("data", "The data", _data_section(run, rows, sizes)),
        _section("plan", "The plan's key values", _plan_section(run)),
        _section("preview", "What the model trains on", _preview_section(run)),
    ]
    title = f"vtc report: {folder.name}"
    nav = "".join(f'<a href="#{k}">{t}</a>' for k, t in (
        ("run", "run"), ("metrics", "metrics"), ("curves", "loss"), ("answers", "answers"), ("data", "data"),
        ("plan", "plan"), ("preview", "preview")))
    data = json.dumps({"rows": row_json, "thumbs": thumbs}, ensure_ascii=True, separators=(",", ":"))
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")  # no tag can end it
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
            f"<header><h1>{_e(title)}</h1><nav>{nav}</nav></header><main>{''.join(sections)}</main>"
            f"<div id=\"lightbox\" hidden><figure><img id=\"lightbox-img\" alt=\"\"><figcaption id=\"lightbox-cap\">"
            f"</figcaption></figure></div>"
            f"<script type=\"application/json\" id=\"report-data\">{data}</script>"
            f"<script>{_JS}</script></body></html>\n")


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}"><h2>{_e(title)}</h2>{body}</section>'


def _table(head: list[str], body: list[list], cls: str = "") -> str:
    h = "".join(f"<th>{_e(c)}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body)
    return f'<table class="{cls}"><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>'


def _missing(text: str) -> str:
    return f'<p class="missing">{_e(text)}</p>'


# --- the run in plain words ------------------------------------------------------------------------------------

_STATE_WORDS = {"finished": "finished", "failed": "failed", "interrupted": "interrupted",
                "running": "did not finish (still running, or stopped without marking its folder)"}


def _run_section(run: Run, explain, sources, missing: list[str]) -> str:
    m, plan = run.manifest, run.plan
    state = m.get("state") or "unknown"
    out = [f'<p class="state state-{_e(state)}">This run <b>{_e(_STATE_WORDS.get(state, state))}</b>.</p>']
    if m.get("error"):
        out.append(f'<p class="missing">Error: {_e(m["error"])}</p>')
    if m.get("interrupted"):
        i = m["interrupted"]
        out.append(_missing(f"Stopped by {i.get('signal')}; last checkpoint at step {i.get('checkpoint_step')}. "
                            "`vtc run --resume` continues it."))
    if missing:
        out.append(_missing("Not in this run folder (the run did not get that far, or the file was removed): "
                            + ", ".join(missing) + ". The sections that need them say so."))
    paragraph = None
    if callable(explain):
        try:
            d = m.get("data") or {}
            paragraph = explain({"train": d.get("train_rows", 0), "eval": d.get("eval_rows", 0)})
        except Exception:  # an old plan the compiler of today reads differently: the page goes without it
            paragraph = None
    elif explain:
        paragraph = explain
    if paragraph:
        out.append(f'<p class="explain">{_e(paragraph)}</p>')
    elif callable(explain):
        out.append(_missing("`vtc explain`'s paragraph could not be made from this run's plan (a plan of an older "
                            "vtc?)."))
    model = plan.get("model") or {}
    d = m.get("data") or {}
    t = m.get("timings") or {}
    speed = m.get("throughput") or {}
    mem = speed.get("peak_memory_gib") or {}
    device = m.get("device") or {}
    card = device.get("name") or device.get("gpu") or speed.get("card") or device.get("kind")
    est = plan.get("estimates") or {}
    trainable = (est.get("trainable_parameters") or {}).get("total")
    facts = [
        ("model", f"{model.get('id', '?')} ({model.get('family') or '?'})"),
        ("method", f"{plan.get('method', '?')}"
                   + (f", {trainable:,} trainable parameters" if isinstance(trainable, int) else "")),
        ("what trains", ", ".join(f"{k}" for k, v in (plan.get("parts") or {}).items() if v) or "?"),
        ("training rows", d.get("train_rows", "?")), ("evaluation rows", d.get("eval_rows", "?")),
        ("rows left out", d.get("skipped_rows", 0)),
        ("started", m.get("started", "?")), ("ended", m.get("finished", "not recorded")),
        ("time", (f"{sum(v for v in t.values() if isinstance(v, (int, float))):.1f} s in all: " + ", ".join(
            f"{k} {v:.1f} s" for k, v in t.items() if isinstance(v, (int, float)))) if t else "not recorded"),
        ("card", card or "not recorded"),
        ("backend", (m.get("backend") or {}).get("name", "?")),
        *_speed_rows(speed, mem),
        ("run folder", str(run.folder)),
    ]
    out.append(_table(["", ""], [[_e(k), _e(v)] for k, v in facts], "facts"))
    texts = _recipe_texts(run, sources)
    if texts:
        for name, (text, note) in texts.items():
            out.append(f"<h3>{_e(name)}{_e(note)}</h3><pre class=\"recipe\">{_e(text)}</pre>")
    else:
        out.append(_missing("The recipe is not available (not passed in, and not found at its path now)."))
    return "".join(out)


def _recipe_texts(run: Run, sources) -> dict:
    if sources:
        return {str(k): (str(v), "") for k, v in sources.items()}
    recipe = run.plan.get("recipe") or {}
    base = Path(run.plan.get("base_dir") or ".")
    out = {}
    for name in recipe.get("files") or ([recipe["file"]] if recipe.get("file") else []):
        text = _text(base / name)
        if text is not None:
            out[name] = (text, " (as it is on disk now)")
    return out


# --- metrics ---------------------------------------------------------------------------------------------------

def _classes(rows: list[dict]) -> list[str] | None:
    expected = [M.normalise(r.get("expected") or "") for r in rows]
    distinct = Counter(expected)
    if not rows or len(distinct) > CLASSES_UP_TO or len(distinct) * 2 > len(rows) or len(distinct) < 2:
        return None
    if any(len(e.split()) > CLASS_WORDS_UP_TO for e in distinct):  # sentences are text answers, not classes
        return None
    return sorted(distinct)


def _metrics_section(run: Run, rows: list[dict]) -> str:
    out = []
    ev = run.eval
    before = (ev or {}).get("before")
    after = (ev or {}).get("after")
    if not after and rows:  # eval.json missing: counted again from predictions.jsonl
        exp = [str(r.get("expected") or "") for r in rows]
        after = M.compute(run.names, [str(r.get("after") or "") for r in rows], exp)
        if all(r.get("before") is not None for r in rows):
            before = M.compute(run.names, [str(r["before"]) for r in rows], exp)
    if not after:
        return _missing("No evaluation results: the run had no evaluation rows, or did not reach the evaluation "
                        "of the fine-tuned model (eval.json and predictions.jsonl are missing).")
    text_rows = rows and _classes(rows) is None
    names = list(after)
    if text_rows:
        exp = [str(r.get("expected") or "") for r in rows]
        for extra, fn in (("cer", M.cer), ("wer", M.wer)):
            if extra not in names:
                names.append(extra)
                after = {**after, extra: fn([str(r.get("after") or "") for r in rows], exp)}
                if before is not None and all(r.get("before") is not None for r in rows):
                    before = {**before, extra: fn([str(r["before"]) for r in rows], exp)}
    body = []
    for n in names:
        b, a = (before or {}).get(n), after.get(n)
        change, cls = "n/a", ""
        if a is not None and b is not None:
            delta = a - b
            better = delta > 0 if M.HIGHER_IS_BETTER.get(n, True) else delta < 0
            cls = "better" if better else ("worse" if delta != 0 else "")
            change = (f"{delta:+.3f}" if n == "bleu" else f"{100 * delta:+.1f} points")
        arrow = "higher is better" if M.HIGHER_IS_BETTER.get(n, True) else "lower is better"
        body.append([f"{_e(n)} <small>({arrow})</small>", _e(_num(n, b)), _e(_num(n, a)),
                     f'<span class="{cls}">{_e(change)}</span>'])
    n_rows = (ev or {}).get("n", len(rows))
    out.append(f"<p>{n_rows} evaluation rows ({_e((ev or {}).get('data', ''))}). Before: the base model; after: the "
               "fine-tuned model.</p>")
    out.append(_table(["metric", "before", "after", "change"], body, "metrics"))
    regressions = sum(r["regression"] for r in rows)
    if rows:
        out.append(f"<p>{regressions} row{'s' * (regressions != 1)} got worse after fine-tuning (flagged "
                   "<span class=\"flag\">worse</span> in the gallery).</p>")
    classes = _classes(rows) if rows else None
    if classes:
        out.append(_per_class(rows, classes))
    return "".join(out)


def _per_class(rows: list[dict], classes: list[str]) -> str:
    body = []
    for c in classes:
        mine = [r for r in rows if M.normalise(r.get("expected") or "") == c]
        has_before = all(r.get("before") is not None for r in mine)
        b = sum(M.normalise(r["before"]) == c for r in mine) / len(mine) if has_before else None
        a = sum(M.normalise(r.get("after") or "") == c for r in mine) / len(mine)
        body.append([_e(c), str(len(mine)), _e(_pct(b)), _e(_pct(a))])
    out = ["<h3>Per class</h3><p>The answers come from a small set, so each is a class: the share of each class's "
           "rows answered right.</p>", _table(["class", "rows", "right before", "right after"], body, "classes")]
    for when, key in (("after fine-tuning", "after"), ("before fine-tuning", "before")):
        if any(r.get(key) is None for r in rows):
            continue
        out.append(f"<h3>Confusion matrix, {when}</h3>" + _confusion(rows, classes, key))
    return "".join(out)


def _confusion(rows: list[dict], classes: list[str], key: str) -> str:
    cols = classes + ["(other)"]
    counts = Counter()
    for r in rows:
        got = M.normalise(r.get(key) or "")
        counts[(M.normalise(r.get("expected") or ""), got if got in classes else "(other)")] += 1
    top = max(counts.values()) if counts else 1
    head = "<tr><th>expected \u2193 answered \u2192</th>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr>"
    body = []
    for e in classes:
        cells = []
        for c in cols:
            n = counts.get((e, c), 0)
            alpha = 0.1 + 0.8 * n / top if n else 0
            colour = "46,160,67" if e == c else "207,34,46"
            cells.append(f'<td style="background:rgba({colour},{alpha:.2f})">{n or ""}</td>')
        body.append(f"<tr><th>{_e(e)}</th>{''.join(cells)}</tr>")
    return f'<table class="confusion"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


# --- curves ----------------------------------------------------------------------------------------------------

def _curves_section(run: Run) -> str:
    history = [h for h in (run.metrics or []) if isinstance(h.get("step"), (int, float))]
    if not history:
        return _missing("No training steps were logged (metrics.jsonl is missing or empty).")
    out = []
    for key, label, colour in (("loss", "training loss", "#0969da"), ("learning_rate", "learning rate", "#8250df")):
        points = [(h["step"], h[key]) for h in history if isinstance(h.get(key), (int, float))
                  and math.isfinite(h[key])]
        if points:
            out.append(f"<h3>{label}</h3>" + svg_line(points, colour, label))
    return "".join(out) or _missing("metrics.jsonl has no loss values.")


def svg_line(points: list[tuple[float, float]], colour: str, label: str, width: int = 720,
             height: int = 220) -> str:
    """A line chart as inline SVG (no library): axes with min/max labels, at most 1,000 points drawn."""
    if len(points) > 1000:
        stride = math.ceil(len(points) / 1000)
        points = points[::stride] + [points[-1]]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + (abs(y0) or 1) * 0.1
    pl, pr, pt, pb = 70, 10, 10, 30
    w, h = width - pl - pr, height - pt - pb

    def X(x):
        return pl + (x - x0) / (x1 - x0) * w

    def Y(y):
        return pt + (1 - (y - y0) / (y1 - y0)) * h

    path = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in points)
    ticks = "".join(
        f'<text x="{pl - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{_e(_short(v))}</text>'
        f'<line x1="{pl}" x2="{pl + w}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" class="grid"/>'
        for v in (y0, (y0 + y1) / 2, y1))
    xt = "".join(f'<text x="{X(v):.1f}" y="{pt + h + 18}" text-anchor="middle">{_e(_short(v))}</text>'
                 for v in (x0, (x0 + x1) / 2, x1))
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{_e(label)}">{ticks}{xt}<text x="{pl + w}" y="{height - 2}" text-anchor="end">step</text>'
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/></svg>')


def _short(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.2g}"
    return f"{v:.3g}"


def svg_bars(counts: list[tuple[str, int]], colour: str = "#0969da", width: int = 720, bar_h: int = 18) -> str:
    """A horizontal bar chart as inline SVG: one bar per (label, count)."""
    if not counts:
        return ""
    top = max(c for _, c in counts) or 1
    height = bar_h * len(counts) + 4
    label_w, w = 160, width - 160 - 60
    bars = "".join(
        f'<text x="{label_w - 6}" y="{i * bar_h + bar_h - 5}" text-anchor="end">{_e(lab)}</text>'
        f'<rect x="{label_w}" y="{i * bar_h + 2}" width="{max(1, w * c / top):.1f}" height="{bar_h - 4}" '
        f'fill="{colour}"/><text x="{label_w + w * c / top + 4:.1f}" y="{i * bar_h + bar_h - 5}">{c}</text>'
        for i, (lab, c) in enumerate(counts))
    return f'<svg class="bars" viewBox="0 0 {width} {height}" width="{width}" height="{height}">{bars}</svg>'


# --- gallery ---------------------------------------------------------------------------------------------------

def _gallery(rows: list[dict], video: dict | None = None,
             window: dict | None = None) -> tuple[list[str], dict, list[dict]]:
    """Thumbnails (one per distinct image, 96 px JPEG data: URIs; plus 512 px copies for a small set), the image
    sizes seen, and the rows as the page's JSON. A video row (predictions' "videos": its clips) gets a strip of its
    first clip's sampled frames instead (row key "v": up to STRIP_FRAMES thumbnails, evenly chosen among the frames
    the model saw, sampled with the plan's video settings and DICOM ``window``, read from the clip cache that the
    run filled; "t" is the first, "b" a 512 px strip of them all)."""
    thumbs: list[str] = []
    index: dict[str, int] = {}
    big: dict[str, int] = {}
    sizes: dict[str, tuple[int, int] | None] = {}
    with_big = len(rows) <= BIG_IMAGES_UP_TO
    out = []
    for r in rows:
        images = [str(p) for p in (r.get("images") or [])]
        clips = [_clip_name(c) for c in (r.get("videos") or [])]
        first = images[0] if images else None
        t = b = None
        strip = None
        if clips and video:
            strip = _strip(r["videos"][0], video, with_big, thumbs, window)
        if strip is not None:
            t, b = strip[0][0], strip[1]
        elif first is not None:
            if first not in index:
                small, large, size = _thumbnails(first, with_big)
                sizes[first] = size
                index[first] = len(thumbs) if small else -1
                if small:
                    thumbs.append(small)
                if large:
                    big[first] = len(thumbs)
                    thumbs.append(large)
            t = index[first] if index[first] >= 0 else None
            b = big.get(first)
        item = {"n": r.get("row"), "t": t, "b": b, "p": images + clips, "o": r.get("origin"), "q": r.get("question"),
                "e": r.get("expected"), "bf": r.get("before"), "af": r.get("after"),
                "sb": r["score_before"], "sa": r["score_after"], "r": r["regression"]}
        if strip is not None:
            item["v"] = strip[0]
        out.append(item)
    return thumbs, sizes, out


STRIP_FRAMES = 8  # frames shown in a video row's strip
STRIP_PX = 64  # each frame's thumbnail


def _clip_name(clip) -> str:
    """A clip as the page names it: its file or folder, or its first frame's path and how many frames."""
    if isinstance(clip, (list, tuple)):
        return f"{clip[0]} (+{len(clip) - 1} frames)" if clip else "(no frames)"
    return str(clip)


def _strip(clip, video: dict, with_big: bool, thumbs: list[str],
           window: dict | None = None) -> tuple[list[int], int | None] | None:
    """A clip's strip: the indices (into ``thumbs``, appended here) of up to STRIP_FRAMES thumbnails of its sampled
    frames, and of a 512 px strip of them side by side (with_big), or None when the clip cannot be read now (gone
    since the run, PyAV missing): the gallery then says "no image". The frames come from the clip cache (the run
    put them there: the same content and settings give the same entry), decoded only when it does not hold them."""
    try:
        from vtc.runtime.video import read_clip

        source = tuple(clip) if isinstance(clip, list) else clip
        frames = read_clip(source, video, window=window, cache=True).frames
    except Exception:  # a clip gone or unreadable since the run: the gallery says so, the report is still written
        return None
    if not frames:
        return None
    n = min(STRIP_FRAMES, len(frames))
    chosen = [frames[round(k * (len(frames) - 1) / max(1, n - 1))] for k in range(n)]
    out = []
    for frame in chosen:
        out.append(len(thumbs))
        thumbs.append(_jpeg(frame, STRIP_PX, 70))
    big = None
    if with_big:
        from PIL import Image

        side = max(1, BIG_PX // n)
        tiles = []
        for frame in chosen:
            tile = frame.convert("RGB").copy()
            tile.thumbnail((side, side))
            tiles.append(tile)
        sheet = Image.new("RGB", (sum(t.width for t in tiles) + 2 * (n - 1), max(t.height for t in tiles)),
                          (255, 255, 255))
        x = 0
        for tile in tiles:
            sheet.paste(tile, (x, 0))
            x += tile.width + 2
        big = len(thumbs)
        thumbs.append(_jpeg(sheet, BIG_PX, 85))
    return out, big


def _jpeg(image, px: int, quality: int) -> str:
    copy = image.convert("RGB").copy()
    copy.thumbnail((px, px))
    buf = io.BytesIO()
    copy.save(buf, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _thumbnails(path: str, with_big: bool) -> tuple[str | None, str | None, tuple[int, int] | None]:
    try:
        from PIL import Image

        from vtc.confine import open_regular

        with open_regular(path) as f, Image.open(f) as im:
            size = im.size
            im.seek(0)
            rgb = im.convert("RGB")
    except Exception:  # a file gone since the run, or unreadable: the gallery says "no image"
        return None, None, None

    def encoded(px: int, quality: int) -> str:
        copy = rgb.copy()
        copy.thumbnail((px, px))
        buf = io.BytesIO()
        copy.save(buf, "JPEG", quality=quality)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")

    return encoded(THUMB_PX, 70), encoded(BIG_PX, 85) if with_big else None, size


def _gallery_section(rows: list[dict]) -> str:
    if not rows:
        return ('<p class="missing">No evaluation rows to show (predictions.jsonl is missing or empty).</p>'
                '<div id="gallery" data-total="0" data-shown="0" data-rendered="0"></div>')
    large = ("Click a thumbnail to see the image larger." if len(rows) <= BIG_IMAGES_UP_TO else
             f"Click a thumbnail to see it enlarged with the image's file path (more than {BIG_IMAGES_UP_TO} rows: "
             "no larger copies are embedded, to keep the page small).")
    return (f"<p>{len(rows)} rows, worst first (by the score after fine-tuning); rows that got worse are flagged "
            f"<span class=\"flag\">worse</span>. {large}</p>"
            '<p><input id="filter" type="search" placeholder="filter: words in the question, answers or file name" '
            'autocomplete="off"> <span id="count"></span></p>'
            f'<div id="gallery" data-total="{len(rows)}" data-shown="{len(rows)}" data-rendered="0"></div>'
            '<p><button id="more" type="button" hidden>show more</button></p>')


# --- data ------------------------------------------------------------------------------------------------------

def _data_section(run: Run, rows: list[dict], sizes: dict) -> str:
    d = run.manifest.get("data") or {}
    out = [_table(["split", "rows", "where"], [
        ["training", _e(d.get("train_rows", "?")), _e(d.get("train", ""))],
        ["evaluation", _e(d.get("eval_rows", "?")), _e(d.get("eval", ""))],
        ["left out (bad rows)", _e(d.get("skipped_rows", 0)), "skipped_rows.jsonl"]], "splits")]
    if rows:
        classes = _classes(rows)
        if classes:
            counts = Counter(M.normalise(r.get("expected") or "") for r in rows)
            out.append("<h3>Evaluation rows per class</h3>" + svg_bars([(c, counts[c]) for c in classes]))
        known = [s for s in sizes.values() if s]
        if known:
            out.append("<h3>Image sizes (evaluation images, as found, before `resize`)</h3>")
            common = Counter(f"{w}\u00d7{h}" for w, h in known).most_common(12)
            out.append(svg_bars(common, "#1a7f37"))
            longest = Counter(_bucket(max(s)) for s in known)
            out.append("<p>Longest side:</p>" + svg_bars(sorted(longest.items(), key=lambda kv: _bucket_key(kv[0])),
                                                       "#1a7f37"))
        words = Counter(_bucket(len(str(r.get("expected") or "").split()), words=True) for r in rows)
        out.append("<h3>Expected answer length (words, evaluation rows)</h3>"
                   + svg_bars(sorted(words.items(), key=lambda kv: _bucket_key(kv[0])), "#9a6700"))
    trained = d.get("train_answers")
    if trained:
        out.append("<h3>Training rows per class</h3>" + svg_bars(list(trained.items())))
    lengths = d.get("train_answer_words")
    if lengths:
        words = Counter()
        for n, k in lengths.items():
            words[_bucket(int(n), words=True)] += k
        out.append("<h3>Expected answer length (words, training rows)</h3>"
                   + svg_bars(sorted(words.items(), key=lambda kv: _bucket_key(kv[0])), "#9a6700"))
    common, longest = d.get("train_image_sizes"), d.get("train_image_longest")
    if common:
        out.append("<h3>Image sizes (training images, as found, before `resize`)</h3>"
                   + svg_bars([(s.replace("x", "\u00d7"), k) for s, k in common.items()], "#1a7f37"))
    if longest:
        out.append("<p>Longest side (training images):</p>"
                   + svg_bars([(_bucket(int(lo)), k) for lo, k in longest.items()], "#1a7f37"))
    if not common and not rows:
        out.append(_missing("No image sizes: this run's manifest records none (a run of an older vtc, or rows "
                            "without image files)."))
    skipped = run.skipped
    if skipped is None:
        out.append(_missing("skipped_rows.jsonl is missing."))
    elif not skipped:
        out.append("<p>No row was left out.</p>")
    else:
        out.append(f"<h3>Rows left out ({len(skipped)})</h3>")
        out.append(_table(["file", "row", "code", "why"], [
            [_e(s.get("file")), _e(s.get("row")), _e(s.get("code")), _e(s.get("reason"))] for s in skipped[:500]]))
        if len(skipped) > 500:
            out.append(f"<p>and {len(skipped) - 500} more (skipped_rows.jsonl lists them all).</p>")
    return "".join(out)


_EDGES = (0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def _bucket(n: int, words: bool = False) -> str:
    edges = _EDGES if words else (0, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
    for lo, hi in zip(edges, edges[1:]):
        if n < hi:
            return f"{lo}" if hi - lo == 1 else f"{lo}\u2013{hi - 1}"
    return f"{edges[-1]}+"


def _bucket_key(label: str) -> int:
    digits = label.split("\u2013")[0].rstrip("+")
    return int(digits) if digits.isdigit() else 0


# --- plan ------------------------------------------------------------------------------------------------------

def _pointer(plan: dict, pointer: str):
    value = plan
    for part in pointer.strip("/").split("/"):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _plan_section(run: Run) -> str:
    prov = run.plan.get("provenance") or {}
    if not prov:
        return _missing("plan.json is missing or records no provenance.")
    keyed = [(p, w) for p, w in prov.items() if w != "derived" and not p.startswith("/estimates")]
    keyed.sort(key=lambda pw: (pw[1] == "default", pw[0]))
    body = [[f"<code>{_e(p)}</code>", _e(json.dumps(_pointer(run.plan, p), ensure_ascii=False, default=str)),
             f'<span class="{"default" if w == "default" else "written"}">{_e(w)}</span>'] for p, w in keyed]
    return ("<p>Each value, and where it came from: the recipe's file and line, or vtc's default.</p>"
            + _table(["value", "is", "from"], body, "plan"))


# --- preview (helper C's vtc.runtime.preview) -------------------------------------------------------------------

def _preview_section(run: Run) -> str:
    rows = run.preview
    if not rows:
        return ("<p class=\"missing\">No preview of the training rows in this run folder. <code>vtc preview "
                "recipe.vt</code> shows the first training rows as the model sees them.</p>")
    out = []
    for i, row in enumerate(rows if isinstance(rows, list) else []):
        if not isinstance(row, dict):
            continue
        parts = []
        for seg in row.get("segments") or []:
            if not isinstance(seg, dict):
                continue
            cut = " cut" if seg.get("cut") else ""
            if seg.get("kind") == "image":
                parts.append(f'<span class="img-marker{cut}">[image: {_e(seg.get("tokens"))} tokens]</span>')
            else:
                cls = "trained" if seg.get("trained") else "context"
                parts.append(f'<span class="{cls}{cut}">{_e(seg.get("text", ""))}</span>')
        cut = row.get("truncated")
        head = (f"row {_e(row.get('row', i + 1))}: {_e(row.get('tokens', '?'))} tokens (max length "
                f"{_e(row.get('max_length', '?'))}), {_e(row.get('trained'))} trained"
                + (", <b class=\"worse\">answer cut by max length</b>" if cut else ""))
        where = f" ({_e(row.get('origin'))})" if row.get("origin") else ""
        problem = _missing(row["problem"]) if row.get("problem") else ""
        out.append(f"<h3>{head}{where}</h3>{problem}<pre class=\"preview\">{''.join(parts)}</pre>")
    return ("<p>The first training rows as the model sees them: <span class=\"trained\">trained tokens</span>, "
            "<span class=\"context\">context (not trained)</span>, <span class=\"img-marker\">[image: N tokens]</span>, "
            "<span class=\"context cut\">cut by max length</span> (`vtc preview` shows the same in a terminal).</p>"
            + "".join(out))


# --- a synthetic run (tests, benches) ---------------------------------------------------------------------------

def synthetic_run(folder, rows: int, *, distinct_images: int | None = None, steps: int = 50,
                  state: str = "finished") -> Path:
    """A run folder that looks like a finished `vtc run` with ``rows`` evaluation rows (colours of shapes, some
    right, some wrong, some regressions), ``distinct_images`` images (default: one per row) drawn with Pillow.
    Nothing trains: for the report's tests and benches."""
    import random

    from PIL import Image, ImageDraw

    from vtc.runtime import outputs as O

    folder = Path(folder)
    images_dir = folder / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    colours = {"red": (220, 30, 30), "green": (30, 170, 30), "blue": (30, 60, 220), "yellow": (240, 210, 20)}
    names = list(colours)
    rnd = random.Random(0)
    n_images = max(1, distinct_images or rows)
    paths = []
    for i in range(n_images):
        colour = names[i % len(names)]
        im = Image.new("RGB", (160 + 16 * (i % 3), 120), "white")
        m = 10 + i % 20
        ImageDraw.Draw(im).ellipse((m, m, 150 - m, 110 - m), fill=colours[colour])
        p = images_dir / f"img-{i:05d}.png"
        im.save(p)
        paths.append((p, colour))
    preds = []
    for i in range(rows):
        p, colour = paths[i % n_images]
        u = rnd.random()
        after = colour if u < 0.7 else names[(names.index(colour) + 1) % 4]
        before = colour if u > 0.9 else names[(names.index(colour) + 2) % 4]
        preds.append({"row": i, "origin": f"{images_dir}/metadata.jsonl:{i + 1}", "images": [str(p)],
                      "question": "What colour is the shape?", "expected": colour, "before": before, "after": after,
                      "after_scores": {"exact_match": float(after == colour)}})
    O.write_jsonl(folder / "predictions.jsonl", preds)
    exp = [r["expected"] for r in preds]
    b = M.compute(["exact_match"], [r["before"] for r in preds], exp)
    a = M.compute(["exact_match"], [r["after"] for r in preds], exp)
    O.write_json(folder / "eval.json", {"metrics": ["exact_match"], "n": rows, "data": "synthetic", "before": b,
                                        "after": a, "per_metric": {"exact_match": {
                                            "before": b["exact_match"], "after": a["exact_match"],
                                            "change": a["exact_match"] - b["exact_match"]}}})
    O.write_jsonl(folder / "metrics.jsonl", [{"step": s, "loss": 5 * math.exp(-s / 15) + 0.1, "learning_rate": 2e-4}
                                              for s in range(1, steps + 1)])
    O.write_text(folder / "skipped_rows.jsonl", json.dumps({"file": "metadata.jsonl", "row": 3, "code": "VT404",
                                                            "reason": "image cannot be read"}) + "\n")
    O.write_json(folder / "plan.json", {
        "method": "lora", "model": {"id": "tiny-qwen2.5-vl", "family": "qwen2_5_vl"},
        "parts": {"vision": True, "language": True, "attention": True, "mlp": True},
        "evaluation": {"metrics": ["exact_match"]}, "training": {"steps": steps, "learning_rate": 2e-4},
        "recipe": {"file": "synthetic.vt", "files": ["synthetic.vt"]}, "base_dir": str(folder),
        "provenance": {"/training/steps": "synthetic.vt:2", "/training/learning_rate": "default"}})
    O.write_text(folder / "synthetic.vt", f"finetune all on tiny-qwen2.5-vl\ntrain for {steps} steps\n")
    O.write_json(folder / "manifest.json", {
        "state": state, "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:01:00+00:00",
        "backend": {"name": "transformers"}, "device": {"kind": "cpu"}, "timings": {"train": 60.0},
        "data": {"train_rows": rows * 4, "eval_rows": rows, "skipped_rows": 1, "train": "synthetic",
                 "eval": "synthetic"}})
    return folder


# --- the page's CSS and JS --------------------------------------------------------------------------------------

_CSS = """
:root{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--bg:#fff;--soft:#f6f8fa}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);
background:var(--bg)}header{position:sticky;top:0;background:var(--soft);border-bottom:1px solid var(--line);
padding:8px 16px;z-index:2}h1{font-size:18px;margin:0}nav a{margin-right:12px;color:#0969da}main{padding:0 16px 40px;
max-width:1200px}section{border-bottom:1px solid var(--line);padding:8px 0 16px}h2{font-size:17px}h3{font-size:14px}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid var(--line);padding:3px 8px;text-align:left;
vertical-align:top}th{background:var(--soft)}table.facts td:first-child{color:var(--muted)}
.better{color:#1a7f37;font-weight:600}.worse{color:#cf222e;font-weight:600}.missing{color:#9a6700;background:#fff8c5;
padding:6px 10px;border-radius:6px}.state-failed,.state-interrupted{color:#cf222e}pre{background:var(--soft);
padding:8px;overflow:auto;white-space:pre-wrap}.explain{max-width:900px}svg text{font-size:11px;fill:var(--muted)}
svg .grid{stroke:#eaeef2}.default{color:var(--muted)}.written{font-weight:600}
.flag{background:#cf222e;color:#fff;border-radius:4px;padding:0 5px;font-size:12px}
#filter{width:min(520px,90vw);padding:5px 8px;font-size:14px}
#gallery .row{display:grid;grid-template-columns:104px 1fr;gap:10px;border-bottom:1px solid var(--line);padding:6px 0}
#gallery .row img{width:96px;height:96px;object-fit:contain;background:var(--soft);cursor:zoom-in}
#gallery .strip{display:flex;flex-wrap:wrap;gap:2px;max-width:266px}#gallery .strip img{width:64px;height:64px}
#gallery .noimg{width:96px;height:96px;background:var(--soft);color:var(--muted);font-size:11px;padding:4px}
#gallery dl{display:grid;grid-template-columns:90px 1fr;margin:0;gap:1px 8px}#gallery dt{color:var(--muted)}
#gallery dd{margin:0;white-space:pre-wrap;word-break:break-word}.score{font-weight:600}
.row.regression{background:#fff5f5}#lightbox{position:fixed;inset:0;background:rgba(0,0,0,.8);display:flex;
align-items:center;justify-content:center;z-index:5}#lightbox[hidden]{display:none}#lightbox img{max-width:90vw;
max-height:80vh;min-width:320px;image-rendering:auto;background:#fff}#lightbox figcaption{color:#fff;
word-break:break-all}.trained{background:#dafbe1;color:#116329}.context{color:var(--muted)}
.img-marker{background:#ddf4ff;color:#0969da;border-radius:3px;padding:0 3px}.cut{text-decoration:line-through;
opacity:.6}
"""

_JS = r"""
(function(){
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var rows = data.rows, thumbs = data.thumbs, PAGE = 200;
  var gallery = document.getElementById("gallery");
  var filter = document.getElementById("filter");
  var more = document.getElementById("more");
  var count = document.getElementById("count");
  var matching = rows, rendered = 0;
  function text(v){ return v === null || v === undefined ? "" : String(v); }
  rows.forEach(function(r){
    r._hay = [r.q, r.e, r.bf, r.af, r.o, (r.p || []).join(" ")].map(text).join("\n").toLowerCase();
  });
  function pct(v){ return v === null || v === undefined ? "n/a" : (100 * v).toFixed(0) + "%"; }
  function field(dl, name, value){
    var dt = document.createElement("dt"); dt.textContent = name;
    var dd = document.createElement("dd"); dd.textContent = value;
    dl.appendChild(dt); dl.appendChild(dd); return dd;
  }
  function entry(r){
    var div = document.createElement("div");
    div.className = "row" + (r.r ? " regression" : "");
    div.setAttribute("data-row", text(r.n));
    var pic;
    if (r.v) {
      pic = document.createElement("div"); pic.className = "strip";
      pic.title = "frames the model saw (" + r.v.length + " shown)";
      r.v.forEach(function(k, j){
        var f = document.createElement("img");
        f.loading = "lazy"; f.src = thumbs[k]; f.alt = "frame " + (j + 1) + " of row " + text(r.n);
        f.addEventListener("click", function(){ show(r); });
        pic.appendChild(f);
      });
    } else if (r.t !== null && r.t !== undefined) {
      pic = document.createElement("img");
      pic.loading = "lazy"; pic.src = thumbs[r.t]; pic.alt = "image of row " + text(r.n);
      pic.addEventListener("click", function(){ show(r); });
    } else {
      pic = document.createElement("div"); pic.className = "noimg"; pic.textContent = "no image (file not found)";
    }
    div.appendChild(pic);
    var dl = document.createElement("dl");
    var head = field(dl, "row " + text(r.n), "");
    var sc = document.createElement("span"); sc.className = "score";
    sc.textContent = "score " + pct(r.sb) + " \u2192 " + pct(r.sa) + " ";
    head.appendChild(sc);
    if (r.r) { var f = document.createElement("span"); f.className = "flag"; f.textContent = "worse"; head.appendChild(f); }
    field(dl, "question", text(r.q));
    field(dl, "expected", text(r.e));
    field(dl, "before", r.bf === null || r.bf === undefined ? "(not evaluated)" : text(r.bf));
    field(dl, "after", text(r.af));
    field(dl, "file", text(r.o));
    div.appendChild(dl);
    return div;
  }
  function update(){
    gallery.setAttribute("data-shown", String(matching.length));
    gallery.setAttribute("data-rendered", String(rendered));
    if (more) more.hidden = rendered >= matching.length;
    if (count) count.textContent = matching.length + " of " + rows.length + " rows";
  }
  function renderMore(){
    var frag = document.createDocumentFragment();
    var end = Math.min(matching.length, rendered + PAGE);
    for (var i = rendered; i < end; i++) frag.appendChild(entry(matching[i]));
    gallery.appendChild(frag); rendered = end; update();
  }
  function apply(){
    var q = filter ? filter.value.trim().toLowerCase() : "";
    var words = q ? q.split(/\s+/) : [];
    matching = words.length ? rows.filter(function(r){
      return words.every(function(w){ return r._hay.indexOf(w) >= 0; });
    }) : rows;
    gallery.textContent = ""; rendered = 0; renderMore();
  }
  var box = document.getElementById("lightbox");
  var boxImg = document.getElementById("lightbox-img");
  var boxCap = document.getElementById("lightbox-cap");
  function show(r){
    boxImg.src = thumbs[r.b !== null && r.b !== undefined ? r.b : r.t];
    boxCap.textContent = (r.p || []).join(", ") + (r.b === null || r.b === undefined ? " (thumbnail enlarged)" : "");
    box.hidden = false;
  }
  box.addEventListener("click", function(){ box.hidden = true; });
  document.addEventListener("keydown", function(ev){ if (ev.key === "Escape") box.hidden = true; });
  if (filter) filter.addEventListener("input", apply);
  if (more) more.addEventListener("click", renderMore);
  window.addEventListener("scroll", function(){
    if (rendered < matching.length && window.innerHeight + window.scrollY >= document.body.offsetHeight - 400)
      renderMore();
  });
  apply();
  window.vtcReportReady = true;
})();
"""
