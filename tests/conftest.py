"""Shared fixtures and helpers: small rasters made on the fly (one harbour scene), one randomly initialised sam_tiny
bundle, small prepared datasets, and the real sen2ships scenes when they are present. Test files import helpers
from here, never from each other."""

import json
import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import torch
from affine import Affine
from click.testing import CliRunner
from rasterio.features import rasterize
from shapely import affinity

from shipseg_cli.main import cli
from samgeo_ship.dataset import prepare_dataset
from samgeo_ship.models.bundle import BundleCard, save_bundle
from samgeo_ship.models.shipsam import ShipSam

SEN2SHIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sen2ships"
SEN2SHIPS = Path(os.environ.get("SHIPSEG_SEN2SHIPS", SEN2SHIPS))
SCENES = ["algiers", "busan", "cartagena", "gdynia", "genoa", "hedland", "klang", "marseille", "valencia"]

UTM = Affine(10.0, 0, 500_000.0, 0, -10.0, 4_800_000.0)  # 10 m pixels in EPSG:32631
PX = Affine.identity()  # scene pixels
BANDS = ["B04", "B03", "B02"]
# Training settings for tests. One thread: the test machine is shared, and spinning OpenMP threads on busy cores
# are many times slower than one thread.
FAST = dict(model_type="sam_tiny", batch_size=2, val_fraction=0.25, threads=1)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Torch computes on one thread in tests. On a shared machine spinning OpenMP threads wait on each other and run
    many times slower than one thread. Detection, training and oneshot choose one thread per core this process may
    use (``os.sched_getaffinity``), so here the process counts as having one core. The thread count changes how
    fast, never what, a computation gives; speed is measured in benchmarks/."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
        yield
    torch.set_num_threads(before)


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
        transform = UTM
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": data.dtype.name, "crs": crs, "transform": transform, "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, name)
    return Path(path)


def run_cli(*args):
    """``shipseg ARGS`` in this process (stdout and stderr apart)."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def ship(col, row, length_px, beam_px, angle, transform=UTM):
    """A rotated rectangle hull centred on pixel (col, row), in the CRS of ``transform``."""
    hull = affinity.rotate(shapely.box(col - length_px / 2, row - beam_px / 2, col + length_px / 2,
                                       row + beam_px / 2), angle, origin=(col, row))
    a, b, c, d, e, f = transform[:6]
    return affinity.affine_transform(hull, [a, b, d, e, c, f])


def in_crs(hulls, transform):
    """Hulls in scene pixels -> the CRS of ``transform``."""
    t = transform
    return [affinity.affine_transform(h, [t.a, t.b, t.d, t.e, t.c, t.f]) for h in hulls]


def write_truth(path, hulls, transform=UTM):
    """Hulls in scene pixels as a truth file in the CRS of ``transform`` (EPSG:32631)."""
    gpd.GeoDataFrame(geometry=in_crs(hulls, transform), crs="EPSG:32631").to_file(path)
    return Path(path)


def ring_is_ccw(ring) -> bool:
    xy = np.asarray(ring)
    return 0.5 * np.sum(xy[:-1, 0] * xy[1:, 1] - xy[1:, 0] * xy[:-1, 1]) > 0


def coco_file(path, width, height, segmentations):
    """A COCO file of one image (``width`` x ``height`` px) with one ship annotation per segmentation."""
    anns = [{"id": i + 10, "image_id": 1, "category_id": 1, "segmentation": s, "iscrowd": 0}
            for i, s in enumerate(segmentations)]
    path.write_text(json.dumps({"images": [{"id": 1, "width": width, "height": height, "file_name": "scene.tif"}],
                                "categories": [{"id": 1, "name": "ship"}], "annotations": anns}))
    return path


# The harbour's ships, in scene pixels; the third lies under the harbour fixture's nodata strip.
HULLS = [ship(60, 50, 30, 6, 20, PX), ship(140, 100, 40, 7, 80, PX), ship(100, 170, 24, 5, 0, PX)]
# Three ships in a 96 px harbour: the bundled default model (64 px tiles, 8 px halo) covers it in 2 x 2 tiles.
SMALL_HULLS = [ship(24, 22, 30, 6, 20, PX), ship(70, 36, 34, 7, 80, PX), ship(40, 72, 24, 5, 0, PX)]


def write_harbour(path, size=200, transform=None, crs="EPSG:32631", nodata_rows=0, hulls=HULLS):
    """Dark water with bright ``hulls`` (scene pixels), three bands named as the default model's, and an optional
    nodata strip at the bottom."""
    rng = np.random.default_rng(1)
    data = rng.integers(300, 400, size=(3, size, size)).astype(np.uint16)
    data[:, rasterize(hulls, out_shape=(size, size), transform=PX) > 0] = 3000
    if nodata_rows:
        data[:, size - nodata_rows:] = 0
    return write_raster(path, data, crs=crs, transform=transform, nodata=0, descriptions=BANDS)


@pytest.fixture(scope="session")
def harbour(tmp_path_factory) -> Path:
    """The 200 px harbour (HULLS, 10 m UTM pixels) with a 40-row nodata strip. Read-only: tests write elsewhere."""
    return write_harbour(tmp_path_factory.mktemp("harbour") / "harbour.tif", nodata_rows=40)


@pytest.fixture(scope="session")
def small_harbour(tmp_path_factory) -> Path:
    """The 96 px harbour of SMALL_HULLS, for tests that run the default model (in which it finds all three).
    Read-only."""
    return write_harbour(tmp_path_factory.mktemp("harbour") / "small.tif", size=96, hulls=SMALL_HULLS)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A randomly initialised sam_tiny bundle (128 px tiles, 16 px overlap, 10 m pixels): detection must run end to
    end, whatever it finds. Read-only."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return save_bundle(ShipSam.from_config("sam_tiny"), BundleCard("sam_tiny", BANDS, 10.0, 128, 16), path)


def ship_dataset(out, seed=0, size=256, ships=10, tile=128):
    """A prepared dataset of a ``size``-px scene with elongated ships at 35-55 / 135-145 degrees (so a filled
    box is a poor mask: IoU ~0.35), bright hulls on dark water, cut into ``tile``-px tiles."""
    rng = np.random.default_rng(seed)
    hulls = []
    while len(hulls) < ships:
        col, row = rng.uniform(20, size - 20, 2)
        length, beam = rng.uniform(28, 44), rng.uniform(6, 9)
        angle = rng.choice([35, 45, 55, 135, 145]) + rng.uniform(-5, 5)
        hull = ship(col, row, length, beam, angle, PX)
        if not any(hull.buffer(3).intersects(h) for h in hulls):
            hulls.append(hull)
    geoms = in_crs(hulls, UTM)
    data = rng.normal(60, 8, (3, size, size))
    on_ship = rasterize(geoms, out_shape=(size, size), transform=UTM) > 0
    data[:, on_ship] = rng.normal(200, 10, (3, int(on_ship.sum())))
    scene = write_raster(f"{out}.tif", np.clip(data, 0, 255).astype(np.uint8), descriptions=["R", "G", "B"])
    labels = f"{out}.geojson"
    gpd.GeoDataFrame({"id": range(ships)}, geometry=geoms, crs="EPSG:32631").to_file(labels)
    prepare_dataset(scene, labels, out, tile_size=tile, overlap=0)
    return out


@pytest.fixture(scope="session")
def datasets(tmp_path_factory):
    """Two prepared datasets of ten ships each (256 px scenes, four 128 px tiles). Read-only: tests that change
    one copy it first."""
    root = tmp_path_factory.mktemp("ships")
    return [ship_dataset(root / f"ds{i}", seed=i) for i in range(2)]


def assert_refused(result, path):
    """A refused command: exit 2, one stderr line `Error: <path>: ...`, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert str(path) in lines[0] or Path(path).name in lines[0], lines[0]
    assert "Traceback" not in result.output


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def scene_and_labels(folder: Path, size: int = 64):
    """A 3-band 10 m UTM scene with two bright ships, and their labels as GeoJSON (WGS84)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = rng.integers(300, 400, size=(3, size, size)).astype(np.uint16)
    hulls = [ship(20, 20, 16, 4, 10), ship(44, 40, 14, 4, 70)]
    scene = write_raster(folder / "scene.tif", data, nodata=0, descriptions=BANDS)
    labels = folder / "labels.geojson"
    gpd.GeoDataFrame({"id": [1, 2]}, geometry=hulls, crs="EPSG:32631").to_crs("EPSG:4326").to_file(labels)
    return scene, labels


@pytest.fixture
def sam_forbidden(monkeypatch):
    """SAM's encoder and decoder raise if anything runs them: for models that find and outline ships themselves."""

    def no_sam(*args, **kwargs):
        raise AssertionError("SAM ran")

    from samgeo_ship.models.shipsam import ShipSam

    monkeypatch.setattr(ShipSam, "encode", no_sam)
    monkeypatch.setattr(ShipSam, "decode", no_sam)
