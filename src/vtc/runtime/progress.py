"""What a run prints: one line per stage with its time, and a compact training progress line.

The training line shows the step, the latest loss and the time left; on a terminal it rewrites itself in place,
in a log file it appears every tenth of the run. Every logged step also goes to metrics.jsonl.

The other long stages (the data scan and preparation, the evaluations, `vtc ask` on a folder, the exports) show
their progress with ``bar(label, total, unit)``: on a terminal a tqdm bar with the time left, rewritten in place and
erased when the stage ends (its stage line stays); when the output is not a terminal (CI, a log file, ``| tee``) a
plain line each tenth of the stage (EVERY), with no control characters. A stage that ends within DELAY seconds
shows no progress at all, only its line. The run's log (run.log) gets the tenth lines, never a bar's redraws. Only
an open, not-quiet reporter shows progress: under several processes, rank 0's (the others' reporters are quiet).
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from vtc.diagnostics import printable


def _fmt_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


class Stage:
    """A stage in progress; set ``detail`` to say what it found (printed on the stage's line)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.detail = ""


class Reporter:
    """Prints the stages of a run and keeps their timings (seconds, by stage name) for the manifest.

    Every line also goes to the run's log (``log_to``: <run>/run.log; the lines before the folder exists are kept
    and written first). A run never depends on its output staying open: when the stream is closed under it
    (`vtc run ... | head`), the reporter says so once on stderr, stops writing to the stream, and the run goes on
    with its lines in the log.

    In a process other than rank 0 of a distributed run (``quiet``, found from torchrun's environment unless
    given), the run's lines are rank 0's to print and log: this reporter prints and logs nothing (the timings are
    still kept). A process's own problems reach the user as diagnostics, prefixed with its rank and host
    (distributed.running), and through own().
    """

    NAME_WIDTH = 20

    def __init__(self, stream: TextIO | None = None, *, quiet: bool | None = None) -> None:
        if quiet is None:
            from vtc.runtime.distributed import world

            quiet = not world().leader
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self.timings: dict[str, float] = {}
        # The stage in progress (left set when a stage fails, so that the error can say where it happened).
        self.current: str | None = None
        self.closed = False  # the stream was closed under the run (a broken pipe)
        self.log_path: Path | None = None
        self._pending: list[str] = []  # lines printed before the log file exists
        self._bars: list[Progress] = []  # the progress bars open (closed when their stage ends)

    @property
    def tty(self) -> bool:
        return not self.closed and not self.quiet and bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self, text: str = "") -> None:
        """Print a line (and log it). What a line holds may come from files (a data file's name, a path, a model's
        answer, a value of the plan): control characters are shown escaped (vtc.diagnostics.printable), so that
        nothing a file holds can move the cursor, erase lines or set a terminal's title."""
        if self.quiet:
            return
        text = printable(text)
        self.log(text)
        self.write(text + "\n")

    def own(self, text: str) -> None:
        """A line this process must say itself, also when quiet (prefixed there with its rank and host), on stderr
        when quiet."""
        if not self.quiet:
            self.line(text)
            return
        from vtc.runtime.distributed import world

        w = world()
        try:
            print(printable(f"rank {w.rank} ({w.host}): {text}"), file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass

    def write(self, text: str) -> None:
        """Write to the stream (no newline added), unless it was closed under the run (or the reporter is quiet)."""
        if self.closed or self.quiet:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError):  # ValueError: "I/O operation on closed file"
            self._stream_closed()

    def log_to(self, path: str | Path) -> None:
        """From now on, append every line to ``path`` too (with the lines printed so far, when it is new)."""
        if self.quiet:
            return
        self.log_path = Path(path)
        pending, self._pending = self._pending, []
        self._append(pending)

    def log(self, text: str) -> None:
        """Add a line to the log only (what the screen shows in place, such as the progress bar, every tenth)."""
        if self.log_path is None:
            self._pending.append(text)
        else:
            self._append([text])

    def _append(self, lines: list[str]) -> None:
        if not lines or self.log_path is None:
            return
        try:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines))
        except OSError:  # a full disk is reported where the run writes its results, not here
            pass

    def _stream_closed(self) -> None:
        import os

        self.closed = True
        # Point the closed descriptor at /dev/null, so that other writers (a library's print, the interpreter's
        # final flush) do not fail on it either.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
        where = f"its log, {self.log_path}" if self.log_path else "run.log in the run folder"
        try:
            print(f"vtc: the output was closed (a pipe such as `| head` ended); the run goes on, and the rest of what "
                  f"it prints goes to {where}", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass

    def bar(self, label: str, total: int, unit: str = "rows", *, delay: float | None = None) -> "Progress":
        """The progress of ``total`` things of this stage (a Progress; a silent one when this reporter is quiet or
        its stream was closed). ``label`` says what is counted ("evaluate base")."""
        return Progress(self, label, total, unit, DELAY if delay is None else delay)

    @contextmanager
    def stage(self, name: str, *, announce: bool = False):
        """Time a stage and print ``name  detail  (time)`` when it ends.

        ``announce`` prints the name when the stage starts as well (for stages that print lines of their own,
        such as training), so the output never looks hung.
        """
        st = Stage(name)
        self.current = name
        if announce:
            self.line(f"{name} ...")
        elif self.tty:
            self.write(f"{name} ...\r")
        start = time.perf_counter()
        _ACTIVE.append(self)
        bars = len(self._bars)
        try:
            yield st
        finally:
            _ACTIVE.remove(self)
            for b in self._bars[bars:]:  # a bar the stage left open (it failed, or its code has no `with`)
                b.close()
        self.current = None
        took = time.perf_counter() - start
        self.timings[name] = round(took, 3)
        detail = f"  {st.detail}" if st.detail else ""
        self.line(f"{name:<{self.NAME_WIDTH}}{detail}  ({_fmt_seconds(took)})")


# Seconds a stage runs before its progress shows: a stage that ends sooner prints only its own line.
DELAY = 2.0
# Not on a terminal: a progress line each time this share of the stage is done (and none between).
EVERY = 0.10
# The reporters of the stages in progress (the innermost last): bar() shows progress through the innermost.
_ACTIVE: list[Reporter] = []


def bar(label: str, total: int, unit: str = "rows", *, delay: float | None = None) -> "Progress":
    """The progress of ``total`` things in the stage in progress (Reporter.stage), through its reporter; with no
    stage in progress (`vtc check --data`), on stderr: a bar on a terminal, else the plain tenth lines."""
    return _current().bar(label, total, unit, delay=delay)


def _current() -> Reporter:
    """The reporter of the innermost stage in progress; with none (`vtc check --data`, `vtc ask`), one on stderr:
    the command's own output (its diagnostics, perhaps JSON) stays clean on stdout."""
    if _ACTIVE:
        return _ACTIVE[-1]
    return Reporter(sys.stderr, quiet=False)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class _ToReporter:
    """The file tqdm writes its bar to: the reporter's stream, through Reporter.write (a closed pipe stops it)."""

    def __init__(self, rep: Reporter) -> None:
        self.rep = rep

    def write(self, text: str) -> None:
        self.rep.write(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self.rep.tty

    def fileno(self) -> int:  # tqdm asks for the terminal's width through it
        return self.rep.stream.fileno()


class _Nowhere:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class Progress:
    """How far a stage is: ``update(n)`` adds ``n`` done things, ``close()`` ends it (also as a context manager).

    tqdm keeps the count, the rate and the time left. On a terminal it draws its bar (rewritten in place, erased
    at the end: the stage's own line follows); elsewhere a line ``  label  n/total unit (p%), elapsed, left`` is
    printed (and logged) each tenth of the stage. The run's log gets those tenth lines in both cases. Nothing shows
    before ``delay`` seconds, nor ever from a quiet reporter."""

    def __init__(self, rep: Reporter, label: str, total: int, unit: str, delay: float) -> None:
        self.rep, self.label, self.unit = rep, printable(label), unit
        self.total = max(0, int(total))
        self.delay = delay
        self.off = rep.quiet or rep.closed or self.total == 0
        self.done = 0
        self._next = 1  # the next tenth to report
        self._tqdm = None
        if self.off:
            return
        rep._bars.append(self)
        from tqdm import tqdm

        if rep.tty:
            self._tqdm = tqdm(total=self.total, desc=f"  {self.label}", unit=f" {unit}", file=_ToReporter(rep),
                              leave=False, delay=delay, dynamic_ncols=True, mininterval=0.2, ascii=False,
                              bar_format="{desc} {bar} {n_fmt}/{total_fmt}{unit}  {elapsed}, {remaining} left")
        else:  # the count, rate and time left only: the lines are ours, written without any control character
            self._tqdm = tqdm(total=self.total, file=_Nowhere(), mininterval=float("inf"), leave=False)

    def update(self, n: int = 1) -> None:
        if self.off or n <= 0:
            return
        self.done = min(self.total, self.done + n)
        self._tqdm.update(n)
        tenth = int(self.done / self.total / EVERY + 1e-9)
        if tenth < self._next:
            return
        self._next = tenth + 1
        if self.elapsed < self.delay:
            return
        text = self.text()
        if self.rep.tty:
            self.rep.log(text)
        else:
            self.rep.line(text)

    @property
    def elapsed(self) -> float:
        return float(self._tqdm.format_dict["elapsed"]) if self._tqdm is not None else 0.0

    def text(self) -> str:
        """The plain progress line: ``  label  n/total unit (p%), elapsed, time left``."""
        elapsed = self.elapsed
        left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        pct = 100 * self.done // self.total if self.total else 100
        return (f"  {self.label}  {self.done}/{self.total} {self.unit} ({pct}%), {_fmt_seconds(elapsed)}, "
                f"{_fmt_seconds(left)} left")

    @contextmanager
    def above(self):
        """Print something else while the bar shows (``vtc ask``'s answers on the screen): the bar steps aside."""
        if self._tqdm is None or not self.rep.tty:
            yield
            return
        self._tqdm.clear()
        try:
            yield
        finally:
            self._tqdm.refresh()

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
        self.off = True
        if self in self.rep._bars:
            self.rep._bars.remove(self)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def quiet_libraries():
    """Hide the training libraries' deprecation chatter and weight-loading bars (set VTC_DEBUG=1 to see them).

    vtc's own messages, the libraries' real errors and huggingface_hub's download bars still show.
    """
    import os
    import warnings

    if os.environ.get("VTC_DEBUG"):
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # PEFT, saving an adapter of a Hub model with the network off (HF_HUB_OFFLINE, or the Hub unreachable:
        # vtc.runtime.hub), cannot ask the Hub for the base config and says so; vtc never resizes the vocabulary.
        warnings.filterwarnings("ignore", message="Could not find a config file in", category=UserWarning)
        try:
            from transformers.utils import logging as hf_logging
        except ImportError:
            yield
            return
        level = hf_logging.get_verbosity()
        bars = hf_logging.is_progress_bar_enabled()
        hub_bars = _hub_bars_on()
        hf_logging.set_verbosity_error()
        # transformers' switch turns huggingface_hub's bars off with its own (weight loading, "Loading checkpoint
        # shards"); the Hub's are the download bars, which a first download of many GB needs: switch them back on.
        hf_logging.disable_progress_bar()
        if hub_bars:
            from huggingface_hub.utils import enable_progress_bars

            enable_progress_bars()
        try:
            with hub_download_lines(on=hub_bars):
                yield
        finally:
            hf_logging.set_verbosity(level)
            if bars:
                hf_logging.enable_progress_bar()


@contextmanager
def hub_download_lines(on: bool = True):
    """Model and dataset downloads from the Hub show huggingface_hub's own bars on a terminal (stderr). Elsewhere
    (CI, a log file, ``| tee``) those bars would fill the log with carriage returns: while this is open, each
    download prints a plain line each tenth instead (HubLines), through the stage's reporter.

    huggingface_hub makes every download's bar from the module attribute ``huggingface_hub.utils.tqdm.tqdm``
    (_get_progress_bar_context, when the caller names no class); it is swapped for HubLines here and put back
    after. A huggingface_hub without that attribute keeps its own bars."""
    import importlib

    try:  # the module (`import huggingface_hub.utils.tqdm as m` gives the class of that name instead)
        hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")
    except ImportError:
        hub_tqdm = None
    own = getattr(hub_tqdm, "tqdm", None)
    if not on or own is None or _isatty(sys.stderr):
        yield
        return
    hub_tqdm.tqdm = _hub_lines(own)
    try:
        yield
    finally:
        hub_tqdm.tqdm = own


def _hub_lines(hub_bar):
    """A subclass of huggingface_hub's tqdm (it keeps the Hub's switches: HF_HUB_DISABLE_PROGRESS_BARS turns it off
    too) that draws nothing and prints ``  download NAME  done/total (p%), elapsed, left`` each tenth of a download
    that lasts over DELAY seconds, through the reporter of the stage in progress (Reporter.line: logged, no control
    character)."""

    class HubLines(hub_bar):
        def __init__(self, *args, **kwargs):
            kwargs.update(file=_Nowhere(), mininterval=float("inf"), leave=False)
            self._vtc_next = 1
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            out = super().update(n)
            if self.disable or not self.total:
                return out
            tenth = int(self.n / self.total / EVERY + 1e-9)
            if tenth >= self._vtc_next:
                self._vtc_next = tenth + 1
                elapsed = float(self.format_dict["elapsed"])
                if elapsed >= DELAY:
                    left = elapsed / self.n * (self.total - self.n) if self.n else 0.0
                    size = self.format_sizeof
                    name = printable(str(self.desc or "file").strip().rstrip(":"))
                    _current().line(f"  download {name}  {size(self.n)}B/{size(self.total)}B "
                                    f"({100 * self.n // self.total}%), {_fmt_seconds(elapsed)}, "
                                    f"{_fmt_seconds(left)} left")
            return out

    return HubLines


def _hub_bars_on() -> bool:
    """huggingface_hub's progress bars (the download bars) are on (HF_HUB_DISABLE_PROGRESS_BARS unset or 0)."""
    try:
        from huggingface_hub.utils import are_progress_bars_disabled
    except ImportError:
        return False
    return not are_progress_bars_disabled()


def training_callback(metrics_path: str | Path | None, reporter: Reporter, history: list[dict] | None = None):
    """A transformers TrainerCallback that writes metrics.jsonl and prints the progress line.

    ``history``: the records already in metrics.jsonl when a run resumes; new records continue them (their
    ``elapsed`` counts on from the last one). ``metrics_path`` None: no file (a process other than rank 0; the
    logged loss is the mean over every process, the Trainer's, so rank 0's record is the run's). Made by a function
    so that importing this module never imports transformers.
    """
    earlier = list(history or [])
    offset = float(earlier[-1].get("elapsed") or 0.0) if earlier else 0.0
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def __init__(self) -> None:
            self.start = time.perf_counter()
            self.history: list[dict] = list(earlier)
            self.loss: float | None = earlier[-1]["loss"] if earlier else None
            self.total = 0
            self.first = 0
            self.every = 1
            self._file = None

        def on_train_begin(self, args, state, control, **kw):
            self.start = time.perf_counter()
            self.total = state.max_steps
            self.first = state.global_step  # > 0 when resuming from a checkpoint
            # In a log file: ten progress lines a run, not one per step.
            self.every = max(1, self.total // 10)
            self._file = open(metrics_path, "a", encoding="utf-8") if metrics_path is not None else None

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" not in logs:
                return
            record = {
                "step": state.global_step,
                "loss": float(logs["loss"]),
                "learning_rate": _num(logs.get("learning_rate")),
                "grad_norm": _num(logs.get("grad_norm")),
                "epoch": _num(logs.get("epoch")),
                "elapsed": round(offset + time.perf_counter() - self.start, 3),
            }
            self.loss = record["loss"]
            self.history.append(record)
            if self._file:
                self._file.write(json.dumps(record) + "\n")
                self._file.flush()
            self.show(state.global_step)

        def on_step_end(self, args, state, control, **kw):
            step = state.global_step
            if args.logging_steps and step % args.logging_steps == 0:
                return  # this step's loss is about to be logged: on_log shows the line
            self.show(step)

        def show(self, step: int) -> None:
            text = self.render(step)
            tenth = step % self.every == 0 or step == self.total
            if reporter.tty:
                reporter.write("\r" + text)
                if tenth:
                    reporter.log(text)
            elif tenth:
                reporter.line(text)

        def on_train_end(self, args, state, control, **kw):
            if reporter.tty:
                reporter.write("\n")
            if self._file:
                self._file.close()
                self._file = None

        def render(self, step: int) -> str:
            width = 24
            total = max(self.total, 1)
            done = int(width * step / total)
            elapsed = time.perf_counter() - self.start
            done_here = step - self.first
            left = elapsed / done_here * (total - step) if done_here > 0 else 0.0
            loss = f"loss {self.loss:.4f}" if self.loss is not None else "loss -"
            return (f"  [{'#' * done}{'.' * (width - done)}] {step:>{len(str(total))}}/{total}  {loss}  "
                    f"{_fmt_seconds(elapsed)}, {_fmt_seconds(left)} left")

    return ProgressCallback()


def _num(value):
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
