"""images.py: EXIF orientation, RGB conversion, the resize modes, and diagnostics for unreadable files."""

from __future__ import annotations

import pytest
from PIL import Image

from vtc.diagnostics import Span, VtcError
from vtc.runtime.images import open_image, standardise, target_size


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.putpixel((0, 0), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": a sideways phone photo
    path = tmp_path / "photo.jpg"
    im.save(path, exif=exif.tobytes(), quality=95)
    out = open_image(path)
    assert out.size == (20, 40)
    assert out.mode == "RGB"


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK", "1"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    im = Image.new(mode, (8, 8))
    path = tmp_path / ("x.tif" if mode in ("I;16", "CMYK") else "x.png")
    im.save(path)
    out = open_image(path)
    assert out.mode == "RGB" and out.size == (8, 8)


def test_transparency_is_composited_on_white(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(path)
    assert open_image(path).getpixel((1, 1)) == (255, 255, 255)


def test_sixteen_bit_greyscale_keeps_its_range(tmp_path):
    im = Image.new("I;16", (2, 1))
    im.putpixel((0, 0), 1000)
    im.putpixel((1, 0), 3000)
    path = tmp_path / "scan.png"
    im.save(path)
    out = open_image(path)
    assert out.getpixel((0, 0)) == (0, 0, 0) and out.getpixel((1, 0)) == (255, 255, 255)


@pytest.mark.parametrize("content,reason", [
    (b"", "empty (0 bytes)"),
    (b"this is not an image", "not an image pillow can decode"),
])
def test_unreadable_images_are_diagnostics_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(VtcError) as exc:
        open_image(path, Span("meta.jsonl", 3))
    d = exc.value.diagnostics[0]
    assert d.code == "VT411" and str(path) in d.message and reason in d.message
    assert d.span == Span("meta.jsonl", 3)


def test_truncated_png_is_a_diagnostic(tmp_path):
    path = tmp_path / "cut.png"
    Image.effect_noise((64, 64), 50).convert("RGB").save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(VtcError) as exc:
        open_image(path)
    assert exc.value.diagnostics[0].code == "VT411"


def test_missing_image_is_a_diagnostic(tmp_path):
    with pytest.raises(VtcError) as exc:
        open_image(tmp_path / "nope.png")
    assert exc.value.diagnostics[0].code == "VT410" and "nope.png" in exc.value.diagnostics[0].message


@pytest.mark.parametrize("size,resize,expected", [
    ((1000, 500), {"mode": "longest", "size": 512}, (512, 256)),
    ((500, 1000), {"mode": "longest", "size": 512}, (256, 512)),
    ((100, 50), {"mode": "longest", "size": 512}, (512, 256)),  # small images are scaled up too
    ((333, 333), {"mode": "longest", "size": 112}, (112, 112)),
    ((1000, 3), {"mode": "longest", "size": 100}, (100, 1)),  # never 0 px
    ((1000, 500), {"mode": "exact", "size": [640, 480]}, (640, 480)),
    ((1000, 500), {"mode": "none", "size": None}, (1000, 500)),
])
def test_target_sizes(size, resize, expected):
    assert target_size(size, resize) == expected
    assert standardise(Image.new("RGB", size), resize).size == expected


def test_standardise_returns_the_same_image_when_nothing_changes():
    im = Image.new("RGB", (112, 112))
    assert standardise(im, {"mode": "longest", "size": 112}) is im


def test_images_over_the_bomb_limit_are_refused_with_their_size(tmp_path):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    for (w, h), size_text in (((10_000, 10_000), "10000 x 10000 px"), ((30_000, 30_000), "900000000 pixels")):
        path = tmp_path / f"bomb-{w}.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
                         + chunk(b"IDAT", zlib.compress(b"\x00" * 8)) + chunk(b"IEND", b""))
        with pytest.raises(VtcError) as exc:
            open_image(path)
        d = exc.value.diagnostics[0]
        assert d.code == "VT425" and size_text in d.message


def test_unsupported_formats_are_named(tmp_path):
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic")
    with pytest.raises(VtcError) as exc:
        open_image(path)
    d = exc.value.diagnostics[0]
    assert d.code == "VT421" and "HEIC" in d.message and "PNG or JPEG" in d.help
