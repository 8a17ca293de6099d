"""DICOM: rescale slope/intercept, the window (the file's or the recipe's), MONOCHROME1 inverted, 16 bits to 8 -- and
no header text (patient name, IDs, dates) anywhere in what vtc writes or prints. Files are written with pydicom."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pydicom = pytest.importorskip("pydicom")
np = pytest.importorskip("numpy")

from click.testing import CliRunner  # noqa: E402

from runtime_helpers import recipe_plan  # noqa: E402
from vtc.cli import cli  # noqa: E402
from vtc.diagnostics import VtcError  # noqa: E402
from vtc.runtime import dicom  # noqa: E402
from vtc.runtime.images import open_image  # noqa: E402
from vtc.runtime.sources import load_rows  # noqa: E402
from vtc.runtime.validate import scan_data, validate_for_run  # noqa: E402

# Planted in every test file: none of these may appear in any output.
SECRETS = {"PatientName": "Qzxwv^Hortensia", "PatientID": "PID-7731-2209", "PatientBirthDate": "19230417",
           "StudyDate": "20190306", "AccessionNumber": "ACC99887766", "InstitutionName": "St Ygrainne Infirmary",
           "ReferringPhysicianName": "Drzewiecki^Ottoline", "StudyDescription": "CHEST PA YELLOWFINCH"}
NEEDLES = ["Qzxwv", "Hortensia", "PID-7731-2209", "19230417", "20190306", "ACC99887766", "Ygrainne", "Drzewiecki",
           "Ottoline", "YELLOWFINCH"]


def write_dicom(path: Path, stored, *, photometric="MONOCHROME1", slope=1.0, intercept=-1024.0, center=40.0,
                width=400.0) -> Path:
    """A 16-bit CT-like DICOM file with the planted patient fields."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    stored = np.asarray(stored, dtype=np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    for key, value in SECRETS.items():
        setattr(ds, key, value)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if center is not None:
        ds.WindowCenter, ds.WindowWidth = center, width
    ds.PixelData = stored.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def ramp() -> "np.ndarray":
    """Stored values on a 4 x 4 grid: -1024 HU (air), 40 HU (the window centre), 3000 stored (bone)."""
    a = np.full((4, 4), 1064, dtype=np.uint16)  # 1064 * 1 - 1024 = 40 HU
    a[0, 0] = 0  # -1024 HU
    a[3, 3] = 3000  # 1976 HU
    a[1, 1] = 1264  # 240 HU: the top of the 40/400 window
    return a


def expected(hu: float, center: float, width: float) -> int:
    """The DICOM linear window, written out independently of vtc."""
    if hu <= center - 0.5 - (width - 1) / 2:
        return 0
    if hu > center - 0.5 + (width - 1) / 2:
        return 255
    return int(round(((hu - (center - 0.5)) / (width - 1) + 0.5) * 255))


def test_rescale_window_and_monochrome1(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", ramp())
    im = open_image(path)
    assert im.mode == "RGB" and im.size == (4, 4)
    for (x, y), hu in {(0, 0): -1024, (1, 0): 40, (1, 1): 240, (3, 3): 1976}.items():
        # MONOCHROME1: the window's result inverted (low values white).
        assert im.getpixel((x, y))[0] == 255 - expected(hu, 40, 400), (x, y)
    assert im.getpixel((0, 0)) == (255, 255, 255) and im.getpixel((3, 3)) == (0, 0, 0)


def test_the_recipe_window_wins_and_monochrome2_is_not_inverted(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", ramp(), photometric="MONOCHROME2", slope=2.0, intercept=-2048.0)
    im = open_image(path, window={"center": 1000, "width": 4000})
    for (x, y), stored in {(0, 0): 0, (1, 0): 1064, (3, 3): 3000}.items():
        assert im.getpixel((x, y))[0] == expected(stored * 2.0 - 2048.0, 1000, 4000)


def test_no_window_in_the_file_uses_the_full_range(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", ramp(), photometric="MONOCHROME2", center=None)
    im = open_image(path)
    assert im.getpixel((0, 0))[0] == 0 and im.getpixel((3, 3))[0] == 255


def test_without_pydicom_the_error_says_what_to_install(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "ct.dcm", ramp())
    monkeypatch.setattr(dicom, "_pydicom", lambda: None)
    with pytest.raises(VtcError) as exc:
        open_image(path)
    d = exc.value.diagnostics[0]
    assert d.code == "VT426" and "vtc[dicom]" in d.help


def test_a_broken_dicom_never_quotes_its_header(tmp_path):
    good = write_dicom(tmp_path / "ct.dcm", ramp()).read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(good[: len(good) - 20])
    with pytest.raises(VtcError) as exc:
        open_image(cut)
    text = exc.value.diagnostics[0].message + (exc.value.diagnostics[0].help or "")
    assert exc.value.diagnostics[0].code == "VT411" and not any(n in text for n in NEEDLES)


def test_no_header_text_reaches_plans_prompts_logs_or_run_folders(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("VTC_IMAGE_CACHE", str(cache))
    data = tmp_path / "scans"
    for i in range(3):
        write_dicom(data / f"scan{i}.dcm", ramp() + i)
        (data / f"scan{i}.txt").write_text(f"finding {i}", encoding="utf-8")
    (data / "scan9.dcm").write_bytes(write_dicom(tmp_path / "x.dcm", ramp()).read_bytes()[:-30])
    (data / "scan9.txt").write_text("broken", encoding="utf-8")
    (tmp_path / "x.dcm").unlink()
    recipe = tmp_path / "ct.vt"
    recipe.write_text("finetune vision on qwen2.5-vl from ./scans window 40 400 bad rows skip\n", encoding="utf-8")
    runner = CliRunner()
    outputs = []
    for args in (["check", "--data", str(recipe)], ["check", "--data", "--format", "json", str(recipe)],
                 ["plan", str(recipe)], ["plan", "--json", str(recipe)], ["explain", str(recipe)]):
        res = runner.invoke(cli, args)
        outputs.append(res.output)
    assert "scan9.dcm" in outputs[0]  # the broken file is reported ...
    plan = json.loads(outputs[3])
    assert plan["images"]["window"] == {"center": 40, "width": 400} and plan["data"]["bad_rows"] == "skip"
    check = validate_for_run(plan, tmp_path / "run")  # ... and skipped, listed in the run folder
    assert len(check.train) == 3 and len(check.skipped) == 1
    rows = [check.train[i] for i in range(len(check.train))]
    outputs.append(json.dumps([[p.get("text") for m in r["messages"] for p in m["content"]] for r in rows]))
    outputs.append(check.train.description + check.report.table("skip"))
    outputs.append(repr([d for d in scan_data(plan).diagnostics]))
    # Every file vtc wrote: the run folder and the image cache (images carry no metadata chunks either).
    written = [p for p in list((tmp_path / "run").rglob("*")) + list(cache.rglob("*")) if p.is_file()]
    assert any(p.suffix == ".png" for p in written)
    blobs = [p.read_bytes() for p in written]
    for needle in NEEDLES:
        assert not any(needle in text for text in outputs), needle
        assert not any(needle.encode() in blob for blob in blobs), needle
    assert rows[0]["messages"][0]["content"][1]["image"].size == (512, 512)


def test_dicom_folder_loads_as_captioned_images(tmp_path):
    write_dicom(tmp_path / "d" / "a.dcm", ramp())
    (tmp_path / "d" / "a.txt").write_text("normal", encoding="utf-8")
    plan = recipe_plan(tmp_path, "from ./d", 'ask "Describe."', "resize 64", "seed 1")
    rows = load_rows(plan)
    assert len(rows) == 1 and rows.answer(0) == "normal"
    assert rows[0]["messages"][0]["content"][1]["image"].size == (64, 64)


@pytest.mark.slow
def test_a_training_run_on_dicom_leaks_nothing(tmp_path, monkeypatch, capsys):
    """The whole `vtc run` on DICOM data: nothing from the header in stdout or in any file of the run folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pytest.importorskip("torch")
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from runtime_helpers import make_plan, write_plan

    from vtc.commands import run_target

    monkeypatch.setenv("VTC_IMAGE_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "scans"
    rows = []
    for i in range(4):
        write_dicom(data / f"s{i}.dcm", ramp() * (i + 1) // 2)
        rows.append({"file_name": f"s{i}.dcm", "text": ["air", "bone"][i % 2]})
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    plan = make_plan(data, steps=2, batch=2, holdout=0.25, outputs_dir=tmp_path / "runs")
    run = run_target(str(write_plan(plan, tmp_path / "plan.json")), allow_changed=True)  # no inputs: made here
    out = capsys.readouterr()
    blobs = [p.read_bytes() for p in run.rglob("*") if p.is_file()]
    for needle in NEEDLES:
        assert needle not in out.out + out.err, needle
        assert not any(needle.encode() in blob for blob in blobs), needle


# ---- compressed pixel data: a decoder to install, not a broken file -------------------------------------------

# ITU T.81, Table K.3: the luminance DC Huffman table (categories 0-11), used here for lossless differences.
DC_BITS = (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)
DC_VALUES = tuple(range(12))


def jpeg_lossless(image) -> bytes:
    """A real lossless JPEG bitstream (T.81 process 14, selection value 1: the left neighbour predicts), 8-bit grey:
    what JPEG Lossless DICOM files hold. Checked against gdcm and pylibjpeg-libjpeg, which decode it exactly."""
    a = np.asarray(image, dtype=np.int32)
    rows, cols = a.shape
    codes, code, k = {}, 0, 0
    for length, count in enumerate(DC_BITS, start=1):
        for _ in range(count):
            codes[DC_VALUES[k]] = (code, length)
            code, k = code + 1, k + 1
        code <<= 1
    bits: list[int] = []

    def put(value: int, n: int) -> None:
        bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    for y in range(rows):
        for x in range(cols):
            pred = (128 if y == 0 else a[y - 1, 0]) if x == 0 else a[y, x - 1]
            diff = int(a[y, x]) - int(pred)
            ssss = abs(diff).bit_length()
            put(*codes[ssss])
            if ssss:
                put(diff if diff > 0 else diff + (1 << ssss) - 1, ssss)
    bits.extend([1] * (-len(bits) % 8))
    scan = bytearray()
    for i in range(0, len(bits), 8):
        scan.append(int("".join(map(str, bits[i:i + 8])), 2))
        if scan[-1] == 0xFF:
            scan.append(0)  # byte stuffing
    dht = bytes([0x00]) + bytes(DC_BITS) + bytes(DC_VALUES)
    return (b"\xff\xd8" + b"\xff\xc4" + (2 + len(dht)).to_bytes(2, "big") + dht
            + b"\xff\xc3" + (11).to_bytes(2, "big") + bytes([8]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big")
            + bytes([1, 1, 0x11, 0]) + b"\xff\xda" + (8).to_bytes(2, "big") + bytes([1, 1, 0x00, 1, 0, 0])
            + bytes(scan) + b"\xff\xd9")


def write_compressed(path: Path, frame: bytes, syntax, *, rows: int, cols: int, bits: int = 8,
                     signed: int = 0) -> Path:
    """A DICOM file whose pixel data is ``frame``, encapsulated under transfer syntax ``syntax``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    for key, value in SECRETS.items():
        setattr(ds, key, value)
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (8 if bits <= 8 else 16), bits, bits - 1, \
        signed
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def gradient():
    a = (np.add.outer(np.arange(24), np.arange(32)) * 5 % 256).astype(np.uint8)
    a[5:9, 5:9] = 255
    a[10, 3] = 0
    return a


def decoder_available(syntax) -> bool:
    from pydicom.pixels import get_decoder

    return get_decoder(syntax).is_available


def test_jpeg_lossless_needs_a_decoder_and_says_which(tmp_path):
    from pydicom.uid import JPEGLosslessSV1

    image = gradient()
    path = write_compressed(tmp_path / "ll.dcm", jpeg_lossless(image), JPEGLosslessSV1, rows=24, cols=32)
    if decoder_available(JPEGLosslessSV1):  # vtc[dicom] installed: the file decodes, exactly
        im = dicom.read_dicom(path, window={"center": 128, "width": 256})  # the identity on 0..255
        assert np.array_equal(np.asarray(im)[..., 0], image)
        return
    with pytest.raises(VtcError) as exc:
        open_image(path)
    [d] = exc.value.diagnostics
    assert d.code == "VT440"
    assert d.message == ("cannot decode ll.dcm: its pixel data is compressed as JPEG Lossless, Non-Hierarchical, "
                         "First-Order Prediction (Process 14 [Selection Value 1]) (transfer syntax "
                         "1.2.840.10008.1.2.4.70), and no decoder for it is installed: pip install 'vtc[dicom]' (it "
                         "adds python-gdcm)")
    assert d.help.startswith("pip install 'vtc[dicom]'") and "The file itself is fine" in d.help
    assert "replace" not in d.help and not any(n in d.message + d.help for n in NEEDLES)


def test_jpeg_ls_needs_a_decoder_and_says_which(tmp_path):
    """A real JPEG-LS frame (pydicom's bundled 64 x 64 MR image) in a file written here."""
    from pydicom.data import get_testdata_file
    from pydicom.encaps import generate_frames
    from pydicom.uid import JPEGLSLossless

    source = pydicom.dcmread(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
    [frame] = list(generate_frames(source.PixelData, number_of_frames=1))
    path = write_compressed(tmp_path / "ls.dcm", frame, JPEGLSLossless, rows=64, cols=64, bits=16, signed=1)
    if decoder_available(JPEGLSLossless):
        assert dicom.read_dicom(path).size == (64, 64)
        return
    with pytest.raises(VtcError) as exc:
        dicom.read_dicom(path)
    [d] = exc.value.diagnostics
    assert d.code == "VT440"
    assert "compressed as JPEG-LS Lossless Image Compression (transfer syntax 1.2.840.10008.1.2.4.80)" in d.message
    assert "pip install 'vtc[dicom]'" in d.message


def test_twelve_bit_jpeg_names_the_one_decoder_that_reads_it():
    """12-bit JPEG Extended: pillow's and gdcm's JPEG decoders refuse it (pydicom raises RuntimeError), only
    pylibjpeg-libjpeg reads it. pydicom's own 12-bit sample file."""
    from pydicom.data import get_testdata_file
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGExtended12Bit

    path = get_testdata_file("JPGExtended.dcm")
    if "pylibjpeg" in get_decoder(JPEGExtended12Bit).available_plugins:
        assert dicom.read_dicom(path).size == (256, 1024)
        return
    with pytest.raises(VtcError) as exc:
        dicom.read_dicom(path)
    [d] = exc.value.diagnostics
    assert d.code == "VT440" and "JPEG Extended" in d.message
    assert "pip install pylibjpeg pylibjpeg-libjpeg" in d.message and "vtc[dicom]" not in d.message


def test_check_data_keeps_the_decoder_advice_and_does_not_cache_it(tmp_path, monkeypatch):
    """The row diagnostic of `vtc check --data` names the decoder; and the failure is not cached, so installing the
    decoder is all it takes (the next check decodes the file)."""
    from pydicom.uid import JPEGLosslessSV1

    if decoder_available(JPEGLosslessSV1):
        pytest.skip("a JPEG Lossless decoder is installed here: nothing to report")
    cache = tmp_path / "cache"
    monkeypatch.setenv("VTC_IMAGE_CACHE", str(cache))
    data = tmp_path / "scans"
    write_compressed(data / "ll.dcm", jpeg_lossless(gradient()), JPEGLosslessSV1, rows=24, cols=32)
    (data / "ll.txt").write_text("a gradient", encoding="utf-8")
    write_dicom(data / "ct.dcm", ramp())
    (data / "ct.txt").write_text("a ramp", encoding="utf-8")
    recipe = tmp_path / "r.vt"
    recipe.write_text("finetune vision on qwen2.5-vl\nfrom ./scans\n", encoding="utf-8")
    for _ in range(2):  # the second check finds the same: nothing wrong was cached for the file
        res = CliRunner().invoke(cli, ["check", "--data", "--format", "json", str(recipe)])
        found = [d for d in json.loads(res.stdout) if d["code"] == "VT440"]
        assert len(found) == 1, res.output
        assert "ll.dcm" in found[0]["message"] and "pip install 'vtc[dicom]'" in found[0]["message"]
        assert "JPEG Lossless" in found[0]["message"]
    metas = [json.loads(p.read_text()) for p in cache.rglob("*.json") if "index" not in p.parts]
    assert metas and not any(m.get("code") == "VT440" for m in metas)  # ct.dcm is cached; ll.dcm's failure is not
    indexes = "".join(p.read_text() for p in (cache / "index").rglob("*.json")) if (cache / "index").exists() else ""
    assert "VT440" not in indexes and "ct.dcm" in indexes


def write_palette(path: Path, indices, colours) -> Path:
    """A PALETTE COLOR DICOM file: 8-bit indices into 16-bit red, green and blue tables of 256 entries."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    indices = np.asarray(indices, dtype=np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = indices.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    tables = np.zeros((3, 256), dtype=np.uint16)
    for i, rgb in enumerate(colours):
        tables[:, i] = [c * 257 for c in rgb]  # 8-bit colour -> 16-bit entry
    for name, table in zip(("Red", "Green", "Blue"), tables):
        setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{name}PaletteColorLookupTableData", table.tobytes())
    ds.PixelData = indices.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_palette_color_comes_out_in_colour(tmp_path):
    colours = [(220, 30, 30), (30, 170, 30), (30, 60, 220), (255, 255, 255)]
    indices = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    im = open_image(write_palette(tmp_path / "p.dcm", indices, colours))
    assert im.mode == "RGB"
    assert [im.getpixel((x, y)) for y in range(2) for x in range(2)] == colours
