"""How fast is `vtc check`? Prints figures; asserts nothing (a benchmark, not a test).

(a) A cold `vtc check` process on a recipe with a typo (it must print the location and the suggestion): wall and
    CPU time, min and median of 21 runs (--runs), through `python -m vtc` and through the `vtc` console script,
    next to a bare Python start.
(b) The cold parse of the same recipe, in a fresh process, imports excluded (the first parse a process makes:
    the LALR tables are loaded and every regular expression is compiled on the way), three ways:
      parse_source            vtc's parser as shipped (lines -> AST and diagnostics);
      Lark's own lexer        the generated parser (vtc.compiler._vt_parser) alone, Lark's contextual lexer;
      pre-lexed tokens        the generated parser alone, fed tokens lexed beforehand: the floor that no
                              hand-written tokenizer can beat, so the difference to the row above is the most
                              such a tokenizer could save.
(c) The in-process compile, parse to plan, of every recipe in recipes/: median of 50 runs each (after one warm-up
    run, which loads the registry and the schema); and the parser alone.

Targets (issue 2): under 0.2 s cold, under 20 ms in-process. Run:

    .venv/bin/python bench/bench_check.py
    .venv/bin/python bench/bench_check.py --baseline /tmp/old/src    # also another checkout's src, interleaved

The runs of (a) and (b) are interleaved, so that a busy machine slows every row alike. Byte-code caching is
switched on for the child processes (an installed package has its .pyc files; without them Python compiles every
module on every start).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLD_RUNS = 21
WARM_RUNS = 50


def _env(src: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["HF_HUB_OFFLINE"] = "1"
    if src:
        env["PYTHONPATH"] = src
    return env


def _child_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _interleaved(commands: dict[str, tuple[list[str], str | None]], runs: int, cwd: str):
    """Run every command `runs` times, in turn. -> ({name: [(wall, cpu), ...]}, {name: last CompletedProcess})."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    last = {}
    for name, (cmd, src) in commands.items():  # warm-up: writes .pyc files
        last[name] = subprocess.run(cmd, capture_output=True, text=True, env=_env(src), cwd=cwd)
    for _ in range(runs):
        for name, (cmd, src) in commands.items():
            cpu = _child_seconds()
            start = time.perf_counter()
            last[name] = subprocess.run(cmd, capture_output=True, text=True, env=_env(src), cwd=cwd)
            times[name].append((time.perf_counter() - start, _child_seconds() - cpu))
    return times, last


def _typo_recipe(folder: str) -> Path:
    recipe = Path(folder) / "typo.vt"
    text = (ROOT / "recipes" / "latex-ocr.vt").read_text(encoding="utf-8")
    recipe.write_text(text.replace("\nresize ", "\nresise "), encoding="utf-8")
    return recipe


def cold(folder: str, baseline: str | None, runs: int) -> dict[str, list[tuple[float, float]]]:
    recipe = str(_typo_recipe(folder))
    commands = {
        "python -c pass (interpreter start)": ([sys.executable, "-c", "pass"], None),
        "python -c 'import click'": ([sys.executable, "-c", "import click"], None),
        "python -m vtc check typo.vt": ([sys.executable, "-m", "vtc", "check", recipe], str(ROOT / "src")),
    }
    script = shutil.which("vtc", path=str(Path(sys.executable).parent))
    if script:
        commands["vtc check typo.vt (console script)"] = ([script, "check", recipe], None)
    if baseline:
        commands["python -m vtc check typo.vt (baseline)"] = ([sys.executable, "-m", "vtc", "check", recipe],
                                                              baseline)
    times, last = _interleaved(commands, runs, folder)
    for name, result in last.items():
        if "check" in name:
            assert "resise" in result.stderr and "did you mean `resize`" in result.stderr, (name, result.stderr)
    return times


# --- (b) the cold parse ---------------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """The code of each line that has any (comments cut; the typo recipe has no `#` inside a string)."""
    return [line.split("#")[0] for line in text.splitlines() if line.split("#")[0].strip()]


def _pre_lex(text: str) -> list[list[tuple]]:
    """Each line's tokens, as Lark's contextual lexer finds them, up to and including the first unexpected one."""
    from vtc.compiler import _vt_parser as lark

    parser = lark.Lark_StandAlone()
    lines = []
    for code in _lines(text):
        tokens = []
        interactive = parser.parse_interactive(code)
        try:
            for token in interactive.iter_parse():
                tokens.append(token)
        except lark.UnexpectedToken as exc:
            tokens.append(exc.token)
        except lark.UnexpectedCharacters:
            pass
        lines.append([(t.type, str(t), t.start_pos, t.column, t.end_column, t.end_pos) for t in tokens])
    return lines


def child(mode: str, recipe: str, tokens_file: str | None) -> None:
    """Runs in a fresh process: import, then time the first parse of the recipe. Prints JSON."""
    text = Path(recipe).read_text(encoding="utf-8")
    from vtc.compiler import _vt_parser as lark
    from vtc.compiler.parser import parse_source

    tokens = json.loads(Path(tokens_file).read_text()) if tokens_file else None
    wall, cpu = time.perf_counter(), time.process_time()
    if mode == "parse_source":
        parse_source(text, recipe)
    elif mode == "lark":
        parser = lark.Lark_StandAlone()
        for code in _lines(text):
            try:
                parser.parse(code)
            except lark.UnexpectedInput:
                pass
    else:  # pre-lexed
        parser = lark.Lark_StandAlone()
        for line in tokens:
            interactive = parser.parse_interactive(None)
            try:
                for kind, value, start, column, end_column, end in line:
                    interactive.feed_token(lark.Token(kind, value, start, 1, column, 1, end_column, end))
                interactive.feed_eof()
            except lark.UnexpectedToken:
                pass
    print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}))


def cold_parse(folder: str, baseline: str | None, runs: int) -> dict[str, list[tuple[float, float]]]:
    recipe = _typo_recipe(folder)
    tokens_file = Path(folder) / "tokens.json"
    tokens_file.write_text(json.dumps(_pre_lex(recipe.read_text(encoding="utf-8"))))
    me = [sys.executable, str(Path(__file__).resolve()), "--child"]
    src = str(ROOT / "src")
    commands = {
        "parse_source (vtc's parser)": (me + ["parse_source", str(recipe)], src),
        "Lark's own lexer + LALR": (me + ["lark", str(recipe)], src),
        "pre-lexed tokens + LALR (the floor)": (me + ["pre-lexed", str(recipe), str(tokens_file)], src),
    }
    if baseline:
        commands["parse_source (baseline)"] = (me + ["parse_source", str(recipe)], baseline)
    found: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(runs + 1):
        for name, (cmd, path) in commands.items():
            out = subprocess.run(cmd, capture_output=True, text=True, env=_env(path), cwd=folder, check=True)
            figures = json.loads(out.stdout)
            found[name].append((figures["wall"], figures["cpu"]))
    return {name: times[1:] for name, times in found.items()}  # the first run wrote .pyc files


# --- (c) in-process -------------------------------------------------------------------------------------------------


def warm() -> list[tuple[str, float]]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vtc.compiler.parser import parse_source

    rows = []
    try:
        from vtc.compiler.pipeline import compile_file
    except ImportError:  # the pipeline is not there yet: the parser alone
        compile_file = None
    for path in sorted((ROOT / "recipes").glob("*.vt")):
        text = path.read_text(encoding="utf-8")
        parse_source(text, str(path))
        times = []
        for _ in range(WARM_RUNS):
            start = time.perf_counter()
            parse_source(text, str(path))
            times.append(time.perf_counter() - start)
        rows.append((f"parse   {path.name}", statistics.median(times)))
        if compile_file is not None:
            compile_file(str(path))
            times = []
            for _ in range(WARM_RUNS):
                start = time.perf_counter()
                result = compile_file(str(path))
                times.append(time.perf_counter() - start)
            status = "plan" if result.plan is not None else "no plan"
            rows.append((f"compile {path.name} ({status})", statistics.median(times)))
    return rows


def _print(times: dict[str, list[tuple[float, float]]]) -> None:
    print(f"  {'':<44} {'wall min':>9} {'median':>8} {'cpu min':>9} {'median':>8}")
    for name, figures in times.items():
        wall = sorted(w for w, _ in figures)
        cpu = sorted(c for _, c in figures)
        print(f"  {name:<44} {wall[0] * 1000:6.1f} ms {statistics.median(wall) * 1000:5.1f} ms"
              f" {cpu[0] * 1000:6.1f} ms {statistics.median(cpu) * 1000:5.1f} ms")


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--baseline", help="the src folder of another vtc checkout, measured alongside")
    args.add_argument("--runs", type=int, default=COLD_RUNS, help=f"runs of each cold measurement ({COLD_RUNS})")
    args.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    options = args.parse_args(argv)
    if options.child:
        mode, recipe, *tokens = options.child
        child(mode, recipe, tokens[0] if tokens else None)
        return 0
    baseline = str(Path(options.baseline).resolve()) if options.baseline else None
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as folder:
        print(f"\n(a) cold `vtc check` process, min and median of {options.runs}   (target < 0.2 s wall)")
        _print(cold(folder, baseline, options.runs))
        print(f"\n(b) cold parse of typo.vt in a fresh process, imports excluded, min and median of {options.runs}")
        _print(cold_parse(folder, baseline, options.runs))
    print(f"\n(c) in-process, median of {WARM_RUNS}   (target < 20 ms per recipe, parse to plan)")
    for name, seconds in warm():
        print(f"  {name:<44} {seconds * 1000:7.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
