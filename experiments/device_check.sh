#!/usr/bin/env bash
# The GPU check of issue 23, as one script: installs what the device image lacks from carried
# wheels, then runs experiments/benchmark.py's GPU sections within a time budget (8 minutes by
# default) and writes one JSON.
#
#   # on a lent GPU machine, from the repository root (wheels carried under shared/wheels):
#   bash experiments/device_check.sh --wheels=shared/wheels --weights=shared/weights/bvlc_googlenet.caffemodel
#   # anywhere, on CPU, tiny sizes: checks the script end to end in a minute or two
#   bash experiments/device_check.sh --dry_run --weights=../shared/weights/bvlc_googlenet.caffemodel
#
# What it measures (each a benchmark section, see experiments/benchmark.py):
#   grid       image-steps/s of the paper's atlas grid, 196 positions x 4 seeds of inception_4c/5x5
#              at 224 px (zipser2015), float32 and bfloat16; XLA's FLOPs and the share of the
#              H100/H200's peak; peak device memory; the atlas's 2,000 steps extrapolated
#   flops, grad, compile
#              the CPU headline ratios, measured on the GPU too
#   peer       Lucent's render_vis on the same GPU for the same work (needs the bench wheels:
#              torch, torch-lucent, kornia==0.4.1, ...; skipped if they are not installed)
#   atlas      the full 4c/5x5 position atlas (196 positions x 4 starts x 2,000 steps) with
#              whatever budget is left, if it fits (killed at the deadline otherwise)
# Every step is under `timeout`; one that fails or times out is recorded, not fatal.
#
# Flags:
#   --dry_run          CPU, tiny sizes, no install; output in a temp dir unless --out is given
#   --wheels=DIR       wheel directory for `pip install --no-index --find-links=DIR` (default
#                      shared/wheels, then $WHEELS); missing: nothing is installed
#   --weights=SRC      anything rfspec.load_params accepts (default $RFSPEC_WEIGHTS, then
#                      shared/weights/bvlc_googlenet.caffemodel)
#   --budget_s=N       total seconds for the measurements (default 480)
#   --out=DIR          where the JSONs go (default $OUT if set, else experiments/results)
set -u

cd "$(dirname "$0")/.."
DRY=0
WHEELS="${WHEELS:-shared/wheels}"
WEIGHTS="${RFSPEC_WEIGHTS:-shared/weights/bvlc_googlenet.caffemodel}"
BUDGET=480
OUTDIR="${OUT:-experiments/results}"
OUT_SET=0
for arg in "$@"; do
  case "$arg" in
    --dry_run) DRY=1 ;;
    --wheels=*) WHEELS="${arg#*=}" ;;
    --weights=*) WEIGHTS="${arg#*=}" ;;
    --budget_s=*) BUDGET="${arg#*=}" ;;
    --out=*) OUTDIR="${arg#*=}"; OUT_SET=1 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $arg (see --help)" >&2; exit 1 ;;
  esac
done
if [ "$DRY" = 1 ] && [ "$OUT_SET" = 0 ] && [ -z "${OUT:-}" ]; then
  OUTDIR="$(mktemp -d -t rfspec-device-check-XXXXXX)"
fi
mkdir -p "$OUTDIR"
PY="${PYTHON:-python}"
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then PY=.venv/bin/python; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
LOG="$OUTDIR/device_check.log"
: > "$LOG"
say() { echo "[device_check $(( $(date +%s) - START ))s] $*" | tee -a "$LOG" >&2; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# 1. Install what the image lacks, from carried wheels only (the machine has no network).
if [ "$DRY" = 0 ]; then
  if [ -d "$WHEELS" ]; then
    say "installing from $WHEELS"
    "$PY" -m pip install --no-index --find-links="$WHEELS" -q "$WHEELS"/*.whl >>"$LOG" 2>&1 \
      || say "pip install from $WHEELS failed (see $LOG); going on with what is installed"
  else
    say "no wheel directory $WHEELS: nothing installed"
  fi
fi
"$PY" -c "import jax; print('jax', jax.__version__, jax.devices())" 2>&1 | tee -a "$LOG" >&2

# 2. The benchmark's sections, each under its own share of the budget.
if [ "$DRY" = 1 ]; then
  TINY=(--repeats=1 --step_size=48 --step_batch=2 --tap=conv2/3x3 --flops_tap=conv2/3x3
        --flops_grid=2,1 --flops_steps=2 --matmul_size=128 --compile_steps=2 --throughput_taps=conv1/7x7_s2,conv2/3x3
        --throughput_grid=1,2 --throughput_steps=3 --scale_grid=2,1 --scale_steps=2 --peer_steps=2 --peer_batch=1)
  # One process: the dry run checks the plumbing (and is tests/experiments/benchmark_test.py's check
  # of every speed section's JSON).
  SECTIONS=(grid,flops,grad,compile,throughput)
else
  TINY=(--repeats=3 --scale_grid=196,4 --scale_steps=50 --flops_grid=196,4 --flops_steps=50 --step_batch=16
        --throughput_grid=14,4 --throughput_steps=20 --peer_batch=16 --peer_steps=16)
  SECTIONS=(grid flops grad compile throughput peer)
fi
# Seconds each section may take, out of the budget (the atlas gets the rest).
declare -A SHARE=([grid]=150 [flops]=60 [grad]=45 [compile]=90 [throughput]=60 [peer]=45)
if [ "$DRY" = 1 ]; then SHARE=([grid,flops,grad,compile,throughput]=1500); BUDGET=$((BUDGET > 1800 ? BUDGET : 1800)); fi
PARTS=()
for section in "${SECTIONS[@]}"; do
  t=${SHARE[$section]}
  if [ "$(left)" -lt 20 ]; then say "out of budget before $section"; break; fi
  if [ "$t" -gt "$(left)" ]; then t=$(left); fi
  say "section $section (at most ${t}s)"
  timeout --kill-after=10 "$t" "$PY" -m experiments.benchmark --weights="$WEIGHTS" --sections="$section" "${TINY[@]}" \
      >"$OUTDIR/device_check_${section//,/_}.json" 2>>"$LOG"
  rc=$?
  if [ $rc -ne 0 ]; then say "section $section: exit $rc"; rm -f "$OUTDIR/device_check_${section//,/_}.json";
  else PARTS+=("$OUTDIR/device_check_${section//,/_}.json"); fi
done

# 3. The full atlas, if the rest of the budget holds it.
ATLAS_RC=skipped
ATLAS_CFG=(--config=experiments/configs/position_atlas.py)
# The dry run's atlas only checks that the binary runs here: the quick config, shrunk further.
if [ "$DRY" = 1 ]; then ATLAS_CFG=(--config=experiments/configs/position_atlas.py:quick --config.tap=conv2/3x3
                                    "--config.vis.image_hw=(32, 32)" --config.lattice=2); fi
if [ "$(left)" -gt 30 ]; then
  say "atlas (${ATLAS_CFG[*]}, at most $(left)s)"
  a0=$(date +%s)
  timeout --kill-after=10 "$(left)" "$PY" -m experiments.position_atlas --weights="$WEIGHTS" "${ATLAS_CFG[@]}" \
      --workdir="$OUTDIR/device_check_atlas" >>"$LOG" 2>&1
  ATLAS_RC=$?
  ATLAS_S=$(( $(date +%s) - a0 ))
fi

# 4. One JSON: every section's report merged, plus what ran and what did not.
"$PY" - "$OUTDIR" "$ATLAS_RC" "${ATLAS_S:-0}" "$DRY" "${PARTS[@]}" <<'EOF'
import json, os, sys
out, atlas_rc, atlas_s, dry, parts = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "1", sys.argv[5:]
merged = {"dry_run": dry, "sections_run": [], "atlas": {"exit": atlas_rc, "seconds": atlas_s}}
for path in parts:
  text = open(path).read().strip().splitlines()
  if not text:
    continue
  report = json.loads(text[-1])
  merged["sections_run"] += report.pop("sections", [])
  for key, value in report.items():
    merged.setdefault(key, value)
    if key.startswith("load_average"):
      merged.setdefault(f"{key}_by_section", []).append(value)
name = "device_check_dry_run.json" if dry else "benchmark_gpu.json"
with open(os.path.join(out, name), "w") as f:
  json.dump(merged, f, indent=1)
print(os.path.join(out, name))
EOF
say "done in $(( $(date +%s) - START ))s; JSON and log in $OUTDIR"
