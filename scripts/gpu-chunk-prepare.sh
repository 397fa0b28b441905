#!/usr/bin/env bash
# Make .carry/ for a lent GPU's chunk of the run (docs/training.md): the pack's DAVIS part (the
# hold-out sequences' masks without their videos: a chunk never checks them), one stills shard (by
# default the one the run's step points at, so that chunks rotate through them) and the
# efficientnet_lite_pytorch code (the network's architecture; the lent machine has torch but not
# this package). Prints what will travel and checks it fits the 64 MiB a call carries.
#   scripts/gpu-chunk-prepare.sh PACK_DIR [SHARD]
set -euo pipefail
cd "$(dirname "$0")/.."
pack=${1:?usage: scripts/gpu-chunk-prepare.sh PACK_DIR [SHARD]}
shards=("$pack"/stills/shard-*.tar)
step=$(python3 -c 'import json; print(json.load(open("runs/v2/run.json"))["step"])' 2>/dev/null || echo 0)
shard=${2:-$(( step / 1000 % ${#shards[@]} ))}
rm -rf .carry && mkdir -p .carry/pack/davis .carry/pack/stills .carry/site
cp "$pack/pack.json" .carry/pack/
holdout=" $(.venv/bin/python -c 'import yaml; print(" ".join(yaml.safe_load(open("config/gpu-chunk.yaml"))["data"]["holdout"]))') "
for file in "$pack"/davis/*; do
  name=$(basename "$file")
  [[ $name == *.mp4 && $holdout == *" ${name%.mp4} "* ]] || cp "$file" .carry/pack/davis/
done
cp "$(printf '%s/stills/shard-%03d.tar' "$pack" "$shard")" .carry/pack/stills/
site=$(.venv/bin/python -c 'import efficientnet_lite_pytorch, os; print(os.path.dirname(efficientnet_lite_pytorch.__file__))')
cp -r "$site" .carry/site/
find .carry -name __pycache__ -prune -exec rm -rf {} +
tree_bytes=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carry_bytes=$(du -sb .carry | cut -f1)
total=$(( tree_bytes + carry_bytes ))
echo "shard $shard of ${#shards[@]}; working tree $(( tree_bytes / 1048576 )) MiB + .carry $(( carry_bytes / 1048576 )) MiB = $(( total / 1048576 )) MiB"
if (( total > 64 * 1048576 )); then echo "over the 64 MiB a device call carries" >&2; exit 1; fi
