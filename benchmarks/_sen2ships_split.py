"""Where the sen2ships scenes are and how the benchmarks split them; no GDAL, so a GPU machine without it can
import this (benchmarks/input_probe.py --pack)."""

import os
from pathlib import Path

DATA = Path(os.environ.get("SHIPSEG_SEN2SHIPS",
                           Path(__file__).resolve().parents[2] / "shared" / "data" / "sen2ships"))
# Test scenes per fold, each from north of 40 deg N (gdynia 54.5, genoa 44.4, marseille 43.3), 30-40 deg N
# (valencia 39.4, algiers 36.8, busan 35.1) and below 15 deg N (cartagena 10.4, klang 3.0, hedland -20.3).
FOLDS = (("gdynia", "algiers", "cartagena"), ("genoa", "valencia", "hedland"), ("marseille", "busan", "klang"))
# Per fold, a scene of the other folds held out of training: it stops training and sets the score threshold.
VALIDATION = ("hedland", "klang", "cartagena")
# The eleven-scene split of the native-proposer cross-validation (benchmarks/sen2ships_native.py): the three folds
# above plus the two scenes with only some bands (santos 24 S: B04 B03 B08 B11; los_angeles 34 N: B08 B11).
FOLDS_ALL = FOLDS + (("santos", "los_angeles"),)
