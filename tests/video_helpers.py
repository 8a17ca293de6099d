"""Small clips for the tests: video files (PyAV), frame folders, cine DICOM (pydicom), TIFF stacks (pillow), and a
moving square whose direction no single frame tells.

Every writer takes a list of PIL images (all one size) and returns the path it wrote. Nothing here is imported by vtc
itself; PyAV and pydicom are imported inside the functions that need them.
"""

from __future__ import annotations

import random
from pathlib import Path

# suffix -> (container format, codec, pixel format) that PyAV writes on a stock wheel (its bundled FFmpeg).
_CODECS = {
    ".mp4": ("mp4", ("libx264", "mpeg4"), "yuv420p"),
    ".m4v": ("mp4", ("libx264", "mpeg4"), "yuv420p"),
    ".mov": ("mov", ("libx264", "mpeg4"), "yuv420p"),
    ".mkv": ("matroska", ("libx264", "mpeg4"), "yuv420p"),
    ".avi": ("avi", ("mpeg4",), "yuv420p"),
    ".webm": ("webm", ("libvpx", "libvpx-vp9"), "yuv420p"),
}


def write_video(path, frames, fps=4) -> Path:
    """``frames`` (PIL images of one size; even sides are safest for yuv420p) as a video file at ``fps`` frames a
    second; the container and codec follow the suffix (.mp4/.m4v/.mov/.mkv: libx264 or mpeg4, .avi: mpeg4,
    .webm: libvpx)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    container_format, codecs, pix_fmt = _CODECS[path.suffix.lower()]
    codec = next((c for c in codecs if c in av.codecs_available), None)
    if codec is None:
        raise RuntimeError(f"PyAV here has none of the codecs {codecs} for {path.suffix}")
    width, height = frames[0].size
    with av.open(str(path), mode="w", format=container_format) as out:
        stream = out.add_stream(codec, rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "10", "preset": "ultrafast"}
        elif codec in ("mpeg4",):
            stream.bit_rate = 4_000_000
        elif codec.startswith("libvpx"):
            stream.bit_rate = 4_000_000
        for image in frames:
            frame = av.VideoFrame.from_image(image.convert("RGB"))
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_frame_folder(folder, frames, suffix=".png") -> Path:
    """``frames`` as frame_000.png, frame_001.png, ... in ``folder`` (created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(frames):
        image.convert("RGB").save(folder / f"frame_{i:03d}{suffix}")
    return folder


# Planted header text: a test checks that none of it reaches any output.
CINE_SECRETS = {"PatientName": "Zwartkop^Ottoline", "PatientID": "MRN-77123-CINE",
                "InstitutionName": "YELLOWFINCH CARDIOLOGY", "StudyDescription": "ECHO HUMMINGBIRD"}


def write_cine_dicom(path, frames, frame_time_ms=None, secrets=True) -> Path:
    """A multi-frame (cine) DICOM: grey frames (mode "L") as 8-bit MONOCHROME2, others as 8-bit RGB. With
    ``frame_time_ms`` the file carries FrameTime (milliseconds between frames); without it, no frame timing. The
    header carries CINE_SECRETS (unless secrets=False)."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    path = Path(path)
    grey = all(image.mode == "L" for image in frames)
    if grey:
        stack = np.stack([np.asarray(image, dtype=np.uint8) for image in frames])
    else:
        stack = np.stack([np.asarray(image.convert("RGB"), dtype=np.uint8) for image in frames])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    if secrets:
        for key, value in CINE_SECRETS.items():
            setattr(ds, key, value)
    ds.SOPClassUID, ds.SOPInstanceUID = UltrasoundMultiFrameImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.NumberOfFrames = len(frames)
    ds.Rows, ds.Columns = stack.shape[1], stack.shape[2]
    ds.SamplesPerPixel = 1 if grey else 3
    ds.PhotometricInterpretation = "MONOCHROME2" if grey else "RGB"
    if not grey:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if frame_time_ms is not None:
        ds.FrameTime = float(frame_time_ms)
    ds.PixelData = stack.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_tiff_stack(path, frames) -> Path:
    """``frames`` as one multi-page TIFF."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    first, *rest = [image.convert("RGB") for image in frames]
    first.save(path, format="TIFF", save_all=True, append_images=rest)
    return path


def moving_square(direction, n=8, size=64, seed=0):
    """``n`` RGB frames (size x size, black) of a white square moving one way ("left", "right", "up", "down") a few
    pixels a frame; where it starts is random (seeded), so no single frame tells the direction."""
    from PIL import Image, ImageDraw

    if direction not in ("left", "right", "up", "down"):
        raise ValueError(f"direction must be left, right, up or down, not {direction!r}")
    rng = random.Random(f"{direction}-{seed}")
    side = max(4, size // 6)
    step = max(1, (size - side) // (2 * max(n - 1, 1)))
    travel = step * (n - 1)
    span = size - side - travel  # room for the start position
    dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[direction]
    # Start so the whole path stays in the frame; the moving axis starts anywhere that allows the travel.
    x0 = rng.randint(travel if dx < 0 else 0, (size - side) if dx < 0 else max(span, 0))
    y0 = rng.randint(travel if dy < 0 else 0, (size - side) if dy < 0 else max(span, 0))
    if dx == 0:
        x0 = rng.randint(0, size - side)
    if dy == 0:
        y0 = rng.randint(0, size - side)
    frames = []
    for i in range(n):
        x, y = x0 + dx * step * i, y0 + dy * step * i
        image = Image.new("RGB", (size, size), (0, 0, 0))
        ImageDraw.Draw(image).rectangle([x, y, x + side - 1, y + side - 1], fill=(255, 255, 255))
        frames.append(image)
    return frames


def hide_pyav(monkeypatch) -> None:
    """Make `import av` fail for the rest of the test, as on a machine without the `video` extra."""
    import builtins

    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av" or name.startswith("av."):
            raise ImportError("No module named 'av'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)


# The motion task's recipe (vtc.runtime.tiny_data's data in ./motion): learnt on the CPU in 100 steps
# (tests/test_video_training.py) and through Unsloth in 300 (tests/gpu/test_video_gpu.py).
MOTION_RECIPE = """finetune all on tiny-qwen2.5-vl
using lora
from ./motion/train
evaluate on ./motion/test
ask "Which way does the square move?"
answer from column text
video 2 fps, at most 4 frames, frame size 56
lora rank 16 alpha 16
train for {steps} steps
batch 8
micro batch 8
learning rate 2e-3
warmup 0 steps
schedule constant
optimizer adamw_torch
metric exact_match
with responses_only
save to ./runs
"""


def video_settings(**changes) -> dict:
    """A plan's `video` block: Qwen-VL's defaults, small frames, multi-frame files as clips; ``changes`` replace."""
    video = {"fps": 2.0, "max_frames": 768, "min_frames": 4, "window": None,
             "resize": {"mode": "longest", "size": 56, "multiple": 28}, "temporal_patch": 2,
             "multi_frame_files": "clips"}
    video.update(changes)
    return video
