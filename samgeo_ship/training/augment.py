"""The eight symmetries of a square tile (four 90-degree rotations, each with or without a flip), applied alike
to a chip, its instance masks and their boxes. Variant 0 is the identity."""

from __future__ import annotations

import numpy as np

VARIANTS = 8


def apply_variant(array: np.ndarray, variant: int) -> np.ndarray:
    """Rotate the last two axes (rows, cols) of ``array`` by ``variant % 4`` quarter turns counter-clockwise
    (as np.rot90), then flip left-right when ``variant >= 4``."""
    _check(variant)
    out = np.rot90(array, k=variant % 4, axes=(-2, -1))
    if variant >= 4:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


def variant_boxes(boxes: np.ndarray, size: float, variant: int) -> np.ndarray:
    """(N, 4) ``x0, y0, x1, y1`` boxes in pixel-edge coordinates of a ``size`` x ``size`` tile, moved as
    apply_variant moves the pixels. The result is exact: it equals the box of the moved mask."""
    _check(variant)
    b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    for _ in range(variant % 4):
        # np.rot90 sends pixel (row r, col c) to (size-1-c, r): a point (x, y) goes to (y, size - x).
        x0, y0, x1, y1 = b.T.copy()
        b = np.stack([y0, size - x1, y1, size - x0], axis=1)
    if variant >= 4:
        x0, x1 = b[:, 0].copy(), b[:, 2].copy()
        b[:, 0], b[:, 2] = size - x1, size - x0
    return b


def _check(variant: int):
    if not 0 <= variant < VARIANTS:
        raise ValueError(f"augmentation variant must be in [0, {VARIANTS}), not {variant}")
