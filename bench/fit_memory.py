"""Compare vtc's memory model (src/vtc/compiler/estimates.py) with the measured peaks of a calibration run.

    python bench/fit_memory.py bench/results/memory-calibration-h200-2026-12-01.json [--markdown]

For every measured point: the estimate for the same model, backend, method, checkpointing, image size, micro-batch
and the row's measured text length (the plan itself assumes the image's tokens + 256 text tokens), against the
peak reserved memory; the error is (estimate - measured) / measured. Points that ran out of memory because other
processes shared the card are skipped. Runs on any machine (no torch): the model is arithmetic.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from vtc.compiler import estimates as E  # noqa: E402
from vtc.registry import load_registry, model_geometry, total_params  # noqa: E402

ALL_PARTS = {"vision": True, "language": True, "attention": True, "mlp": True}


def rows(path: Path) -> list[dict]:
    registry = load_registry()
    data = json.loads(path.read_text())
    out = []
    for config in data["configurations"]:
        entry = registry.models[config["model"]]
        family, arch = entry["family"], entry["architecture"]
        geometry = model_geometry(family, entry, registry)
        total = total_params(family, entry)
        trainable = E.trainable_parameters(config["method"], ALL_PARTS, family, arch, 16, total)
        for point in config["points"]:
            if point.get("oom") or point.get("vision_attention", "varlen") != "varlen" and \
                    config["vision_attention"] == "per point":
                continue
            image = E.image_estimate(geometry, {"mode": "longest", "size": point["size"]})
            estimate = E.memory_estimate(
                method=config["method"], family=family, arch=arch, total=total, trainable=trainable, image=image,
                batch=point["micro"], max_length=1 << 20, optim="adamw_8bit",
                checkpointing=config["checkpointing"] != "false", backend=config["backend"], geometry=geometry,
                text_tokens=round(point["text_tokens_per_row"]))
            measured = point["peak_reserved_gib"]
            out.append({"model": config["model"], "backend": config["backend"], "method": config["method"],
                        "checkpointing": config["checkpointing"], "size": point["size"], "micro": point["micro"],
                        "measured_gib": measured, "estimate_gib": estimate["total"],
                        "error": round((estimate["total"] - measured) / measured, 3)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    table = rows(args.results)
    if args.markdown:
        print("| model | backend | method | checkpointing | px | micro-batch | measured (reserved) | estimate | error |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in table:
            print(f"| {r['model']} | {r['backend']} | {r['method']} | {r['checkpointing']} | {r['size']} | "
                  f"{r['micro']} | {r['measured_gib']:.2f} GiB | {r['estimate_gib']:.1f} GiB | {r['error']:+.0%} |")
    else:
        print(json.dumps(table, indent=1))
    worst = max(abs(r["error"]) for r in table)
    print(f"{len(table)} points, largest error {worst:.1%}", file=sys.stderr)


if __name__ == "__main__":
    main()
