#!/usr/bin/env bash
# Run the GPU tests on the GPU machine and pack their logs into $OUT (see docs/gpu.md). From the repo root, after
# the site packages are on PYTHONPATH.
set -u
L=/tmp/vtc-gpu-logs; mkdir -p $L
export VTC_GPU_LOGS=$L VTC_GPU_TIMEOUT=${VTC_GPU_TIMEOUT:-330}
timeout ${PYTEST_BUDGET:-560} python -m pytest tests/gpu -v -s -rA -p no:cacheprovider 2>&1 | tee $L/pytest.txt
tar -czf $OUT/gpu-tests.tgz -C $L .
