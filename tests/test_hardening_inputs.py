"""Bad scenes, labels and model bundles end in one `Error:` line and exit 2, never a traceback, and write nothing;
labels with odd but harmless ids just work; garbage in (beyond the pole, across the antimeridian, undeclared fill) is
refused, repaired or warned about instead of silently written out."""

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from safetensors import safe_open
from safetensors.torch import save_file

from samgeo_ship.errors import ShipsegError
from samgeo_ship.models.bundle import CARD_KEY, card_sha256, load_bundle, save_bundle
from samgeo_ship.vector.writers import geojson

from conftest import write_raster
from test_hardening_outputs import BANDS, assert_refused, bundle, run, scene_and_labels, snapshot  # noqa: F401


def rewrite_card(src: Path, dst: Path, edit, rehash: bool = True) -> Path:
    """A copy of the bundle ``src`` whose card is ``edit(card dict)`` (which may return another JSON value); with
    ``rehash`` the card's hash is recomputed, as a careful forger would, so only the field checks can refuse it."""
    with safe_open(str(src), framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    card = json.loads(meta[CARD_KEY])
    card = edit(card) or card
    if rehash and isinstance(card, dict):
        card["card_sha256"] = card_sha256(card)
    save_file(state, str(dst), metadata={**meta, CARD_KEY: json.dumps(card)})
    return dst


def _set(**fields):
    return lambda card: card.update(fields)


def _scale_config(card):
    card["config"] = {k: v * 400 if isinstance(v, int) and k.endswith(("dim", "size")) else v
                      for k, v in card["config"].items()}


BAD_CARDS = {
    "score edited": (_set(thresholds={"score": 0.9, "mask_logit": 0.0, "nms_iou": 0.5}), False, "edited"),
    "no hash": (lambda card: card.pop("card_sha256") and None, False, "without its hash"),
    "a JSON list": (lambda card: [card], False, "JSON list"),
    "tile_size absurd": (_set(tile_size=1_000_000), True, "tile_size"),
    "tile_size text": (_set(tile_size="512"), True, "tile_size"),
    "bands a dict": (_set(bands={"r": 1}), True, "bands"),
    "pixel size zero": (_set(pixel_size_m=0), True, "pixel_size_m"),
    "thresholds a list": (_set(thresholds=[0.3]), True, "thresholds"),
    "lora rank huge": (_set(lora={"rank": 10**9, "alpha": 1.0}), True, "lora.rank"),
    "config dims x400": (_scale_config, True, "config"),
    "config a list": (_set(config=[1, 2]), True, "config"),
    "config unknown field": (lambda card: card["config"].update(depth=3), True, "unknown fields"),
}


@pytest.mark.parametrize("case", sorted(BAD_CARDS))
def test_a_bad_or_tampered_card_is_refused_by_load_info_and_detect(tmp_path, bundle, case):
    edit, rehash, words = BAD_CARDS[case]
    bad = rewrite_card(bundle, tmp_path / "bad.safetensors", edit, rehash)
    with pytest.raises(ShipsegError, match=words):
        load_bundle(bad)
    assert_refused(run("info", bad), bad)
    scene, _ = scene_and_labels(tmp_path / "in")
    before = snapshot(tmp_path)
    assert_refused(run("detect", scene, "-m", bad, "-o", tmp_path / "ships.geojson", "-q"), bad)
    assert snapshot(tmp_path) == before


def test_a_card_update_through_save_bundle_rewrites_the_hash(tmp_path, bundle):
    model, card = load_bundle(bundle)
    card.thresholds = {**card.thresholds, "score": 0.7}  # as calibrate does
    path = save_bundle(model, card, tmp_path / "calibrated.safetensors")
    assert load_bundle(path)[1].thresholds["score"] == 0.7
    assert run("info", path).exit_code == 0


def test_info_refuses_tensors_that_do_not_match_the_card(tmp_path, bundle):
    data = bytearray(bundle.read_bytes())
    data[-3] ^= 0x01
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    assert_refused(run("info", bad), bad)


# ---- scenes -------------------------------------------------------------------------------------------------------
def _vrt(path: Path, source: str, geotransform: str) -> Path:
    bands = "".join(f'<VRTRasterBand dataType="UInt16" band="{i}"><Description>{name}</Description><SimpleSource>'
                    f'<SourceFilename relativeToVRT="1">{source}</SourceFilename><SourceBand>{i}</SourceBand>'
                    '</SimpleSource></VRTRasterBand>' for i, name in enumerate(BANDS, start=1))
    path.write_text(f'<VRTDataset rasterXSize="64" rasterYSize="64"><SRS>EPSG:32631</SRS>'
                    f'<GeoTransform>{geotransform}</GeoTransform>{bands}</VRTDataset>')
    return path


def _truncated(folder: Path) -> Path:
    data = np.random.default_rng(0).integers(300, 400, size=(3, 128, 128)).astype(np.uint16)
    full = write_raster(folder / "full.tif", data, descriptions=BANDS)
    import rasterio
    with rasterio.open(full) as src:
        profile, pixels = src.profile, src.read()
    profile.update(tiled=True, blockxsize=32, blockysize=32, compress="deflate")
    with rasterio.open(folder / "tiled.tif", "w", **profile) as dst:
        dst.write(pixels)
    raw = (folder / "tiled.tif").read_bytes()
    (folder / "truncated.tif").write_bytes(raw[:len(raw) * 2 // 3])
    return folder / "truncated.tif"


def _scene(folder: Path, case: str) -> tuple[Path, str]:
    data = np.random.default_rng(1).integers(300, 400, size=(3, 64, 64)).astype(np.uint16)
    utm = "500000,10,0,4800000,0,-10"
    if case == "truncated GeoTIFF":
        return _truncated(folder), "damaged"
    if case == "VRT to a missing file":
        return _vrt(folder / "gone.vrt", "gone.tif", utm), "gone.tif"
    if case == "complex bands":
        return write_raster(folder / "slc.tif", (data + 1j * data).astype(np.complex64)), "complex"
    if case == "zero pixel size":
        write_raster(folder / "src.tif", data, descriptions=BANDS)
        return _vrt(folder / "zero.vrt", "src.tif", "500000,0,0,4800000,0,-10"), "pixel size is zero"
    if case == "latitude beyond 90":
        return write_raster(folder / "lat.tif", data, crs="EPSG:4326", descriptions=BANDS,
                            transform=Affine(1e-4, 0, 5, 0, -1e-4, 90.005)), "beyond the pole"
    if case == "2 mm x 11 m pixels at the pole":
        return write_raster(folder / "pole.tif", data, crs="EPSG:4326", descriptions=BANDS,
                            transform=Affine(1e-4, 0, 5, 0, -1e-4, 89.99995)), "pixels are"
    if case == "PNG renamed .tif":
        from PIL import Image
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "png.png")
        (folder / "png.tif").write_bytes((folder / "png.png").read_bytes())
        (folder / "png.png").unlink()
        return folder / "png.tif", "no CRS"
    if case == "random bytes":
        (folder / "noise.tif").write_bytes(np.random.default_rng(2).bytes(4096))
        return folder / "noise.tif", "not a raster"
    if case == "a folder":
        (folder / "scenes.tif").mkdir()
        return folder / "scenes.tif", "is a directory"
    raise AssertionError(case)


SCENES = ["truncated GeoTIFF", "VRT to a missing file", "complex bands", "zero pixel size", "latitude beyond 90",
          "2 mm x 11 m pixels at the pole", "PNG renamed .tif", "random bytes", "a folder"]


@pytest.mark.parametrize("case", SCENES)
def test_a_bad_scene_is_one_line_for_detect_and_prepare(tmp_path, bundle, case):
    folder = tmp_path / "in"
    _, labels = scene_and_labels(folder)
    scene, words = _scene(folder, case)
    before = snapshot(tmp_path)
    result = run("detect", scene, "-m", bundle, "-o", tmp_path / "ships.geojson", "--preview", tmp_path / "a.png")
    assert_refused(result, scene)
    assert words in result.stderr
    if case != "2 mm x 11 m pixels at the pole":  # the resolution guard is detection's
        assert_refused(run("prepare", scene, labels, "-o", tmp_path / "ds", "-q"), scene)
    assert snapshot(tmp_path) == before


def test_undeclared_fill_is_warned_about_and_nodata_sets_it(tmp_path, bundle):
    data = np.random.default_rng(0).integers(300, 400, size=(3, 64, 64)).astype(np.uint16)
    rows, cols = np.mgrid[:64, :64]
    data[:, rows + cols < 24] = 0  # a wedge of fill in one corner, and no nodata declared
    scene = write_raster(tmp_path / "wedge.tif", data, descriptions=BANDS)
    warned = run("detect", scene, "-m", bundle, "-o", tmp_path / "a.geojson", "-q")
    assert warned.exit_code == 0, warned.output
    assert "--nodata 0" in warned.stderr
    clean = run("detect", scene, "-m", bundle, "-o", tmp_path / "b.geojson", "-q", "--nodata", "0")
    assert clean.exit_code == 0 and "nodata" not in clean.stderr, clean.output
    _, labels = scene_and_labels(tmp_path / "in")
    prepared = run("prepare", scene, labels, "-o", tmp_path / "ds", "-q", "--tile-size", "32", "--overlap", "4")
    assert prepared.exit_code == 0 and "--nodata 0" in prepared.stderr, prepared.output


# ---- labels -------------------------------------------------------------------------------------------------------
def _coco(path: Path, annotations, size=64) -> Path:
    path.write_text(json.dumps({"images": [{"id": 1, "width": size, "height": size}], "annotations": annotations}))
    return path


def test_string_ids_and_coco_without_ids_simply_work(tmp_path):
    scene, labels = scene_and_labels(tmp_path / "in")
    doc = json.loads(labels.read_text())
    for feature, name in zip(doc["features"], ["ship-a", "ship-b"]):
        feature["properties"]["id"] = name
    named = tmp_path / "named.geojson"
    named.write_text(json.dumps(doc))
    square = [[20, 20, 40, 20, 40, 30, 20, 30]]
    unnamed = _coco(tmp_path / "coco.json", [{"image_id": 1, "segmentation": square},
                                             {"image_id": 1, "segmentation": [[5, 5, 12, 5, 12, 9, 5, 9]]}])
    for i, path in enumerate([named, unnamed]):
        result = run("prepare", scene, path, "-o", tmp_path / f"ds{i}", "-q", "--tile-size", "32", "--overlap", "4")
        assert result.exit_code == 0, result.output
        assert "2 ships" in result.output


BAD_LABELS = {
    "polygons of strings": lambda p: _coco(p, [{"id": 1, "image_id": 1, "segmentation": [list("abcdef")]}]),
    "RLE run of 1e9": lambda p: _coco(p, [{"id": 1, "image_id": 1, "iscrowd": 1,
                                          "segmentation": {"size": [64, 64], "counts": [10, 1_000_000_000, 5]}}]),
    "RLE of another size": lambda p: _coco(p, [{"id": 1, "image_id": 1, "iscrowd": 1,
                                               "segmentation": {"size": [9, 9], "counts": [1, 2]}}]),
    "negative RLE run": lambda p: _coco(p, [{"id": 1, "image_id": 1, "iscrowd": 1,
                                            "segmentation": {"size": [64, 64], "counts": [5, -3, 8]}}]),
    "annotations not a list": lambda p: p.write_text(json.dumps({"images": [{"id": 1}], "annotations": 3})),
}


@pytest.mark.parametrize("case", sorted(BAD_LABELS))
def test_bad_labels_are_one_line(tmp_path, case):
    scene, _ = scene_and_labels(tmp_path / "in")
    labels = tmp_path / "in" / "bad.json"
    BAD_LABELS[case](labels)
    before = snapshot(tmp_path)
    assert_refused(run("prepare", scene, labels, "-o", tmp_path / "ds", "-q"), labels)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("case", ["points", "all outside the scene", "NaN coordinates"])
def test_prepare_with_every_label_dropped_says_why(tmp_path, case):
    scene, labels = scene_and_labels(tmp_path / "in")
    doc = json.loads(labels.read_text())
    for feature in doc["features"]:
        if case == "points":
            feature["geometry"] = {"type": "Point", "coordinates": feature["geometry"]["coordinates"][0][0]}
        elif case == "all outside the scene":
            feature["geometry"] = shapely.geometry.mapping(shapely.box(10, 10, 10.001, 10.001))
        else:
            feature["geometry"]["coordinates"][0][1] = [float("nan"), float("nan")]
    bad = tmp_path / "in" / "dropped.geojson"
    bad.write_text(json.dumps(doc))
    before = snapshot(tmp_path)
    result = run("prepare", scene, bad, "-o", tmp_path / "ds", "-q")
    assert_refused(result, bad)
    reason = {"points": "not a polygon", "all outside the scene": "outside the scene",
              "NaN coordinates": "coordinates that are not numbers"}[case]
    assert f"2 {reason}" in result.stderr
    assert snapshot(tmp_path) == before


# ---- the antimeridian ---------------------------------------------------------------------------------------------
def test_geojson_splits_a_ship_across_the_antimeridian():
    # UTM zone 60 north: its eastern edge is the antimeridian; a 400 m hull straddles it at 10 N.
    to_utm = gpd.GeoSeries([shapely.Point(180.0, 10.0)], crs="EPSG:4326").to_crs("EPSG:32660")
    x, y = to_utm.iloc[0].x, to_utm.iloc[0].y
    ships = gpd.GeoDataFrame({"ship_id": [1, 2]}, geometry=[shapely.box(x - 200, y - 30, x + 200, y + 30),
                                                            shapely.box(x - 900, y - 30, x - 500, y + 30)],
                             crs="EPSG:32660")
    doc = geojson(ships)
    lons = [c[0] for f in doc["features"] for c in np.asarray(shapely.get_coordinates(
        shapely.geometry.shape(f["geometry"])))]
    assert max(lons) <= 180 and min(lons) >= -180
    split, whole = (shapely.geometry.shape(f["geometry"]) for f in doc["features"])
    assert split.geom_type == "MultiPolygon" and len(split.geoms) == 2
    assert {round(max(abs(c[0]) for c in p.exterior.coords), 6) for p in split.geoms} == {180.0}
    assert whole.geom_type == "Polygon"


def test_detect_states_the_tile_count_and_time_before_the_bulk_of_the_work(tmp_path, bundle):
    scene, _ = scene_and_labels(tmp_path / "in", size=100)  # 2 x 2 tiles: cores of 128 - 2 x 16 = 96 px
    result = run("detect", scene, "-m", bundle, "-o", tmp_path / "a.geojson", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    plan = [line for line in result.stderr.replace("\r", "\n").splitlines() if " s per tile" in line]
    assert len(plan) == 1 and plan[0].startswith("4 tiles, about "), result.stderr


@pytest.mark.parametrize("option", [["--tile-size", "1000000"], ["--tile-size", "64", "--overlap", "32"]])
def test_an_absurd_tile_size_on_the_command_line_is_refused(tmp_path, bundle, option):
    scene, _ = scene_and_labels(tmp_path / "in")
    before = snapshot(tmp_path)
    result = run("detect", scene, "-m", bundle, "-o", tmp_path / "a.geojson", "-q", *option)
    assert_refused(result, bundle)
    assert "tile size" in result.stderr and snapshot(tmp_path) == before
