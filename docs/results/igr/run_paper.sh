#!/usr/bin/env bash
# The IGR paper runs of docs/results/igr.md, exactly as launched (idempotent: finished runs are
# skipped, interrupted ones continue with --resume). Run from the repository root:
#
#   nohup nice -n 19 bash docs/results/igr/run_paper.sh quick > runs/igr/quick.log 2>&1 &
#   nohup nice -n 19 bash docs/results/igr/run_paper.sh vae   > runs/igr/vae.log 2>&1 &
#   DATASETS=omniglot nohup nice -n 19 bash docs/results/igr/run_paper.sh vae > runs/igr/vae-omniglot.log 2>&1 &
#
# quick: relaxation-timing, discrete-approx (all targets and truncations), sop (3 seeds each at
#        the temperature selected on validation, sop_select; SOP_BUDGET: short = 10 epochs, or
#        paper = 100).
# sop:   sop's temperature selection, then the 3 seeds at the selected temperatures:
#        nohup nice -n 10 bash docs/results/igr/run_paper.sh sop > runs/igr/sop.log 2>&1 &
# vae:   temperature selection per data set (nonlinear net; grids extended until the best tau is
#        strictly inside), then igr-vae at the selected tau (VAE_BUDGET: short = 6 epochs,
#        reduced = 20, or paper = 100); runs kept at the same tau are not rerun.
# Two workers of the same queue share its runs (one core each): a run one holds, the other skips.
# session: everything in one queue for one core, the cheapest results first: timing, discrete-approx,
#        sop for the first seed, the VAEs, then sop for the other seeds:
#        nohup nice -n 19 bash docs/results/igr/run_paper.sh session > runs/igr/session.log 2>&1 &
# report: keep the finished runs' results in docs/results/igr/runs/ and rewrite the page's tables
#        and figures (simplexity report igr --runs $OUT).
set -u
export SIMPLEXITY_DATA_DIR=${SIMPLEXITY_DATA_DIR:-/work/shared/data}
SIMPLEXITY=${SIMPLEXITY:-.venv/bin/simplexity}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/igr}
KEPT=docs/results/igr/runs  # runs kept in the repository are not run again
VAE_BUDGET=${VAE_BUDGET:-short}
SOP_BUDGET=${SOP_BUDGET:-short}
SEEDS=${SEEDS:-"0 1 2"}
DATASETS=${DATASETS:-"mnist fashion_mnist omniglot"}

go() {  # go NAME EXPERIMENT BUDGET SETS...: one run under $OUT/EXPERIMENT/NAME, resumable
    local name=$1 exp=$2 budget=$3; shift 3
    if [ -f "$OUT/$exp/$name/metrics.json" ]; then echo "done: $exp/$name"; return; fi
    if [ -f "$KEPT/$exp/$name/metrics.json" ]; then echo "kept: $exp/$name"; return; fi
    local sets=(); for s in "$@"; do sets+=(--set "$s"); done
    # a run another worker holds is left to it (flock: the lock goes when its holder dies)
    mkdir -p "$OUT/$exp"
    exec 9> "$OUT/$exp/.$name.lock"
    if ! flock -n 9; then echo "busy: $exp/$name (another worker)"; exec 9>&-; return; fi
    echo "$(date -u +%FT%TZ) start $exp/$name"
    "$SIMPLEXITY" run "$exp" --budget "$budget" "${sets[@]}" --out "$OUT/$exp" --name "$name" \
        --resume --threads 1 --no-progress 2>&1 | grep -v -e "available:" -e "^$" | tail -n 20
    echo "$(date -u +%FT%TZ) end   $exp/$name"
    exec 9>&-
}

quick() {
    for net in nonlinear linear; do
        go "net=$net" relaxation-timing paper "net=$net"
    done
    for target in poisson:50 binomial:50:0.5 geometric:0.1 negative_binomial:10:0.2; do
        for k in 20 40 100; do
            go "target=$target-gumbel_softmax-K=$k" discrete-approx paper "target=$target" \
                relaxation=gumbel_softmax "num_categories=$k"
        done
        go "target=$target-igr_sb" discrete-approx paper "target=$target" relaxation=igr_sb \
            num_categories=200
    done
    sop $SEEDS
}

sop_select() {  # the temperature of each binary relaxation on sop's validation split (budget select:
    # the short budget, valid/nll on 2,000 images), each grid around its paper value extended
    # until the lowest NLL is strictly inside
    local kept=$KEPT/sop-select-binarized_mnist
    if [ -d "$kept" ] && [ ! -d "$OUT/sop-select-binarized_mnist" ]; then cp -r "$kept" "$OUT/"; fi
    exec 8> "$OUT/.select-sop.lock"; flock 8
    "$SIMPLEXITY" select-temperature --experiment sop --relaxations gumbel_softmax \
        --grid 0.25,0.5,0.67,1 --out "$OUT" || exit 1
    # (binary IGR's validation NLL still fell at the third extension, 0.015: six allowed)
    "$SIMPLEXITY" select-temperature --experiment sop --relaxations igr_i \
        --grid 0.05,0.1,0.25,0.5 --max-extensions 6 --out "$OUT" || exit 1
    exec 8>&-
}

sop() {  # sop SEED...: the selected temperature of each relaxation
    sop_select
    for seed in "$@"; do
        for relaxation in gumbel_softmax igr_i; do
            t=$(sop_tau "$relaxation")
            old="$SOP_BUDGET-relaxation=$relaxation-seed$seed"  # named before names carried tau
            if kept_at sop "$old" "$t"; then echo "kept: sop/$old (tau = $t)"; continue; fi
            go "$SOP_BUDGET-relaxation=$relaxation-tau=$t-seed$seed" sop "$SOP_BUDGET" \
                "relaxation=$relaxation" "temperature=$t" "seed=$seed"
        done
    done
}

sop_tau() {  # sop_tau RELAXATION: the temperature selected on sop's validation split
    "$PYTHON" -c "import json,sys; print(format(json.load(open('$OUT/sop-select-binarized_mnist/selected_temperature.json'))['selected']['$1'], 'g'))"
}

tau() {  # tau DATASET RELAXATION: the temperature selected on DATASET's validation split (nonlinear)
    "$PYTHON" -c "import json,sys; print(format(json.load(open('$OUT/igr-vae-select-$1-nonlinear/selected_temperature.json'))['selected']['$2'], 'g'))"
}

kept_at() {  # kept_at EXPERIMENT NAME T: a kept run NAME (named before names carried tau) trained at T
    "$PYTHON" -c "import json,sys; c=json.load(open('$KEPT/$1/$2/config.json')); sys.exit(0 if abs(float(c['temperature'])-$3)<1e-12 else 1)" 2>/dev/null
}

vae() {
    # one selection per data set (nonlinear net), each grid extended until its best tau is inside;
    # the linear net uses its data set's nonlinear selection
    # (DATASETS picks the data sets; two workers with different DATASETS share the queue: a
    # selection one worker is running makes the other wait for it)
    for dataset in $DATASETS; do
        kept=$KEPT/igr-vae-select-$dataset-nonlinear  # kept runs are not rerun
        if [ -d "$kept" ] && [ ! -d "$OUT/igr-vae-select-$dataset-nonlinear" ]; then cp -r "$kept" "$OUT/"; fi
        exec 8> "$OUT/.select-$dataset.lock"; flock 8
        "$SIMPLEXITY" select-temperature --dataset "$dataset" --net nonlinear --out "$OUT" \
            --grid 0.03,0.05,0.1,0.15,0.25,0.5,0.67,1 || exit 1
        exec 8>&-
    done
    for seed in $SEEDS; do
        for net in nonlinear linear; do
            if [ "$net" = linear ] && [ "$seed" != 0 ]; then continue; fi
            for dataset in $DATASETS; do
                for relaxation in gumbel_softmax igr_i igr_planar igr_sb; do
                    t=$(tau "$dataset" "$relaxation")
                    old="$VAE_BUDGET-$dataset-$net-$relaxation-seed$seed"
                    if kept_at igr-vae "$old" "$t"; then echo "kept: $old (tau = $t)"; continue; fi
                    go "$VAE_BUDGET-$dataset-$net-$relaxation-tau=$t-seed$seed" igr-vae \
                        "$VAE_BUDGET" "dataset=$dataset" "net=$net" "relaxation=$relaxation" \
                        "temperature=$t" "seed=$seed"
                done
            done
        done
    done
}

session() {
    local first=${SEEDS%% *}
    SEEDS=$first quick
    vae
    sop ${SEEDS#"$first"}
}

report() { "$SIMPLEXITY" report igr --runs "$OUT"; }

mkdir -p "$OUT"
if [ "${1:-}" = sop ]; then sop $SEEDS; else "${1:?usage: run_paper.sh quick|vae|sop|session|report}"; fi
