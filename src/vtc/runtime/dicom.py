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
5. colour (RGB / YBR) images come out as RGB; a multi-frame file gives its first frame.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from vtc.diagnostics import Span, VtcError, error

INSTALL_HELP = "install the DICOM extra: pip install 'vtc[dicom]' (it adds pydicom)"


def _pydicom():
    try:
        import pydicom
    except ImportError:
        return None
    return pydicom


def read_dicom(path: str | Path, *, window: dict | None = None, span: Span | None = None):
    """The DICOM file at ``path`` as an RGB PIL image (8 bits a channel), windowed as the module docstring says.

    Raises VtcError: VT426 (pydicom missing), VT411 (not a readable DICOM image). Messages never quote the header.
    """
    import numpy as np
    from PIL import Image

    path = Path(path)
    where = span or Span(str(path))
    pydicom = _pydicom()
    if pydicom is None:
        raise VtcError(error("VT426", f"{path.name} is a DICOM file, and reading DICOM needs pydicom", where,
                             help=INSTALL_HELP))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warnings can quote header values
            ds = pydicom.dcmread(str(path), force=False)
            if "PixelData" not in ds:
                raise ValueError("no pixel data")
            pixels = ds.pixel_array
            photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            slope = _number(ds.get("RescaleSlope", 1), 1.0)
            intercept = _number(ds.get("RescaleIntercept", 0), 0.0)
            file_window = (_first(ds.get("WindowCenter")), _first(ds.get("WindowWidth")))
    except VtcError:
        raise
    except ImportError:
        # Compressed pixel data (JPEG 2000, JPEG-LS) needs a pixel-data handler such as pylibjpeg.
        raise VtcError(error("VT411", f"cannot decode the pixel data of {path.name}: it is compressed in a way "
                             "that needs an extra decoder", where,
                             help="pip install pylibjpeg pylibjpeg-openjpeg, or export the images uncompressed"))
    except Exception as exc:  # pydicom raises many types; its text may quote the header, so only the type is shown
        reason = "the file is empty (0 bytes)" if path.stat().st_size == 0 else \
            f"not a readable DICOM image ({type(exc).__name__})"
        raise VtcError(error("VT411", f"cannot read DICOM file {path.name}: {reason}", where,
                             help="export the image again from the scanner or PACS, or remove the row")) from None
    if frames > 1 and pixels.ndim >= 3 and not (pixels.ndim == 3 and pixels.shape[-1] in (3, 4)
                                                 and photometric.startswith(("RGB", "YBR"))):
        pixels = pixels[0]
    if photometric.startswith(("RGB", "YBR")):
        # pydicom 3's pixel_array already converts YBR colour to RGB.
        return Image.fromarray(np.asarray(pixels, dtype=np.uint8)[..., :3], "RGB")
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
    return Image.fromarray(eight, "L").convert("RGB")


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
