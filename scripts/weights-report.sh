#!/usr/bin/env bash
# The figures a weights file is shipped on and with (issue #18 item 5; ros2_ttvos/weights/MODEL_CARD.md).
#   scripts/weights-report.sh WEIGHTS OUT_DIR holdout   # decide on these: the hold-out train sequences
#                                                      # and the multi-object benchmark made from them
#   scripts/weights-report.sh WEIGHTS OUT_DIR crowd     # the hold-out sequences' objects among copies
#                                                      # of themselves (ttvos-data multi --crowd)
#   scripts/weights-report.sh WEIGHTS OUT_DIR val       # report only, after the decision: DAVIS16 val
# Each set is tracked at internal sizes 480, 360 and 240 (SIZES to change) with OpenVINO fp32 on
# THREADS threads (default 2), with EVAL_FLAGS added to each ttvos-eval (e.g. --region-state:
# the form of the tracker to score these weights in); OUT_DIR/<set>-<size>/ keeps ttvos-eval's
# output and OUT_DIR/<mode>.md the table (J&F, J, F, identity switches, lost and spilled frames,
# frames lost on return after being hidden, FPS). WEIGHTS "shipped" means the weights in the package. Data: TRAIN_DAVIS
# (~/data/DAVIS), MULTI (~/data/multi-holdout), CROWD (~/data/crowd-holdout), VAL_DAVIS (../shared/data/DAVIS).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/weights-report.sh WEIGHTS|shipped OUT_DIR holdout|crowd|val"
weights=${1:?$usage}
out=${2:?$usage}
mode=${3:?$usage}
sizes=${SIZES:-480 360 240}
threads=${THREADS:-2}
read -r -a flags <<< "${EVAL_FLAGS:-}"
holdout=$(.venv/bin/python -c 'import yaml; print(",".join(yaml.safe_load(open("config/train.yaml"))["data"]["holdout"]))')
case $mode in
  holdout) sets=("single|--davis ${TRAIN_DAVIS:-$HOME/data/DAVIS} --split train --sequences $holdout"
                 "multi|--davis ${MULTI:-$HOME/data/multi-holdout} --year 2017 --split val") ;;
  crowd) sets=("crowd|--davis ${CROWD:-$HOME/data/crowd-holdout} --year 2017 --split val") ;;
  val) sets=("val|--davis ${VAL_DAVIS:-../shared/data/DAVIS} --year 2016 --split val") ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
chosen=()
[[ $weights == shipped ]] || chosen=(--weights "$weights")
mkdir -p "$out"
for size in $sizes; do
  for entry in "${sets[@]}"; do
    name=${entry%%|*}
    # shellcheck disable=SC2086  # the set's arguments are words
    .venv/bin/ttvos-eval ${entry#*|} "${chosen[@]}" --backend openvino --precision fp32 --threads "$threads" \
      --internal-size "$size" "${flags[@]}" --out "$out/$name-$size"
  done
done
names=$(for entry in "${sets[@]}"; do echo -n "${entry%%|*},"; done)
.venv/bin/python - "$out" "$mode" "$weights" "$names" "$sizes" "${EVAL_FLAGS:-}" <<'EOF'
import json, sys
from pathlib import Path
out, mode, weights = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
names, sizes = [n for n in sys.argv[4].split(",") if n], sys.argv[5].split()
flags = f", {sys.argv[6]}" if sys.argv[6] else ""
lines = [f"{mode}: {weights} (OpenVINO fp32{flags})", "",
         "| set | internal size | J&F | J | F | identity switches | lost | spilled | lost on return | FPS |",
         "|---|---|---|---|---|---|---|---|---|---|"]
scores = {}
for name in names:
    for size in sizes:
        s = scores[name, size] = json.loads((out / f"{name}-{size}" / "summary.json").read_text())
        lines.append(f"| {name} | {size} | {100 * s['JF_mean']:.2f} | {100 * s['J_mean']:.2f} | {100 * s['F_mean']:.2f} | "
                     f"{100 * s['id_switch_rate']:.1f} % | {100 * s['lost_rate']:.1f} % | {100 * s['spilled_rate']:.1f} % | "
                     f"{s['lost_on_return']} of {s['returned_frames']} | {s['fps']:.1f} |")
if mode == "holdout":  # what checkpoints are chosen by: the mean of the two J&F
    lines += ["", *(f"selection at {size}: {50 * (scores['single', size]['JF_mean'] + scores['multi', size]['JF_mean']):.2f}"
                    for size in sizes)]
(out / f"{mode}.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
