"""How long the run report takes to open with many evaluation rows: a synthetic run folder of N rows (5,000 by
default, vtc.runtime.report.synthetic_run), its report.html written (write_report), then opened from file:// in
headless Chromium (the browser and flags of tests/test_report_browser.py), timed from the navigation's start to
window.vtcReportReady === true; then one filter keystroke, timed to the gallery's data-shown settling. Prints the
file's size and the times (min and median of --runs loads, each in a fresh tab state). Asserts nothing.

    .venv/bin/python bench/report_load.py              # 5,000 rows, 5 loads
    .venv/bin/python bench/report_load.py --rows 20000 --runs 3

Needs Debian's chromium and chromium-driver and the `selenium` package (the `test` extra).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_report_browser import (find_chromium, foreign_requests, gallery_counts, open_report,  # noqa: E402
                                 start_browser)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if find_chromium()[0] is None:
        print(find_chromium()[2], file=sys.stderr)
        return 2
    from selenium.webdriver.common.by import By

    from vtc.runtime.report import synthetic_run, write_report

    with tempfile.TemporaryDirectory(prefix="vtc-report-load-") as tmp:
        t0 = time.perf_counter()
        run = synthetic_run(Path(tmp) / "run", args.rows)
        t1 = time.perf_counter()
        html = Path(write_report(run))
        t2 = time.perf_counter()
        print(f"{args.rows} rows: synthetic run {t1 - t0:.1f} s, write_report {t2 - t1:.2f} s, "
              f"report.html {html.stat().st_size / 1e6:.1f} MB")
        driver = start_browser()
        loads, filters = [], []
        try:
            for i in range(args.runs):
                driver.get("about:blank")
                loaded = open_report(driver, html, timeout=120)
                total, shown = gallery_counts(driver)
                if i == 0:
                    print(f"gallery: data-total {total}, data-shown {shown}; console errors {len(loaded['severe'])},"
                          f" requests other than the page {len(foreign_requests(loaded))}")
                loads.append(loaded["seconds"])
                box = driver.find_element(By.ID, "filter")
                started = time.perf_counter()
                box.send_keys("zqxj")
                while gallery_counts(driver)[1] != 0 and time.perf_counter() - started < 30:
                    time.sleep(0.005)
                filters.append(time.perf_counter() - started)
        finally:
            driver.quit()
    print(f"load to vtcReportReady: min {min(loads):.2f} s, median {statistics.median(loads):.2f} s "
          f"({args.runs} loads)")
    print(f"filter keystroke to data-shown 0: min {min(filters) * 1000:.0f} ms, "
          f"median {statistics.median(filters) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
