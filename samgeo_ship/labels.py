"""Ship labels: vector files or COCO JSON -> valid polygons in the scene CRS -> per-tile instance masks and boxes."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize, shapes
from rasterio.windows import Window
from shapely.geometry import box, shape

from samgeo_ship.errors import ShipsegError, fail
from samgeo_ship.raster import window_around

VECTOR_SUFFIXES = {".geojson", ".json", ".gpkg", ".shp", ".parquet", ".geoparquet", ".fgb"}


@dataclass
class Labels:
    """Ship polygons in the scene's CRS.

    ``ships`` has one row per ship: ``ship_id`` (int), ``area_px`` (pixels of the scene grid the ship covers) and
    a (Multi)Polygon ``geometry``. ``dropped`` maps each dropped label's id to the reason; ``repaired`` counts
    invalid polygons that were made valid."""

    ships: gpd.GeoDataFrame
    dropped: dict[int, str] = field(default_factory=dict)
    repaired: int = 0

    def __len__(self) -> int:
        return len(self.ships)

    def dropped_reasons(self) -> dict[str, int]:
        return dict(Counter(self.dropped.values()))


@dataclass
class TileInstances:
    """The ships visible in one tile, in the tile's pixel grid.

    ``masks``: (N, H, W) bool; ``boxes``: (N, 4) float32 ``x0, y0, x1, y1`` in tile pixels (x1, y1 exclusive);
    ``truncated``: (N,) bool, the tile shows only part of the ship; ``ship_ids``: (N,) int64."""

    ship_ids: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    truncated: np.ndarray

    def __len__(self) -> int:
        return len(self.ship_ids)


def load_labels(path, scene) -> Labels:
    """Read ship labels for ``scene`` from a vector file (any CRS, reprojected) or a COCO instance JSON file (in the
    scene's pixel grid). Invalid polygons are repaired; labels that are empty, not polygons, outside the scene or
    too small to cover a pixel centre are dropped and counted."""
    path = Path(path)
    if not path.exists():
        raise fail(path, "no such file")
    coco = _read_coco_json(path)
    if coco is not None:
        ids, geoms = _coco_polygons(path, coco, scene)
        crs = scene.crs
    else:
        ids, geoms, crs = _vector_polygons(path, scene)
    if not ids:
        raise fail(path, "the label file holds no labels")
    return _clean(ids, geoms, crs, scene)


def load_area(path, scene):
    """The labelled area of a partly labelled scene: the union of the polygons in ``path`` (any format
    ``load_labels`` reads, in any CRS), in the scene's CRS. Raises when none of them lies in the scene."""
    try:
        area = load_labels(path, scene)
    except ShipsegError as exc:  # the same reader's words, said of the area
        raise ShipsegError(f"labelled area {exc}") from None
    if len(area) == 0:
        raise fail(path, "no polygon of the labelled area lies in the scene")
    return shapely.union_all(list(area.ships.geometry))


def known_pixels(area, labels: Labels, tile) -> np.ndarray:
    """(H, W) bool: the pixels of ``tile`` whose centre lies in ``area`` or on a labelled ship, i.e. where every
    ship is labelled."""
    hits = labels.ships.sindex.query(box(*_tile_bounds(tile)))
    shapes_ = [area, *labels.ships.geometry.iloc[sorted(hits)]]
    return rasterize(shapes_, out_shape=(tile.size, tile.size), transform=tile.transform, dtype=np.uint8) > 0


def _tile_bounds(tile) -> tuple[float, float, float, float]:
    x0, y0 = tile.transform @ (0, 0)
    x1, y1 = tile.transform @ (tile.size, tile.size)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def tile_instances(labels: Labels, tile, scene_shape: tuple[int, int]) -> TileInstances:
    """Rasterise the ships that intersect ``tile.window`` into instance masks (pixel-centre rule, as GDAL does).

    ``scene_shape``: (height, width) of the scene in pixels; pixels of the window outside the scene hold no ship."""
    size = tile.size
    hits = labels.ships.sindex.query(box(*_tile_bounds(tile)))
    inside = _inside_scene(tile.window, scene_shape)
    ids, masks, boxes, truncated = [], [], [], []
    for i in sorted(hits):
        row = labels.ships.iloc[i]
        mask = rasterize([row.geometry], out_shape=(size, size), transform=tile.transform, dtype=np.uint8) > 0
        mask &= inside
        count = int(mask.sum())
        if count == 0:
            continue
        rows, cols = np.nonzero(mask)
        ids.append(int(row.ship_id))
        masks.append(mask)
        boxes.append((cols.min(), rows.min(), cols.max() + 1, rows.max() + 1))
        truncated.append(count < int(row.area_px))
    return TileInstances(
        ship_ids=np.asarray(ids, np.int64),
        masks=np.asarray(masks, bool).reshape(len(ids), size, size),
        boxes=np.asarray(boxes, np.float32).reshape(len(ids), 4),
        truncated=np.asarray(truncated, bool),
    )


def mask_to_polygon(mask: np.ndarray, transform: Affine):
    """(H, W) bool mask -> (Multi)Polygon along pixel edges in the CRS of ``transform`` (None if empty)."""
    polys = [shape(g) for g, v in shapes(mask.astype(np.uint8), mask=mask, transform=transform) if v == 1]
    return shapely.union_all(polys) if polys else None


# ---- COCO ---------------------------------------------------------------------------------------------------------
def _read_coco_json(path: Path):
    if path.suffix.lower() != ".json":
        return None
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail(path, f"not valid JSON ({exc})") from None
    if isinstance(data, dict) and "annotations" in data and "images" in data:
        return data
    return None


def _coco_polygons(path: Path, coco: dict, scene):
    image = _coco_image(path, coco, scene)
    if (image.get("width"), image.get("height")) != (scene.width, scene.height):
        raise fail(path, f"the COCO image is {image.get('width')} x {image.get('height')} px but the scene "
                         f"{scene.path.name} is {scene.width} x {scene.height} px")
    annotations = coco["annotations"]
    if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
        raise fail(path, "its COCO 'annotations' is not a list of objects")
    ids, geoms = [], []
    for n, ann in enumerate(annotations, start=1):
        if ann.get("image_id", image.get("id")) != image.get("id"):
            continue
        ids.append(ann.get("id"))
        try:
            geoms.append(_coco_geometry(ann.get("segmentation"), scene))
        except (TypeError, ValueError, IndexError, OverflowError) as exc:
            raise fail(path, f"annotation {ann.get('id', f'number {n}')!r}: {exc}") from None
    return label_ids(ids), geoms


def label_ids(values) -> list[int]:
    """The labels' own ids when they are distinct whole numbers (as numbers or digits), else 1..N in file order:
    ids such as "ship-a", missing or repeated ids must not stop a label file from being read."""
    try:
        ids = [int(v) for v in values if not isinstance(v, (bool, float)) and str(v).strip().lstrip("-").isdigit()]
    except (TypeError, ValueError):
        ids = []
    return ids if len(ids) == len(values) and len(set(ids)) == len(ids) else list(range(1, len(values) + 1))


def _coco_image(path: Path, coco: dict, scene) -> dict:
    images = coco["images"]
    if not isinstance(images, list) or not images or not all(isinstance(im, dict) for im in images):
        raise fail(path, "its COCO 'images' is not a list of image objects")
    if len(images) == 1:
        return images[0]
    named = [im for im in images if Path(str(im.get("file_name") or "")).name == scene.path.name]
    if len(named) != 1:
        raise fail(path, f"holds {len(images)} images and none is named {scene.path.name}")
    return named[0]


def _coco_geometry(seg, scene):
    """COCO segmentation (polygons, or RLE with compressed or uncompressed counts) -> polygon in scene CRS. Raises
    ValueError/TypeError for a segmentation that is not numbers, or whose runs do not fit the image."""
    transform = scene.transform
    if isinstance(seg, list):  # polygons: [[x0, y0, x1, y1, ...], ...] in pixel-edge coordinates
        rings = [np.asarray(p, dtype=float) for p in seg if isinstance(p, list) and len(p) >= 6]
        if any(r.ndim != 1 or not np.all(np.isfinite(r)) for r in rings):
            raise ValueError("polygon coordinates must be finite numbers")
        polys = [shapely.Polygon([transform @ (r[i], r[i + 1]) for i in range(0, len(r) - 1, 2)]) for r in rings]
        return shapely.union_all([shapely.make_valid(p) for p in polys]) if polys else None
    if isinstance(seg, dict) and "counts" in seg:
        size = seg.get("size", [scene.height, scene.width])
        if list(size) != [scene.height, scene.width]:
            raise ValueError(f"its RLE size {size} is not the image's {scene.height} x {scene.width} px")
        counts = seg["counts"]
        counts = _rle_from_string(counts) if isinstance(counts, (str, bytes)) else counts
        if not isinstance(counts, list) or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0
                                                   for c in counts):
            raise ValueError("RLE counts must be whole numbers of zero or more")
        if sum(counts) > scene.height * scene.width:
            raise ValueError(f"its RLE runs cover {sum(counts)} pixels, more than the "
                             f"{scene.height} x {scene.width} px image holds")
        rows, cols = _rle_pixels(counts, scene.height)
        if rows.size == 0:
            return None
        r0, c0 = rows.min(), cols.min()
        mask = np.zeros((rows.max() - r0 + 1, cols.max() - c0 + 1), bool)
        mask[rows - r0, cols - c0] = True
        return mask_to_polygon(mask, transform @ Affine.translation(int(c0), int(r0)))
    return None


def _rle_pixels(counts: list[int], height: int) -> tuple[np.ndarray, np.ndarray]:
    """Column-major run lengths (background first) -> (rows, cols) of the foreground pixels, without ever
    building the full image."""
    ends = np.cumsum(counts)
    starts = ends - np.asarray(counts)
    runs = [np.arange(s, e) for s, e in zip(starts[1::2], ends[1::2]) if e > s]
    flat = np.concatenate(runs) if runs else np.zeros(0, np.int64)
    return flat % height, flat // height


def _rle_from_string(s) -> list[int]:
    """Decode COCO's compressed RLE string (pycocotools' ``rleFrString``)."""
    s = s.decode() if isinstance(s, bytes) else s
    counts, p = [], 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s) or k > 12:  # a run longer than any image: the string is damaged
                raise ValueError("its compressed RLE counts are damaged")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


# ---- vector files -------------------------------------------------------------------------------------------------
def _vector_polygons(path: Path, scene):
    if path.suffix.lower() not in VECTOR_SUFFIXES:
        raise fail(path, f"unknown label format {path.suffix!r} (use GeoJSON, GeoPackage, Shapefile, "
                         "GeoParquet, FlatGeobuf or COCO JSON)")
    try:
        if path.suffix.lower() in {".parquet", ".geoparquet"}:
            gdf = gpd.read_parquet(path)
        else:
            gdf = gpd.read_file(path)
    except Exception as exc:  # pyogrio/pyarrow raise many types; all mean the same to the user
        raise fail(path, f"cannot read labels ({str(exc).strip().splitlines()[0] if str(exc) else exc!r})") from None
    if len(gdf) == 0:
        raise fail(path, "the label file holds no labels")
    if gdf.crs is None:
        raise fail(path, "the labels have no CRS (set one, e.g. ogr2ogr -a_srs EPSG:4326)")
    if gdf.crs.is_geographic and not gdf.total_bounds[[0, 2]].__abs__().max() <= 360:
        raise fail(path, f"the coordinates are not longitude/latitude although the CRS is {gdf.crs.to_string()} "
                         "(a GeoJSON file is WGS84 unless it says otherwise; reproject it or save it as GeoPackage)")
    if scene.crs is None:
        raise fail(scene.path, f"the raster has no CRS, so the labels in {gdf.crs.to_string()} cannot be placed")
    gdf = gdf.to_crs(scene.crs)
    id_col = next((c for c in ("ship_id", "id", "fid") if c in gdf.columns), None)
    ids = label_ids(list(gdf[id_col])) if id_col else list(range(1, len(gdf) + 1))
    return ids, list(gdf.geometry), scene.crs


# ---- cleaning -----------------------------------------------------------------------------------------------------
def _clean(ids, geoms, crs, scene) -> Labels:
    scene_box = box(*scene.bounds)
    dropped, repaired = {}, 0
    keep_ids, keep_geoms, areas = [], [], []
    for ship_id, geom in zip(ids, geoms):
        if geom is None or geom.is_empty:
            dropped[ship_id] = "empty geometry"
            continue
        if not np.isfinite(shapely.get_coordinates(geom)).all():
            dropped[ship_id] = "coordinates that are not numbers"
            continue
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
            repaired += 1
        geom = _polygonal(geom)
        if geom is None:
            dropped[ship_id] = "not a polygon"
            continue
        if not geom.intersects(scene_box):
            dropped[ship_id] = "outside the scene"
            continue
        area = _area_px(geom, scene)
        if area == 0:
            dropped[ship_id] = "covers no pixel centre of the scene"
            continue
        keep_ids.append(ship_id)
        keep_geoms.append(geom)
        areas.append(area)
    ships = gpd.GeoDataFrame({"ship_id": np.asarray(keep_ids, np.int64), "area_px": np.asarray(areas, np.int64)},
                             geometry=keep_geoms, crs=crs)
    return Labels(ships, dropped, repaired)


def _polygonal(geom):
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon") and not g.is_empty]
    return shapely.union_all(parts) if parts else None


def _area_px(geom, scene) -> int:
    """Pixels of the scene grid whose centre lies in ``geom`` (rasterised in the ship's own small window)."""
    win = window_around(geom.bounds, scene.transform)
    c0, r0 = max(int(win.col_off), 0), max(int(win.row_off), 0)
    c1 = min(int(win.col_off + win.width), scene.width)
    r1 = min(int(win.row_off + win.height), scene.height)
    if c1 <= c0 or r1 <= r0:
        return 0
    transform = scene.transform @ Affine.translation(c0, r0)
    return int(rasterize([geom], out_shape=(r1 - r0, c1 - c0), transform=transform, dtype=np.uint8).sum())


def _inside_scene(window: Window, scene_shape: tuple[int, int]) -> np.ndarray:
    h, w = int(window.height), int(window.width)
    rows = np.arange(h) + int(window.row_off)
    cols = np.arange(w) + int(window.col_off)
    return ((rows >= 0) & (rows < scene_shape[0]))[:, None] & ((cols >= 0) & (cols < scene_shape[1]))[None, :]
