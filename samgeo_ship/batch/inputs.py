"""What a batch reads: a folder (recursive glob), a text file of paths, or a local STAC Catalog / Collection /
ItemCollection / Item, each turned into a list of SceneRef with a unique scene id."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from samgeo_ship.errors import fail

STAC_TYPES = ("Feature", "FeatureCollection", "Catalog", "Collection")


@dataclass(frozen=True)
class SceneRef:
    """One scene of a batch. ``path``: a local path or a URL GDAL can read; ``acquired``: RFC 3339 UTC time from
    STAC (None: read TIFFTAG_DATETIME later); ``skip_reason``: why the entry cannot be processed at all."""
    scene_id: str
    path: str
    acquired: str | None = None
    skip_reason: str | None = None


def discover_scenes(source, glob: str = "*.tif", asset: str | None = None) -> list[SceneRef]:
    """The scenes of ``source`` in a stable order. Raises ShipsegError when ``source`` is missing, unreadable or
    names no scene at all; a listed file that is missing is not an error here (its scene fails on its own)."""
    source = Path(source)
    if not source.exists():
        raise fail(source, "no such file or folder")
    if source.is_dir():
        paths = sorted(p for p in source.rglob(glob) if p.is_file() and not p.name.startswith("."))
        if not paths:
            raise fail(source, f"no file in this folder matches {glob!r}")
        refs = [SceneRef(p.stem, str(p)) for p in paths]
    else:
        text = _read_text(source)
        if source.suffix.lower() in (".json", ".geojson") or text.lstrip().startswith("{"):
            refs = _stac_refs(source, text, asset)
        else:
            refs = _list_refs(source, text)
    return _unique_ids(refs)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(path, f"cannot be read as a text list of scenes or STAC JSON ({exc})") from None


def _list_refs(path: Path, text: str) -> list[SceneRef]:
    """One path or URL per line; blank lines and # comments are ignored; relative paths are relative to the list."""
    refs = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        target = line if _is_url(line) else str((path.parent / line).resolve())
        refs.append(SceneRef(_stem(line), target))
    if not refs:
        raise fail(path, "lists no scene paths")
    return refs


def _stac_refs(path: Path, text: str, asset: str | None) -> list[SceneRef]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(path, f"is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("type") not in STAC_TYPES:
        raise fail(path, "is not a STAC Item, ItemCollection, Catalog or Collection (no matching 'type')")
    refs = list(_walk_stac(doc, path, asset, seen={path.resolve()}))
    if not refs:
        raise fail(path, "holds no STAC items")
    return refs


def _walk_stac(doc: dict, where: Path, asset: str | None, seen: set):
    kind = doc.get("type")
    if kind == "Feature":
        yield _item_ref(doc, where, asset)
    elif kind == "FeatureCollection":
        for item in doc.get("features", []):
            yield _item_ref(item, where, asset)
    else:  # Catalog or Collection: follow its item and child links (local files only)
        for link in doc.get("links", []):
            if link.get("rel") not in ("item", "child") or _is_url(link.get("href", "")):
                continue
            target = (where.parent / link["href"]).resolve()
            if target in seen:
                continue
            seen.add(target)
            if not target.exists():
                raise fail(where, f"links to {link['href']}, which does not exist")
            try:
                sub = json.loads(target.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise fail(target, f"is not readable STAC JSON ({exc})") from None
            yield from _walk_stac(sub, target, asset, seen)


def _item_ref(item: dict, where: Path, asset: str | None) -> SceneRef:
    scene_id = str(item.get("id") or where.stem)
    props = item.get("properties") or {}
    acquired = _rfc3339(props.get("datetime") or props.get("start_datetime"))
    assets = item.get("assets") or {}
    if asset is not None:
        chosen = assets.get(asset)
        missing = f"STAC item has no asset {asset!r} (it has {', '.join(sorted(assets)) or 'none'})"
    else:
        data = [a for a in assets.values() if "data" in (a.get("roles") or [])]
        tiffs = [a for a in data if "tiff" in str(a.get("type", "")).lower()]
        chosen = (tiffs or data or [None])[0]
        missing = "STAC item has no asset with role 'data' (choose one with --asset)"
    if not chosen or not chosen.get("href"):
        return SceneRef(scene_id, "", acquired, skip_reason=missing)
    href = chosen["href"]
    base = where.parent
    for link in item.get("links", []):  # hrefs are relative to the item's own file when it names one
        if link.get("rel") == "self" and not _is_url(link.get("href", "")):
            base = (where.parent / link["href"]).parent
    return SceneRef(scene_id, href if _is_url(href) else str((base / href).resolve()), acquired)


def _rfc3339(value) -> str | None:
    """A STAC datetime as 'YYYY-MM-DDTHH:MM:SS[.ffffff]Z' in UTC (naive times are taken as UTC); None stays None."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return format_utc(t)


def format_utc(t: datetime) -> str:
    t = t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)
    return t.isoformat(timespec="microseconds" if t.microsecond else "seconds").replace("+00:00", "Z")


def _is_url(s: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*://", s)) or s.startswith("/vsi")


def _stem(s: str) -> str:
    name = s.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    return name.rsplit(".", 1)[0] if "." in name else name


def _unique_ids(refs: list[SceneRef]) -> list[SceneRef]:
    """Scene ids become file names: unsafe characters turn into '_', and ids shared by different paths get a short
    hash of their path appended (the same path listed twice is kept once)."""
    out, seen_paths = [], set()
    for r in refs:
        key = r.path or f"skip:{r.scene_id}"
        if key in seen_paths:
            continue
        seen_paths.add(key)
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", r.scene_id).lstrip(".") or "scene"
        out.append(SceneRef(safe, r.path, r.acquired, r.skip_reason))
    counts: dict[str, int] = {}
    for r in out:
        counts[r.scene_id] = counts.get(r.scene_id, 0) + 1
    return [r if counts[r.scene_id] == 1 else
            SceneRef(f"{r.scene_id}-{hashlib.sha1(r.path.encode()).hexdigest()[:8]}", r.path, r.acquired,
                     r.skip_reason) for r in out]
