"""How fast is `vtc check`? Prints figures; asserts nothing (a benchmark, not a test).

(a) A cold `vtc check` process on a recipe with a typo (it must print the location and the suggestion): wall time,
    median of 7 runs, through `python -m vtc` and through the `vtc` console script, next to a bare Python start.
(b) The in-process compile, parse to plan, of every recipe in recipes/: median of 50 runs each (after one warm-up
    run, which loads the registry and the schema); and the parser alone.

Targets (issue 2): under 0.2 s cold, under 20 ms in-process. Run:

    .venv/bin/python bench/bench_check.py

Byte-code caching is switched on for the child processes (an installed package has its .pyc files; without them
Python compiles every module on every start).
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLD_RUNS = 7
WARM_RUNS = 50


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _wall(cmd: list[str], runs: int, cwd: str) -> tuple[float, subprocess.CompletedProcess]:
    env = _env()
    last = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)  # warm-up: writes .pyc files
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        last = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
        times.append(time.perf_counter() - start)
    return statistics.median(times), last


def cold(folder: str) -> list[tuple[str, float]]:
    recipe = Path(folder) / "typo.vt"
    text = (ROOT / "recipes" / "latex-ocr.vt").read_text(encoding="utf-8")
    recipe.write_text(text.replace("\nresize ", "\nresise "), encoding="utf-8")
    rows = []
    t, _ = _wall([sys.executable, "-c", "pass"], COLD_RUNS, folder)
    rows.append(("python -c pass (interpreter start)", t))
    t, _ = _wall([sys.executable, "-c", "import click"], COLD_RUNS, folder)
    rows.append(("python -c 'import click'", t))
    t, result = _wall([sys.executable, "-m", "vtc", "check", str(recipe)], COLD_RUNS, folder)
    assert "resise" in result.stderr and "did you mean `resize`" in result.stderr, result.stderr
    rows.append(("python -m vtc check typo.vt", t))
    script = shutil.which("vtc", path=str(Path(sys.executable).parent))
    if script:
        t, _ = _wall([script, "check", str(recipe)], COLD_RUNS, folder)
        rows.append(("vtc check typo.vt (console script)", t))
    return rows


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


def main() -> int:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as folder:
        print(f"\n(a) cold process, wall time, median of {COLD_RUNS}   (target < 0.2 s)")
        for name, seconds in cold(folder):
            print(f"  {name:<44} {seconds * 1000:7.1f} ms")
    print(f"\n(b) in-process, median of {WARM_RUNS}   (target < 20 ms per recipe, parse to plan)")
    for name, seconds in warm():
        print(f"  {name:<44} {seconds * 1000:7.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
