"""DICOM (.dcm) files as 8-bit images, with pydicom (the optional extra: pip install 'vtc[dicom]').

What is read, and nothing else: the pixel data and the numeric attributes needed to display it -- Rows, Columns,
BitsAllocated, PhotometricInterpretation, RescaleSlope / RescaleIntercept, WindowCenter / WindowWidth,
NumberOfFrames. Header text (patient name, IDs, dates, institution, descriptions) is never read into a value that
leaves this module: the image that comes out carries no metadata, and error messages name only the file and the
kind of problem, never a header value (an exception's text can quote the header, so it is not shown).

The steps, as a DICOM viewer does them (PS3.3 C.11.2, the VOI LUT "linear" function):

1. stored values x (16-bit, signed or not) -> modality values ``x * RescaleSlope + RescaleIntercept`` (CT:
   Hounsfield units);
2. the window (centre c, width w): the recipe's ``window c w``, else the file's first WindowCenter/WindowWidth,
   else the image's own range (min..max) -- values below ``c - w/2`` become black, above ``c + w/2`` white;
3. 8 bits: ``((v - (c - 0.5)) / (w - 1) + 0.5) * 255``, clipped to 0..255;
4. MONOCHROME1 (0 = white, used by some X-ray systems) is inverted so that bone is white as in MONOCHROME2;
5. colour (RGB / YBR) images come out as RGB; PALETTE COLOR images through their palette (pydicom's
   apply_color_lut: the stored values are indices into the file's red, green and blue tables, not grey levels);
   a multi-frame file gives its first frame to read_dicom, and all its frames to read_dicom_frames (a cine loop, as
   a clip: vtc.runtime.video), with the frame rate from FrameTime / RecommendedDisplayFrameRate / CineRate.

Compressed pixel data (JPEG Lossless, JPEG-LS, JPEG 2000, HTJ2K, 12-bit JPEG) needs a decoder plugin that pydicom
does not bring (pydicom 3 then raises RuntimeError, not ImportError): a file whose compression has no decoder here is
VT440, naming the compression, its transfer syntax and the package to install -- `pip install 'vtc[dicom]'` adds
python-gdcm (Apache-2.0), which decodes JPEG (baseline, extended 8-bit, lossless), JPEG-LS and JPEG 2000; HTJ2K needs
pylibjpeg with pylibjpeg-openjpeg, 12-bit JPEG pylibjpeg with pylibjpeg-libjpeg (GPL-3.0). RLE and deflate need
nothing. The file is fine: VT440 says so, rather than calling it broken.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from vtc.diagnostics import Span, VtcError, error

INSTALL_HELP = "install the DICOM extra: pip install 'vtc[dicom]' (it adds pydicom and the python-gdcm decoder)"
EXTRA = "pip install 'vtc[dicom]' (it adds python-gdcm)"
# pydicom's decoder plugins (pydicom.pixels.decoders) -> what pip installs for them.
PLUGIN_PACKAGES = {"gdcm": "python-gdcm", "pylibjpeg": None, "pyjpegls": "pyjpegls", "pillow": "pillow"}


def _pydicom():
    try:
        import pydicom
    except ImportError:
        return None
    return pydicom


def _needed_pydicom(path: Path, where: Span):
    """pydicom, or VtcError VT426 naming the extra to install."""
    pydicom = _pydicom()
    if pydicom is None:
        raise VtcError(error("VT426", f"{path.name} is a DICOM file, and reading DICOM needs pydicom", where,
                             help=INSTALL_HELP))
    return pydicom


def read_dicom(path: str | Path, *, window: dict | None = None, span: Span | None = None):
    """The DICOM file at ``path`` as an RGB PIL image (8 bits a channel), windowed as the module docstring says; a
    multi-frame file gives its first frame.

    Raises VtcError: VT426 (pydicom missing), VT411 (not a readable DICOM image). Messages never quote the header.
    """
    return _read(path, window, span, all_frames=False)[0][0]


def read_dicom_frames(path: str | Path, *, window: dict | None = None, span: Span | None = None):
    """Every frame of a (multi-frame, cine) DICOM file as RGB PIL images, and its frame rate (frames a second) from
    the timing attributes (frame_rate), or None when the file has none. Without a window (the recipe's or the
    file's), the clip's own range (min..max over all frames) is the window, so the frames do not flicker.

    Raises VtcError as read_dicom does. Only numbers are read: no header text leaves this module."""
    return _read(path, window, span, all_frames=True)


def dicom_clip_info(path: str | Path, *, span: Span | None = None) -> tuple[int, float | None, int, int]:
    """(frames, frames a second or None, width, height) of a DICOM file, from its header (numbers only; the pixel
    data is not decoded). Raises VtcError VT426 / VT411 as read_dicom does."""
    path = Path(path)
    where = span or Span(str(path))
    pydicom = _needed_pydicom(path, where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path), force=False, stop_before_pixels=True)
            frames = int(_number(ds.get("NumberOfFrames", 1), 1.0) or 1)
            rows, cols = int(ds.get("Rows")), int(ds.get("Columns"))
            rate = frame_rate(ds)
    except Exception as exc:  # the text may quote the header: only the type is shown
        reason = "the file is empty (0 bytes)" if path.stat().st_size == 0 else \
            f"not a readable DICOM image ({type(exc).__name__})"
        raise VtcError(error("VT411", f"cannot read DICOM file {path.name}: {reason}", where,
                             help="export the image again from the scanner or PACS, or remove the row")) from None
    return frames, rate, cols, rows


def frame_rate(ds) -> float | None:
    """Frames a second of a cine DICOM, from (in this order) FrameTime (ms between frames), RecommendedDisplayFrameRate
    or CineRate (frames a second); None when none is there or none is a positive number. Numbers only."""
    frame_time = _first(ds.get("FrameTime"))
    if frame_time is not None and frame_time > 0:
        return 1000.0 / frame_time
    for keyword in ("RecommendedDisplayFrameRate", "CineRate"):
        rate = _first(ds.get(keyword))
        if rate is not None and rate > 0:
            return float(rate)
    return None


def _read(path, window, span, *, all_frames: bool):
    """([RGB images], frame rate or None): the first frame only, or every frame (all_frames)."""
    import numpy as np
    from PIL import Image

    path = Path(path)
    where = span or Span(str(path))
    pydicom = _needed_pydicom(path, where)
    ts = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warnings can quote header values
            ds = pydicom.dcmread(str(path), force=False)
            if "PixelData" not in ds:
                raise ValueError("no pixel data")
            ts = _transfer_syntax(ds)
            missing = _no_decoder(ts, path.name)
            if missing:
                raise VtcError(error("VT440", missing[0], where, help=missing[1]))
            pixels = ds.pixel_array
            photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            slope = _number(ds.get("RescaleSlope", 1), 1.0)
            intercept = _number(ds.get("RescaleIntercept", 0), 0.0)
            file_window = (_first(ds.get("WindowCenter")), _first(ds.get("WindowWidth")))
            rate = frame_rate(ds) if all_frames else None
    except VtcError:
        raise
    except Exception as exc:  # pydicom raises many types; its text may quote the header, so only the type is shown
        if ts is not None and getattr(ts, "is_compressed", False):
            code, message, help_text = _decode_failed(ts, path.name, exc)
            raise VtcError(error(code, message, where, help=help_text)) from None
        reason = "the file is empty (0 bytes)" if path.stat().st_size == 0 else \
            f"not a readable DICOM image ({type(exc).__name__})"
        raise VtcError(error("VT411", f"cannot read DICOM file {path.name}: {reason}", where,
                             help="export the image again from the scanner or PACS, or remove the row")) from None
    stacked = frames > 1 and pixels.ndim >= 3 and not (pixels.ndim == 3 and pixels.shape[-1] in (3, 4)
                                                       and photometric.startswith(("RGB", "YBR")))
    if not stacked:
        pixels = pixels[None]
    elif not all_frames:
        pixels = pixels[:1]
    if photometric.startswith(("RGB", "YBR")):
        # pydicom 3's pixel_array already converts YBR colour to RGB.
        return [Image.fromarray(np.asarray(p, dtype=np.uint8)[..., :3], "RGB") for p in pixels], rate
    if photometric == "PALETTE COLOR":
        return [_palette(p, ds, path.name, where) for p in pixels], rate
    values = pixels.astype(np.float64) * slope + intercept
    if window is not None:
        center, width = float(window["center"]), float(window["width"])
    elif file_window[0] is not None and file_window[1] is not None and file_window[1] > 0:
        center, width = file_window
    else:
        lo, hi = float(values.min()), float(values.max())
        center, width = (lo + hi) / 2, max(hi - lo, 1.0)
    eight = to_8bit(values, center, width)
    if photometric == "MONOCHROME1":
        eight = 255 - eight
    return [Image.fromarray(e, "L").convert("RGB") for e in eight], rate


def _transfer_syntax(ds):
    """The file's transfer syntax (a pydicom UID), or None when the file does not say."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return ts if ts else None


def _compression(ts) -> str:
    """"JPEG-LS Lossless Image Compression (transfer syntax 1.2.840.10008.1.2.4.80)"."""
    name = getattr(ts, "name", "") or ""
    return f"{name} (transfer syntax {ts})" if name and name != str(ts) else f"transfer syntax {ts}"


def _install(decoder, exclude: tuple = ()) -> str | None:
    """The pip command that gives pydicom a decoder plugin for ``decoder``'s transfer syntax (vtc's extra first,
    when its python-gdcm is one of them), or None when no missing plugin would help."""
    options = {}
    for line in decoder.missing_dependencies:  # "pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1"
        plugin, _, needs = line.partition(" - requires ")
        if plugin in exclude or not needs:
            continue
        if plugin == "gdcm":
            options[plugin] = EXTRA
            continue
        packages = [PLUGIN_PACKAGES.get(p, p) or p for p in
                    (_bare(r) for r in needs.replace(" and ", ", ").split(", ")) if p != "numpy"]
        options[plugin] = "pip install " + " ".join(dict.fromkeys(packages))
    return options.get("gdcm") or next(iter(options.values()), None)


def _bare(requirement: str) -> str:
    import re

    return re.split(r"[<>=!~ ]", requirement.strip(), maxsplit=1)[0]


def _no_decoder(ts, name: str) -> tuple[str, str] | None:
    """(message, help) when ``ts`` is a compression that no installed plugin decodes; None when one does (or the
    pixel data is not compressed)."""
    if ts is None or not getattr(ts, "is_compressed", False):
        return None
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        return (f"cannot decode {name}: its pixel data is compressed as {_compression(ts)}, which pydicom cannot "
                "decode at all", "export the images uncompressed (Explicit VR Little Endian) from the scanner or PACS "
                "(the file itself may be fine)")
    if decoder.is_available:
        return None
    install = _install(decoder) or EXTRA
    return (f"cannot decode {name}: its pixel data is compressed as {_compression(ts)}, and no decoder for it is "
            f"installed: {install}",
            f"{install}, then check again; or export the images uncompressed (Explicit VR Little Endian) from the "
            "scanner or PACS. The file itself is fine")


def _decode_failed(ts, name: str, exc: Exception) -> tuple[str, str, str]:
    """(code, message, help) for compressed pixel data that the installed decoders failed on: another decoder may
    manage (VT440: pydicom's JPEG plugins in pillow and gdcm do not decode 12-bit JPEG), or the data is damaged
    (VT411)."""
    from pydicom.pixels import get_decoder

    unsupported = "does not support" in str(exc) or "not supported" in str(exc)
    try:
        decoder = get_decoder(ts)
        # "does not support": pillow's and gdcm's JPEG decoders refuse 12-bit samples; pylibjpeg's libjpeg decodes
        # them, so it is the one to suggest then.
        skip = tuple(decoder.available_plugins) + (("gdcm", "pillow") if unsupported else ())
        other = _install(decoder, exclude=skip)
    except Exception:
        other = None
    if other and unsupported:
        return ("VT440", f"cannot decode {name}: its pixel data is compressed as {_compression(ts)} in a form the "
                f"installed decoder does not handle; another decoder does: {other}",
                f"{other}, then check again; or export the images uncompressed from the scanner or PACS")
    return ("VT411", f"cannot decode {name}: its {_compression(ts)} pixel data did not decode "
            f"({type(exc).__name__}); the file may be damaged" + (f", or need another decoder ({other})" if other
                                                                    else ""),
            "export the image again from the scanner or PACS, or remove the row")


def _palette(pixels, ds, name: str, where):
    """A PALETTE COLOR image through its red, green and blue lookup tables, as RGB (8 bits a channel)."""
    import numpy as np
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pydicom.pixels import apply_color_lut

            rgb = apply_color_lut(pixels, ds)
    except Exception as exc:  # a palette missing or malformed; pydicom's text may quote the header
        raise VtcError(error("VT411", f"cannot read DICOM file {name}: a PALETTE COLOR image whose palette cannot "
                             f"be applied ({type(exc).__name__})", where,
                             help="export the image again (as RGB) from the scanner or PACS, or remove the row")
                       ) from None
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        # 16-bit table entries (the usual case): their high byte. Some writers put 8-bit values in 16-bit entries;
        # those are kept as they are.
        rgb = (rgb.astype(np.uint32) >> 8).astype(np.uint8) if rgb.max() > 255 else rgb.astype(np.uint8)
    return Image.fromarray(rgb[..., :3], "RGB")


def to_8bit(values, center: float, width: float):
    """DICOM's linear VOI function (PS3.3 C.11.2.1.2.1) from modality values to 0..255 (uint8)."""
    import numpy as np

    if width <= 1:
        out = np.where(values > center - 0.5, 255.0, 0.0)
    else:
        out = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _number(value, default: float) -> float:
    value = _first(value)
    return default if value is None else value


def _first(value) -> float | None:
    """The first number of a DICOM value (WindowCenter may hold several), or None."""
    if value is None:
        return None
    try:
        if hasattr(value, "__len__") and not isinstance(value, (str, bytes)):
            value = value[0] if len(value) else None
        return None if value is None else float(value)
    except (TypeError, ValueError, IndexError):
        return None
