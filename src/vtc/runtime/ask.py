"""`vtc ask RUN_DIR IMAGE [QUESTION]`: answers from a finished run's model.

RUN_DIR is a finished run folder (run-NNN), or the folder above the runs (then the newest finished run is used and
named). IMAGE is one image (the answer is printed) or a folder of images (every image, sorted by name; answers go
to ``-o answers.jsonl`` / ``answers.csv``, or to the screen as JSON lines). IMAGE may be a video file (a clip), read
with the run's video settings (rate, frame cap, window, frame size); when the recipe had a `video` clause, a folder
of frames (images only, no subfolders) is one clip too, a multi-frame DICOM or TIFF file is read as a clip, and a
folder holding clips and frame folders is answered clip by clip. The question defaults to the recipe's
instruction; the system prompt and image size are the run's, so the model sees what it was trained on.

A folder is answered a batch at a time and every answer is written (and flushed) as soon as its batch is done, so an
interruption keeps what was answered. An image of the folder that cannot be read (missing, truncated, not an
image) does not stop the others: it gets a row whose ``error`` says the code and the problem, and a summary at the
end counts the answered and the failed images. `vtc ask` exits 1 only when no image could be answered.

What it prints may come from files (an answer, an image's name): control characters are shown escaped
(vtc.diagnostics.printable), and JSON lines on the screen escape the C1 controls and the bidirectional characters
too (valid JSON, the same text once parsed); the answers files keep the exact text. The run's plan is a file: a
plan that lets the model run its own code needs --trust-remote-code as well (VT508).
"""

from __future__ import annotations

import csv
import json
import re
import sys
from dataclasses import replace
from pathlib import Path

from vtc.diagnostics import Diagnostic, Span, VtcError, error, printable
from vtc.plans import read_plan

_RUN = re.compile(r"^run-(\d+)$")
FIELDS = ["image", "question", "answer", "error"]
# Failed images named in the summary at the end (the answers file has them all).
REASONS_SHOWN = 3


# ---- the run ---------------------------------------------------------------------------------------------------

def find_run(run_dir: str | Path) -> Path:
    """The finished run folder to use (VT511 when there is none, saying what there is instead)."""
    from vtc.runtime import outputs as O

    path = Path(run_dir)
    if not path.exists():
        raise VtcError(_not_found(path))
    if not path.is_dir():
        raise VtcError(error("VT511", f"{path} is a file, not a run folder", Span(str(path)),
                             help="give a folder that `vtc run` printed at its end, e.g. runs/demo-shapes/run-001"))
    state = O.state_of(path)
    if state not in (None, "finished"):
        raise VtcError(_unfinished(path, state))
    if (path / "plan.json").is_file():
        return path
    runs = _runs_in(path)
    finished = [p for n, p, s in runs if s == "finished" and (p / "plan.json").is_file()]
    if finished:
        chosen = finished[-1]
        print(printable(f"using the newest finished run: {chosen}"), file=sys.stderr)
        return chosen
    if runs:  # runs, but none finished: say what the newest one is and how to finish it
        newest = runs[-1]
        d = _unfinished(newest[1], newest[2])
        raise VtcError(replace(d, message=f"no finished run in {path}: {d.message}", span=Span(str(path))))
    raise VtcError(error("VT511", f"{path} is not a finished vtc run (no plan.json in it or in a run-NNN folder)",
                         Span(str(path)), help="give a folder that `vtc run` printed at its end"))


def _runs_in(folder: Path) -> list[tuple[int, Path, str]]:
    """(number, folder, state) of every run folder in ``folder``, oldest first."""
    from vtc.runtime import outputs as O

    out = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for p in entries:
        state = O.state_of(p)
        if state is not None and p.is_dir():
            out.append((int(O.run_name(p).split("-", 1)[1]), p, state))
    return sorted(out)


def _not_found(path: Path) -> Diagnostic:
    """VT511 for a folder that does not exist: the same run under another state's name, or the runs beside it."""
    from vtc.runtime import outputs as O

    where = Span(str(path))
    runs = _runs_in(path.parent) if path.parent.is_dir() else []
    if O.state_of(path) is not None:
        same = [(p, s) for _n, p, s in runs if O.run_name(p) == O.run_name(path)]
        if same:  # run-003 given, run-003.interrupted there (or the other way round)
            folder, state = same[0]
            if state == "finished":
                return error("VT511", f"run folder not found: {path}; the run finished, and its folder is now "
                             f"{_shown(folder)}", where,
                             help=f"ask the finished run: `{_command('vtc', 'ask', _shown(folder))} <image>`")
            d = _unfinished(folder, state)
            return replace(d, message=f"run folder not found: {path}; {d.message}")
    if runs:
        listed = ", ".join(p.name for _n, p, _s in runs[-5:])
        finished = [p for _n, p, s in runs if s == "finished"]
        hint = (f"e.g. `{_command('vtc', 'ask', _shown(finished[-1]))} <image>`" if finished else
                "none of them has finished yet")
        return error("VT511", f"run folder not found: {path}", where,
                     help=f"the runs in {_shown(path.parent)} are {listed}; {hint}")
    return error("VT511", f"run folder not found: {path}", where,
                 help="give a folder that `vtc run` printed at its end, e.g. runs/demo-shapes/run-001")


def _unfinished(folder: Path, state: str) -> Diagnostic:
    """VT511 for a run folder that exists but holds no finished model: what to do for its state."""
    from vtc.runtime.checkpoints import latest_checkpoint, resume_command

    where = Span(str(folder))
    resume = resume_command(folder, _shown(folder))
    name = folder.name
    if state == "interrupted":
        return error("VT511", f"the run {name} was interrupted before it finished, so it has no final model", where,
                     help=f"continue it with `{resume}`; when it finishes, ask the run-NNN folder it prints")
    if state == "failed":
        from vtc.runtime.lifecycle import read_manifest

        why = str((read_manifest(folder) or {}).get("error") or "")
        checkpoint = latest_checkpoint(folder)
        return error("VT511", f"the run {name} failed{f' ({why})' if why else ''}, so it has no final model",
                     where, help=(f"fix the cause, then continue it from its checkpoint with `{resume}`"
                                  if checkpoint else "fix the cause and run the recipe again"))
    return error("VT511", f"the run {name} has not finished: it is still running, or its process was stopped "
                 "without saying so (killed, or its terminal closed)", where,
                 help=f"wait for it to finish; if it no longer runs, continue it with `{resume}`")


def _shown(path: Path) -> str:
    from vtc.runtime.lifecycle import shown

    return shown(path)


def _command(*words: str) -> str:
    from vtc.runtime.outputs import command

    return command(*words)


# Characters that json.dumps leaves as they are but a terminal acts on: C1 controls, the bidirectional overrides.
_TERMINAL = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def json_line(record: dict) -> str:
    """A record as one JSON line for the screen: exact once parsed, nothing in it that a terminal acts on (json.dumps
    escapes the C0 controls; these are escaped as \\uXXXX too, which only occur inside strings)."""
    return _TERMINAL.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(record, ensure_ascii=False))


# ---- the images ------------------------------------------------------------------------------------------------

def _frame_folder(folder: Path) -> bool:
    """A folder of frames (one clip): image files directly in it, and no subfolder or video file beside them."""
    from vtc.runtime.images import is_image_file
    from vtc.runtime.video import is_video_file

    try:
        entries = list(folder.iterdir())
    except OSError:
        return False
    return any(p.is_file() and is_image_file(p) for p in entries) and not any(
        p.is_dir() or is_video_file(p) for p in entries)


def _clip_settings(plan: dict) -> dict | None:
    """The plan's video settings when its recipe had a `video` clause (video.multi_frame_files "clips"): then a
    folder of frames is one clip. Without the clause a folder is a folder of images, as before video."""
    video = plan["video"]
    return video if isinstance(video, dict) and video.get("multi_frame_files") == "clips" else None


def _image_files(image: Path, video: dict | None = None) -> list[Path]:
    """What to answer: the image or clip given, or each image and clip in a folder. A video file is always a clip.
    With ``video`` (the plan's video settings, for a recipe with a `video` clause: _clip_settings), a folder of
    frames (images only, no subfolders) is one clip, and so is every such folder inside a folder given."""
    from vtc.runtime.images import is_image_file
    from vtc.runtime.video import is_video_file

    if image.is_dir():
        if video is not None and _frame_folder(image):
            return [image]
        files: list[Path] = []
        clips: set[Path] = set()
        for p in sorted(image.rglob("*")):
            if not p.is_file():
                continue
            if is_video_file(p):
                files.append(p)
            elif is_image_file(p):
                if video is not None and p.parent != image and _frame_folder(p.parent):
                    if p.parent not in clips:
                        clips.add(p.parent)
                        files.append(p.parent)
                else:
                    files.append(p)
        if not files:
            raise VtcError(error("VT512", f"no images in {image}", Span(str(image)),
                                 help="give an image file, or a folder with .png / .jpg images"
                                      + (", video clips or folders of frames" if video is not None else "")))
        return files
    if not image.exists():
        raise VtcError(error("VT512", f"image not found: {image}", Span(str(image)),
                             help="check the path of the image"))
    return [image]


# Data-row advice ("remove the row that lists it") that does not fit an image given to `vtc ask`.
_ROW_ADVICE = re.compile(r",? or remove (?:the|this) row(?: that lists it)?|,? or remove it from the data")


def _for_ask(d: Diagnostic, folder: bool) -> Diagnostic:
    """An image diagnostic with help that fits `vtc ask`: there is no data row to remove."""
    help_text = _ROW_ADVICE.sub(", or move it out of the folder" if folder else "", d.help or "")
    return replace(d, help=help_text or None)


def _is_clip(path: Path, plan: dict) -> bool:
    """Whether `vtc ask` reads ``path`` as a clip: a video file, a folder of frames, or (when the run read them as
    clips: video.multi_frame_files "clips") a DICOM or TIFF file."""
    from vtc.runtime.video import is_video_file

    if is_video_file(path):
        return True
    if _clip_settings(plan) is None:
        return False
    return path.is_dir() or path.suffix.lower() in (".dcm", ".dicom", ".tif", ".tiff")


def _open(path: Path, resize: dict, folder: bool, plan: dict | None = None):
    """(image or video part, None) or (None, the diagnostic saying why it cannot be used). A clip is read with the
    run's video settings (plan["video"]: rate, frame cap, window, frame size), as its training rows were, and comes
    back as its message part ({"type": "video", "video": [frames], "fps", ...})."""
    from vtc.runtime.images import open_image, standardise

    try:
        if plan is not None and _is_clip(path, plan):
            from vtc.runtime.video import name_of, no_video_family, read_clip

            if plan["video"] is None:
                d = no_video_family(plan["model"]["family"], Span(str(path)))
                return None, replace(d, message=f"{name_of(path)} is a video clip, but this run's model reads images "
                                                "only", help=d.help.split(", or remove")[0] if d.help else None)
            window = plan["images"]["window"]
            return read_clip(path, plan["video"], Span(str(path)), window=window, cache=True).part(), None
        return standardise(open_image(path), resize), None
    except VtcError as exc:
        return None, _for_ask(exc.diagnostics[0], folder)


# ---- answering -------------------------------------------------------------------------------------------------

class _Answers:
    """Where the answers go, one record at a time, flushed as written: a CSV or JSONL file, JSON lines on the
    screen (a folder without -o), or the bare answer (one image)."""

    def __init__(self, output, folder: bool) -> None:
        self.path = Path(output) if output else None
        self.folder = folder
        self.records: list[dict] = []
        self.problems: list[Diagnostic] = []  # why each failed image could not be answered, in order
        self._file = self._csv = None
        self.progress = None  # a folder's progress bar (vtc.runtime.progress), which steps aside for the screen
        self.total = 0  # the images of a folder (0: one image, no progress shown)
        if self.path is None:
            return
        try:
            if self.path.suffix.lower() == ".csv":
                self._file = open(self.path, "w", encoding="utf-8", newline="")
                self._csv = csv.DictWriter(self._file, fieldnames=FIELDS)
                self._csv.writeheader()
            else:
                self._file = open(self.path, "w", encoding="utf-8")
            self._file.flush()
        except OSError as exc:
            raise VtcError(error(
                "VT536", f"cannot write answers to {self.path}: {exc.strerror or exc}", Span(str(self.path)),
                help="give a file in a folder that exists and that you can write to, e.g. `-o answers.csv`",
            )) from None

    def write(self, record: dict, problem: Diagnostic | None = None) -> None:
        self.records.append(record)
        if problem is not None:
            self.problems.append(problem)
        if self._csv is not None:
            self._csv.writerow({**record, "error": record["error"] or ""})
        elif self._file is not None:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif self.folder:
            self._print(json_line(record))
        elif record["answer"] is not None:
            print(printable(record["answer"]), flush=True)
        if self._file is not None:
            self._file.flush()
        if self.progress is not None:
            self.progress.update(1)

    def begin(self) -> None:
        """Show a folder's progress from now on (the model is loaded): on stderr, since the answers may be on
        stdout; a bar on a terminal, else a line each tenth (vtc.runtime.progress)."""
        if self.total:
            from vtc.runtime.progress import Reporter

            self.progress = Reporter(sys.stderr, quiet=False).bar("images answered", self.total, "images")
            self.progress.update(len(self.records))

    def _print(self, text: str) -> None:
        if self.progress is None:
            print(text, flush=True)
            return
        with self.progress.above():
            print(text, flush=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def ask_command(run_dir, image, question=None, *, output=None, backend: str = "auto",
                trust_remote_code: bool = False) -> list[dict]:
    """Answer questions about one image (printed) or a folder of images (JSONL or CSV, or JSON lines on the
    screen). Returns the records ``{"image", "question", "answer", "error"}`` (``error`` None when answered).
    ``trust_remote_code`` (--trust-remote-code): the run's plan lets the model run its own code, and the command
    line allows it too (VT508 otherwise)."""
    from vtc.runtime.backends.base import choose_backend

    run = find_run(run_dir)
    plan = read_plan(run / "plan.json")
    images = _image_files(Path(image), _clip_settings(plan))
    folder = len(images) != 1 or images[0] != Path(image)  # a frame folder given is one clip, answered as one
    if output is not None and Path(output).suffix.lower() not in (".jsonl", ".csv"):
        raise VtcError(error("VT513", f"cannot write answers to {output}: the file must end in .jsonl or .csv",
                             help="e.g. `-o answers.csv` or `-o answers.jsonl`"))
    from vtc.runtime.lifecycle import allow_remote_code
    from vtc.runtime.progress import Reporter

    allow_remote_code(plan, Reporter(sys.stderr), plan_file=str(run / "plan.json"), flag=trust_remote_code,
                      again=_command("vtc", "ask", _shown(run), str(image), *([question] if question else []),
                                     "--trust-remote-code"))
    model_dir = run / ("model" if plan["method"] == "full" else "adapter")
    if not model_dir.is_dir():
        raise VtcError(error("VT511", f"{run} has no {model_dir.name}/ folder, so there is no model to ask",
                             Span(str(run)), help=f"its {model_dir.name}/ was moved or deleted: put it back, or "
                                                  "run the recipe again"))
    question = question or plan["data"]["instruction"]
    sink = _Answers(output, folder)
    try:
        be, reason = choose_backend(backend)  # before transformers is imported (unsloth must come first)
        print(reason, file=sys.stderr)
        from vtc.runtime.progress import quiet_libraries

        from vtc.runtime import batching as B
        from vtc.runtime.lifecycle import read_manifest

        with quiet_libraries(), B.scope():
            B.use(B.recorded_or_planned(read_manifest(run), plan))  # answers in batches of twice the run's micro-batch
            sink.total = len(images) if folder else 0
            _answer(plan, model_dir, images, question, be, sink, folder)
    finally:
        if sink.progress is not None:
            sink.progress.close()
        sink.close()
    _summary(sink, Path(image))
    return sink.records


def _answer(plan, model_dir, images, question, be, sink: _Answers, folder: bool) -> None:
    """Load the run's model and answer for every image, a batch at a time (images opened per batch), writing each
    batch's records, in the images' order, as soon as it is answered."""
    from vtc.runtime.evaluate import eval_batch_size, generate
    from vtc.runtime.model_path import load_model, resolve_model_path

    resize = plan["images"]["resize"]
    system = plan["data"]["system"]

    def failed(path: Path, d: Diagnostic) -> None:
        sink.write({"image": str(path), "question": question, "answer": None, "error": f"{d.code}: {d.message}"},
                   problem=d)

    # A bad image fails before the model loads: one image stops here (VT410/VT411 name the file); in a folder, the
    # unreadable images before the first good one are recorded, and a folder of nothing readable loads no model.
    pending: list[tuple[Path, object]] = []
    rest = iter(images)
    for path in rest:
        im, problem = _open(path, resize, folder, plan)
        if problem is None:
            pending.append((path, im))
            break
        if not folder:
            raise VtcError(problem)
        failed(path, problem)
    if not pending:
        return

    model_path = resolve_model_path(plan)
    model, processor = load_model(be, plan, model_path, trained=str(model_dir))
    from vtc.runtime.collator import set_video_bounds

    set_video_bounds(processor, plan["video"])  # clips reach the model at the frame size they trained at
    be.for_inference(model)
    sink.begin()
    batch = eval_batch_size(plan)
    done = False
    while not done:
        entries: list[tuple[Path, object, Diagnostic | None]] = [(p, im, None) for p, im in pending]
        pending = []
        readable = len(entries)
        while readable < batch:
            path = next(rest, None)
            if path is None:
                done = True
                break
            im, problem = _open(path, resize, folder, plan)
            entries.append((path, im, problem))
            readable += problem is None
        conversations = []
        for _path, im, problem in entries:
            if problem is not None:
                continue
            messages = []
            if system:
                messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
            # The layout of the training rows: the instruction text, then the image (or the clip's part).
            part = im if isinstance(im, dict) else {"type": "image", "image": im}
            messages.append({"role": "user", "content": [{"type": "text", "text": question}, part]})
            conversations.append(messages)
        answers = iter(generate(model, processor, conversations, max_new_tokens=plan["evaluation"]["max_new_tokens"],
                                batch_size=batch) if conversations else [])
        for path, _im, problem in entries:
            if problem is not None:
                failed(path, problem)
            else:
                sink.write({"image": str(path), "question": question, "answer": next(answers), "error": None})


def _summary(sink: _Answers, image: Path) -> None:
    """What was answered and what was not (stderr); VtcError (exit 1) when no image could be answered."""
    bad = sink.problems
    good = len(sink.records) - len(bad)
    if bad and not good:
        rows = f" ({sink.path} has a row for each, with its `error`)" if sink.path else ""
        first = f"; the first {REASONS_SHOWN}:" if len(bad) > REASONS_SHOWN else ":"
        print(printable(f"no image in {image} could be answered: {len(bad)} could not be read{rows}{first}"),
              file=sys.stderr)
        raise VtcError(bad[:REASONS_SHOWN])
    if bad:
        rows = f" (each has a row with its `error` in {sink.path})" if sink.path else ""
        lines = [f"answered {good} of {len(sink.records)} images; {len(bad)} could not be read{rows}:"]
        for d in bad[:REASONS_SHOWN]:
            where = d.span.location if d.span else str(image)
            lines.append(f"  {d.code}: {d.message}" if where in d.message else f"  {d.code} {where}: {d.message}")
        if len(bad) > REASONS_SHOWN:
            lines.append(f"  ... and {len(bad) - REASONS_SHOWN} more")
        helps = {d.help for d in bad if d.help}
        lines.append(f"  = help: {helps.pop()}" if len(helps) == 1 else
                     "  = help: replace each with a valid PNG or JPEG, or move it out of the folder")
        print(printable("\n".join(lines)), file=sys.stderr)
    if sink.path:
        print(printable(f"{good} answer{'s' * (good != 1)} written to {sink.path}"
                        + (f", and {len(bad)} row{'s' * (len(bad) != 1)} with an error" if bad else "")),
              file=sys.stderr)
