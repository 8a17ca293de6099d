#!/usr/bin/env bash
# First call on the GPU machine: environment facts, Unsloth's API on a tiny Qwen2.5-VL, and stack (b) of the
# benchmark. Run from the repo root after unpacking .gpu/site.tar.xz into PYTHONPATH (docs/gpu.md).
# Everything lands in $R and is packed into $OUT/probe.tgz at the end (the device returns at most 8 files).
# Each part has its own time limit so that one hang cannot eat the call.
set -u
ROOT=$PWD; W=/tmp/vtc-probe; R=$W/results; mkdir -p $R
nvidia-smi > $R/env.txt 2>&1
python - >> $R/env.txt 2>&1 <<'PY'
import importlib, sys
print(sys.version)
for m in ["torch", "torchvision", "transformers", "peft", "trl", "datasets", "accelerate", "bitsandbytes", "triton", "torchao"]:
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as e:
        print(m, "MISSING", type(e).__name__, e)
PY
DEADLINE=$(( $(date +%s) + ${PROBE_BUDGET:-560} ))
# t NAME SECONDS CMD...: run CMD with a limit of SECONDS, cut to what is left before DEADLINE.
t() {
  local name=$1 s=$2; shift 2; local left=$(( DEADLINE - $(date +%s) ))
  (( left < s )) && s=$left
  if (( s < 10 )); then echo "$name skipped (no time left)" | tee -a $R/summary.txt; return; fi
  local t0=$(date +%s.%N); timeout $s "$@" > $R/$name.log 2>&1
  echo "$name rc=$? $(python -c "import time;print(round(time.time()-$t0,1))")s" | tee -a $R/summary.txt
}

t build_tiny 60 python bench/build_qwen3b_shape.py --out $W/tiny --size tiny
python bench/make_dataset.py --out $W/data --rows 32 --size 504 >/dev/null
t lora_fp32 150 python bench/probe_unsloth.py --mode lora --dtype float32 --model $W/tiny --data $W/data --out $R/lora_fp32.json --work $W/p32
t plain_fp32 60 python bench/probe_unsloth.py --mode plain --dtype float32 --model $W/tiny --data $W/data --out $R/plain_fp32.json --work $W/p32
t lora_bf16 120 python bench/probe_unsloth.py --mode lora --dtype bfloat16 --optim adamw_8bit --model $W/tiny --data $W/data --out $R/lora_bf16.json --work $W/pbf
if [ "${SKIP_3B:-0}" != 1 ]; then
  t build_3b 120 python bench/build_qwen3b_shape.py --out $W/q3b --size 3b
  python bench/make_dataset.py --out $W/d3b --rows 128 --size 504 >/dev/null
  cd $W; export BENCH_T_LAUNCH=$(date +%s.%N) BENCH_RESULT=$R/b.json
  t b_notebook 240 python $ROOT/bench/timed.py $ROOT/bench/notebook_baseline.py --model $W/q3b --data $W/d3b --steps 20 --info $R/b_info.json
  unset BENCH_RESULT; cd $ROOT
fi
t full_bf16 100 python bench/probe_unsloth.py --mode full --dtype bfloat16 --model $W/tiny --data $W/data --out $R/full_bf16.json --work $W/pfull
du -sh unsloth_compiled_cache $W/* 2>/dev/null >> $R/summary.txt
tar -czf $OUT/probe.tgz -C $W results
cat $R/summary.txt
