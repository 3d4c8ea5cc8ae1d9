#!/usr/bin/env bash
# Rebuilds samgeo_ship/data/default.safetensors: the recipe its card records, as one script.
#   bash scripts/train_default.sh [WORKDIR]   (needs ../shared/data/sen2ships; ~35 min on 2 CPU cores)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
shipseg="$here/.venv/bin/shipseg"
data="${SEN2SHIPS:-$here/../shared/data/sen2ships}"
work="${1:-/tmp/shipseg-default}"
mkdir -p "$work" && cd "$work"

# The recipe of the shipped bundle. It predates the box prior and the prompter's pixel branch, hence --box-prior 0
# --prompter-pixels 0; the best epoch is now picked by mask IoU + prompter F1 (it was mask IoU alone), so a rerun
# can keep another epoch than the shipped one. The candidate with both (better masks, worse detection on the
# samples) is in the README, "The default model".
# 4x upsampling (64 px tiles -> the 256 px sam_tiny input): 18 px ships need it to cover enough patches.
prep=(--bands B04,B03,B02 --tile-size 64 --overlap 8 -q --overwrite)
for seed in 11 12 13 14; do
  "$shipseg" synth "syn$seed.tif" --size 1024x1024 --bands s2 --ships 90 --seed "$seed" -q --overwrite
  "$shipseg" prepare "syn$seed.tif" "syn$seed.geojson" -o "syn$seed" "${prep[@]}"
done
scenes=()
for scene in algiers busan cartagena gdynia genoa hedland klang marseille valencia; do
  "$shipseg" prepare "$data/$scene/scene.tif" "$data/$scene/labels.coco.json" -o "$scene" "${prep[@]}"
  scenes+=("$scene")
done
"$shipseg" train syn11 syn12 syn13 "${scenes[@]}" --val syn14 -o default.safetensors \
  --epochs 8 --batch-size 8 --lr 2e-3 --patience 4 --seed 0 --threads 1 --negatives 0.05 --box-prior 0 --prompter-pixels 0
# The detection threshold, measured on what detect returns for the validation harbour syn14 (never the samples):
# 0.25 (F1 0.770 there; training's prompter-centre choice was 0.3).
"$shipseg" calibrate default.safetensors syn14.tif syn14.geojson -q
cp default.safetensors "${DEST:-$here/samgeo_ship/data/default.safetensors}"
