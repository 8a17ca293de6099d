"""A long fuzz campaign against the compiler and the command line: no input may give a traceback or take over 2 s.

    .venv/bin/python bench/fuzz_campaign.py                       # 100,000 compiles + 2,000 CLI runs (minutes)
    .venv/bin/python bench/fuzz_campaign.py --compiles 5000 --cli 100 --seed 7

Not part of CI (tests/test_fuzz.py runs a short hypothesis search there). The inputs are drawn from a seeded random
generator, so a campaign is repeatable: valid recipes, then mutations (inserted, deleted and replaced characters,
truncation, control and escape characters, lone surrogates, numbers of thousands of digits, one line of thousands
of repeated clauses, huge lines) and include graphs held in memory (chains, diamonds where each file includes the
next twice, cycles, self-includes, missing files). Each compile runs in-process through
``vtc.compiler.pipeline.compile_source``; the CLI part writes the input to a file and runs ``vtc check``, ``plan``,
``explain`` and ``fmt --check`` in fresh processes, looking for "Traceback" on stderr and for raw escape
characters in text output.

Prints a summary and writes it to bench/results/fuzz-<date>.json: inputs, tracebacks (with the first few inputs that
caused them), the slowest input and its time, inputs over 2 s.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

LIMIT_S = 2.0
WORDS = ["vision", "language", "attention", "mlp", "all", "everything", "qwen2.5-vl", "tiny-qwen2.5-vl",
         "llama-3.2-vision", "unsloth/Radiology_mini", "./xrays", "~/data", "C:/x", "C:\\Users\\me", "../a/b.c",
         "data/xrays", "train", "with", "from", "column", "none", "on", "données", "x-ray_v2", "respones_only",
         "/", "/etc", "..", "12abc", "2e-4x"]
NASTY = ["\x00", "\r", "\n", "\t", '"', "\\", "#", ",", "%", "\u00a0", "\u2028", "\x85", "\x0c", "\x07", "\x1b",
         "\x1b[2K\x1b[1A", "\x1b]0;title\x07", "\u202e", "\ufeff", "é", "🩻", "\u201c", "'", "\ud800", "\x7f",
         "\x9b", "$(id)", "${HOME}", "`id`"]


def _number(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.15:
        return "9" * rng.choice([4301, 5000, 20000])  # beyond Python's int-conversion limit (4,300 digits)
    if pick < 0.25:
        return "1e" + "9" * rng.choice([5, 400, 5000])
    if pick < 0.3:
        return "0." + "0" * rng.choice([10, 5000]) + "1"
    return rng.choice(["2", "0", "-1", "1e3", "2e-4", "0.05", ".5", "3.", str(rng.randint(0, 10**9))])


def _value(rng: random.Random) -> str:
    if rng.random() < 0.3:
        text = "".join(rng.choice(NASTY + list("abc /")) for _ in range(rng.randint(1, 12)))
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return rng.choice(WORDS)


def _clause(rng: random.Random) -> str:
    n, v = _number(rng), _value(rng)
    return rng.choice([
        f"finetune {v}, {rng.choice(WORDS)} on {_value(rng)}", f"include {v}", f"using {v}", f"precision {v}",
        f"with {v}", f"without {v}", f"from {v}", f"evaluate on {v} split {rng.choice(WORDS)}", f"holdout {n}%",
        f"ask {v}", f"system {v}", f"answer from column {v}", f"images from column {v}", f"resize {n}",
        f"resize {n}x{_number(rng)}", f"bad rows {v}", f"window {n} {_number(rng)}", f"lora rank {n} alpha {n}",
        f"lora dropout {n}", f"train for {n} {rng.choice(['epochs', 'steps', 'epoch'])}", f"batch {n}",
        f"accumulate {n}", f"seed {n}", f"gpus {n}", f"max length {n}", f"learning rate {n}", f"weight decay {n}",
        f"warmup {n} steps", f"warmup {n}%", f"schedule {v}", f"optimizer {v}", f"metric {v}", f"save to {v}",
        f"export {v}", f"checkpoint every {n} steps", f"# comment {v}",
    ])


def _recipe(rng: random.Random) -> str:
    lines = [_clause(rng) for _ in range(rng.randint(1, 10))]
    if rng.random() < 0.6:
        lines.insert(0, "finetune vision, mlp on tiny-qwen2.5-vl")
        lines.insert(1, "from ./data")
    return ("\n" if rng.random() < 0.8 else " ").join(lines)


def _mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(0, 6)):
        op, i = rng.choice(["insert", "delete", "replace", "truncate", "huge", "repeat"]), rng.randint(0, len(text))
        if op == "insert":
            text = text[:i] + rng.choice(NASTY) + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + rng.randint(1, 8):]
        elif op == "replace" and text:
            text = text[:max(i - 1, 0)] + rng.choice(NASTY) + text[i:]
        elif op == "truncate":
            text = text[:i]
        elif op == "huge":
            chunk = rng.choice(["a", "9", "with a,", '"', "x ", "resise 1 "])
            text = text[:i] + chunk * (rng.choice([1_000, 25_000, 300_000]) // len(chunk)) + text[i:]
        elif op == "repeat":
            text += " " + " ".join(["batch 2"] * rng.choice([100, 10_000]))
    return text


def _graph(rng: random.Random) -> tuple[str, dict[str, str]]:
    """A main recipe and the files it includes, held in memory."""
    n = rng.randint(2, 40)
    shape = rng.choice(["chain", "diamond", "cycle", "self", "missing"])
    files = {}
    for k in range(n):
        body = _clause(rng) + "\n"
        nxt = f'include "f{k + 1}.vt"\n' if k + 1 < n else ""
        if shape == "diamond":
            nxt *= 2  # each file includes the next twice: 2**n paths through the graph
        elif shape == "cycle" and k + 1 == n:
            nxt = 'include "f0.vt"\n'
        elif shape == "self":
            nxt += f'include "f{k}.vt"\n'
        files[f"f{k}.vt"] = body + nxt
    if shape == "missing":
        files.pop(f"f{n - 1}.vt")
    return 'finetune all on tiny-qwen2.5-vl\nfrom ./data\ninclude "f0.vt"\n', files


def _one(args) -> tuple[str | None, float, str]:
    """(traceback or None, seconds, the input's first 200 characters)."""
    seed, base = args
    from vtc.compiler.pipeline import compile_source

    rng = random.Random(seed)
    files: dict[str, str] = {}
    if rng.random() < 0.15:
        text, files = _graph(rng)
    else:
        text = _recipe(rng)
        if rng.random() < 0.8:
            text = _mutate(rng, text)

    def load(written, including):
        if written in files:
            return written, files[written]
        raise FileNotFoundError(written)

    start = time.perf_counter()
    try:
        result = compile_source(text, "fuzz.vt", load=load, base_dir=base, base_ok=rng.random() < 0.5)
        for d in result.diagnostics:
            d.render(result.sources)
            d.to_json()
        problem = None
    except BaseException:  # noqa: BLE001 - the campaign counts every escape
        problem = traceback.format_exc(limit=6)
    return problem, time.perf_counter() - start, repr(text[:200])


def _campaign(work, seeds, workers: int, chunksize: int) -> tuple[list, list, list]:
    """Run ``work((seed, folder))`` for every seed in a pool: (results, problems, (seconds, input) slowest first)."""
    with tempfile.TemporaryDirectory() as folder:
        with multiprocessing.Pool(workers) as pool:
            results = pool.map(work, [(seed, folder) for seed in seeds], chunksize=chunksize)
    problems = [(problem, text) for problem, _, text in results if problem]
    return results, problems, sorted(((s, text) for _, s, text in results), reverse=True)


def compile_campaign(count: int, seed: int, workers: int) -> dict:
    results, tracebacks, slow = _campaign(_one, range(seed * 1_000_003, seed * 1_000_003 + count), workers, 200)
    return {"inputs": count, "tracebacks": len(tracebacks), "first_tracebacks": tracebacks[:5],
            "over_2s": sum(s > LIMIT_S for s, _ in slow), "slowest_s": round(slow[0][0], 3) if slow else 0,
            "slowest_input": slow[0][1] if slow else None,
            "median_ms": round(1000 * slow[len(slow) // 2][0], 2) if slow else 0}


def _cli_one(args) -> tuple[str | None, float, str]:
    seed, folder = args
    rng = random.Random(seed)
    text = _mutate(rng, _recipe(rng))
    path = Path(folder) / f"r{seed}.vt"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1")
    worst, problem = 0.0, None
    for command in (["check"], ["plan"], ["explain"], ["fmt", "--check"]):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "vtc", *command, str(path)], capture_output=True, env=env,
                              timeout=60)
        worst = max(worst, time.perf_counter() - start)
        out = (done.stdout + done.stderr).decode("utf-8", "replace")
        if "Traceback" in out:
            problem = f"vtc {' '.join(command)}: " + done.stderr.decode("utf-8", "replace")[-1500:]
        elif "\x1b" in out or "\x9b" in out:  # ESC and CSI as characters (0x9b is also a UTF-8 continuation byte)
            problem = f"vtc {' '.join(command)}: a raw escape character reached the text output"
    path.unlink()
    return problem, worst, repr(text[:200])


def cli_campaign(count: int, seed: int, workers: int) -> dict:
    _, problems, slow = _campaign(_cli_one, range(seed * 7_919, seed * 7_919 + count), workers, 10)
    return {"inputs": count, "commands_each": 4, "problems": len(problems), "first_problems": problems[:5],
            "over_2s": sum(s > LIMIT_S for s, _ in slow), "slowest_command_s": round(slow[0][0], 3) if slow else 0,
            "slowest_input": slow[0][1] if slow else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compiles", type=int, default=100_000)
    parser.add_argument("--cli", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = time.time()
    summary = {"date": datetime.date.today().isoformat(), "seed": args.seed, "workers": args.workers,
               "compile": compile_campaign(args.compiles, args.seed, args.workers) if args.compiles else None,
               "cli": cli_campaign(args.cli, args.seed, args.workers) if args.cli else None}
    summary["wall_s"] = round(time.time() - started, 1)
    out = args.out or ROOT / "bench" / "results" / f"fuzz-{summary['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, ensure_ascii=True) + "\n")
    print(json.dumps(summary, indent=2, ensure_ascii=True))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
