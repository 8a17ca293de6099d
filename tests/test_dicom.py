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
    run = run_target(str(write_plan(plan, tmp_path / "plan.json")))
    out = capsys.readouterr()
    blobs = [p.read_bytes() for p in run.rglob("*") if p.is_file()]
    for needle in NEEDLES:
        assert needle not in out.out + out.err, needle
        assert not any(needle.encode() in blob for blob in blobs), needle
