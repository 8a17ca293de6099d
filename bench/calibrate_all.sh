#!/usr/bin/env bash
# The memory calibration of docs/gpu.md, one command on the GPU machine (about 9 minutes): builds the 3B, 7B and
# 11B shapes at once, then measures every (shape, backend, method, checkpointing) configuration at once, each in
# its own process and working folder (Unsloth writes compiled code into the working folder). Peak memory is per
# process, so running them side by side changes their speed, not their peaks. Results: $OUT/cal-*.json.
set -u
OUT=${OUT:-/tmp/cal-out}; mkdir -p "$OUT"
HERE=$(cd "$(dirname "$0")" && pwd)
LIMIT=${LIMIT:-470}   # seconds each measuring process may run (the device allows 600 a command)
python "$HERE/build_qwen3b_shape.py" --out /tmp/q3b --size 3b > "$OUT/build-3b.log" 2>&1 &
python "$HERE/build_qwen3b_shape.py" --out /tmp/q7b --size 7b > "$OUT/build-7b.log" 2>&1 &
python "$HERE/build_llama11b_shape.py" --out /tmp/l11b > "$OUT/build-11b.log" 2>&1 &
wait
measure() {  # name, then calibrate_memory.py's arguments
  local name=$1; shift
  mkdir -p "/tmp/cal-$name" && (cd "/tmp/cal-$name" && timeout "$LIMIT" python "$HERE/calibrate_memory.py" \
    --out "$OUT/cal-$name.json" "$@" > "$OUT/cal-$name.log" 2>&1; echo "$name exit $?" >> "$OUT/exits.txt") &
}
measure 3b-lora --model /tmp/q3b --registry qwen2.5-vl-3b --backend unsloth --method lora --checkpointing unsloth \
  --grid 504:1,8,32,64 --grid 1008:1,4,16
measure 7b-lora --model /tmp/q7b --registry qwen2.5-vl-7b --backend unsloth --method lora --checkpointing unsloth \
  --grid 504:1,8,32 --grid 1008:1,4,16
measure 11b-lora --model /tmp/l11b --registry llama-3.2-vision-11b --backend unsloth --method lora \
  --checkpointing unsloth --grid 560:1,8,32 --grid 1120:1,4,16
measure 3b-qlora --model /tmp/q3b --registry qwen2.5-vl-3b --backend unsloth --method qlora --checkpointing unsloth \
  --grid 504:1,8,32 --grid 1008:1,4
measure 3b-full --model /tmp/q3b --registry qwen2.5-vl-3b --backend unsloth --method full --checkpointing unsloth \
  --grid 504:1,8,32
measure 3b-lora-nockpt --model /tmp/q3b --registry qwen2.5-vl-3b --backend unsloth --method lora \
  --checkpointing false --grid 504:1,8,32 --grid 1008:1,4
measure 3b-transformers --model /tmp/q3b --registry qwen2.5-vl-3b --backend transformers --method lora \
  --checkpointing true --grid 504:1,8,32 --grid 1008:1,4
wait
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/card.txt"
tail -n 3 "$OUT"/cal-*.log
cat "$OUT/exits.txt"
