#!/usr/bin/env bash
# The gradient-quality runs of docs/results/estimators.md, exactly as launched (idempotent:
# finished runs are skipped, interrupted ones continue with --resume). From the repository root:
#
#   nohup nice -n 15 bash docs/results/estimators/run_gradient_quality.sh all \
#       > runs/estimators/gradient-quality.log 2>&1 &
#
# all:    the discrete VAE with N x K = 3 x 4 and 2 x 8 (binarized MNIST, nonlinear net, 2,000
#         exact-gradient steps, 10 test images, M = 500 estimates of S = 4 evaluations), and the
#         quadratic toy (3 x 4, M = 5,000). About 30 min of one core in all.
# report: print the markdown tables of the finished runs (pasted into the page).
# Two workers can share the queue (flock per run: a run one holds, the other skips).
set -u
export SIMPLEXITY_DATA_DIR=${SIMPLEXITY_DATA_DIR:-/work/shared/data}
SIMPLEXITY=${SIMPLEXITY:-.venv/bin/simplexity}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/estimators}
EXP=gradient-quality

go() {  # go NAME SETS...: one paper-budget run under $OUT/$EXP/NAME, resumable
    local name=$1; shift
    if [ -f "$OUT/$EXP/$name/metrics.json" ]; then echo "done: $EXP/$name"; return; fi
    local sets=(); for s in "$@"; do sets+=(--set "$s"); done
    mkdir -p "$OUT/$EXP"
    exec 9> "$OUT/$EXP/.$name.lock"
    if ! flock -n 9; then echo "busy: $EXP/$name (another worker)"; exec 9>&-; return; fi
    echo "$(date -u +%FT%TZ) start $EXP/$name"
    "$SIMPLEXITY" run "$EXP" --budget paper "${sets[@]}" --out "$OUT/$EXP" --name "$name" \
        --resume --threads 1 --no-progress 2>&1 | grep -v -e "available:" -e "^$" | tail -n 5
    echo "$(date -u +%FT%TZ) end   $EXP/$name"
    exec 9>&-
}

all() {
    go toy-3x4 model=toy num_variables=3 num_categories=4 estimates=5000 chunk=1000
    go vae-3x4 model=vae num_variables=3 num_categories=4
    go vae-2x8 model=vae num_variables=2 num_categories=8
}

report() {
    "$SIMPLEXITY" report estimators --runs "$OUT"
}

mkdir -p "$OUT"
"${1:?usage: run_gradient_quality.sh all|report}"
