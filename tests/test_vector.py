import json

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Transformer
from rasterio.features import rasterize
from shapely import affinity

from samgeo_ship.errors import ShipsegError
from samgeo_ship.metrics import polygon_iou
from samgeo_ship.tiling import TileGrid
from samgeo_ship.vector.attributes import measure, ship_table
from samgeo_ship.vector.merge import (Part, ShipMerger, largest_polygon, owns, suppress_overlaps,
                                      touches_edge)
from samgeo_ship.vector.vectorise import vectorise
from samgeo_ship.vector.writers import write_ships

from conftest import UTM, ring_is_ccw, ship


def tiled_parts(hulls, width, height, tile_size, overlap):
    """What a perfect model would hand to merging: each tile's view of each ship (cut at the window edge and at
    the scene edge), kept by the tile that owns it, vectorised in the tile's own affine."""
    grid = TileGrid(width, height, tile_size, overlap, UTM)
    parts = []
    for tile in grid:
        rows = np.arange(tile.size) + int(tile.window.row_off)
        cols = np.arange(tile.size) + int(tile.window.col_off)
        inside = ((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :]
        for hull in hulls:
            mask = rasterize([hull], out_shape=(tile.size, tile.size), transform=tile.transform, dtype=np.uint8) > 0
            mask &= inside
            if mask.any() and owns(tile.core_slices(), mask):
                parts.append(Part(largest_polygon(vectorise(mask, tile.transform)), 0.9, touches_edge(mask)))
    return parts


def merged(parts):
    merger = ShipMerger(pixel_size=10.0)
    merger.add(parts)
    return merger.ships()


def tiled_detections(hulls, width, height, tile_size, overlap):
    return merged(tiled_parts(hulls, width, height, tile_size, overlap))


@pytest.mark.parametrize("tile_size, overlap", [(64, 0), (96, 8), (128, 20)])
def test_ships_across_seams_become_exactly_one_polygon_each(tile_size, overlap):
    # a 120 px ship crossing several seams of every grid, and a 24 px one across the 80/88 px seams
    hulls = [ship(128, 128, 120, 8, 20), ship(82, 40, 24, 6, 0), ship(200, 220, 30, 6, 100)]
    merged = tiled_detections(hulls, 256, 256, tile_size, overlap)
    assert len(merged) == 3
    assert [m.geometry.geom_type for m in merged] == ["Polygon"] * 3
    # ids are by position (north first), whatever the grid: ship 2 (row 40) is first, then ship 1, then ship 3
    for m, hull in zip(merged, [hulls[1], hulls[0], hulls[2]]):
        assert polygon_iou(m.geometry, hull) > 0.85


def test_merge_result_does_not_depend_on_the_grid():
    hulls = [ship(128, 128, 120, 8, 20), ship(82, 40, 24, 6, 0)]
    runs = [tiled_detections(hulls, 256, 256, s, o) for s, o in [(64, 0), (96, 8), (128, 20)]]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert polygon_iou(a.geometry, b.geometry) > 0.95


@pytest.mark.parametrize("seed", range(3))
def test_the_running_count_is_the_final_count_whatever_the_order_parts_arrive_in(seed):
    hulls = [ship(128, 128, 120, 8, 20), ship(82, 40, 24, 6, 0), ship(200, 220, 30, 6, 100)]
    parts = tiled_parts(hulls, 256, 256, 64, 0)
    assert len(parts) > 3  # the long ship comes in pieces
    expected = merged(parts)
    shuffled = [parts[k] for k in np.random.default_rng(seed).permutation(len(parts))]
    merger = ShipMerger(10.0, cell=300.0)  # cells smaller than the long ship: it spans several
    counts = []
    for k in range(0, len(shuffled), 2):
        merger.add(shuffled[k:k + 2])
        counts.append(len(merger))
    ships = merger.ships()
    assert counts[-1] == len(ships) == 3
    assert all(a.geometry.equals(b.geometry) for a, b in zip(ships, expected))


def test_parts_of_one_user_prompt_are_one_ship_and_prompts_are_never_merged():
    a = shapely.box(0, 0, 100, 20)
    rest = shapely.box(100, 0, 160, 20)  # prompt 0's ship, seen by the tile across the seam
    merger = ShipMerger(10.0)
    merger.add([Part(a, 0.5, prompt=0), Part(a, 0.6, prompt=1), Part(rest, 0.7, prompt=0)])
    merged = merger.ships()
    assert len(merger) == 2 and sorted(m.prompt for m in merged) == [0, 1]
    whole = next(m for m in merged if m.prompt == 0)
    assert whole.geometry.area == pytest.approx(160 * 20) and whole.score == 0.7


def test_merging_only_the_parts_above_a_score_is_what_that_threshold_detects():
    """A weak part that overlaps a ship joins it at a low threshold (union, best score); above its score the ship
    is the strong part alone, and a weak part elsewhere is gone: what calibrate sweeps over."""
    ship = shapely.box(0, 0, 100, 20)
    smear = shapely.box(10, 0, 140, 30)  # weak, overlapping most of the ship
    speck = shapely.box(500, 500, 520, 510)
    merger = ShipMerger(10.0)
    merger.add([Part(ship, 0.9), Part(smear, 0.2), Part(speck, 0.3)])
    low = merger.ships()
    assert len(low) == 2 and max(m.geometry.area for m in low) > ship.area
    high = merger.above(0.5)
    assert len(high) == 1 and high.ships()[0].geometry.equals(ship) and high.ships()[0].score == 0.9
    assert len(merger.above(0.25)) == 2 and len(merger) == 2  # the original merger is unchanged


def test_a_weaker_ship_overlapping_a_stronger_one_is_dropped_but_neighbours_stay():
    """Two partial masks of one moored ship overlap by 40 % of the smaller (below the merge rule): the weaker goes;
    ships moored side by side 1 px apart and a ship elsewhere stay, in their order."""
    strong = Part(shapely.box(0, 0, 100, 20), 0.6)
    partial = Part(shapely.box(60, 0, 160, 20), 0.4)  # 40 of its 100 m inside the strong one
    neighbour = Part(shapely.box(0, 21, 100, 41), 0.3)  # moored alongside, touching nothing
    away = Part(shapely.box(500, 0, 600, 20), 0.2)
    kept = suppress_overlaps([strong, partial, neighbour, away])
    assert kept == [strong, neighbour, away]
    assert suppress_overlaps([partial, strong], overlap=0.5) == [partial, strong]  # 0.4 <= 0.5: both stay
    assert suppress_overlaps([]) == [] and suppress_overlaps([away]) == [away]


def hull_m(cx, cy, length, beam, heading):
    """A length x beam rectangle centred on (cx, cy) metres, long axis at ``heading`` degrees clockwise from
    north (grid north of a projected CRS)."""
    box = shapely.box(cx - beam / 2, cy - length / 2, cx + beam / 2, cy + length / 2)
    return affinity.rotate(box, -heading, origin=(cx, cy))


def test_attributes_in_utm():
    hull = hull_m(500_000.0, 4_790_000.0, 200.0, 30.0, 60.0)  # on zone 31's central meridian: grid = true north
    m = measure(gpd.GeoSeries([hull], crs="EPSG:32631"))
    assert m["length_m"][0] == pytest.approx(200, rel=0.02)
    assert m["beam_m"][0] == pytest.approx(30, rel=0.02)
    assert m["heading_deg"][0] == pytest.approx(60, abs=2)
    assert m["area_m2"][0] == pytest.approx(6000, rel=0.02)
    assert m["lon"][0] == pytest.approx(3.0, abs=1e-6) and 43 < m["lat"][0] < 43.4


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:4326"])
def test_attributes_in_web_mercator_and_degrees_match_utm(crs):
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32631", always_xy=True)
    cx, cy = to_utm.transform(3.0, 35.0)
    hull = hull_m(cx, cy, 200.0, 30.0, 60.0)
    utm = measure(gpd.GeoSeries([hull], crs="EPSG:32631"))
    other = measure(gpd.GeoSeries([hull], crs="EPSG:32631").to_crs(crs))
    for key in ("length_m", "beam_m"):
        assert other[key][0] == pytest.approx(utm[key][0], rel=0.02)
    assert other["heading_deg"][0] == pytest.approx(utm["heading_deg"][0], abs=2)
    # Web Mercator units are 1/cos(35 deg) = 1.22x too long on the ground: a naive length would be 244 m
    naive = gpd.GeoSeries([hull], crs="EPSG:32631").to_crs("EPSG:3857").iloc[0].minimum_rotated_rectangle.length
    assert naive / 2 > 1.15 * (utm["length_m"][0] + utm["beam_m"][0])


def ships_fixture(n=3):
    hulls = [hull_m(500_000.0 + 1000 * i, 4_790_000.0, 200.0, 30.0, 30.0 * i) for i in range(n)]
    return ship_table(gpd.GeoSeries(hulls, crs="EPSG:32631"), [0.9] * n, "scene", "model")


@pytest.mark.parametrize("column, decimals", [("length_m", 1), ("beam_m", 1), ("heading_deg", 1), ("area_m2", 0),
                                              ("lon", 6)])
def test_ship_table_rounds_measurements(column, decimals):
    """0.1 m and 0.1 degree in the output, so a table or a label never shows 87.2066511 m; positions to 1e-6."""
    values = ships_fixture()[column].to_numpy()
    assert np.array_equal(values, np.round(values, decimals))
    assert ships_fixture()["length_m"].iloc[0] == pytest.approx(200.0, abs=0.1)


def test_geojson_is_rfc7946(tmp_path):
    ships = ships_fixture()
    # clockwise exterior on purpose: the writer must orient it
    ships.loc[0, "geometry"] = shapely.Polygon(list(ships.geometry.iloc[0].exterior.coords)[::-1])
    path = write_ships(ships, tmp_path / "ships.geojson")
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection" and "crs" not in doc and len(doc["features"]) == 3
    for feature in doc["features"]:
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
        exterior = feature["geometry"]["coordinates"][0]
        assert exterior[0] == exterior[-1] and ring_is_ccw(exterior)
        lons, lats = np.asarray(exterior).T
        assert np.all(np.abs(lons) <= 180) and np.all(np.abs(lats) <= 90)
        assert 2.9 < lons.mean() < 3.1 and 43 < lats.mean() < 43.4  # lon/lat order, not lat/lon
        props = feature["properties"]
        assert feature["id"] == props["ship_id"]
        assert {"score", "area_m2", "length_m", "beam_m", "heading_deg", "lon", "lat", "scene", "model"} <= set(props)


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".fgb", ".parquet"])
def test_every_format_round_trips_and_an_empty_result_is_valid(tmp_path, suffix):
    ships = ships_fixture()
    path = write_ships(ships, tmp_path / f"ships{suffix}")
    back = gpd.read_parquet(path) if suffix == ".parquet" else gpd.read_file(path)
    assert len(back) == 3 and back.crs.to_epsg() == (4326 if suffix == ".geojson" else 32631)
    empty = write_ships(ships.iloc[:0], tmp_path / f"empty{suffix}")
    back = gpd.read_parquet(empty) if suffix == ".parquet" else gpd.read_file(empty)
    assert len(back) == 0
    if suffix == ".geojson":
        assert json.loads(empty.read_text()) == {"type": "FeatureCollection", "features": []}


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "ships.parquet"
    target.write_bytes(b"previous result")

    def half_write(self, path, *a, **k):
        open(path, "wb").write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(gpd.GeoDataFrame, "to_parquet", half_write)
    with pytest.raises(ShipsegError, match="cannot be written .disk full"):
        write_ships(ships_fixture(), target)
    assert target.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ships.parquet"]
