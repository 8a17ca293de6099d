"""How busy the GPU is: nvidia-smi's utilization.gpu every 250 ms, each sample stamped (time.time()) on arrival.

    sampler = BusySampler()
    ...                                   # the work, noting time.time() where a window starts and ends
    sampler.between(t0, t1)               # {"mean_percent": 82.3, "samples": 20}
    sampler.stop()

utilization.gpu is the share of the sample period in which a kernel ran (NVIDIA's definition), so it says whether
the GPU waited on the host, not how well the kernels use the chip. Without nvidia-smi the sampler records nothing.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import threading
import time


class BusySampler:
    def __init__(self, period_ms: int = 250) -> None:
        self.samples: list[tuple[float, int]] = []
        self.proc = None
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms",
                 str(period_ms)], stdout=subprocess.PIPE, text=True)
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.samples.append((time.time(), int(line.strip().split()[0])))
            except (ValueError, IndexError):
                pass

    def between(self, t0: float, t1: float) -> dict:
        inside = [u for t, u in self.samples if t0 <= t <= t1]
        return {"mean_percent": round(statistics.mean(inside), 1) if inside else None, "samples": len(inside)}

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
