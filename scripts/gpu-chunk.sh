#!/usr/bin/env bash
# One lent GPU's chunk of the run (docs/training.md), run on that machine from the repository
# root with .carry/ made by scripts/gpu-chunk-prepare.sh: resumes from runs/v2, trains on CUDA
# in bf16 for MINUTES (default 8), writes the travelling copy to $OUT/run (parts <= 16 MiB).
# Back here: .venv/bin/ttvos-train --merge <fetched>/run   (then commit runs/v2)
#   scripts/gpu-chunk.sh [MINUTES] [DEVICE]     (DEVICE cpu to try it here: OUT=/tmp/x ... 1 cpu)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-8}
device=${2:-cuda:0}
out=${OUT:?set OUT to the output folder}
mkdir -p "$out"
python=python3
[ -x .venv/bin/python ] && [ "$device" = cpu ] && python=.venv/bin/python
export PYTHONPATH="$PWD:$PWD/.carry/site" OMP_WAIT_POLICY=PASSIVE
start=$($python -c 'import json; print(json.load(open("runs/v2/run.json"))["step"])')
$python -m ros2_ttvos.train --config config/gpu-chunk.yaml --device "$device" --merge runs/v2
$python -m ros2_ttvos.train --config config/gpu-chunk.yaml --device "$device" --resume --minutes "$minutes" \
  --travel-dir "$out/run" 2>&1 | tee "$out/train.log" | { grep -v 'train:' || true; }
$python - "$out/run" "$start" <<'PY' | tee "$out/chunk.txt"
import csv, gzip, io, sys
log = gzip.decompress(open(sys.argv[1] + "/log.csv.gz", "rb").read()).decode()
rows = [r for r in csv.DictReader(io.StringIO(log)) if int(r["step"]) > int(sys.argv[2])]
median = lambda key: sorted(float(r[key]) for r in rows)[len(rows) // 2]  # noqa: E731
print(f"chunk: steps {sys.argv[2]}-{rows[-1]['step']} in {len(rows)} optimizer steps, median"
      f" {median('frames_per_s'):.1f} frames/s, waiting for data {100 * median('data_wait_share'):.0f} %")
PY
grep -h "peak GPU memory\|out of memory" "$out/train.log" | tee -a "$out/chunk.txt"
