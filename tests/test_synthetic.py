"""Synthetic harbour scenes: the truth is valid, exact and matches the pixels, whatever the window or the CRS."""

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.features import rasterize
from shapely.geometry import box

from samgeo_ship.errors import ShipsegError
from samgeo_ship.synthetic import SynthSpec, make_scene, plan_scene

SMALL = SynthSpec(300, 300, n_ships=15, seed=3, seam_every_px=100, nodata_fraction=0.1)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The small s2 scene on disk: (truth, tif path, geojson path)."""
    root = tmp_path_factory.mktemp("synth")
    truth = make_scene(SMALL, root / "s2.tif", root / "s2.geojson")
    return truth, root / "s2.tif", root / "s2.geojson"


def _bright_check(tif, geojson):
    """Per-ship maximum and overall median (band sum) of the pixels under the truth, and the water median."""
    ships = gpd.read_file(geojson)
    with rasterio.open(tif) as src:
        data = src.read().astype(float).sum(axis=0)
        ships = ships.to_crs(src.crs)
        ids = rasterize(((g, i + 1) for i, g in enumerate(ships.geometry)), data.shape, transform=src.transform,
                        all_touched=True, dtype="int32")
        inside = rasterize(ships.geometry, data.shape, transform=src.transform).astype(bool)
        valid = src.dataset_mask() > 0
    water_median = np.median(data[valid & (ids == 0)])
    per_ship_max = [data[ids == i + 1].max() for i in range(len(ships))]
    return np.array(per_ship_max), np.median(data[inside & valid]), water_median


def test_truth_is_wgs84_polygons_with_attributes(scene):
    truth, _, geojson = scene
    ships = gpd.read_file(geojson)
    raw = json.loads(Path(geojson).read_text())
    assert ships.crs.to_epsg() == 4326
    assert len(ships) == truth.n_ships == SMALL.n_ships
    assert ships.geometry.is_valid.all() and (ships.geom_type == "Polygon").all()
    lon, lat = raw["features"][0]["geometry"]["coordinates"][0][0]
    assert -180 <= lon <= 180 and -90 <= lat <= 90 and abs(lon - SMALL.center_lonlat[0]) < 1
    assert abs(lat - SMALL.center_lonlat[1]) < 1  # lon/lat order, not lat/lon
    assert sorted(ships["ship_id"]) == list(range(len(ships)))
    assert ships["heading_deg"].between(0, 180).all()
    assert set(ships.columns) >= {"length_m", "beam_m", "moored", "crosses_seam"}


def test_ship_shapes_are_plausible_and_disjoint(scene):
    truth, _, geojson = scene
    ships = gpd.read_file(geojson).to_crs(truth.utm_crs)
    ratio = ships["length_m"] / ships["beam_m"]
    assert ratio.between(4, 8).all()
    assert ships["length_m"].between(60, 300).all()
    # The polygon's own extent matches the attributes (within the rounding of the coordinates).
    rects = ships.geometry.minimum_rotated_rectangle()
    for rect, length, beam in zip(rects, ships["length_m"], ships["beam_m"]):
        sides = sorted(np.hypot(*np.diff(np.asarray(rect.exterior.coords)[:3], axis=0).T))
        assert sides[1] == pytest.approx(length, rel=0.02) and sides[0] == pytest.approx(beam, rel=0.05)
    left, right = ships.sindex.query(ships.geometry, predicate="intersects")
    assert (left == right).all(), "two ships overlap"


def test_ships_avoid_land_and_some_are_moored_in_rafts(scene):
    truth, _, _ = scene
    land = gpd.GeoSeries([g for g, _ in truth.land], crs=truth.utm_crs).union_all()
    hulls = gpd.GeoSeries([s.hull for s in truth.ships], crs=truth.utm_crs)
    assert not hulls.intersects(land).any()
    moored = [s for s in truth.ships if s.moored]
    gaps = [a.hull.distance(b.hull) / SMALL.pixel_size_m for i, a in enumerate(moored) for b in moored[i + 1:]
            if abs((a.heading_deg - b.heading_deg) % 180) < 1e-6]
    assert any(0.9 <= g <= 2.1 for g in gaps), "no parallel pair 1-2 px apart"


def test_raster_bands_nodata_and_bright_ships(scene):
    _, tif, geojson = scene
    with rasterio.open(tif) as src:
        assert (src.count, src.dtypes[0], src.nodata) == (4, "uint16", 0)
        assert src.descriptions == ("B04", "B03", "B02", "B08")
        assert src.profile["tiled"] and src.profile["compress"] == "deflate"
        data = src.read()
    nodata = (data == 0).all(axis=0)
    assert 0.05 < nodata.mean() < 0.15
    assert ((data == 0).any(axis=0) == nodata).all(), "a valid pixel has a 0 band"
    water_nir = np.percentile(data[3][~nodata], 30)
    assert 50 <= water_nir <= 300
    per_ship_max, inside_median, water_median = _bright_check(tif, geojson)
    assert (per_ship_max > 2.5 * water_median).all()
    assert inside_median > 2.5 * water_median


def test_same_seed_same_pixels_whatever_the_window(tmp_path, scene):
    _, tif, _ = scene
    make_scene(SynthSpec(**{**SMALL.__dict__, "block_px": 96}), tmp_path / "b96.tif")
    make_scene(SynthSpec(**{**SMALL.__dict__, "seed": 4}), tmp_path / "other.tif")
    with rasterio.open(tif) as a, rasterio.open(tmp_path / "b96.tif") as b, rasterio.open(tmp_path / "other.tif") as c:
        assert a.read().tobytes() == b.read().tobytes()
        assert a.read().tobytes() != c.read().tobytes()
    assert (tmp_path / "b96.geojson").read_bytes() == scene[2].read_bytes()
    again = plan_scene(SMALL)
    assert [s.hull.wkb for s in again.ships] == [s.hull.wkb for s in scene[0].ships]


def test_ships_cross_seams_when_asked(scene):
    truth, _, _ = scene
    crossing = [s for s in truth.ships if s.crosses_seam]
    assert crossing
    with rasterio.open(scene[1]) as src:
        inv = ~src.transform
    for s in crossing:
        cols, rows = zip(*(inv @ xy for xy in s.hull.exterior.coords))
        assert any(min(v) < k < max(v) for v in (cols, rows) for k in (100, 200))
    none = plan_scene(SynthSpec(**{**SMALL.__dict__, "seam_every_px": 512}))
    assert not any(s.crosses_seam for s in none.ships)


@pytest.mark.parametrize("crs,bands", [("EPSG:4326", "rgb8"), ("EPSG:3857", "s2")])
def test_other_crs_truth_lands_on_bright_pixels(tmp_path, crs, bands):
    spec = SynthSpec(**{**SMALL.__dict__, "crs": crs, "bands": bands})
    truth = make_scene(spec, tmp_path / "scene.tif")
    with rasterio.open(tmp_path / "scene.tif") as src:
        assert src.crs.to_epsg() == int(crs[5:])
        assert src.count == (3 if bands == "rgb8" else 4)
        if crs == "EPSG:4326":  # 10 m at 43 N in degrees
            assert src.res[1] == pytest.approx(10 / 111_000, rel=0.02)
            assert src.descriptions == ("red", "green", "blue")
    assert truth.n_ships == spec.n_ships
    per_ship_max, inside_median, water_median = _bright_check(tmp_path / "scene.tif", tmp_path / "scene.geojson")
    assert (per_ship_max > 1.5 * water_median).all()
    assert inside_median > 1.5 * water_median


@pytest.mark.parametrize("size", [64, 128, 200])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_scenes_place_every_ship_inside(size, seed):
    """Small scenes get less harbour (or none) but still every ship, valid, inside, off land and deterministic."""
    spec = SynthSpec(size, size, n_ships=5, seed=seed, seam_every_px=size // 2)
    truth = plan_scene(spec)
    assert truth.n_ships == spec.n_ships
    hulls = gpd.GeoSeries([s.hull for s in truth.ships], crs=truth.utm_crs)
    assert hulls.is_valid.all() and (hulls.geom_type == "Polygon").all()
    assert all(box(0, 0, size, size).contains(truth.to_px(h)) for h in hulls)
    assert not hulls.intersects(gpd.GeoSeries([g for g, _ in truth.land]).union_all()).any()
    left, right = hulls.sindex.query(hulls, predicate="intersects")
    assert (left == right).all(), "two ships overlap"
    again = plan_scene(spec)
    assert [s.hull.wkb for s in again.ships] == [s.hull.wkb for s in truth.ships]
    assert [(g.wkb, k) for g, k in again.land] == [(g.wkb, k) for g, k in truth.land]


def test_tiny_scene_writes_and_too_many_ships_is_a_clear_error(tmp_path):
    truth = make_scene(SynthSpec(64, 64, bands="rgb8", n_ships=4, seed=1), tmp_path / "tiny.tif")
    with rasterio.open(tmp_path / "tiny.tif") as src:
        assert (src.width, src.height, src.count) == (64, 64, 3)
    assert len(json.loads((tmp_path / "tiny.geojson").read_text())["features"]) == truth.n_ships == 4
    with pytest.raises(ShipsegError, match="of 40 ships fit"):
        plan_scene(SynthSpec(64, 64, n_ships=40, seed=0), "tiny.tif")


def test_cli_writes_scene_and_truth(tmp_path):
    from shipseg_cli.main import cli
    out = tmp_path / "scene.tif"
    result = CliRunner().invoke(cli, ["synth", str(out), "--size", "200x150", "--ships", "5", "--bands", "rgb8"])
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as src:
        assert (src.width, src.height, src.count) == (200, 150, 3)
    assert len(json.loads(out.with_suffix(".geojson").read_text())["features"]) == 5


@pytest.mark.parametrize("args", [["--size", "200by150"], ["--crs", "EPSG:999999"], []])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args):
    from shipseg_cli.main import cli
    out = tmp_path / "scene.tif"
    if not args:  # an existing output without --overwrite
        out.write_bytes(b"keep me")
    result = CliRunner().invoke(cli, ["synth", str(out), "--ships", "3", *args])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "Error:" in result.output
    assert not args and out.read_bytes() == b"keep me" or args and not out.exists()
