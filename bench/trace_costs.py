"""The largest costs of a profiled training step, from a torch.profiler Chrome trace (bench/timed.py BENCH_PROFILE).

    python bench/trace_costs.py trace-a.json --steps 2 [--step-s 0.752]

Sums the GPU's kernels, copies and sets by kind (matrix multiplies, copies between host and GPU, compiled Triton
kernels, other element-wise work, flash attention, the optimizer), measures how long the GPU was busy (the union of
its intervals) against the traced window, and counts kernel launches and the host's time in CUDA runtime calls.
Prints JSON. Profiling slows the host (every operator is recorded), so the shares of an unprofiled step are given
against --step-s, the step's measured duration without the profiler, when it is known.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

GPU_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")


def kind(name: str) -> str:
    low = name.lower()
    if "memcpy" in low:
        return "copies between host and GPU (offloaded activations, batches)"
    if "memset" in low:
        return "memory sets"
    if "flash" in low or "fmha" in low or "_fl_" in low:
        return "attention (flash kernels)"
    if any(k in low for k in ("gemm", "cutlass", "xmma", "nvjet", "cublas")):
        return "matrix multiplies"
    if "triton" in low:
        return "compiled Triton kernels (fused element-wise, norms, rotary, LoRA)"
    if "optimizer" in low or "adam" in low:
        return "optimizer (8-bit AdamW)"
    return "other element-wise and reduction kernels"


def costs(trace: dict, steps: int, step_s: float | None) -> dict:
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    gpu = [e for e in events if e.get("cat") in GPU_CATEGORIES]
    t0 = min(e["ts"] for e in events)
    t1 = max(e["ts"] + e["dur"] for e in events)
    busy, start, end = 0.0, None, None
    for a, b in sorted((e["ts"], e["ts"] + e["dur"]) for e in gpu):
        if end is None or a > end:
            if end is not None:
                busy += end - start
            start, end = a, b
        else:
            end = max(end, b)
    if end is not None:
        busy += end - start
    by_kind: collections.Counter = collections.Counter()
    for e in gpu:
        by_kind[kind(e["name"])] += e["dur"]
    runtime: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") in ("cuda_runtime", "cuda_driver"):
            runtime[e["name"]] += e["dur"]
    annotations: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "user_annotation":
            annotations[e["name"]] += e["dur"]
    per_step_ms = lambda us: round(us / 1e3 / steps, 1)  # noqa: E731
    gpu_ms = busy / 1e3 / steps
    out = {
        "steps": steps, "traced_window_ms_per_step": per_step_ms(t1 - t0),
        "gpu_busy_ms_per_step": round(gpu_ms, 1),
        "gpu_kernels_per_step": round(sum(1 for e in gpu if e.get("cat") == "kernel") / steps),
        "gpu_time_by_kind_ms_per_step": {k: per_step_ms(v) for k, v in by_kind.most_common()},
        "host_cuda_calls_ms_per_step": {k: per_step_ms(v) for k, v in runtime.most_common(6)},
        "annotations_ms_per_step": {k: per_step_ms(v) for k, v in annotations.most_common(6)},
    }
    if step_s:
        out["unprofiled_step_ms"] = round(step_s * 1e3, 1)
        out["share_of_unprofiled_step"] = {k: round(v / 1e6 / steps / step_s, 3) for k, v in by_kind.most_common()}
        out["share_of_unprofiled_step"]["GPU idle (host-side work: Python, kernel launches, synchronisation)"] = \
            round(max(0.0, 1 - gpu_ms / 1e3 / step_s), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace", type=Path)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--step-s", type=float, default=None)
    args = ap.parse_args()
    print(json.dumps(costs(json.loads(args.trace.read_text()), args.steps, args.step_s), indent=1))


if __name__ == "__main__":
    main()
