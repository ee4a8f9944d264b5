#!/usr/bin/env bash
# The experiments behind trainer/EXPERIMENTS.md and the README's tables, one command each.
#   bash scripts/experiments.sh ship  PTBXL_DIR CHALLENGE_DIR   the shipped recipe (PTB-XL folds 1-9 + the Challenge records)
#   bash scripts/experiments.sh loso  PTBXL_DIR CHALLENGE_DIR   trained on PTB-XL alone, scored on every other source
# PTBXL_DIR holds PTB-XL's folds 1-9 in Challenge format (LR*.hea/.dat with #PatientID and
# #StratFold); CHALLENGE_DIR the 2020 Challenge's folders (cpsc2018, georgia, ptb, ...).
# Set SEED (default 0), MODEL (cnn or resnet), WIDTH (1: layer width multiplier), EPOCHS (30),
# P_SHORTEN (0.3: share of crops cut shorter than 10 s), EMA (0: decay of a moving average of
# the weights, e.g. 0.999), THREADS (2: torch threads; 1 to run two experiments side by side),
# NORM (lead: each lead z-scored; mv: millivolts kept), DILATIONS (Model 1's per-stage dilations,
# e.g. 1,1,1,2,4; default none), OUT (runs/).
set -euo pipefail
cd "$(dirname "$0")/.."
what="$1"; ptbxl="$2"; challenge="$3"
seed="${SEED:-0}"; model="${MODEL:-cnn}"; epochs="${EPOCHS:-30}"; out="${OUT:-runs}"
width="${WIDTH:-1}"; shorten="${P_SHORTEN:-0.3}"; ema="${EMA:-0}"; threads="${THREADS:-2}"
norm="${NORM:-lead}"; dil="${DILATIONS:-}"
tag="$model$([ "$width" = 1 ] || echo "-w$width")$([ "$shorten" = 0.3 ] || echo "-p$shorten")"
tag="$tag$([ "$ema" = 0 ] || echo "-ema$ema")$([ "$norm" = lead ] || echo "-$norm")"
tag="$tag$([ -z "$dil" ] || echo "-d${dil//,/}")"
train() {  # train OUT_DIR DATA...
  local dir="$1"; shift
  .venv/bin/ecg-train fit "$@" --out "$dir/bundle" --model "$model" --width "$width" --epochs "$epochs" \
    --p-shorten "$shorten" --ema "$ema" --norm "$norm" --dilations "$dil" \
    --patience 6 --seed "$seed" --threads "$threads" --resume 2>&1 | tee -a "$dir.log"
}
case "$what" in
  ship)
    dir="$out/ship-$tag-s$seed"; mkdir -p "$dir"
    train "$dir" "$ptbxl" "$challenge"
    ;;
  loso)
    dir="$out/loso-$tag-s$seed"; mkdir -p "$dir"
    train "$dir" "$ptbxl"
    # every other source is a hospital the model never saw (PTB-XL's HR copies are twins of
    # training records, so they are not scored)
    for src in cpsc:cpsc2018,cpsc2018-extra georgia:georgia ptb:ptb chapman-ningbo:chapman-ningbo ludb:ludb; do
      name="${src%%:*}"; folders=()
      IFS=, read -ra parts <<< "${src#*:}"
      for p in "${parts[@]}"; do folders+=("$challenge/$p"); done
      .venv/bin/ecg-train evaluate "$dir/bundle" "${folders[@]}" \
        --outputs "$dir/outputs/$name" --json "$dir/$name.json"
    done
    ;;
  *) echo "experiments: unknown experiment '$what' (ship or loso)" >&2; exit 2 ;;
esac
