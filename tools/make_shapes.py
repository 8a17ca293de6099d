"""Generate the demo dataset recipes/data/shapes/ (deterministic; run from the repository root).

    python tools/make_shapes.py [--out recipes/data/shapes] [--train 48] [--test 20] [--seed 7]

Each image is a 112 x 112 PNG of one red, green, blue or yellow circle, square or triangle on white, at a random
size and place. train/ and test/ each hold a metadata.jsonl in Hugging Face's imagefolder convention with the
columns file_name, text (the colour word: the demo asks "What colour is the shape?") and shape.
Colours and shapes are balanced: every colour appears equally often in each split (48 = 4 x 12, 20 = 4 x 5).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 160, 40), "blue": (30, 60, 220), "yellow": (235, 200, 20)}
SHAPES = ("circle", "square", "triangle")
SIZE = 112  # 112 px = 4 x 28: the tiny Qwen model turns it into 16 image tokens


def draw(colour: str, shape: str, rng: random.Random) -> Image.Image:
    im = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    d = ImageDraw.Draw(im)
    side = rng.randint(40, 80)  # big enough to fill several 14 px patches, small enough to move around
    x = rng.randint(6, SIZE - side - 6)
    y = rng.randint(6, SIZE - side - 6)
    fill = COLOURS[colour]
    if shape == "circle":
        d.ellipse([x, y, x + side, y + side], fill=fill)
    elif shape == "square":
        d.rectangle([x, y, x + side, y + side], fill=fill)
    else:
        d.polygon([(x + side / 2, y), (x, y + side), (x + side, y + side)], fill=fill)
    return im


def make_split(folder: Path, n: int, rng: random.Random, start: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("shape-*.png"):
        old.unlink()
    colours = list(COLOURS)
    # Every colour n/4 times, the shapes cycling within each colour; then shuffled (seeded).
    pairs = [(colours[i % 4], SHAPES[(i // 4) % 3]) for i in range(n)]
    rng.shuffle(pairs)
    rows = []
    for k, (colour, shape) in enumerate(pairs):
        name = f"shape-{start + k:03d}.png"
        draw(colour, shape, rng).save(folder / name, optimize=True)
        rows.append({"file_name": name, "text": colour, "shape": shape})
    with open(folder / "metadata.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="recipes/data/shapes")
    ap.add_argument("--train", type=int, default=48)
    ap.add_argument("--test", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    out = Path(args.out)
    make_split(out / "train", args.train, rng, 0)
    make_split(out / "test", args.test, rng, args.train)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {args.train} + {args.test} images to {out} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
