"""Reference ships for one-shot personalisation, read the way detection reads a scene: the base model's bands and
normalisation, its tile grid (same ground footprint, later resampled to the model input), each ship in the tile
whose core holds it, rasterised in that tile's pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from samgeo_ship.errors import fail
from samgeo_ship.labels import load_labels, tile_instances
from samgeo_ship.tiling import Tile


@dataclass
class ReferenceTile:
    """One tile holding reference ships. ``image`` (C, T, T) float32 in [0, 1] and ``valid`` (T, T) as Scene.read
    gives them; ``masks`` (n, T, T) bool, the reference ships ``ship_ids`` whose centre lies in this tile's core;
    ``known`` (T, T) bool, every labelled ship in the tile (references or not: never background)."""

    tile: Tile
    image: np.ndarray
    valid: np.ndarray
    ship_ids: list[int]
    masks: np.ndarray
    known: np.ndarray


@dataclass
class References:
    scene: str
    tiles: list[ReferenceTile]
    usable_labels: int  # ship polygons in the label file that lie in the scene

    @property
    def ships(self) -> int:
        return sum(len(t.ship_ids) for t in self.tiles)


def read_references(detector, scene_path, labels_path, max_ships: int | None = None) -> References:
    """The reference tiles of ``scene_path`` for the ships in ``labels_path`` (the first ``max_ships`` of them), read
    as ``detector`` (a ShipDetector) reads the scene: its bands, normalisation and tile grid.

    Refuses labels outside the scene, a file without usable ship polygons, and ships on nodata only."""
    with detector.open(scene_path) as scene:
        labels = load_labels(labels_path, scene)
        outside = sum(1 for reason in labels.dropped.values() if reason == "outside the scene")
        if outside:
            raise fail(labels_path, f"{outside} of {len(labels) + len(labels.dropped)} reference ships lie outside "
                                    f"the scene {scene.path.name} (wrong scene, or wrong CRS?)")
        if len(labels) == 0:
            reasons = ", ".join(f"{n} {why}" for why, n in labels.dropped_reasons().items())
            raise fail(labels_path, f"holds no usable reference ship ({reasons})")
        grid = detector.grid(scene)
        chosen = labels.ships.iloc[:max_ships] if max_ships else labels.ships
        by_tile: dict[tuple[int, int], list[int]] = {}
        to_px = ~scene.transform
        for ship_id, geom in zip(chosen.ship_id, chosen.geometry):
            point = geom.representative_point()
            col, row = to_px @ (point.x, point.y)
            col, row = min(max(col, 0), scene.width - 1), min(max(row, 0), scene.height - 1)
            by_tile.setdefault((int(row // grid.core_size), int(col // grid.core_size)), []).append(int(ship_id))
        tiles = [_reference_tile(scene, labels, grid.tile(r, c), ids, labels_path) for (r, c), ids in by_tile.items()]
        return References(scene.path.name, tiles, len(labels))


def _reference_tile(scene, labels, tile, ship_ids, labels_path) -> ReferenceTile:
    image, valid = scene.read(tile.window)
    inst = tile_instances(labels, tile, (scene.height, scene.width))
    rows = {int(s): i for i, s in enumerate(inst.ship_ids)}
    masks = np.stack([inst.masks[rows[s]] & valid if s in rows else np.zeros_like(valid) for s in ship_ids])
    empty = [s for s, m in zip(ship_ids, masks) if not m.any()]
    if empty:
        raise fail(labels_path, f"reference ship {empty[0]} covers only nodata pixels of {scene.path.name}")
    known = inst.masks.any(0) if len(inst) else np.zeros_like(valid)
    return ReferenceTile(tile, image, valid, list(ship_ids), masks, known)
