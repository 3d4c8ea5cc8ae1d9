"""Every JSON event that `shipseg detect` and `shipseg batch` print is checked against the specification in
docs/progress-protocol.md (the JSON block there), which the QGIS plugin and other programs read."""

import json
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from click.testing import CliRunner
from shapely.geometry import box

from shipseg_cli.main import cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "progress-protocol.md"
TYPES = {"int": int, "number": (int, float), "string": str, "list": list, "object": dict, "null": type(None)}


def spec() -> dict:
    return json.loads(re.search(r"```json\n(.*?)```", DOC.read_text(), re.S).group(1))


def check(command: str, lines: list[str]) -> list[dict]:
    """Parse stdout lines as events and check each against the specification of ``command``."""
    events = spec()[command]
    parsed = []
    for line in lines:
        event = json.loads(line)
        kind = event.pop("event")
        assert kind in events, f"{command}: event {kind!r} is not specified"
        assert set(event) == set(events[kind]), f"{command} {kind}: members {sorted(event)}"
        for name, value in event.items():
            allowed = tuple(t for part in events[kind][name].split("|") for t in np.atleast_1d(TYPES[part]))
            assert isinstance(value, allowed) and not (isinstance(value, bool)), f"{command} {kind}.{name}={value!r}"
        parsed.append({"event": kind, **event})
    return parsed


def test_the_specification_names_every_event_with_known_types():
    for command, events in spec().items():
        for kind, members in events.items():
            for name, types in members.items():
                assert all(t in TYPES for t in types.split("|")), (command, kind, name, types)


def test_detect_events_follow_the_specification(tmp_path, harbour, tiny_bundle):
    result = CliRunner().invoke(cli, ["detect", str(harbour), "-m", str(tiny_bundle), "-o", str(tmp_path / "s.geojson"),
                                      "--progress", "json", "--batch-size", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    events = check("detect", result.stdout.splitlines())
    progress = [e for e in events if e["event"] == "progress"]
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "done" and kinds.count("plan") == 1 and len(progress) == len(kinds) - 2
    plan = events[kinds.index("plan")]
    assert kinds.index("plan") == 0 and plan["tiles_total"] == 9 and plan["tiles_done"] == progress[0]["tiles_done"]
    assert plan["batch_size"] == 2 and plan["memory_mb"] > 0  # --batch-size wins over the automatic choice
    done = [e["tiles_done"] for e in progress]
    assert done == sorted(done) and done[-1] == progress[-1]["tiles_total"] == 9  # 200 px / 96 px cores: 3 x 3
    assert progress[-1]["ships"] == events[-1]["ships"]


def test_detect_without_a_model_says_first_which_it_picked(tmp_path, harbour):
    result = CliRunner().invoke(cli, ["detect", str(harbour), "-o", str(tmp_path / "s.geojson"), "--progress", "json",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    events = check("detect", result.stdout.splitlines())
    assert [e["event"] for e in events].count("model") == 1 and events[0]["event"] == "model"
    assert events[0]["model"] == "default.safetensors" and events[0]["message"] in result.stderr.splitlines()


def test_a_failing_detect_ends_with_one_error_event(tmp_path, harbour):
    result = CliRunner().invoke(cli, ["detect", str(harbour), "-m", str(tmp_path / "absent.safetensors"),
                                      "-o", str(tmp_path / "s.geojson"), "--progress", "json"])
    assert result.exit_code == 2
    events = check("detect", result.stdout.splitlines())
    assert [e["event"] for e in events] == ["error"] and "absent.safetensors" in events[0]["message"]


def stand_in(scene_path, model, device="cpu"):
    """A detector with a known answer for batch runs: one ship, the scene's central box."""
    import rasterio
    with rasterio.open(scene_path) as src:
        b = src.bounds
        geom = box((b.left + b.right) / 2 - 50, (b.bottom + b.top) / 2 - 20, (b.left + b.right) / 2 + 50,
                   (b.bottom + b.top) / 2 + 20)
        return gpd.GeoDataFrame({"ship_id": [1], "scene": [Path(scene_path).stem]}, geometry=[geom], crs=src.crs)


@pytest.mark.parametrize("fmt", ["geojson", "fgb"])
def test_batch_events_follow_the_specification_in_every_output_format(tmp_path, harbour, fmt):
    archive = tmp_path / "archive"
    archive.mkdir()
    for name in ("a", "b"):
        (archive / f"{name}.tif").write_bytes(harbour.read_bytes())
    result = CliRunner().invoke(cli, ["batch", str(archive), "-o", str(tmp_path / "out"), "--progress", "json",
                                      "--format", fmt, "--detector", "test_progress_protocol:stand_in"])
    assert result.exit_code == 0, result.output
    events = check("batch", result.stdout.splitlines())
    assert [e["event"] for e in events] == ["progress"] * 3 + ["done"]
    assert events[-1]["done"] == ["a", "b"] and events[-1]["ships"] == 2
    assert len(gpd.read_file(tmp_path / "out" / f"a.{fmt}")) == 1
