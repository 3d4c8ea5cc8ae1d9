"""Training datasets on disk: a scene's tiles as GeoTIFF chips, their ship instances as label rasters + GeoParquet.
Written by ``prepare_dataset`` and read by ``open_dataset`` (with ``read_chip`` and ``read_instances``) here, so the
format has one home.

The format is readable without shipseg (any GIS opens the chips; pandas/geopandas read the index):

    DATASET/dataset.json        settings (scene, bands, normalisation, tile size, CRS) and the summary
    DATASET/images/<tile>.tif   uint8 chip, the selected bands normalised at scene level; GDAL mask = valid pixels
    DATASET/masks/<tile>.tif    uint16 instance raster: 0 = background, k = row with ``instance == k`` below
    DATASET/instances.parquet   GeoParquet, one row per ship per tile: tile, instance, ship_id, box_x0, box_y0,
                                box_x1, box_y1 (tile pixels, exclusive max), truncated, area_px, geometry (the
                                whole ship polygon in the scene CRS)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio

from samgeo_ship.atomic import atomic_dir
from samgeo_ship.errors import fail
from samgeo_ship.labels import known_pixels, load_area, load_labels, tile_instances
from samgeo_ship.outputs import check_output_folder
from samgeo_ship.raster import Scene, to_uint8
from samgeo_ship.tiling import TileGrid

FORMAT = "shipseg-dataset/1"


@dataclass
class PrepareSummary:
    tiles: int
    tiles_skipped_nodata: int
    tiles_outside_area: int
    ships: int
    ships_in_tiles: int
    truncated_instances: int
    dropped: dict[str, int]
    repaired: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def prepare_dataset(scene_path, labels_path, out_dir, bands=None, tile_size: int = 512, overlap: int = 32,
                    overwrite: bool = False, progress: Callable[[int, int], None] | None = None,
                    labelled_area=None, nodata: float | None = None, min_span: float = 0.0) -> PrepareSummary:
    """Tile ``scene_path``, rasterise the ships of ``labels_path`` per tile and write a dataset to ``out_dir``.

    ``labelled_area``: polygons (a vector file) inside which every ship is labelled, for a partly labelled scene.
    Pixels outside it and off every labelled ship are written as nodata (0, GDAL mask cleared), and tiles left
    with no valid core pixel are skipped, so the unlabelled ships elsewhere never become training background.
    Without it the whole scene counts as labelled. ``nodata``: the fill value of a scene that declares none.
    ``min_span``: the narrowest percentile stretch (raster.Normalisation); models trained on the dataset stretch
    the scenes they read alike.

    The directory appears whole when done, or not at all. ``progress(done, total)`` is called after each tile."""
    if not 0 <= overlap < tile_size / 2:
        raise fail(out_dir, f"an overlap of {overlap} px leaves no core in a {tile_size} px tile (use under half "
                            "the tile size)")
    out_dir = check_output_folder(out_dir, [scene_path, labels_path, labelled_area], overwrite, is_dataset,
                                  "dataset")
    with Scene.open(scene_path, bands=bands, nodata=nodata) as scene:
        if min_span:
            scene.use_normalisation(scene.compute_normalisation(min_span=min_span))
        labels = load_labels(labels_path, scene)
        if len(labels) == 0:
            reasons = ", ".join(f"{n} {why}" for why, n in labels.dropped_reasons().items())
            raise fail(labels_path, f"no label can be used, so the dataset would hold no ship ({reasons})")
        area = None if labelled_area is None else load_area(labelled_area, scene)
        grid = TileGrid.for_scene(scene, tile_size, overlap_px=overlap)
        with atomic_dir(out_dir, overwrite=overwrite) as tmp:
            summary = _write_tiles(scene, labels, area, grid, tmp, progress)
            _write_card(tmp / "dataset.json", scene, grid, summary, labels.dropped, labelled_area)
    return summary


def is_dataset(folder: Path) -> bool:
    """Whether ``folder`` holds a dataset written by ``prepare_dataset`` (its card says so): the only kind of
    folder ``overwrite`` may replace."""
    try:
        card = json.loads((Path(folder) / "dataset.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(card, dict) and card.get("format") == FORMAT


def _write_tiles(scene, labels, area, grid, root: Path, progress) -> PrepareSummary:
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rows, seen, written, outside, truncated = [], set(), 0, 0, 0
    geoms = labels.ships.set_index("ship_id").geometry
    for done, tile in enumerate(grid, start=1):
        image, valid = scene.read(tile.window)
        if area is not None and valid[tile.core_slices()].any():
            valid &= known_pixels(area, labels, tile)
            image[:, ~valid] = 0.0
            outside += not valid[tile.core_slices()].any()
        if valid[tile.core_slices()].any():
            inst = tile_instances(labels, tile, (scene.height, scene.width))
            _write_chip(root / "images" / f"{tile.id}.tif", to_uint8(image), valid, tile, scene.crs, scene.band_names)
            _write_chip(root / "masks" / f"{tile.id}.tif", _instance_raster(inst), None, tile, scene.crs, ["instance"])
            for k in range(len(inst)):
                x0, y0, x1, y1 = inst.boxes[k]
                rows.append({"tile": tile.id, "instance": k + 1, "ship_id": int(inst.ship_ids[k]),
                             "box_x0": x0, "box_y0": y0, "box_x1": x1, "box_y1": y1,
                             "truncated": bool(inst.truncated[k]), "area_px": int(inst.masks[k].sum()),
                             "geometry": geoms.loc[inst.ship_ids[k]]})
            seen.update(int(i) for i in inst.ship_ids)
            truncated += int(inst.truncated.sum())
            written += 1
        if progress:
            progress(done, len(grid))
    index = gpd.GeoDataFrame(rows, columns=["tile", "instance", "ship_id", "box_x0", "box_y0", "box_x1", "box_y1",
                                            "truncated", "area_px", "geometry"], geometry="geometry", crs=scene.crs)
    index.to_parquet(root / "instances.parquet")
    return PrepareSummary(tiles=written, tiles_skipped_nodata=len(grid) - written - outside,
                          tiles_outside_area=outside, ships=len(labels),
                          ships_in_tiles=len(seen), truncated_instances=truncated,
                          dropped=labels.dropped_reasons(), repaired=labels.repaired)


def _instance_raster(inst) -> np.ndarray:
    out = np.zeros((1, *inst.masks.shape[1:]), np.uint16)
    for k, mask in enumerate(inst.masks):
        out[0][mask] = k + 1
    return out


def _write_chip(path: Path, data: np.ndarray, valid, tile, crs, names):
    profile = {"driver": "GTiff", "width": tile.size, "height": tile.size, "count": data.shape[0],
               "dtype": data.dtype.name, "crs": crs, "transform": tile.transform, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(names, start=1):
            dst.set_band_description(i, name)
        if valid is not None:
            dst.write_mask(valid.astype(np.uint8) * 255)


def _write_card(path: Path, scene, grid, summary: PrepareSummary, dropped: dict, labelled_area):
    card = {
        "format": FORMAT,
        "scene": str(scene.path),
        "crs": scene.crs.to_string() if scene.crs else None,
        "bands": scene.band_names,
        "band_indexes": scene.band_indexes,
        "normalisation": scene.normalisation.to_dict(),
        "pixel_size_m": scene.ground_pixel_size_m if scene.crs else None,
        "tile_size": grid.tile_size,
        "overlap": grid.overlap,
        "summary": summary.to_dict(),
        "dropped_labels": {str(k): v for k, v in dropped.items()},
        "labelled_area": None if labelled_area is None else str(labelled_area),
    }
    path.write_text(json.dumps(card, indent=2))


@dataclass(frozen=True)
class Dataset:
    """One prepared dataset directory: its card (dataset.json), tile ids and per-tile instance boxes."""

    path: Path
    card: dict
    tiles: tuple[str, ...]
    boxes: dict  # tile id -> (N, 4) float32 boxes in tile pixels, row k-1 for instance k

    @property
    def ships(self) -> int:
        return int(sum(len(b) for b in self.boxes.values()))


@dataclass(frozen=True)
class TileRef:
    """One tile of one dataset."""

    dataset: Dataset
    tile: str

    @property
    def name(self) -> str:
        return f"{self.dataset.path.name}/{self.tile}"


def open_dataset(path) -> Dataset:
    """Read a dataset directory's card and instance index; ShipsegError if it is not a shipseg dataset."""
    path = Path(path)
    if not path.exists():
        raise fail(path, "no such dataset directory")
    if not path.is_dir():
        raise fail(path, "is a file, not a dataset directory made by shipseg prepare")
    card_path = path / "dataset.json"
    if not card_path.exists() or not (path / "images").is_dir() or not (path / "instances.parquet").exists():
        raise fail(path, "is not a shipseg dataset (no dataset.json, images/ and instances.parquet; "
                   "make one with shipseg prepare)")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise fail(card_path, f"is not valid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise fail(card_path, f"is not a {FORMAT} dataset card")
    tiles = tuple(sorted(p.stem for p in (path / "images").glob("*.tif")))
    if not tiles:
        raise fail(path, "holds no tiles in images/")
    index = pd.read_parquet(path / "instances.parquet", columns=["tile", "instance", "box_x0", "box_y0",
                                                                   "box_x1", "box_y1"])
    boxes = {t: np.zeros((0, 4), np.float32) for t in tiles}
    for tile, rows in index.sort_values(["tile", "instance"]).groupby("tile"):
        boxes[tile] = rows[["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy(np.float32)
    return Dataset(path, card, tiles, boxes)


def read_chip(ref: TileRef) -> np.ndarray:
    """(C, T, T) uint8 chip of a tile."""
    with rasterio.open(ref.dataset.path / "images" / f"{ref.tile}.tif") as src:
        return src.read()


def read_instances(ref: TileRef) -> np.ndarray:
    """(N, T, T) bool instance masks of a tile (instance k is row k-1)."""
    n = len(ref.dataset.boxes[ref.tile])
    path = ref.dataset.path / "masks" / f"{ref.tile}.tif"
    if not path.exists():
        raise fail(path, "is missing, but instances.parquet lists ships on this tile")
    with rasterio.open(path) as src:
        raster = src.read(1)
    return raster[None] == np.arange(1, n + 1, dtype=raster.dtype)[:, None, None]
