"""The picture of the run report in the docs: docs/report.png, a screenshot of the demo run's report.html in
headless Chromium (the same browser and flags as tests/test_report_browser.py).

    .venv/bin/python bench/report_screenshot.py                 # runs recipes/demo-shapes.vt (CPU, about a minute)
    .venv/bin/python bench/report_screenshot.py --run RUN_DIR   # a run folder you have already (its report.html,
                                                                # or `vtc report` makes one)

Needs Debian's chromium and chromium-driver and the `selenium` package (the `test` extra). Writes --out
(docs/report.png by default) only when the screenshot is not blank (many colours, no single colour on most pixels).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from test_report_browser import find_chromium, open_report, pixel_variety, start_browser  # noqa: E402


def report_of(run: Path) -> Path:
    html = run / "report.html"
    if not html.exists():
        from vtc.runtime.report import write_report

        html = Path(write_report(run))
    return html


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="a run folder (default: run recipes/demo-shapes.vt into a temp folder)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "report.png")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1500)
    args = ap.parse_args()
    if find_chromium()[0] is None:
        print(find_chromium()[2], file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="vtc-report-shot-") as tmp:
        run = args.run
        if run is None:
            from vtc.commands import run_target

            run = run_target(str(ROOT / "recipes" / "demo-shapes.vt"), runs_dir=str(Path(tmp) / "runs"))
        html = report_of(Path(run))
        driver = start_browser(args.width, args.height)
        try:
            loaded = open_report(driver, html)
            shot = Path(tmp) / "report.png"
            driver.save_screenshot(str(shot))
        finally:
            driver.quit()
        colours, top = pixel_variety(shot)
        print(f"{html}: ready in {loaded['seconds']:.2f} s, {len(loaded['severe'])} console errors, "
              f"{colours} colours, the most frequent on {top:.0%} of the pixels")
        if colours <= 50 or top >= 0.97:
            print("the screenshot looks blank: not written", file=sys.stderr)
            return 1
        args.out.write_bytes(shot.read_bytes())
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
