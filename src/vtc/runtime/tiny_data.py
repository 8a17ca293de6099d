"""Generated video data: the motion task (a square moving one way across short clips).

A task that no single frame can answer: every clip shows one square moving left or right (or up or down) across a
plain background, from a random start and wrapping around at the edges, so one frame tells where the square is,
never where it goes. A model that answers it reads the frames in order. The tiny CPU tests train tiny-qwen2.5-vl on
it (tests/test_video_training.py), the GPU test trains it through Unsloth (tests/gpu/test_video_gpu.py), and
recipes/echo-video.vt runs on it.

Written as a folder vtc reads: ``<out>/train`` and ``<out>/test``, each with one clip a row and a ``metadata.jsonl``
(imagefolder metadata: ``{"file_name": "<clip>", "text": "<direction>"}``). A clip is a folder of frames
(``clip_000/frame_000.png ...``: no decoder needed) or, with ``kind="mp4"``, an mp4 file (needs PyAV: the `video`
extra). Run ``python -m vtc.runtime.tiny_data OUT`` to write it (``--kind mp4``, ``--train N``, ``--test N``).
The same arguments give the same bytes for frame folders (PNG; mp4 bytes depend on the encoder's version).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

DIRECTIONS = ("left", "right", "up", "down")
QUESTION = "Which way does the square move?"


def moving_square(direction: str, n: int = 4, size: int = 56, seed: int = 0, square: int | None = None) -> list:
    """``n`` RGB frames of ``size`` px: a white square moving ``direction`` by the same step each frame (between a
    tenth and a quarter of the frame), wrapping around at the edge, from a random start (seeded) on a dark
    background of a random shade. With the wrap-around, where the square is in any one frame is uniform whichever
    way it moves: only the order of the frames tells the direction."""
    from PIL import Image, ImageChops, ImageDraw

    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
    rng = random.Random(f"{direction}:{n}:{size}:{seed}")
    side = square or max(4, size // 4)
    step = rng.randint(max(1, size // 10), max(1, size // 4))
    start, across = rng.randrange(size), rng.randrange(size)
    sign = 1 if direction in ("right", "down") else -1
    shade = rng.randint(0, 60)
    base = Image.new("RGB", (size, size), (shade, shade, shade))
    ImageDraw.Draw(base).rectangle([0, 0, side - 1, side - 1], fill=(255, 255, 255))
    frames = []
    for i in range(n):
        along = (start + sign * step * i) % size
        dx, dy = (along, across) if direction in ("left", "right") else (across, along)
        frames.append(ImageChops.offset(base, dx, dy))  # wraps around the edges
    return frames


def write_motion_dataset(out: str | Path, *, train: int = 48, test: int = 16, frames: int = 4, size: int = 56,
                         directions: tuple[str, ...] = ("left", "right"), kind: str = "frames", fps: int = 4,
                         seed: int = 0) -> Path:
    """Write the motion task under ``out`` (train/ and test/, each with metadata.jsonl); returns ``out``.

    Directions alternate, so each split is balanced. ``kind``: "frames" (frame folders) or "mp4" (PyAV)."""
    out = Path(out)
    for split, count, offset in (("train", train, 0), ("test", test, 100_000)):
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(count):
            direction = directions[i % len(directions)]
            clip = moving_square(direction, n=frames, size=size, seed=seed + offset + i)
            name = f"clip_{i:03d}"
            if kind == "frames":
                clip_dir = folder / name
                clip_dir.mkdir(exist_ok=True)
                for j, frame in enumerate(clip):
                    frame.save(clip_dir / f"frame_{j:03d}.png", optimize=False)
            elif kind == "mp4":
                name += ".mp4"
                write_mp4(folder / name, clip, fps=fps)
            else:
                raise ValueError(f"kind must be 'frames' or 'mp4', not {kind!r}")
            lines.append(json.dumps({"file_name": name, "text": direction}))
        (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def write_mp4(path: str | Path, frames: list, fps: int = 4) -> Path:
    """An mp4 of the frames (PyAV, mpeg4 at high quality so that a small square survives the compression)."""
    import av  # the `video` extra

    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_image(frame.convert("RGB"))):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vtc.runtime.tiny_data",
                                     description="Write the motion task (train/ and test/ with metadata.jsonl).")
    parser.add_argument("out")
    parser.add_argument("--train", type=int, default=48)
    parser.add_argument("--test", type=int, default=16)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--four", action="store_true", help="four directions instead of left and right")
    parser.add_argument("--kind", choices=("frames", "mp4"), default="frames")
    args = parser.parse_args(argv)
    out = write_motion_dataset(args.out, train=args.train, test=args.test, frames=args.frames, size=args.size,
                               directions=DIRECTIONS if args.four else ("left", "right"), kind=args.kind)
    print(out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
