#!/usr/bin/env bash
# Makes and prepares the synthetic harbours the training recipes use, in the current directory:
#   syn11-14 (16-bit Sentinel-2-like, 90 ships), rgb21-24 (8-bit RGB, 90 ships), syn15-16 and rgb25-27 (50 ships,
#   less crowded, like the samples; rgb27 in EPSG:4326). 14 and 24 validate, the others train.
#   SHIPSEG=path/to/shipseg bash scripts/synth_harbours.sh
set -euo pipefail
shipseg="${SHIPSEG:?set SHIPSEG to the shipseg executable}"
# 4x upsampling (64 px tiles -> the 256 px sam_tiny input): 18 px ships need it to cover enough patches.
prep=(--bands B04,B03,B02 --tile-size 64 --overlap 8 -q --overwrite)
harbour() {  # NAME BANDS SHIPS SEED [synth options]
  local name=$1 bands=$2 ships=$3 seed=$4; shift 4
  "$shipseg" synth "$name.tif" --size 1024x1024 --bands "$bands" --ships "$ships" --seed "$seed" "$@" -q --overwrite
  "$shipseg" prepare "$name.tif" "$name.geojson" -o "$name" "${prep[@]}"
}
for seed in 11 12 13 14; do harbour "syn$seed" s2 90 "$seed"; done
for seed in 21 22 23 24; do harbour "rgb$seed" rgb8 90 "$seed"; done
for seed in 15 16; do harbour "syn$seed" s2 50 "$seed"; done
harbour rgb25 rgb8 50 25
harbour rgb26 rgb8 50 26
harbour rgb27 rgb8 50 27 --crs EPSG:4326
