"""Opening and standardising images (pillow only, no torch).

``open_image`` applies the EXIF orientation (a phone photo taken sideways comes out upright, as datasets' Image
feature and Unsloth's collator do) and converts to RGB. ``standardise`` gives every image the plan's size:

- ``{"mode": "longest", "size": N}``: the longest side becomes exactly N px, the aspect ratio kept. Smaller images
  are scaled UP as well as larger ones down, so that every image costs the same number of image tokens and the
  plan's estimates hold exactly (Unsloth's collator never upscales; vtc's `resize N` means "one standard size").
- ``{"mode": "exact", "size": [W, H]}``: exactly W x H px (the aspect ratio may change).
- ``{"mode": "none"}`` (or no resize at all): the image as it is.
- ``{"mode": "pixels", "min_pixels": A, "max_pixels": B, "multiple": M}`` (a pixel budget, `resize between A and B
  pixels`): the aspect ratio kept, each side a multiple of M px and the area within A..B, by Qwen-VL's smart_resize
  rule (``budget_size``). Qwen-VL's processor applies the same rule with its own bounds, which contain every
  budget vtc accepts, so it leaves these images as they are (one resampling, vtc's).

Resampling is Lanczos for shrinking and bicubic for enlarging (pillow's best filters for each direction).

DICOM files (``.dcm``) are read by ``vtc.runtime.dicom`` (pixel data only, never header text); a multi-page TIFF
gives its page ``frame`` (0 = the first). Images over pillow's decompression-bomb limit are refused before their
pixels are decoded (VT425, with the size), and only regular files are opened (a FIFO, a device, a /proc file: VT437).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from vtc.diagnostics import Span, VtcError, error

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".jfif", ".pbm", ".pgm",
                    ".ppm", ".dcm")
TIFF_EXTENSIONS = (".tif", ".tiff")
# Image formats people have but pillow (or vtc) cannot read: named in VT421 so that the fix is clear.
UNSUPPORTED_EXTENSIONS = {
    ".heic": "HEIC (iPhone photos)", ".heif": "HEIF", ".avif": "AVIF", ".svg": "SVG (a vector drawing)",
    ".pdf": "PDF", ".psd": "Photoshop", ".raw": "camera RAW", ".dng": "camera RAW (DNG)", ".cr2": "camera RAW (CR2)",
    ".nef": "camera RAW (NEF)", ".arw": "camera RAW (ARW)", ".jp2": "JPEG 2000", ".nii": "NIfTI",
    ".mp4": "a video", ".mov": "a video", ".avi": "a video", ".webm": "a video", ".mkv": "a video",
    ".m4v": "a video",
}
# Video files are clips (vtc.runtime.video), read through a video column / part / `videos` list, never as an image.
VIDEO_AS_IMAGE = ("it is a video, which vtc reads as a clip (a `video` column, a video part or a `videos` list), "
                  "not as an image")


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def unsupported_reason(path: str | Path) -> str | None:
    """Why vtc cannot use this file as an image (a format it does not read), or None."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return None
    if UNSUPPORTED_EXTENSIONS.get(suffix) == "a video":
        return VIDEO_AS_IMAGE
    if suffix in UNSUPPORTED_EXTENSIONS:
        return f"{UNSUPPORTED_EXTENSIONS[suffix]} files are not supported"
    return f"`{suffix or Path(path).name}` is not an image format vtc reads"


def unsupported_help(path: str | Path) -> str:
    """VT421's help for a file vtc does not read as an image: a video goes where clips go (docs/video.md)."""
    if UNSUPPORTED_EXTENSIONS.get(Path(path).suffix.lower()) == "a video":
        return ("list it as a clip instead: a `video` column (imagefolder, tables), a {\"type\": \"video\"} part, or a "
                "`videos` list (docs/video.md), with a model that reads video (Qwen2-VL, Qwen2.5-VL); or remove the "
                "row")
    return "convert it to PNG or JPEG, or remove the row that lists it"


def not_regular(path: str | Path) -> str | None:
    """Why ``path`` is not opened as an image file when it exists but is not a regular file (a FIFO, a device, a
    socket, a folder, a file of /proc, /sys, /dev: vtc.confine's rule), else None (a regular file, or nothing)."""
    import os

    from vtc.confine import confine

    if not os.path.exists(path):
        return None
    return confine(path, None)


def frame_count(path: str | Path) -> int:
    """Pages of a (multi-page) TIFF, 1 for any other image; 0 when the file cannot be read."""
    from PIL import Image

    if not_regular(path):
        return 0
    try:
        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1) or 1)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return 0


def bomb_problem(size: tuple[int, int]) -> str | None:
    """The VT425 reason when an image of ``size`` is over pillow's decompression-bomb limit, else None."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    w, h = size
    if limit and w * h > limit:
        return (f"{w} x {h} px = {w * h:,} pixels, over the safe limit of {limit:,} pixels (a decompression bomb "
                "or a huge scan); it was not decoded")
    return None


def open_image(path: str | Path, span: Span | None = None, *, frame: int = 0, window: dict | None = None):
    """The image at ``path`` as an RGB PIL image, EXIF orientation applied and fully decoded.

    ``frame``: the page of a multi-page TIFF; ``window``: the DICOM window ({"center", "width"}) for .dcm files.
    Raises VtcError VT410 (missing), VT411 (unreadable), VT421 (unsupported format) or VT425 (too large) naming
    the file (and ``span``, the data row, if given).
    """
    from PIL import Image

    path = Path(path)
    where = span or Span(str(path))
    special = not_regular(path)
    if special:  # a FIFO would block for ever, a device fill the memory: never opened
        raise VtcError(error("VT437", f"cannot read image {path}: {special}", where,
                             help="replace it with a regular image file, or remove the row that lists it"))
    if not path.is_file():
        raise VtcError(error("VT410", f"image file not found: {path}", where,
                             help="check the file name, or remove the row that lists it"))
    if path.suffix.lower() == ".dcm":
        from vtc.runtime.dicom import read_dicom

        return read_dicom(path, window=window, span=where)
    unsupported = unsupported_reason(path)
    if unsupported and path.suffix:
        raise VtcError(error("VT421", f"cannot use {path.name}: {unsupported}", where,
                             help=unsupported_help(path)))
    try:
        with warnings.catch_warnings():
            # Between 1x and 2x pillow's limit, open() only warns: bomb_problem() below refuses those with their
            # size before any pixel is decoded; over 2x, open() raises DecompressionBombError.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                bomb = bomb_problem(im.size)
                if bomb:
                    raise VtcError(error("VT425", f"refused to open {path.name}: {bomb}", where,
                                         help="shrink the image below the limit, or remove the row that lists it"))
                im = decoded_frame(im, frame)
    except Image.DecompressionBombError as exc:
        raise VtcError(error("VT425", f"refused to open {path.name}: {_reason(exc, path)}", where,
                             help="shrink the image below the limit, or remove the row that lists it")) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning, EOFError) as exc:
        raise VtcError(error(
            "VT411", f"cannot read image {path}: {_reason(exc, path)}", where,
            help="replace the file with a valid PNG or JPEG, or remove the row that lists it",
        )) from None
    return im


def decoded_frame(im, frame: int = 0):
    """Page ``frame`` of an open image, decoded: EXIF orientation applied, RGB, detached from the file."""
    from PIL import ImageOps

    if frame:
        im.seek(frame)
    im = ImageOps.exif_transpose(im)
    if im.mode != "RGB":
        return _to_rgb(im)
    im.load()
    return im.copy()


def _to_rgb(im):
    """RGB for every mode: transparency composited on white (a black background would invent content)."""
    from PIL import Image

    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale (scans, TIFFs): stretch the used range to 8 bits instead of clipping at 255.
        im = im.convert("I")
        lo, hi = im.getextrema()
        scale = 255.0 / (hi - lo) if hi > lo else 1.0
        im = im.point(lambda v: (v - lo) * scale).convert("L")
    return im.convert("RGB")


EMPTY_FILE = "the file is empty (0 bytes)"


def is_empty(path: Path) -> bool:
    """Whether the file at ``path`` has no bytes (the likeliest reason a decoder failed); False when it is gone."""
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def _reason(exc: BaseException, path: Path) -> str:
    if is_empty(path):
        return EMPTY_FILE
    from PIL import Image

    if isinstance(exc, (Image.DecompressionBombWarning, Image.DecompressionBombError)):
        return f"the image is too large to open safely ({exc}); it was not decoded"
    text = str(exc) or type(exc).__name__
    if "cannot identify image file" in text:
        return "not an image pillow can decode (wrong format or a corrupt file)"
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        return "the file is truncated"
    return text


def target_size(size: tuple[int, int], resize: dict) -> tuple[int, int]:
    """The (width, height) that ``standardise`` gives an image of ``size`` (``resize``: the plan's images.resize)."""
    w, h = size
    mode = resize["mode"]
    if mode == "none":
        return w, h
    if mode == "exact":
        tw, th = resize["size"]
        return int(tw), int(th)
    if mode == "longest":
        n = int(resize["size"])
        if w >= h:
            return n, max(1, round(h * n / w))
        return max(1, round(w * n / h)), n
    if mode == "pixels":
        return budget_size(w, h, int(resize["multiple"]), int(resize["min_pixels"]), int(resize["max_pixels"]))
    raise ValueError(f"unknown resize mode {mode!r}")


def budget_size(width: int, height: int, multiple: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(width, height) under a pixel budget: Qwen-VL's smart_resize rule (qwen_vl_utils, transformers'
    Qwen2VLImageProcessor). Each side rounded to a multiple of ``multiple``; if the area is then above
    ``max_pixels`` both sides scale down by the square root of the excess (rounded down to the multiple), if below
    ``min_pixels`` up (rounded up). Unlike Qwen's, a very long and thin image (one side held at one multiple) gets its
    long side cut back so that the area stays within ``max_pixels``, instead of an error or an oversized image.
    The compiler's estimates follow the same rule (vtc.registry.smart_resize); tests/test_pixels.py compares the
    two."""
    from vtc.registry import smart_resize

    m = multiple
    w_bar, h_bar = smart_resize(width, height, m, min_pixels, max_pixels)
    if h_bar * w_bar > max_pixels:  # a thin image: the short side is one multiple, the long one carries the area
        if h_bar <= w_bar:
            w_bar = max(m, max_pixels // h_bar // m * m)
        else:
            h_bar = max(m, max_pixels // w_bar // m * m)
    return w_bar, h_bar


def standardise(image, resize: dict):
    """The image at the plan's standard size (see the module docstring for the modes)."""
    from PIL import Image

    new = target_size(image.size, resize)
    if new == image.size:
        return image
    shrink = new[0] * new[1] < image.size[0] * image.size[1]
    return image.resize(new, Image.Resampling.LANCZOS if shrink else Image.Resampling.BICUBIC)
