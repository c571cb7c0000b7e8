#!/usr/bin/env bash
# The MNIST discrete-VAE table of docs/results/estimators.md: every estimator and relaxation on the
# igr-vae experiment (dynamically binarized MNIST, nonlinear net, Adam, batch 100, test IW bound of
# the discrete model), 3 seeds, one shared step budget, each method's temperature chosen on the
# validation split with a grid extended until the best value is strictly inside it.
# Idempotent:
# finished runs are skipped, interrupted ones continue with --resume; two workers can share the
# queue (flock per run). From the repository root:
#
#   nohup nice -n 19 bash docs/results/estimators/run_vae.sh all > runs/estimators/vae.log 2>&1 &
#
# select:  temperature selection (igr-vae budget `select`: 3,000 steps, valid/iw_bound with S = 200
#          on 2,000 validation images) for every configuration and method; a best value on the
#          grid's edge extends the grid by one point (x1.5 up, /1.5 down), at most 3 times, and
#          the method is reported as unresolved if it is still on the edge.
# train:   the selected temperature, seeds $SEEDS, budget $VAE_BUDGET (paper: 50,000 steps =
#          100 epochs; reduced: 10,000 steps = 20 epochs; short: 3,000 steps = 6 epochs, test
#          S = 200, the budget of the IGR page's VAE table), for every configuration and method.
# all:     select, then train (a method whose selection is unfinished is skipped: rerun).
# report:  the markdown table of the finished runs (mean ± s.e. over seeds) and the selections.
#
# Cost (one core, nonlinear net, 20 x 10): about 12 s per epoch, so ~25 min per paper run with its
# S = 1000 test bound; 9 methods x 3 configurations x 3 seeds = 81 runs (~35 h) plus ~190
# selection runs (~10 h). VAE_BUDGET=reduced cuts training to ~7 h.
set -u
export SIMPLEXITY_DATA_DIR=${SIMPLEXITY_DATA_DIR:-/work/shared/data}
SIMPLEXITY=${SIMPLEXITY:-.venv/bin/simplexity}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/estimators}
VAE_BUDGET=${VAE_BUDGET:-paper}
SEEDS=${SEEDS:-"0 1 2"}
DATASET=${DATASET:-mnist}
NET=${NET:-nonlinear}
# configuration name: "num_variables num_categories" (IGR's 20 x 10; ReinMax's 8 x 4 and 4 x 24,
# written categories x variables in its paper: 4 variables of 8 and 24 variables of 4 categories)
CONFIGS=${CONFIGS:-"igr-20x10 reinmax-8x4 reinmax-4x24"}
METHODS=${METHODS:-"gumbel_softmax igr_i igr_planar igr_sb straight_through st_gumbel gumbel_rao reinmax decoupled_st rloo reinforce"}
# rloo, reinforce: the score-function estimators (igr-vae's estimator=, S = $SCORE_SAMPLES categorical
# samples of the straight-through posterior, whose temperature they do not use: nothing to select)
SCORE_SAMPLES=${SCORE_SAMPLES:-4}

method_sets() {  # method_sets METHOD -> the igr-vae settings of a method
    case $1 in
        rloo | reinforce) echo "relaxation=straight_through estimator=$1 score_samples=$SCORE_SAMPLES" ;;
        *) echo "relaxation=$1" ;;
    esac
}

shape() {  # shape CONFIG -> "num_variables=N num_categories=K"
    case $1 in
        igr-20x10) echo "num_variables=20 num_categories=10" ;;
        reinmax-8x4) echo "num_variables=4 num_categories=8" ;;
        reinmax-4x24) echo "num_variables=24 num_categories=4" ;;
        *) echo "unknown configuration $1" >&2; exit 2 ;;
    esac
}

grid() {  # grid CONFIG METHOD -> the initial temperature grid
    # reinmax-4x24, after its first two methods: the time left did not hold the full grid for all
    # nine methods (a selection run there is 4-12 min on one core), and those two chose within one
    # grid step of their 8 x 4 choice (Gumbel-softmax 0.67 vs 0.5, IGR-I 0.15 vs 0.15); so the
    # other methods start from their 8 x 4 choice and its two neighbours on the full grid below,
    # and the same rule extends that grid while the best value sits on its edge
    if [ "$1" = reinmax-4x24 ] && [ "$2" != gumbel_softmax ] && [ "$2" != igr_i ]; then
        local center; center=$(cat "$OUT/select-reinmax-8x4/$2.selected" 2>/dev/null) ||
            { echo "grid: select reinmax-8x4 $2 first" >&2; return 1; }
        "$PYTHON" -c 'import sys; g = sorted(map(float, sys.argv[2:])); c = float(sys.argv[1])
g = sorted(set(g) | {c}); i = g.index(c)
lo = g[i - 1] if i > 0 else c / 1.5
hi = g[i + 1] if i + 1 < len(g) else c * 1.5
print(" ".join(f"{t:g}" for t in (lo, c, hi)))' "$center" $(full_grid "$2")
        return 0
    fi
    full_grid "$2"
}

full_grid() {  # full_grid METHOD -> the initial temperature grid of every configuration
    case $1 in
        igr_i | igr_planar | igr_sb) echo "0.03 0.05 0.1 0.15 0.25 0.5 0.67" ;;
        straight_through) echo "0.25 0.5 1 1.5 2 3" ;;
        reinmax) echo "1 1.3 1.6 2 3" ;;  # its authors' range (they require tau >= 1)
        *) echo "0.1 0.25 0.5 0.67 1 1.5 2" ;;  # gumbel_softmax, st_gumbel, gumbel_rao, decoupled_st
    esac
}

go() {  # go DIR NAME BUDGET SETS...: one igr-vae run under $OUT/DIR/NAME, resumable
    local dir=$1 name=$2 budget=$3; shift 3
    if [ -f "$OUT/$dir/$name/metrics.json" ]; then return 0; fi
    local sets=(); for s in "$@"; do sets+=(--set "$s"); done
    mkdir -p "$OUT/$dir"
    exec 9> "$OUT/$dir/.$name.lock"
    if ! flock -n 9; then echo "busy: $dir/$name (another worker)"; exec 9>&-; return 1; fi
    echo "$(date -u +%FT%TZ) start $dir/$name"
    "$SIMPLEXITY" run igr-vae --budget "$budget" "${sets[@]}" --out "$OUT/$dir" --name "$name" \
        --resume --threads 1 --no-progress 2>&1 | grep -v -e "available:" -e "^$" | tail -n 3
    echo "$(date -u +%FT%TZ) end   $dir/$name"
    exec 9>&-
    [ -f "$OUT/$dir/$name/metrics.json" ]
}

pick() {  # pick DIR METHOD T...: "best T" strictly inside, "extend T'", or "pending"
    # the CLI's rule (simplexity_lab.experiments.temperature_selection): diverged runs never win,
    # a best value on an edge extends the grid past it (x1.5 up, /1.5 down)
    "$PYTHON" - "$OUT/$1" "$2" "${@:3}" <<'PY'
import json, math, sys
from pathlib import Path
from simplexity_lab.experiments.temperature_selection import choose_temperature, next_temperature
root, method, grid = Path(sys.argv[1]), sys.argv[2], sorted(float(t) for t in sys.argv[3:])
scores = {}
for t in grid:
    path = root / f"{method}-tau={t:g}" / "metrics.json"
    if not path.is_file():
        print("pending"); sys.exit()
    value = json.loads(path.read_text())["metrics"].get("valid/iw_bound", math.nan)  # diverged
    scores[t] = value if math.isfinite(value) else -math.inf
extend = next_temperature(scores)
print(f"extend {extend:g}" if extend is not None else f"best {choose_temperature(scores)[0]:g}")
PY
}

selected() {  # selected CONFIG METHOD -> the temperature (empty if unresolved or pending)
    case $2 in rloo | reinforce) echo 1; return 0 ;; esac
    local file="$OUT/select-$1/$2.selected"
    [ -f "$file" ] && cat "$file"
}

select_one() {  # select_one CONFIG METHOD
    local config=$1 method=$2 dir="select-$1"
    case $method in rloo | reinforce) return 0 ;; esac
    [ -f "$OUT/$dir/$method.selected" ] && return 0
    local temps; temps=$(grid "$config" "$method") || return 0
    local extensions=0
    while :; do
        local ok=1
        for t in $temps; do
            go "$dir" "$method-tau=$t" select "dataset=$DATASET" "net=$NET" "relaxation=$method" \
                $(shape "$config") "temperature=$t" || ok=0
        done
        [ "$ok" = 1 ] || { echo "pending: $dir/$method"; return 0; }
        local verdict; verdict=$(pick "$dir" "$method" $temps)
        case $verdict in
            best*) echo "${verdict#best }" > "$OUT/$dir/$method.selected"
                   echo "selected: $config $method tau=${verdict#best } (grid: $temps)"; return 0 ;;
            extend*) if [ "$extensions" -ge 3 ]; then
                         echo "UNRESOLVED: $config $method still on the edge of: $temps" |
                             tee "$OUT/$dir/$method.unresolved"
                         return 0
                     fi
                     temps="$temps ${verdict#extend }"; extensions=$((extensions + 1)) ;;
            *) echo "pending: $dir/$method"; return 0 ;;
        esac
    done
}

select_all() {
    for config in $CONFIGS; do
        for method in $METHODS; do select_one "$config" "$method"; done
    done
}

train() {
    for seed in $SEEDS; do
        for config in $CONFIGS; do
            for method in $METHODS; do
                local tau; tau=$(selected "$config" "$method")
                if [ -z "$tau" ]; then echo "skip: $config $method (no selected temperature)"; continue; fi
                go "vae-$config" "$VAE_BUDGET-$method-seed$seed" "$VAE_BUDGET" "dataset=$DATASET" \
                    "net=$NET" $(method_sets "$method") $(shape "$config") "temperature=$tau" \
                    "seed=$seed" || true
            done
        done
    done
}

all() { select_all; train; }

report() {
    for config in $CONFIGS; do
        echo "### $config"
        echo
        for method in $METHODS; do
            echo "- $method: selected tau = $(selected "$config" "$method" || echo none)"
        done
        echo
        [ -d "$OUT/vae-$config" ] && "$SIMPLEXITY" table "$OUT/vae-$config" \
            --metrics test/iw_bound,test/relaxed_elbo,time/train_epoch_s
        echo
    done
}

mkdir -p "$OUT"
"${1:?usage: run_vae.sh select|train|all|report}"
