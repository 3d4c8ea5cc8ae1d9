import numpy as np
import pytest
from rasterio.windows import Window

from samgeo_ship.errors import NoSuchBand, ShipsegError
from samgeo_ship.bands import parse_bands, same_bands
from samgeo_ship.raster import Scene

from conftest import write_raster


@pytest.fixture
def s2_scene(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(500, 4000, size=(4, 120, 200)).astype(np.uint16)
    data[:, :, :20] = 0  # a nodata strip on the west edge
    return write_raster(tmp_path / "s2.tif", data, nodata=0, descriptions=["B04", "B03", "B02", "B08"])


def test_bands_by_name_and_index(s2_scene):
    with Scene.open(s2_scene, bands="B08,B03,B02") as scene:
        assert scene.band_indexes == [4, 2, 3]
        assert scene.band_names == ["B08", "B03", "B02"]
    with Scene.open(s2_scene, bands="1,2") as scene:
        assert scene.band_names == ["B04", "B03"]
    assert parse_bands(["B04", 3]) == ["B04", 3]


@pytest.mark.parametrize("bands, words", [("B05", "no band named 'B05'"), ("7", "band 7 does not exist")])
def test_unknown_band_is_one_clear_sentence(s2_scene, bands, words):
    with pytest.raises(NoSuchBand) as err:
        Scene.open(s2_scene, bands=bands)
    assert words in str(err.value) and "s2.tif" in str(err.value) and "\n" not in str(err.value)


def test_missing_and_non_raster(tmp_path):
    with pytest.raises(ShipsegError, match="no such file"):
        Scene.open(tmp_path / "nope.tif")
    bogus = tmp_path / "bogus.tif"
    bogus.write_text("not a raster")
    with pytest.raises(ShipsegError, match="not a raster"):
        Scene.open(bogus)


def test_normalisation_is_scene_level_and_ignores_nodata(s2_scene):
    with Scene.open(s2_scene, bands="B04,B03,B02") as scene:
        norm = scene.normalisation
        assert all(500 <= lo < hi <= 4000 for lo, hi in zip(norm.low, norm.high))  # nodata 0 excluded
        a, _ = scene.read(Window(20, 0, 50, 50))
        b, _ = scene.read(Window(100, 50, 50, 50))
        raw, _ = scene.read_raw(Window(100, 50, 50, 50))
    # one stretch for every window: the same raw value maps to the same normalised value everywhere
    expected = np.clip((raw[0].astype(np.float32) - norm.low[0]) / (norm.high[0] - norm.low[0]), 0, 1)
    np.testing.assert_allclose(b[0], expected, atol=1e-6)
    assert a.max() <= 1.0 and b.min() >= 0.0


def test_decimated_statistics_match_full_resolution(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.gamma(2.0, 400.0, size=(3, 2000, 1500)).astype(np.uint16)
    path = write_raster(tmp_path / "big.tif", data)
    with Scene.open(path) as scene:
        norm = scene.compute_normalisation(max_side=256)
    full = np.percentile(data.reshape(3, -1), [1, 99], axis=1)
    np.testing.assert_allclose(norm.low, full[0], rtol=0.1)
    np.testing.assert_allclose(norm.high, full[1], rtol=0.05)


def test_boundless_window_and_its_transform(s2_scene):
    with Scene.open(s2_scene) as scene:
        window = Window(-10, -10, 40, 40)
        data, valid = scene.read_raw(window)
        raw_inside, _ = scene.read_raw(Window(20, 0, 10, 30))
        assert data.shape == (3, 40, 40)
        assert not valid[:10].any() and not valid[:, :30].any()  # outside the scene, then the nodata strip
        assert valid[10:, 30:].all()
        np.testing.assert_array_equal(data[:, 10:, 30:], raw_inside)
        x, y = scene.window_transform(window) @ (0, 0)
        assert (x, y) == (500_000.0 - 100.0, 4_800_000.0 + 100.0)
        _, valid_far = scene.read(Window(1000, 1000, 16, 16))
        assert not valid_far.any()


def test_ground_pixel_size_is_metric_in_web_mercator(tmp_path):
    from affine import Affine
    # 10 Web Mercator units at 60 degrees north are 5 m on the ground
    y60 = 8399737.89
    path = write_raster(tmp_path / "wm.tif", np.ones((1, 10, 10), np.uint8), crs="EPSG:3857",
                        transform=Affine(10, 0, 0, 0, -10, y60 + 50))
    with Scene.open(path) as scene:
        assert scene.ground_pixel_size_m == pytest.approx(5.0, rel=0.01)


def test_large_scenes_are_sampled_in_windows_with_the_same_statistics(tmp_path, monkeypatch):
    import samgeo_ship.raster as raster

    rng = np.random.default_rng(2)
    data = rng.gamma(2.0, 400.0, size=(3, 1500, 1500)).astype(np.uint16)
    path = write_raster(tmp_path / "big.tif", data)
    monkeypatch.setattr(raster, "SMALL_SCENE_PX", 0)  # take the large-scene path
    reads = []
    with Scene.open(path) as scene:
        original = scene.read_raw
        monkeypatch.setattr(scene, "read_raw", lambda w: reads.append(w) or original(w))
        norm = scene.compute_normalisation(max_side=512)
    assert len(reads) == 64 and all(w.width == 64 for w in reads)  # an 8 x 8 grid of 64 px windows
    full = np.percentile(data.reshape(3, -1), [1, 99], axis=1)
    np.testing.assert_allclose(norm.low, full[0], rtol=0.1)
    np.testing.assert_allclose(norm.high, full[1], rtol=0.05)


def test_sentinel2_and_colour_band_names_are_aliases(tmp_path):
    rgb = write_raster(tmp_path / "rgb.tif", np.ones((3, 8, 8), np.uint8), descriptions=["red", "green", "blue"])
    with Scene.open(rgb, bands="B04,B03,B02") as scene:
        assert scene.band_indexes == [1, 2, 3]
    with Scene.open(rgb, bands="B02") as scene:
        assert scene.band_indexes == [3]
    with pytest.raises(ShipsegError, match="no band named 'B08'"):
        Scene.open(rgb, bands="B08")


def test_band_lists_agree_through_aliases():
    assert same_bands(["B04", "B03", "B02"], ["red", "green", "blue"])
    assert same_bands(["Red", "G", "b"], ["B04", "B03", "B02"])
    assert not same_bands(["B04", "B03", "B02"], ["blue", "green", "red"])  # order matters
    assert not same_bands(["B04", "B03", "B02"], ["B04", "B03", "B08"])
    assert not same_bands(["B04", "B03"], ["B04", "B03", "B02"])


def test_min_span_keeps_a_chip_of_open_water_from_being_stretched_into_boats(tmp_path):
    rng = np.random.default_rng(2)
    water = np.clip(rng.normal(50, 4, size=(3, 64, 64)), 0, 255).astype(np.uint8)  # ripples of a few DN
    path = write_raster(tmp_path / "water.tif", water)
    with Scene.open(path) as scene:
        plain = scene.compute_normalisation()
        kept = scene.compute_normalisation(min_span=80)
        scene.use_normalisation(kept)
        stretched, _ = scene.read(Window(0, 0, 64, 64))
    assert max(h - lo for lo, h in zip(plain.low, plain.high)) < 30
    assert all(h - lo == pytest.approx(80) for lo, h in zip(kept.low, kept.high))
    for lo, h, plo, ph in zip(kept.low, kept.high, plain.low, plain.high):
        assert (lo + h) / 2 == pytest.approx((plo + ph) / 2)  # widened about the middle: water stays mid-grey
    assert stretched.std() < 0.1 and kept.to_dict()["min_span"] == 80
    assert type(kept).from_dict(kept.to_dict()) == kept and "min_span" not in plain.to_dict()
    wide = write_raster(tmp_path / "wide.tif", rng.integers(0, 255, size=(3, 64, 64)).astype(np.uint8))
    with Scene.open(wide) as scene:  # a scene with contrast of its own is stretched as before
        assert scene.compute_normalisation(min_span=80).low == scene.compute_normalisation().low
