"""Scenes: open a raster, pick its bands, normalise it once per scene, and read windows with their own affine."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import Geod
from rasterio._err import CPLE_BaseError
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.windows import Window, from_bounds

from samgeo_ship.crs import transformer
from samgeo_ship.bands import parse_bands, select_bands
from samgeo_ship.errors import NoValidPixels, fail

# GDAL's block cache defaults to 5% of RAM; a bounded cache keeps memory independent of scene size.
# GDAL_CACHEMAX in bytes: rasterio hands an int to GDALSetCacheMax64, so a bare 64 would mean 64 bytes, no block
# cache at all, and a decimated read would decode each block once per output row.
GDAL_ENV = {"GDAL_CACHEMAX": 64 * 2**20, "GDAL_NUM_THREADS": "ALL_CPUS"}
# Long side of the decimated read used for scene statistics, in pixels.
STATS_MAX_SIDE = 1024
# Scenes up to this many pixels are read whole (decimated) for statistics; larger ones are sampled in windows.
SMALL_SCENE_PX = 8192 * 8192
SAMPLE_WINDOW = 64
_GEOD = Geod(ellps="WGS84")
# GDAL reports a damaged file (truncated blocks, a VRT source that is gone) as either family, from any read.
READ_ERRORS = (RasterioError, CPLE_BaseError)
# A constant value covering this share of the border and of the scene, in a raster that declares no nodata,
# is most likely fill (the black wedge of a reprojected or clipped scene) rather than water.
FILL_BORDER_SHARE = 0.05
FILL_SCENE_SHARE = 0.01


class NodataWarning(UserWarning):
    """The scene seems to hold fill pixels that its metadata does not mark as nodata."""


@dataclass(frozen=True)
class Normalisation:
    """Per-band linear stretch to [0, 1]: ``(value - low) / (high - low)``, clipped.

    ``low`` and ``high`` are in the raster's own units (digital numbers), one per selected band, computed once per
    scene from percentiles of its valid pixels on a decimated read, so every tile of a scene is stretched alike.
    ``min_span``: the narrowest ``high - low`` allowed, in raster units (widened about its middle when the
    percentiles are closer): a chip of open water alone is otherwise stretched until its ripples look like boats.
    """

    low: tuple[float, ...]
    high: tuple[float, ...]
    percentiles: tuple[float, float] = (1.0, 99.0)
    min_span: float = 0.0

    def apply(self, data: np.ndarray) -> np.ndarray:
        """(C, H, W) raw values -> (C, H, W) float32 in [0, 1]."""
        low = np.asarray(self.low, np.float32)[:, None, None]
        span = np.maximum(np.asarray(self.high, np.float32)[:, None, None] - low, 1e-6)
        return np.clip((data.astype(np.float32) - low) / span, 0.0, 1.0)

    def to_dict(self) -> dict:
        return {"low": list(self.low), "high": list(self.high), "percentiles": list(self.percentiles)} | (
            {"min_span": self.min_span} if self.min_span else {})

    @classmethod
    def from_dict(cls, d: dict) -> "Normalisation":
        return cls(tuple(d["low"]), tuple(d["high"]), tuple(d.get("percentiles", (1.0, 99.0))),
                   float(d.get("min_span", 0.0)))


class Scene:
    """An open raster with a chosen set of bands and a scene-level normalisation.

    Use as a context manager: ``with Scene.open(path, bands=["B04", "B03", "B02"]) as scene: ...``.
    Reads are windowed; nothing here ever reads the full scene at full resolution.
    """

    def __init__(self, path: Path, src, band_indexes: list[int], normalisation: Normalisation | None,
                 nodata: float | None = None, owns_handle: bool = True):
        self.path = path
        self._src = src
        self._owns_handle = owns_handle  # False for a view: the handle is the Scene's it was made from
        self.band_indexes = band_indexes
        self._normalisation = normalisation
        self.nodata = nodata

    @classmethod
    def open(cls, path, bands=None, normalisation: Normalisation | None = None,
             nodata: float | None = None) -> "Scene":
        """Open ``path`` (any GDAL raster). ``bands``: names (band descriptions) or 1-based indexes; default: the
        first three bands (or the only one). ``normalisation``: reuse given statistics instead of computing them.
        ``nodata``: a value that marks invalid pixels (in every selected band), replacing the file's own nodata
        and masks, for scenes whose fill is not declared."""
        path = Path(path)
        if not path.exists():
            raise fail(path, "no such file")
        if path.is_dir():
            raise fail(path, "is a folder, not a raster file")
        env = rasterio.Env(**GDAL_ENV)
        env.__enter__()
        try:
            src = rasterio.open(path)
        except (*READ_ERRORS, OSError) as exc:
            env.__exit__(None, None, None)
            raise fail(path, f"not a raster GDAL can read ({_first_line(exc)})") from None
        scene = cls(path, src, [], normalisation, nodata)
        scene._env = env
        try:
            _check_grid(path, src)
            scene.band_indexes = select_bands(path, src.descriptions, src.count, parse_bands(bands))
            kinds = {np.dtype(src.dtypes[i - 1]).kind for i in scene.band_indexes}
            if "c" in kinds:
                raise fail(path, "has complex-valued bands (e.g. SAR single-look complex); convert them to "
                                 "amplitude first (e.g. gdal_translate with a VRT pixel function 'mod')")
            if normalisation is not None and len(normalisation.low) != len(scene.band_indexes):
                raise fail(path, f"the normalisation has {len(normalisation.low)} bands but "
                                 f"{len(scene.band_indexes)} were selected")
        except Exception:
            scene.close()
            raise
        return scene

    def close(self):
        if not self._owns_handle:
            return
        self._src.close()
        env = getattr(self, "_env", None)
        if env is not None:
            env.__exit__(None, None, None)
            self._env = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def view(self, bands) -> "Scene":
        """The same open raster read through other ``bands`` (names or 1-based indexes), without opening the file
        again; it shares this Scene's handle (closing the view leaves it open) and has no normalisation."""
        indexes = select_bands(self.path, self._src.descriptions, self._src.count, parse_bands(bands))
        return Scene(self.path, self._src, indexes, None, self.nodata, owns_handle=False)

    # ---- facts about the scene -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.stem

    width = property(lambda self: self._src.width, doc="Columns, in pixels.")
    height = property(lambda self: self._src.height, doc="Rows, in pixels.")
    crs = property(lambda self: self._src.crs, doc="The raster's CRS (None when it has none; see require_crs).")
    transform = property(lambda self: self._src.transform, doc="Affine from pixel (col, row) to CRS (x, y).")
    bounds = property(lambda self: self._src.bounds, doc="(left, bottom, right, top) in the CRS.")

    @property
    def dtype(self) -> str:
        return self._src.dtypes[self.band_indexes[0] - 1]

    @property
    def band_names(self) -> list[str]:
        descs = self._src.descriptions
        return [descs[i - 1] or f"band{i}" for i in self.band_indexes]

    @property
    def pixel_size(self) -> tuple[float, float]:
        """(x, y) pixel size in CRS units (positive)."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def ground_pixel_size_m(self) -> float:
        """Ground size of one pixel at the scene centre in metres, right in any CRS (UTM, degrees, Web Mercator,
        where a CRS unit on the ground is shorter than a metre by cos(latitude)): the mean of its width and height."""
        return sum(self.ground_pixel_sizes_m) / 2

    @property
    def ground_pixel_sizes_m(self) -> tuple[float, float]:
        """(width, height) on the ground of one pixel at the scene centre in metres; near a pole a pixel in degrees
        is far narrower than it is tall."""
        to_lonlat = transformer(self.require_crs(), "EPSG:4326")
        cx, cy = self.width / 2, self.height / 2
        corners = [self.transform @ p for p in ((cx, cy), (cx + 1, cy), (cx, cy + 1))]
        lons, lats = to_lonlat.transform([p[0] for p in corners], [p[1] for p in corners])
        dx = _GEOD.inv(lons[0], lats[0], lons[1], lats[1])[2]
        dy = _GEOD.inv(lons[0], lats[0], lons[2], lats[2])[2]
        return dx, dy

    @property
    def descriptions(self) -> list[str | None]:
        """The description (name) of every band of the file, None where a band has none."""
        return list(self._src.descriptions)

    @property
    def has_band_names(self) -> bool:
        """Whether any band of the file carries a description (a name such as B04 or red)."""
        return any(self._src.descriptions)

    def require_crs(self):
        if self.crs is None:
            raise fail(self.path, "the raster has no CRS (georeference it, e.g. with gdal_edit.py -a_srs)")
        return self.crs

    # ---- normalisation ---------------------------------------------------------------------------------------
    @property
    def normalisation(self) -> Normalisation:
        if self._normalisation is None:
            self._normalisation = self.compute_normalisation()
        return self._normalisation

    def use_normalisation(self, normalisation: Normalisation) -> None:
        """Stretch every later read with ``normalisation`` (one value per selected band)."""
        if len(normalisation.low) != len(self.band_indexes):
            raise fail(self.path, f"the normalisation has {len(normalisation.low)} bands but "
                                  f"{len(self.band_indexes)} were selected")
        self._normalisation = normalisation

    def compute_normalisation(self, percentiles=(1.0, 99.0), max_side: int = STATS_MAX_SIDE,
                              min_span: float = 0.0) -> Normalisation:
        """Percentile stretch of the valid pixels of a decimated view of the scene (about ``max_side`` px a side),
        no narrower than ``min_span`` (Normalisation).

        A small scene, or one with overviews, is read whole at reduced resolution. A large one without overviews
        is sampled as an even grid of ``SAMPLE_WINDOW`` px windows instead: a decimated read of the whole file
        would decode every compressed block once per output row (GDAL's bounded block cache cannot hold a row of
        blocks), which is slow on large scenes."""
        if self.width * self.height <= SMALL_SCENE_PX or self._src.overviews(self.band_indexes[0]):
            data, valid = self.decimated(max_side)
        else:
            data, valid = self._sampled(max_side)
        lows, highs = [], []
        for band in data:
            values = band[valid]
            values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
            if values.size == 0:
                raise NoValidPixels(f"{self.path}: the raster holds no valid pixels (everything is nodata)")
            lo, hi = (float(v) for v in np.percentile(values, percentiles))
            if hi - lo < min_span:
                lo, hi = (lo + hi - min_span) / 2, (lo + hi + min_span) / 2
            lows.append(lo)
            highs.append(hi if hi > lo else lo + 1.0)
        return Normalisation(tuple(lows), tuple(highs), tuple(percentiles), float(min_span))

    def decimated(self, max_side: int) -> tuple[np.ndarray, np.ndarray]:
        """The whole scene read at reduced resolution (long side about ``max_side`` px, nearest neighbour): (C, h, w)
        raw values of the selected bands and the (h, w) valid mask."""
        scale = max(1.0, max(self.width, self.height) / max_side)
        shape = (max(1, round(self.height / scale)), max(1, round(self.width / scale)))
        try:
            data = self._src.read(self.band_indexes, out_shape=(len(self.band_indexes), *shape),
                                  resampling=Resampling.nearest)
            if self.nodata is not None:
                return data, np.all(data != self.nodata, axis=0)
            valid = self._src.dataset_mask(out_shape=shape, resampling=Resampling.nearest) > 0
        except READ_ERRORS as exc:
            raise fail(self.path, f"cannot be read, the file is damaged or incomplete ({_first_line(exc)})") from None
        if self._declares_no_nodata():
            _warn_fill(self.path, data, valid)
        return data, valid

    def _declares_no_nodata(self) -> bool:
        """Whether the file marks no pixel invalid at all: no nodata value, no mask, no alpha band."""
        return self.nodata is None and all(flags == [MaskFlags.all_valid] for flags in self._src.mask_flag_enums)

    def _sampled(self, max_side: int) -> tuple[np.ndarray, np.ndarray]:
        """(C, N) values and (N,) validity of an even grid of windows holding about max_side**2 pixels."""
        n = max(1, max_side // SAMPLE_WINDOW)
        size = min(SAMPLE_WINDOW, self.width, self.height)
        cols = np.linspace(0, self.width - size, n).astype(int)
        rows = np.linspace(0, self.height - size, n).astype(int)
        parts = [self.read_raw(Window(int(c), int(r), size, size)) for r in rows for c in cols]
        data = np.concatenate([d.reshape(len(self.band_indexes), -1) for d, _ in parts], axis=1)
        return data, np.concatenate([v.reshape(-1) for _, v in parts])

    # ---- windowed reads --------------------------------------------------------------------------------------
    def window_transform(self, window: Window) -> Affine:
        return self._src.window_transform(window)

    def read_decimated(self, window: Window, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Boundless read of a square ``window`` resampled to ``size`` x ``size`` px (area average, or nearest with a
        ``nodata`` of the run's own, which GDAL does not know to leave out; nearest for the valid mask), normalised
        as ``read``: a window larger than a model input seen whole in one."""
        data = np.zeros((len(self.band_indexes), size, size), dtype=self._src.dtypes[self.band_indexes[0] - 1])
        valid = np.zeros((size, size), bool)
        inner = _intersect(window, self.width, self.height)
        if inner is None:
            return self._normalised(data, valid)
        f = size / float(window.width)
        c0, r0 = round((inner.col_off - window.col_off) * f), round((inner.row_off - window.row_off) * f)
        w, h = max(1, min(size - c0, round(inner.width * f))), max(1, min(size - r0, round(inner.height * f)))
        resampling = Resampling.average if self.nodata is None else Resampling.nearest
        self._fill(data, valid, slice(r0, r0 + h), slice(c0, c0 + w), window, inner,
                   out_shape=(len(self.band_indexes), h, w), resampling=resampling)
        return self._normalised(data, valid)

    def read_raw(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Boundless read: (C, h, w) raw values and an (h, w) bool mask of valid pixels.

        Outside the scene, and where any selected band is nodata/masked, pixels are invalid (value 0)."""
        h, w = int(window.height), int(window.width)
        data = np.zeros((len(self.band_indexes), h, w), dtype=self._src.dtypes[self.band_indexes[0] - 1])
        valid = np.zeros((h, w), dtype=bool)
        inner = _intersect(window, self.width, self.height)
        if inner is None:
            return data, valid
        r0, c0 = int(inner.row_off - window.row_off), int(inner.col_off - window.col_off)
        self._fill(data, valid, slice(r0, r0 + int(inner.height)), slice(c0, c0 + int(inner.width)), window, inner)
        return data, valid

    def _fill(self, data, valid, rows: slice, cols: slice, window: Window, inner: Window, **resample) -> None:
        """Read the part ``inner`` of ``window`` into ``data[:, rows, cols]`` and its validity into ``valid[rows,
        cols]`` (nodata, masked or not finite: invalid). ``resample``: ``out_shape`` and ``resampling`` of a reduced
        read; the valid mask is always resampled by nearest neighbour."""
        try:
            data[:, rows, cols] = self._src.read(self.band_indexes, window=inner, **resample)
            if self.nodata is None:
                shape = {"out_shape": resample["out_shape"], "resampling": Resampling.nearest} if resample else {}
                valid[rows, cols] = np.all(self._src.read_masks(self.band_indexes, window=inner, **shape) > 0, axis=0)
            else:
                valid[rows, cols] = np.all(data[:, rows, cols] != self.nodata, axis=0)
        except READ_ERRORS as exc:
            raise fail(self.path, f"cannot read window {_window_str(window)} ({_first_line(exc)})") from None
        if data.dtype.kind == "f":
            valid &= np.all(np.isfinite(data), axis=0)

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Boundless read, normalised: (C, h, w) float32 in [0, 1] (0 where invalid) and the (h, w) valid mask."""
        return self._normalised(*self.read_raw(window))

    def read_overview(self, max_side: int) -> tuple[np.ndarray, np.ndarray]:
        """The whole scene decimated (nearest neighbour) to at most ``max_side`` px a side, normalised as ``read``
        gives a window: (C, h, w) float32 in [0, 1] and the (h, w) valid mask. Memory follows ``max_side``, not
        the scene size."""
        return self._normalised(*self.decimated(max_side))

    def _normalised(self, data: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.normalisation.apply(data)
        out[:, ~valid] = 0.0
        return out, valid


def _check_grid(path: Path, src) -> None:
    """Refuse a georeference that would divide by zero or put pixels beyond the poles."""
    t = src.transform
    if not all(np.isfinite([t.a, t.b, t.c, t.d, t.e, t.f])) or t.a * t.e - t.b * t.d == 0:
        raise fail(path, f"its pixel size is zero or not a number ({t.a:g} x {t.e:g}): the georeference is broken")
    if src.crs is not None and src.crs.is_geographic:
        south, north = min(src.bounds.bottom, src.bounds.top), max(src.bounds.bottom, src.bounds.top)
        if south < -90 or north > 90:
            raise fail(path, f"reaches latitude {north if north > 90 else south:.6g}, beyond the pole: the "
                             "georeference is wrong")


def _warn_fill(path: Path, data: np.ndarray, valid: np.ndarray) -> None:
    """Warn when one constant value (in every band) covers much of the border and of the scene: fill that the
    file does not declare, which would otherwise be taken as water."""
    if data.shape[1] < 3 or data.shape[2] < 3:
        return
    border = np.concatenate([data[:, 0, :], data[:, -1, :], data[:, :, 0], data[:, :, -1]], axis=1)
    values, counts = np.unique(border, axis=1, return_counts=True)
    top = int(np.argmax(counts))
    if counts[top] < FILL_BORDER_SHARE * border.shape[1]:
        return
    value = values[:, top]
    share = float(np.mean(np.all(data == value[:, None, None], axis=0) & valid))
    if share >= FILL_SCENE_SHARE and np.all(value == value[0]):
        warnings.warn(f"{path.name}: {share:.0%} of the scene is the constant value {value[0]:g} reaching its "
                      f"edge, but the file declares no nodata; if that is fill, not water, pass --nodata "
                      f"{value[0]:g}", NodataWarning, stacklevel=2)


def window_around(bounds, transform: Affine, margin: int = 1) -> Window:
    """The whole-pixel window covering ``bounds`` (``xmin, ymin, xmax, ymax`` in the CRS of ``transform``) with
    ``margin`` more pixels on every side: the small window a single ship is rasterised or read in."""
    w = from_bounds(*bounds, transform=transform)
    c0, r0 = int(np.floor(w.col_off)) - margin, int(np.floor(w.row_off)) - margin
    return Window(c0, r0, int(np.ceil(w.col_off + w.width)) + margin - c0,
                  int(np.ceil(w.row_off + w.height)) + margin - r0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> (C, H, W) uint8 in [0, 255] (SAM's input range)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _intersect(window: Window, width: int, height: int) -> Window | None:
    c0, r0 = max(int(window.col_off), 0), max(int(window.row_off), 0)
    c1 = min(int(window.col_off + window.width), width)
    r1 = min(int(window.row_off + window.height), height)
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def _window_str(window: Window) -> str:
    return f"(col {int(window.col_off)}, row {int(window.row_off)}, {int(window.width)}x{int(window.height)})"


def _first_line(exc: Exception) -> str:
    while exc.__cause__ is not None:  # rasterio's "Read failed. See previous exception" wraps GDAL's reason
        exc = exc.__cause__
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


__all__ = ["Scene", "Normalisation", "NodataWarning", "to_uint8"]
