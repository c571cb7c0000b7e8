#!/usr/bin/env bash
# The ev-softmax reproduction runs of one group, one after another on one thread.
# Launch each group at the lowest priority; safe to re-launch: finished runs (metrics.json present)
# are skipped, unfinished ones continue from their last checkpoint (--resume). Two workers of the
# same group share its runs (one core each): a run one worker holds is skipped by the other.
#   mkdir -p runs/evsoftmax
#   nice -n 19 bash docs/results/evsoftmax/queue.sh cvae  > runs/evsoftmax/queue-cvae.log 2>&1 &
#   nice -n 19 bash docs/results/evsoftmax/queue.sh other > runs/evsoftmax/queue-other.log 2>&1 &
# Groups: cvae (CVAE seeds 0-2 at both betas, then SSVAE 3 seeds, then CVAE seeds 3-9),
#         other (VQ-VAE on both data sets, translation 1 seed, then translation seeds 1-2),
#         short (one queue for one CPU core, every method alike at the short budgets: CVAE seed 0,
#                SSVAE seed 0, VQ-VAE on MNIST (3,000 prior steps), translation (3 epochs), VQ-VAE on
#                Fashion-MNIST, SSVAE seeds 1-2, CVAE seeds 1-9 at the paper budget, then the
#                reference-code beta for seeds 1-2),
#         ablation (translation: sparsemax attention + softmax output, and the reverse),
#         report (keep the finished runs' results and rewrite the page: simplexity report evsoftmax).
set -u
cd "$(dirname "$0")/../../.."
export SIMPLEXITY_DATA_DIR="${SIMPLEXITY_DATA_DIR:-/work/shared/data}"
OUT=runs/evsoftmax
mkdir -p "$OUT/logs"
run() {  # run NAME EXPERIMENT BUDGET KEY=VALUE...
  local name=$1 exp=$2 budget=$3; shift 3
  if [ -f "$OUT/$name/metrics.json" ]; then echo "skip $name"; return; fi
  local sets=(); for kv in "$@"; do sets+=(--set "$kv"); done
  # a run another worker holds is left to it (flock: the lock goes when its holder dies)
  exec 9> "$OUT/logs/$name.lock"
  if ! flock -n 9; then echo "busy $name (another worker)"; exec 9>&-; return; fi
  echo "$(date -u +%FT%TZ) start $name"
  .venv/bin/simplexity run "$exp" --budget "$budget" "${sets[@]}" --out "$OUT" --name "$name" \
    --resume --threads 1 --no-progress > "$OUT/logs/$name.log" 2>&1
  echo "$(date -u +%FT%TZ) done $name rc=$?"
  exec 9>&-
}
NORMS="softmax sparsemax entmax15 ev_softmax"
SSVAE="softmax sparsemax entmax15 ev_softmax gumbel st_gumbel"
TRANSLATION="softmax ev_softmax entmax15 sparsemax posthoc_evidential"
cvae_seeds() {  # cvae_seeds BUDGETS SEED...: e.g. cvae_seeds "paper reference" 0 1 2
  local budgets=$1; shift
  for seed in "$@"; do
    for n in $NORMS; do
      for b in $budgets; do run "cvae-$b-$n-s$seed" cvae "$b" normalizer=$n seed=$seed; done
    done
  done
}
case "${1:-}" in
  cvae)
    cvae_seeds "paper reference" 0 1 2
    for seed in 0 1 2; do
      for m in $SSVAE; do run "ssvae-short-$m-s$seed" ssvae short method=$m seed=$seed; done
    done
    cvae_seeds "paper reference" 3 4 5 6 7 8 9
    ;;
  other)
    for d in mnist fashion_mnist; do
      for n in $NORMS; do run "vqvae-paper-$d-$n-s0" vqvae paper dataset=$d normalizer=$n seed=0; done
    done
    for seed in 0 1 2; do
      for n in $TRANSLATION; do run "translation-paper-$n-s$seed" translation paper normalizer=$n seed=$seed; done
    done
    ;;
  short)
    run cvae-reference-entmax15-s0 cvae reference normalizer=entmax15 seed=0
    for m in $SSVAE; do run "ssvae-short-$m-s0" ssvae short method=$m seed=0; done
    for n in $NORMS; do run "vqvae-short-mnist-$n-s0" vqvae short dataset=mnist normalizer=$n seed=0; done
    for n in $TRANSLATION; do run "translation-short-$n-s0" translation short normalizer=$n seed=0; done
    for n in $NORMS; do run "vqvae-short-fashion_mnist-$n-s0" vqvae short dataset=fashion_mnist normalizer=$n seed=0; done
    for seed in 1 2; do
      for m in $SSVAE; do run "ssvae-short-$m-s$seed" ssvae short method=$m seed=$seed; done
    done
    cvae_seeds paper 1 2 3 4 5 6 7 8 9
    cvae_seeds reference 1 2
    ;;
  ablation)
    # translation: sparse attention with a softmax output layer, and the reverse (short budget)
    run translation-short-sparsemax-out_softmax-s0 translation short normalizer=sparsemax output_normalizer=softmax seed=0
    run translation-short-softmax-out_sparsemax-s0 translation short normalizer=softmax output_normalizer=sparsemax seed=0
    ;;
  report)
    # keep the finished runs' results in docs/results/evsoftmax/runs/ and rewrite the page's tables
    .venv/bin/simplexity report evsoftmax --runs "$OUT"
    ;;
  *) echo "usage: queue.sh cvae|other|short|ablation|report" >&2; exit 2 ;;
esac
echo "$(date -u +%FT%TZ) queue $1 finished"
