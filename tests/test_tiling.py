import numpy as np
import pytest
from affine import Affine
from hypothesis import given, settings, strategies as st

from samgeo_ship.raster import Scene
from samgeo_ship.tiling import TileGrid

from conftest import write_raster


@settings(max_examples=100, deadline=None)
@given(width=st.integers(1, 400), height=st.integers(1, 400), tile=st.integers(8, 300), frac=st.floats(0, 0.49))
def test_cores_partition_the_scene(width, height, tile, frac):
    overlap = int(tile * frac)
    if tile - 2 * overlap < 1:
        return
    grid = TileGrid(width, height, tile, overlap)
    cover = np.zeros((height, width), np.int32)
    for t in grid:
        assert (t.window.width, t.window.height) == (tile, tile)
        rows, cols = t.core_slices()
        c = t.core
        cover[int(c.row_off):int(c.row_off + c.height), int(c.col_off):int(c.col_off + c.width)] += 1
        # the core sits inside the window, at the halo's distance from its top-left corner
        assert rows.start == overlap and cols.start == overlap
        assert rows.stop <= tile and cols.stop <= tile
    assert (cover == 1).all()
    assert len(list(grid)) == len(grid)


def test_tile_transform_places_tile_pixels_in_the_scene():
    scene_tf = Affine(10, 0, 1000, 0, -10, 5000)
    grid = TileGrid(100, 100, 40, 5, scene_tf)
    t = grid.tile(1, 2)
    assert (t.window.col_off, t.window.row_off) == (2 * 30 - 5, 1 * 30 - 5)
    assert t.transform @ (0, 0) == scene_tf @ (55, 25)
    assert t.transform @ (7, 3) == scene_tf @ (62, 28)


def test_overlap_in_metres(tmp_path):
    path = write_raster(tmp_path / "utm.tif", np.ones((1, 50, 50), np.uint8))  # 10 m pixels
    with Scene.open(path) as scene:
        assert TileGrid.for_scene(scene, 64, overlap_m=95).overlap == 10


def test_an_overlap_that_leaves_no_core_is_refused():
    with pytest.raises(ValueError, match="no core"):
        TileGrid(100, 100, 10, 5)
