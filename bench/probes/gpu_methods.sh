#!/usr/bin/env bash
# Probe on the GPU machine: `using qlora` (4-bit through bitsandbytes) and `using full` through the Unsloth backend,
# on the tiny Qwen2.5-VL and the shapes demo data, 20 steps each, both at once. Logs go to $OUT.
# Run from the repo root with the site packages on PYTHONPATH (docs/gpu.md).
set -u
work=$(mktemp -d)
cp -r recipes/data "$work/data"
for method in qlora full; do
  sed -e "s/^using lora/using $method/" -e 's/^train for 80 steps/train for 20 steps/' \
      -e "s|^save to .*|save to ./runs-$method|" recipes/demo-shapes.vt > "$work/$method.vt"
  [ "$method" = full ] && sed -i 's/^learning rate 2e-3.*/learning rate 1e-4/; s/^lora rank.*//' "$work/$method.vt"
done
for method in qlora full; do
  (cd "$work" && VTC_CACHE="$work/cache-$method" timeout 420 python -m vtc run "$method.vt" --backend unsloth \
     > "$OUT/$method.log" 2>&1; echo "exit $?" >> "$OUT/$method.log") &
done
wait
for method in qlora full; do echo "== $method"; tail -25 "$OUT/$method.log"; done
