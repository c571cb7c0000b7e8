#!/usr/bin/env bash
# The three experiments of docs/results/flows.md on the CLI, with the settings of the committed
# numbers (the paper budgets). Idempotent: finished runs are skipped, interrupted ones continue with
# --resume. Run from the repository root, e.g.
#
#   nohup nice -n 19 bash docs/results/flows/run_all.sh all > runs/flows/all.log 2>&1 &
#   bash docs/results/flows/run_all.sh maxent        # one experiment: density|objectives|maxent
#   SEEDS="1 2" bash docs/results/flows/run_all.sh maxent_passing
#   nohup nice -n 19 bash -c "bash docs/results/flows/run_all.sh density; \
#       bash docs/results/flows/run_all.sh objectives" > runs/flows/second.log 2>&1 &   # a second worker
#   bash docs/results/flows/run_all.sh report        # keep the finished runs in docs/results/flows/runs/
#                                                    # and rewrite the page's tables from them
#
# Workers share the queue: each run is locked (flock) by the worker running it, and the others skip it.
# density:        flow2d, 6 data sets x {gaussian, mixture, rad} x 3 seeds (54 runs)
# objectives:     mixture-entropy (part A, 10 runs) and flow-objectives (part B, 40 runs), seed 0
# maxent:         maxent-dirichlet, the paper's 10 planar layers (constant lr) and 6 couplings over a
#                 Gaussian / a 4-component mixture base (lr x 0.7 per outer iteration), seed 0
# maxent_passing: the passing configuration (mixture + 6 couplings, lr decay 0.7) for $SEEDS
set -u
SIMPLEXITY=${SIMPLEXITY:-.venv/bin/simplexity}
OUT=${OUT:-runs/flows}
SEEDS=${SEEDS:-"0 1 2"}

go() {  # go NAME EXPERIMENT SETS...: one run under $OUT/EXPERIMENT/NAME at the paper budget
    local name=$1 exp=$2; shift 2
    if [ -f "$OUT/$exp/$name/metrics.json" ]; then echo "done: $exp/$name"; return; fi
    local sets=(); for s in "$@"; do sets+=(--set "$s"); done
    # a run another worker holds is left to it (flock: the lock goes when its holder dies)
    mkdir -p "$OUT/$exp"
    exec 9> "$OUT/$exp/.$name.lock"
    if ! flock -n 9; then echo "busy: $exp/$name (another worker)"; exec 9>&-; return; fi
    echo "$(date -u +%FT%TZ) start $exp/$name"
    "$SIMPLEXITY" run "$exp" --budget paper "${sets[@]}" --out "$OUT/$exp" --name "$name" \
        --resume --threads 1 --no-progress 2>&1 | grep -v -e "available:" -e "^$" | tail -n 20
    echo "$(date -u +%FT%TZ) end   $exp/$name"
    exec 9>&-
}

density() {
    for seed in $SEEDS; do
        for data in 8gaussians moons rings checkerboard pinwheel 2spirals; do
            for base in gaussian mixture rad; do
                go "$data-$base-seed$seed" flow2d "dataset=toy2d:$data" "base=$base" "seed=$seed"
            done
        done
    done
}

objectives() {
    go pathwise mixture-entropy reparam=pathwise
    for reparam in gumbel_straight_through gumbel_softmax igr; do
        for tau in 0.1 0.5 1.0; do
            go "$reparam-tau$tau" mixture-entropy "reparam=$reparam" "temperature=$tau"
        done
    done
    cell() {  # cell PROBLEM REPARAM TAU ESTIMATOR M (TAU, M: "none")
        go "$1-$2-tau$3-$4-M$5" flow-objectives "problem=$1" "reparam=$2" "temperature=$3" \
            "estimator=$4" "num_inner=$5" seed=0
    }
    for problem in reverse_kl maxent; do
        for reparam in pathwise gumbel_straight_through gumbel_softmax igr; do
            tau=0.5; [ "$reparam" = pathwise ] && tau=none
            for estimator in exact nested nested_own joint; do
                m=none; case $estimator in nested*) m=16;; esac
                cell "$problem" "$reparam" "$tau" "$estimator" "$m"
            done
        done
    done
    for m in 1 128; do  # sweeps of the reverse-KL problem: M for pathwise, tau for Gumbel-softmax
        for estimator in nested nested_own; do cell reverse_kl pathwise none "$estimator" "$m"; done
    done
    for tau in 0.1 1.0; do
        cell reverse_kl gumbel_softmax "$tau" exact none
        cell reverse_kl gumbel_softmax "$tau" nested_own 16
    done
}

maxent() {
    go gaussian-planar10-seed0 maxent-dirichlet base=gaussian transform=planar num_layers=10 seed=0
    for base in gaussian mixture; do
        go "$base-coupling6-lr_decay0.7-seed0" maxent-dirichlet "base=$base" transform=coupling \
            num_layers=6 lr_decay=0.7 seed=0
    done
}

maxent_passing() {
    for seed in $SEEDS; do
        go "mixture-coupling6-lr_decay0.7-seed$seed" maxent-dirichlet base=mixture \
            transform=coupling num_layers=6 lr_decay=0.7 "seed=$seed"
    done
}

report() { "$SIMPLEXITY" report flows --runs "$OUT"; }

all() { maxent; objectives; density; }

mkdir -p "$OUT"
"${1:?usage: run_all.sh all|density|objectives|maxent|maxent_passing|report}"
