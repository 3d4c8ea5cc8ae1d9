"""Bands by name or number: the user's band list, matched to a raster's band descriptions, with the Sentinel-2 and
colour names of the same bands taken as one."""

from __future__ import annotations

from typing import Sequence

from samgeo_ship.errors import NoSuchBand


def parse_bands(spec: str | Sequence | None) -> list | None:
    """``"B04,B03,B02"`` or ``"3,2,1"`` or a list -> list of band names (str) or 1-based indexes (int)."""
    if spec is None or spec == "":
        return None
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        item = str(item).strip()
        out.append(int(item) if item.isdigit() else item)
    return out


def select_bands(path, descriptions, count: int, bands: list | None) -> list[int]:
    """1-based indexes of ``bands`` (names, matched to the band ``descriptions`` with the aliases below, or
    1-based numbers) in a raster of ``count`` bands; None: the first three (or the only one)."""
    if bands is None:
        return [1, 2, 3] if count >= 3 else [1]
    names = [d.lower() if d else None for d in descriptions]
    indexes = []
    for band in bands:
        if isinstance(band, int):
            if not 1 <= band <= count:
                raise NoSuchBand(f"{path}: has {count} bands; band {band} does not exist")
            indexes.append(band)
        else:
            band = _alias(band, names)
            if band.lower() not in names:
                known = ", ".join(d for d in descriptions if d) or "none (use band numbers 1..N)"
                raise NoSuchBand(f"{path}: has no band named {band!r}; band names are: {known}")
            indexes.append(names.index(band.lower()) + 1)
    return indexes


# Sentinel-2 band names and the common colour names mean the same bands: a model trained on B04,B03,B02 reads an
# RGB scene whose bands are described red, green, blue, and the other way round.
_ALIASES = [{"b04", "red", "r"}, {"b03", "green", "g"}, {"b02", "blue", "b"}, {"b08", "nir", "near infrared"}]


def same_bands(a: list, b: list) -> bool:
    """Whether two band lists name the same bands in order, Sentinel-2 and colour names alike (B04 = red)."""
    canon = lambda band: next((min(g) for g in _ALIASES if str(band).lower() in g), str(band).lower())
    return len(a) == len(b) and all(canon(x) == canon(y) for x, y in zip(a, b))


def _alias(band: str, names: list) -> str:
    if band.lower() in names:
        return band
    group = next((g for g in _ALIASES if band.lower() in g), set())
    return next((n for n in names if n in group), band)
