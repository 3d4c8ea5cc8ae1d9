import json
import re

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from shipseg_cli.main import cli
from samgeo_ship.dataset import prepare_dataset

from conftest import SCENES, coco_file, ship, write_raster


@pytest.fixture(scope="module")
def labelled_harbour(tmp_path_factory):
    """A 16-bit 4-band scene with a nodata strip and 6 ships, two of them across 64/96/128-px seams: (scene, labels).
    Read-only."""
    tmp_path = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(3)
    data = rng.integers(300, 600, size=(4, 250, 260)).astype(np.uint16)
    data[:, 230:, :] = 0
    scene = write_raster(tmp_path / "harbour.tif", data, nodata=0, descriptions=["B04", "B03", "B02", "B08"])
    hulls = [ship(40, 40, 30, 6, 10), ship(128, 60, 40, 7, 80), ship(192, 96, 24, 5, 0), ship(60, 150, 35, 6, 45),
             ship(200, 200, 28, 5, 120), ship(100, 190, 30, 6, 170)]
    labels = tmp_path / "ships.geojson"
    gpd.GeoDataFrame({"id": range(1, 7)}, geometry=hulls, crs="EPSG:32631").to_crs("EPSG:4326").to_file(labels)
    return scene, labels


def ship_masks(dataset, shape=(250, 260)):
    """Per ship, the union of its tile masks placed back in the scene grid (from the files alone)."""
    card = json.loads((dataset / "dataset.json").read_text())
    index = gpd.read_parquet(dataset / "instances.parquet")
    with rasterio.open(card["scene"]) as scene:
        to_scene_px = ~scene.transform
    out = {}
    for tile, rows in index.groupby("tile"):
        with rasterio.open(dataset / "masks" / f"{tile}.tif") as src:
            inst = src.read(1)
            col, row = to_scene_px @ (src.transform.c, src.transform.f)
        for _, r in rows.iterrows():
            m = out.setdefault(r.ship_id, np.zeros(shape, bool))
            rr, cc = np.nonzero(inst == r.instance)
            rr, cc = rr + round(row), cc + round(col)
            keep = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
            m[rr[keep], cc[keep]] = True
    return out


def test_prepare_writes_a_dataset_readable_without_shipseg(tmp_path, labelled_harbour):
    scene, labels = labelled_harbour
    result = CliRunner().invoke(cli, ["prepare", str(scene), str(labels), "-o", str(tmp_path / "ds"),
                                      "--bands", "B04,B03,B02", "--tile-size", "96", "--overlap", "8", "-q"])
    assert result.exit_code == 0, result.output
    assert re.search(r"6 ships \(6 in tiles", result.output)
    card = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert card["bands"] == ["B04", "B03", "B02"] and card["crs"] == "EPSG:32631"
    assert card["summary"]["ships"] == 6 and card["summary"]["truncated_instances"] > 0
    index = gpd.read_parquet(tmp_path / "ds" / "instances.parquet")
    assert set(index.ship_id) == set(range(1, 7)) and index.crs == "EPSG:32631"
    with rasterio.open(tmp_path / "ds" / "images" / f"{index.tile.iloc[0]}.tif") as chip:
        assert chip.count == 3 and chip.dtypes[0] == "uint8" and chip.crs == "EPSG:32631"
        assert chip.read().max() > 0
    # tiles whose core is all nodata (rows >= 230) are not written
    assert card["summary"]["tiles_skipped_nodata"] >= 0
    assert len(list((tmp_path / "ds" / "images").iterdir())) == card["summary"]["tiles"]


def test_prepare_does_not_depend_on_tile_size(tmp_path, labelled_harbour):
    scene, labels = labelled_harbour
    runs = []
    for size, overlap in [(64, 0), (96, 8), (128, 20)]:
        out = tmp_path / f"ds{size}"
        summary = prepare_dataset(scene, labels, out, tile_size=size, overlap=overlap)
        runs.append((summary, ship_masks(out)))
    (first, masks0), others = runs[0], runs[1:]
    for summary, masks in others:
        assert (summary.ships, summary.ships_in_tiles) == (first.ships, first.ships_in_tiles)
        assert masks.keys() == masks0.keys()
        for ship_id in masks0:
            np.testing.assert_array_equal(masks[ship_id], masks0[ship_id])
    assert len({s.truncated_instances for s, _ in runs}) > 1  # only truncation flags change


@pytest.mark.parametrize("case, words", [
    ("missing", "no such file"), ("not_raster", "not a raster"), ("no_crs", "raster has no CRS"),
    ("band", "no band named 'B99'"), ("labels_no_crs", "labels have no CRS"), ("empty", "holds no labels"),
    ("coco_size", "the COCO image is 10 x 10 px"), ("exists", "already exists"),
])
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, labelled_harbour, case, words):
    scene, labels = labelled_harbour
    out = tmp_path / "ds"
    args = {"bands": "B04,B03,B02"}
    if case == "missing":
        scene = tmp_path / "nope.tif"
    elif case == "not_raster":
        scene = tmp_path / "text.tif"
        scene.write_text("hello")
    elif case == "no_crs":
        scene = write_raster(tmp_path / "nocrs.tif", np.ones((3, 50, 50), np.uint8), crs=None)
        args = {}
    elif case == "band":
        args = {"bands": "B04,B99"}
    elif case == "labels_no_crs":
        labels = tmp_path / "l.gpkg"
        gpd.GeoDataFrame(geometry=[ship(5, 5, 20, 4, 0)]).to_file(labels)
    elif case == "empty":
        labels = tmp_path / "empty.geojson"
        labels.write_text('{"type": "FeatureCollection", "features": []}')
    elif case == "coco_size":
        labels = coco_file(tmp_path / "c.json", 10, 10, [[[1, 1, 5, 1, 5, 5]]])
    elif case == "exists":
        out.mkdir()
    argv = ["prepare", str(scene), str(labels), "-o", str(out), "-q"]
    argv += [x for k, v in args.items() for x in (f"--{k}", v)]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("Error: ")
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".ds", "ds")))
    assert leftovers == (["ds"] if case == "exists" else [])
    if case == "exists":
        assert not any(out.iterdir())


@pytest.mark.sen2ships
@pytest.mark.parametrize("name", SCENES)
def test_prepare_counts_every_sen2ships_ship(tmp_path, sen2ships, name):
    folder = sen2ships / name
    n_labels = len(json.loads((folder / "labels.coco.json").read_text())["annotations"])
    summary = prepare_dataset(folder / "scene.tif", folder / "labels.coco.json", tmp_path / "ds",
                              bands="B04,B03,B02", tile_size=256, overlap=16)
    assert summary.ships + sum(summary.dropped.values()) == n_labels
    assert summary.ships_in_tiles == summary.ships


def test_labelled_area_blanks_the_unlabelled_rest_of_the_scene(tmp_path, labelled_harbour):
    """A partly labelled scene: ships 1-3 labelled in the top band (the labelled area) and ship 5 outside it. Ships
    4 and 6 are unlabelled, so no chip may show them: their pixels are nodata, never background."""
    scene, all_labels = labelled_harbour
    ships = gpd.read_file(all_labels).to_crs("EPSG:32631")
    labels, area = tmp_path / "some.gpkg", tmp_path / "area.geojson"
    ships[ships.id.isin([1, 2, 3, 5])].to_file(labels)
    gpd.GeoDataFrame(geometry=[ship(130, 55, 260, 110, 0)], crs="EPSG:32631").to_crs("EPSG:4326").to_file(area)
    result = CliRunner().invoke(cli, ["prepare", str(scene), str(labels), "-o", str(tmp_path / "ds"), "--tile-size",
                                      "64", "--overlap", "0", "--labelled-area", str(area), "-q"])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    summary = card["summary"]
    whole = prepare_dataset(scene, all_labels, tmp_path / "whole", tile_size=64, overlap=0)
    assert summary["tiles_outside_area"] > 0 and f"{summary['tiles_outside_area']} outside the labelled area" in \
        result.output
    assert summary["tiles"] + summary["tiles_outside_area"] + summary["tiles_skipped_nodata"] == \
        whole.tiles + whole.tiles_skipped_nodata
    assert card["labelled_area"] == str(area)
    valid, value = np.zeros((250, 260), bool), np.zeros((250, 260), np.uint16)
    with rasterio.open(scene) as src:
        to_scene_px = ~src.transform
    for chip in (tmp_path / "ds" / "images").iterdir():
        with rasterio.open(chip) as src:
            col, row = (round(v) for v in to_scene_px @ (src.transform.c, src.transform.f))
            h, w = min(64, 250 - row), min(64, 260 - col)
            valid[row:row + h, col:col + w] |= src.dataset_mask()[:h, :w] > 0
            value[row:row + h, col:col + w] |= src.read().max(axis=0)[:h, :w]
    truth = ship_masks(tmp_path / "whole")
    assert set(gpd.read_parquet(tmp_path / "ds" / "instances.parquet").ship_id) == {1, 2, 3, 5}
    for hidden in (4, 6):
        assert not valid[truth[hidden]].any() and not value[truth[hidden]].any()
    for known in (1, 2, 3, 5):
        assert valid[truth[known]].all()
    assert valid[:100].mean() > 0.99  # the labelled area (rows 0-110) holds no nodata
    assert valid[120:].sum() == truth[5].sum() > 0  # below it only the labelled ship 5 is known


@pytest.mark.parametrize("case, words", [("outside", "no polygon of the labelled area lies in the scene"),
                                         ("empty", "labelled area "), ("missing", "labelled area ")])
def test_bad_labelled_area_is_one_line_exit_2(tmp_path, labelled_harbour, case, words):
    scene, labels = labelled_harbour
    area = tmp_path / "area.geojson"
    if case == "outside":
        gpd.GeoDataFrame(geometry=[ship(900, 900, 50, 50, 0)], crs="EPSG:32631").to_file(area)
    elif case == "empty":
        area.write_text('{"type": "FeatureCollection", "features": []}')
    result = CliRunner().invoke(cli, ["prepare", str(scene), str(labels), "-o", str(tmp_path / "ds"),
                                      "--labelled-area", str(area), "-q"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0]
    assert not any(p.name.startswith((".ds", "ds")) for p in tmp_path.iterdir())
