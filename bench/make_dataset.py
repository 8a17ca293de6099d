"""Write a synthetic image-caption data set for the benchmark: N images of WxH px and metadata.jsonl.

Hugging Face's imagefolder layout (file_name + text), which `vtc run` reads as it is and the notebook-style
baseline reads with a few lines. Every caption has the same number of words, each a single token of the
benchmark tokenizer (bench/build_qwen3b_shape.py), so every row has the same token count.

    python bench/make_dataset.py --out /tmp/bench-data --rows 128 --size 504
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40),
           "orange": (240, 140, 30), "purple": (140, 50, 170), "white": (245, 245, 245), "black": (15, 15, 15)}
SHAPES = ["circle", "square", "triangle"]
PLACES = ["left", "right", "top", "bottom", "centre", "corner"]
INSTRUCTION = "Describe this picture in detail please."
# Twelve words a caption: "a <size> <colour> <shape> near the <place> of the picture on <colour> background".
CAPTION = "a {size} {colour} {shape} near the {place} of the picture on {bg} background"


def make(out: Path, rows: int = 128, size: int = 504, seed: int = 0) -> list[dict]:
    """Draw `rows` images (size x size) and write metadata.jsonl; return the metadata rows."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = []
    for i in range(rows):
        colour, bg = rng.sample(sorted(COLOURS), 2)
        shape, place = rng.choice(SHAPES), rng.choice(PLACES)
        big = rng.random() < 0.5
        img = Image.new("RGB", (size, size), COLOURS[bg])
        draw = ImageDraw.Draw(img)
        r = size // (3 if big else 6)
        cx, cy = rng.randint(r, size - r), rng.randint(r, size - r)
        box = [cx - r, cy - r, cx + r, cy + r]
        if shape == "circle":
            draw.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            draw.rectangle(box, fill=COLOURS[colour])
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=COLOURS[colour])
        # Noise so that PNG compression does not make every image trivially small (decode cost stays realistic).
        for _ in range(200):
            x, y = rng.randrange(size), rng.randrange(size)
            draw.point((x, y), fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        name = f"img_{i:04d}.png"
        img.save(out / name)
        text = CAPTION.format(size="large" if big else "small", colour=colour, shape=shape, place=place, bg=bg)
        meta.append({"file_name": name, "text": text})
    with open(out / "metadata.jsonl", "w", encoding="utf-8") as f:
        for row in meta:
            f.write(json.dumps(row) + "\n")
    return meta


def conversations(data_dir: Path, instruction: str = INSTRUCTION) -> list[dict]:
    """The rows as Unsloth's notebooks build them: user = [text, image], assistant = [text] (PIL images)."""
    from PIL import Image

    data_dir = Path(data_dir)
    rows = []
    with open(data_dir / "metadata.jsonl", encoding="utf-8") as f:
        for line in f:
            meta = json.loads(line)
            image = Image.open(data_dir / meta["file_name"]).convert("RGB")
            rows.append({"messages": [
                {"role": "user", "content": [{"type": "text", "text": instruction},
                                             {"type": "image", "image": image}]},
                {"role": "assistant", "content": [{"type": "text", "text": meta["text"]}]},
            ]})
    return rows


def tokens_per_row(model_dir: Path, data_dir: Path, instruction: str = INSTRUCTION,
                   limit: int | None = None) -> list[int]:
    """Non-padding tokens of each row (text + image placeholders) as the processor makes them (the first `limit`)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(model_dir))
    counts = []
    for row in conversations(data_dir, instruction)[:limit]:
        text = processor.apply_chat_template(row["messages"], tokenize=False)
        image = row["messages"][0]["content"][1]["image"]
        enc = processor(text=[text], images=[image], return_tensors="pt")
        counts.append(int(enc["attention_mask"].sum()))
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--size", type=int, default=504)
    args = ap.parse_args()
    make(args.out, args.rows, args.size)
    print(f"{args.rows} images of {args.size}x{args.size} in {args.out}")


if __name__ == "__main__":
    main()
