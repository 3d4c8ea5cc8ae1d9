"""Shared fixtures: small rasters made on the fly, and the real sen2ships scenes when they are present."""

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

SEN2SHIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sen2ships"
SEN2SHIPS = Path(os.environ.get("SHIPSEG_SEN2SHIPS", SEN2SHIPS))
SCENES = ["algiers", "busan", "cartagena", "gdynia", "genoa", "hedland", "klang", "marseille", "valencia"]


@pytest.fixture(scope="session")
def sen2ships() -> Path:
    """The real data folder; skipped when absent unless SHIPSEG_REQUIRE_DATA=1 (CI), where absence fails."""
    if not (SEN2SHIPS / "busan" / "scene.tif").exists():
        if os.environ.get("SHIPSEG_REQUIRE_DATA") == "1":
            pytest.fail(f"{SEN2SHIPS} is missing but SHIPSEG_REQUIRE_DATA=1")
        pytest.skip(f"{SEN2SHIPS} is absent")
    return SEN2SHIPS


def write_raster(path, data, crs="EPSG:32631", transform=None, nodata=None, descriptions=None):
    """Write a (C, H, W) array as a GeoTIFF (UTM, 10 m pixels by default) and return its path."""
    data = np.asarray(data)
    if transform is None:
        transform = Affine(10.0, 0, 500_000.0, 0, -10.0, 4_800_000.0)
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": data.dtype.name, "crs": crs, "transform": transform, "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, name)
    return Path(path)
