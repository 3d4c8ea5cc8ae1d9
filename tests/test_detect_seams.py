"""Ships across tile seams, end to end through detect_scene and `shipseg detect` with the bundled default model: one
polygon per ship whatever the tiling, and a progress count that ends at the number of ships written."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner
from pyproj import CRS

import samgeo_ship.inference.detector as detect_module
from shipseg_cli.main import cli
from samgeo_ship import detect as detect_scene
from samgeo_ship.models.zoo import default_model
from samgeo_ship.inference.prompts import assign_prompts
from samgeo_ship.metrics import polygon_iou
from samgeo_ship.models.bundle import read_card
from samgeo_ship.synthetic import SceneTruth, Ship, SynthSpec, write_raster
from samgeo_ship.synthetic_scene import hull_outline
from samgeo_ship.tiling import TileGrid

DEFAULT_MODEL = default_model()

# (tile size, overlap) in model pixels, the first the default model's own; all have 48 px cores, so the seams lie at
# 48 and 96 px in every run. The seam ships span ~26 and ~18 px across their seams: the 8 px halo cuts both (each tile
# sees a part), the wider halos may let one tile see a ship whole.
# (Below the model's 8 px halo its masks stop short of the window edge and two halves may not meet.)
SETTINGS = [(64, 8), (72, 12), (80, 16)]
# (col, row, length m, beam m, heading): two ~32 px ships centred on the seams at col 96 and col 48, one in a core.
SHIPS = [(96, 40, 280, 46, 120), (48, 100, 280, 48, 150), (120, 118, 260, 44, 20)]
SEAM_SHIPS = [0, 1]


@pytest.fixture(scope="module")
def seams(tmp_path_factory):
    """A 144 px Sentinel-2-like scene at the default model's pixel size: open water and three large bright ships,
    painted by the synthetic scene generator. Returns (path, hulls in the scene CRS)."""
    px = read_card(DEFAULT_MODEL).pixel_size_m
    transform, utm = Affine(px, 0, 500_000.0, 0, -px, 4_800_000.0), CRS.from_epsg(32631)
    ships = [Ship(i, hull_outline(*(transform @ (c, r)), length, beam, heading), length, beam, heading, False,
                  i in SEAM_SHIPS) for i, (c, r, length, beam, heading) in enumerate(SHIPS)]
    spec = SynthSpec(144, 144, pixel_size_m=px, bands="s2", n_ships=len(ships), seed=0, nodata_fraction=0.0)
    path = tmp_path_factory.mktemp("seams") / "seams.tif"
    write_raster(SceneTruth(spec, ships, utm, utm, transform, [], None), path)
    return path, [s.hull for s in ships]


def polygons_per_ship(ships, hulls):
    """For each hull, the IoUs of the detected polygons that touch it."""
    return [[polygon_iou(g, hull) for g in ships.geometry if g.intersects(hull)] for hull in hulls]


@pytest.mark.parametrize("tile_size, overlap", SETTINGS)
def test_every_ship_is_one_polygon_with_any_tiling(seams, tile_size, overlap):
    path, hulls = seams
    ships = detect_scene(path, DEFAULT_MODEL, device="cpu", tile_size=tile_size, overlap=overlap)
    ious = polygons_per_ship(ships, hulls)
    assert [len(k) for k in ious] == [1, 1, 1], ious
    assert min(k[0] for k in ious) > 0.7, ious  # whole ships, not halves
    assert len(ships) == 3


@pytest.mark.parametrize("tile_size, overlap", SETTINGS)
def test_a_box_across_a_seam_is_one_whole_ship(seams, tile_size, overlap):
    # The seam ships reach past the window of the tile holding their box's centre; the box also goes to the tile on
    # the other side of the seam, and the two parts are one ship.
    path, hulls = seams
    boxes = np.array([h.bounds for h in hulls])
    ships = detect_scene(path, DEFAULT_MODEL, boxes=boxes, device="cpu", tile_size=tile_size, overlap=overlap)
    assert sorted(ships["prompt"]) == [0, 1, 2] and (ships.geom_type == "Polygon").all()
    for prompt, geom in zip(ships["prompt"], ships.geometry):
        assert polygon_iou(geom, hulls[prompt]) > 0.75, prompt


def test_the_last_progress_event_counts_the_ships_written(seams, tmp_path, monkeypatch):
    path, _ = seams
    added = []

    class Counting(detect_module.ShipMerger):
        def add(self, parts):
            parts = list(parts)
            added.extend(parts)
            super().add(parts)

    monkeypatch.setattr(detect_module, "ShipMerger", Counting)
    out = tmp_path / "ships.geojson"
    # The model's own tiling (64 px, 8 px halo): both seam ships reach past the halo, so each comes in two parts.
    result = CliRunner().invoke(cli, ["detect", str(path), "-o", str(out), "--progress", "json", "--batch-size", "2",
                                      "-m", "default"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    progress, done = [e for e in events if e["event"] == "progress"], events[-1]
    written = len(json.loads(out.read_text())["features"])
    assert {e["event"] for e in events[:-1]} == {"progress", "plan"}  # a model named: no zoo pick announced
    assert done["event"] == "done" and progress[-1]["tiles_done"] == progress[-1]["tiles_total"] == 9
    assert progress[-1]["ships"] == done["ships"] == written == 3
    assert all(e["ships"] <= written for e in progress)
    assert len(added) > written  # the seam ships came in two parts each: the count is after merging, not before


def test_tile_size_and_overlap_that_leave_no_core_are_refused(seams, tmp_path):
    path, _ = seams
    out = tmp_path / "ships.geojson"
    result = CliRunner().invoke(cli, ["detect", str(path), "-o", str(out), "-q", "--tile-size", "32",
                                      "--overlap", "16"])
    assert result.exit_code == 2 and "overlap" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_box_goes_to_every_tile_it_reaches_only_when_one_window_cannot_hold_it():
    grid = TileGrid(144, 144, 64, 8)  # 48 px cores; windows reach 8 px past them
    scene = SimpleNamespace(transform=Affine.identity(), width=144, height=144, path=Path("scene.tif"))
    # box 0 crosses the seam at col 48 but fits in the window of the tile holding its centre; box 1 does not
    prompts = assign_prompts(grid, scene, boxes=np.array([[40.0, 10, 54, 20], [30.0, 60, 70, 70]]))
    assert sorted(prompts) == [(0, 0), (1, 0), (1, 1)]
    assert prompts[(0, 0)].ids.tolist() == [0] and prompts[(0, 0)].boxes.tolist() == [[48, 18, 62, 28]]
    # in each tile's pixels, cut at its window
    assert prompts[(1, 0)].ids.tolist() == [1] and prompts[(1, 0)].boxes.tolist() == [[38, 20, 64, 30]]
    assert prompts[(1, 1)].ids.tolist() == [1] and prompts[(1, 1)].boxes.tolist() == [[0, 20, 30, 30]]
