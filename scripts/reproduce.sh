#!/usr/bin/env bash
# The reproduction protocol of docs/reproduction.md, resumable across sessions: every finished
# run appends one line to docs/reproduction-runs.csv, and runs already recorded there are
# skipped. Run it in the background:  nohup scripts/reproduce.sh > out/reproduce.log 2>&1 &
#
# Protocol: cifar_resnet(20) on Fashion-MNIST 28x28x1, K images per class (balanced, fixed by
# seed), the full 10k test set, crop (pad 2) + flip, SGD momentum 0.9, wd 5e-4, batch 64, cosine
# annealing to 0; 150 epochs at K = 50, 60 at K = 200.
#   1. baseline: every loss at lr 0.05, K = 50, seed 0 (test set);
#   2. lr selection: each loss at lr 0.05, 0.5, 2.0 on a validation split of 50 images per
#      class drawn from the training pool (never the test set), K = 50, seed 0;
#   3. finals with each loss's chosen lr: xent and cosine-xent at K = 50 and K = 200, cosine and
#      cosine-xent-head at K = 50, seeds 0, 1, 2 (test set);
#   4. the example's default budget (60 epochs, K = 50): phase 2 again at that budget, the default
#      comparison (xent, cosine-xent) at the chosen lrs, seeds 0, 1, 2, and each of those losses at
#      150 epochs with the same lr (seed 0), to see how far the short run lands from the long one.
set -euo pipefail
cd "$(dirname "$0")/.."
CSV=docs/reproduction-runs.csv
LOSSES="xent cosine cosine-xent cosine-xent-head"
phases="${PHASES:-1 2 3}"

# Run a private copy of the binary, so that rebuilding the crate while this runs in the background
# neither blocks on cargo's lock nor swaps the program under a run.
cargo build --release --example resnet
mkdir -p out
BIN=out/reproduce-resnet
cp target/release/examples/resnet "$BIN"
[ -f "$CSV" ] || echo "phase,loss,per_class,epochs,lr,seed,evaluated_on,top1_percent,seconds,train_images_per_s,threads,date" > "$CSV"

run() { # phase loss K epochs lr seed [extra flags]
  local phase=$1 loss=$2 k=$3 epochs=$4 lr=$5 seed=$6; shift 6
  local key="$phase,$loss,$k,$epochs,$lr,$seed,"
  if grep -q "^$key" "$CSV"; then return 0; fi
  local on=test
  [[ "$*" == *--val-per-class* ]] && on=validation
  local out="out/repro/$phase-$loss-k$k-lr$lr-s$seed"
  mkdir -p out/repro
  echo "$(date -u +%FT%TZ) start $key $*"
  local line
  line=$("$BIN" --loss "$loss" --per-class "$k" --epochs "$epochs" --lr "$lr" --seed "$seed" \
    --eval-every "$epochs" --out "$out" "$@" 2>"$out.stderr" | grep "top-1" | tail -n 1)
  # "[loss] top-1 81.23% | 612 s | 130.5 train images/s | wrote ..."
  local top1 secs ips
  top1=$(sed -E 's/.*top-1 ([0-9.]+)%.*/\1/' <<<"$line")
  secs=$(sed -E 's/.*\| ([0-9.]+) s \|.*/\1/' <<<"$line")
  ips=$(sed -E 's/.*\| ([0-9.]+) train images.*/\1/' <<<"$line")
  echo "$key$on,$top1,$secs,$ips,$(nproc),$(date -u +%F)" >> "$CSV"
  echo "$(date -u +%FT%TZ) done  $key top-1 $top1% in $secs s"
}

best_lr() { # loss [phase] -> the lr with the best validation accuracy in that phase (ties: the smaller)
  awk -F, -v l="$1" -v p="${2:-lrsel}" '$1==p && $2==l {print $8, $5}' "$CSV" | sort -k1,1gr -k2,2g | head -n 1 | cut -d' ' -f2
}

for p in $phases; do
  case $p in
    1) for loss in $LOSSES; do run baseline "$loss" 50 150 0.05 0; done ;;
    2) for loss in $LOSSES; do for lr in 0.05 0.5 2.0; do
         run lrsel "$loss" 50 150 "$lr" 0 --val-per-class 50
       done; done ;;
    3) for seed in 0 1 2; do
         for loss in $LOSSES; do
           lr=$(best_lr "$loss"); [ -n "$lr" ] || { echo "no lr chosen for $loss yet: run phase 2"; exit 1; }
           run final "$loss" 50 150 "$lr" "$seed"
         done
         for loss in xent cosine-xent; do run final "$loss" 200 60 "$(best_lr "$loss")" "$seed"; done
       done ;;
    4) for loss in $LOSSES; do for lr in 0.05 0.5 2.0; do
         run lrsel60 "$loss" 50 60 "$lr" 0 --val-per-class 50
       done; done
       for loss in xent cosine-xent; do
         lr=$(best_lr "$loss" lrsel60)
         for seed in 0 1 2; do run default "$loss" 50 60 "$lr" "$seed"; done
         # the same lr for 150 epochs, same seeds (phase 1 or 3 may have some already)
         for seed in 0 1 2; do
           if ! grep -qE "^(baseline|final|long),$loss,50,150,$lr,$seed," "$CSV"; then run long "$loss" 50 150 "$lr" "$seed"; fi
         done
       done ;;
  esac
done
