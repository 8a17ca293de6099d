"""How long after a keystroke does `vtc lsp` publish diagnostics? Prints figures; asserts nothing.

For every recipe in recipes/, a keystroke is one character typed at the end of its last clause line (a typo the
compiler must report, then the fix: the two alternate):

(a) in-process: vtc.lsp.analysis.diagnostics on the new text (the whole compile, parse to plan or to the errors,
    and the conversion to LSP), median and max of --runs keystrokes after one warm-up;
(b) over stdio: a real `vtc lsp` process, a didChange notification sent, the publishDiagnostics for it received
    (JSON-RPC framing, pygls, the compile, the answer), median and max of --runs keystrokes;
(c) in-process hover and completion at the typed position, median.

Target (issue 17): diagnostics within 50 ms of a keystroke for a normal recipe. Run:

    .venv/bin/python bench/lsp_latency.py [--runs 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vtc.lsp import analysis  # noqa: E402


def keystrokes(text: str):
    """The line typed on and two texts: with an `x` typed at the end of the last clause line, and without it."""
    lines = text.split("\n")
    last = max(i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#"))
    typed = lines[:last] + [lines[last].split("#")[0].rstrip() + "x"] + lines[last + 1:]
    return last, "\n".join(typed), text


def in_process(path: Path, runs: int) -> tuple[float, float, float, float]:
    text = path.read_text(encoding="utf-8")
    line, typed, clean = keystrokes(text)
    analysis.diagnostics(clean, str(path))  # warm-up: the registry, the schema, the parser tables
    times = []
    for i in range(runs):
        start = time.perf_counter()
        analysis.diagnostics(typed if i % 2 == 0 else clean, str(path))
        times.append(time.perf_counter() - start)
    hovers, completions = [], []
    for _ in range(runs):
        start = time.perf_counter()
        analysis.hover(clean, str(path), line, 1)
        hovers.append(time.perf_counter() - start)
        start = time.perf_counter()
        analysis.completion(clean, str(path), line, 1)
        completions.append(time.perf_counter() - start)
    return statistics.median(times), max(times), statistics.median(hovers), statistics.median(completions)


class Client:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "vtc", "lsp", "--stdio"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, cwd=ROOT)
        self.id = 0

    def send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def receive(self) -> dict:
        length = 0
        while True:
            line = self.proc.stdout.readline().strip()
            if not line:
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return json.loads(self.proc.stdout.read(length))

    def until(self, test) -> dict:
        while True:
            message = self.receive()
            if test(message):
                return message


def over_stdio(paths: list[Path], runs: int) -> dict[str, tuple[float, float]]:
    client = Client()
    client.send({"id": 1, "method": "initialize", "params": {"processId": None, "capabilities": {}}})
    client.until(lambda m: m.get("id") == 1)
    client.send({"method": "initialized", "params": {}})
    out = {}
    for path in paths:
        uri = path.as_uri()
        _, typed, clean = keystrokes(path.read_text(encoding="utf-8"))
        client.send({"method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "vt", "version": 0, "text": clean}}})
        client.until(lambda m: m.get("method") == "textDocument/publishDiagnostics")
        times = []
        for i in range(1, runs + 1):
            start = time.perf_counter()
            client.send({"method": "textDocument/didChange", "params": {
                "textDocument": {"uri": uri, "version": i},
                "contentChanges": [{"text": typed if i % 2 else clean}]}})
            client.until(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                         and m["params"].get("version") == i)
            times.append(time.perf_counter() - start)
        out[path.name] = (statistics.median(times), max(times))
    client.send({"id": 2, "method": "shutdown"})
    client.until(lambda m: m.get("id") == 2)
    client.send({"method": "exit"})
    client.proc.wait(timeout=30)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    paths = sorted((ROOT / "recipes").glob("*.vt"))
    stdio = over_stdio(paths, args.runs)
    print("| recipe | diagnostics, in-process (median / max) | didChange -> publishDiagnostics over stdio "
          "(median / max) | hover | completion |")
    print("|---|---|---|---|---|")
    for path in paths:
        median, worst, hover, completion = in_process(path, args.runs)
        s_median, s_worst = stdio[path.name]
        print(f"| {path.name} | {median * 1e3:.1f} / {worst * 1e3:.1f} ms | {s_median * 1e3:.1f} / "
              f"{s_worst * 1e3:.1f} ms | {hover * 1e3:.1f} ms | {completion * 1e3:.1f} ms |")


if __name__ == "__main__":
    main()
