"""Calibration: the detection score threshold (and optionally a minimum contrast against the water) with the best F1
on labelled validation scenes, written into the model's card."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import numpy as np

from samgeo_ship import metrics
from samgeo_ship.inference.contrast import CONTRAST_GRID, keep, ring_contrast
from samgeo_ship.inference.detector import ShipDetector
from samgeo_ship.labels import load_labels
from samgeo_ship.models import zoo
from samgeo_ship.models.bundle import update_card
from samgeo_ship.raster import Scene
from samgeo_ship.vector.merge import suppress_overlaps


@dataclass
class Calibration:
    """The detection score threshold (and, when asked for, the minimum contrast against the water) with the best F1
    at IoU 0.5 on labelled scenes. ``sweep``: (score threshold, matching) at the chosen contrast; ``contrast_sweep``:
    (minimum contrast, matching) at the chosen threshold (empty without a contrast band). ``found_none``: no ship of
    the scenes was found at any threshold, so nothing was chosen and the card was left as it was."""

    threshold: float
    previous: float
    best: metrics.Matching
    sweep: list
    contrast: dict = dataclasses.field(default_factory=dict)
    contrast_sweep: list = dataclasses.field(default_factory=list)
    found_none: bool = False

    def table(self) -> str:
        lines = [f"{'threshold':>9}  {'precision':>9}  {'recall':>6}  {'F1':>5}"]
        for t, m in self.sweep:
            mark = "  <- chosen" if t == self.threshold and not self.found_none else ""
            lines.append(f"{t:>9.2f}  {m.precision:>9.3f}  {m.recall:>6.3f}  {m.f1:>5.3f}{mark}")
        if self.contrast_sweep:
            lines.append(f"\n{'min ' + self.contrast['band'] + ' contrast':>16}  {'precision':>9}  {'recall':>6}  "
                         f"{'F1':>5}   (at threshold {self.threshold:g})")
            for c, m in self.contrast_sweep:
                mark = "  <- chosen" if c == self.contrast["min"] else ""
                lines.append(f"{c:>16.2f}  {m.precision:>9.3f}  {m.recall:>6.3f}  {m.f1:>5.3f}{mark}")
        return "\n".join(lines)


def calibrate(model_path, scene_path, truth_path, bands=None, batch_size: int | None = None, device: str = "auto",
              progress=None, grid=metrics.SCORE_GRID, write: bool = True, more=(),
              contrast_band: str | None = None) -> Calibration:
    """Detect once on a labelled scene at the lowest threshold of ``grid``, keep the grid threshold with the best F1
    at IoU 0.5 (the parts scored above each threshold are merged, and duplicates dropped, as a detection at that
    threshold would: the proposals' NMS, refinement and ownership do not depend on weaker proposals, those do) and,
    with ``write``, store it in the bundle's card (``thresholds.score``; only the card is replaced,
    see ``update_card``). ``more``: further ``(scene, truth)`` pairs; the F1 is then that of the ships of all scenes pooled
    (``metrics.pool``), so one threshold serves every kind of scene given. ``contrast_band``: also choose, jointly
    with the threshold, the minimum contrast of a ship against its water in that band (``contrast.CONTRAST_GRID``,
    0 = no test), stored as the card's ``contrast``; every scene must have the band. Use validation scenes, never the
    scenes the model will be scored on. A model that finds no ship at any threshold is left unchanged
    (``Calibration.found_none``, the card's own threshold returned)."""
    model_path = zoo.model_path(model_path)
    detector = ShipDetector(model_path, device=device, bands=bands, batch_size=batch_size,
                            score_threshold=min(grid))
    card = detector.card
    pairs = [(scene_path, truth_path), *more]
    with contextlib.ExitStack() as stack:
        opened, truths = [], []  # every scene and truth read before any detection: a bad last pair fails at once
        for scene, truth_file in pairs:
            opened.append(stack.enter_context(detector.open(scene)))
            truths.append(load_labels(truth_file, opened[-1]).ships.geometry.values)
            if contrast_band:
                Scene.open(scene, bands=[contrast_band]).close()  # the band is there, before any detection
        # Per scene: the ShipMerger of its parts and its truth.
        scenes = [(detector.collect(scene, progress=progress), truth) for scene, truth in zip(opened, truths)]
    ships = {t: [[s.geometry for s in suppress_overlaps(merger.above(t).ships())] if merger else []
                 for merger, _ in scenes] for t in grid}
    contrast = [_Contrasts(scene, contrast_band) if contrast_band else None for scene, _ in pairs]

    def kept(i, geoms, c):
        return [g for g, k in zip(geoms, keep(contrast[i](geoms), c)) if k] if c else geoms

    def at(t, c):
        return metrics.pool([metrics.match(kept(i, geoms, c), truth)
                             for i, (geoms, (_, truth)) in enumerate(zip(ships[t], scenes))])
    mins = CONTRAST_GRID if contrast_band else (0.0,)
    table = {(float(t), float(c)): at(t, c) for t in grid for c in mins}
    (threshold, minimum), best = metrics.best_threshold(list(table.items()))
    previous = float(card.thresholds.get("score", 0.3))
    if best.tp == 0:
        # No ship found at any setting: the scenes say nothing about the threshold (the tie rule would pick the
        # strictest, 0.9, and the model would then detect nothing anywhere). Keep the card as it is.
        sweep = [(t, m) for (t, c), m in table.items() if c == 0.0]
        return Calibration(previous, previous, best, sweep, dict(card.contrast), [], found_none=True)
    sweep = [(t, m) for (t, c), m in table.items() if c == minimum]
    chosen = {"band": contrast_band, "min": minimum} if contrast_band else {}
    contrast_sweep = [(c, m) for (t, c), m in table.items() if t == threshold] if contrast_band else []
    if write:
        update_card(model_path, dataclasses.replace(card, thresholds={**card.thresholds, "score": threshold},
                                                    contrast=chosen or card.contrast))
    return Calibration(threshold, previous, best, sweep, chosen, contrast_sweep)


class _Contrasts:
    """Contrast of ship polygons in one band of one scene, each polygon measured once."""

    def __init__(self, scene_path, band: str):
        self.path, self.band, self.seen = scene_path, band, {}

    def __call__(self, geoms) -> np.ndarray:
        todo = [g for g in geoms if g.wkb not in self.seen]
        if todo:
            with Scene.open(self.path, bands=[self.band]) as scene:
                self.seen.update(zip((g.wkb for g in todo), ring_contrast(scene, todo)))
        return np.array([self.seen[g.wkb] for g in geoms], dtype=float)
