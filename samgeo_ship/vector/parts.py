"""Per-tile masks -> the polygon parts a tile owns, in the scene CRS: the pure step between the decoder and the
merge across seams."""

from __future__ import annotations

import numpy as np
from affine import Affine

from samgeo_ship.vector.merge import Part, largest_polygon, owns, touches_edge
from samgeo_ship.vector.vectorise import georeference, length_px, vectorise


def tile_parts(items, auto: bool, min_px: float = 0.0) -> list[Part]:
    """``items``: (tile, (T, T) valid mask, detections with ``mask``, ``score``, ``prompt``) per tile -> owned
    polygons in the scene CRS. Nodata pixels never belong to a ship. With the learned prompter (``auto``) a tile keeps
    only the ships whose centroid lies in its core; a user prompt went to one tile only. A polygon shorter than
    ``min_px`` pixels is dropped: the learned prompter's specks (the lone pixels of a fragmented mask on glint) are
    shorter than any hull the model resolves and than any labelled ship."""
    parts = []
    for tile, valid, detections in items:
        core = tile.core_slices()
        for det in detections:
            mask = det.mask & valid
            if not mask.any() or (auto and not owns(core, mask)):
                continue
            geom = mask_polygon(mask, tile.transform, min_px)
            if geom is not None:
                parts.append(Part(geom, det.score, touches_edge(mask), det.prompt))
    return parts


def mask_polygon(mask: np.ndarray, transform: Affine, min_px: float = 0.0):
    """The largest polygon of ``mask`` in the CRS of ``transform`` (the tile's own affine), or None when it is
    shorter than ``min_px`` pixels. Only the mask's bounding box (plus a 1 px frame) is vectorised. A ship cut by the
    tile's edge is not at risk: its tile owns it only when the mask's centroid lies in the core, so the piece reaches
    across the halo."""
    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    r0, c0 = max(rows[0] - 1, 0), max(cols[0] - 1, 0)
    poly = largest_polygon(vectorise(mask[r0:rows[-1] + 2, c0:cols[-1] + 2], Affine.identity()))
    if poly is None or length_px(poly) < min_px:
        return None
    return georeference(poly, transform @ Affine.translation(int(c0), int(r0)))
