"""No command destroys data: an output that is an input, holds one, or cannot be written is refused before any work,
and a command writes all its outputs or none (an OS error mid-write keeps the old ones and removes temporary files)."""

import errno
import os
import socket
from pathlib import Path

import pytest

from conftest import assert_refused, run_cli as run, scene_and_labels, snapshot


# ---- prepare --overwrite -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["holds the inputs", "the current folder", "inside an input folder's parent"])
def test_prepare_never_replaces_a_folder_holding_its_inputs(tmp_path, monkeypatch, where):
    work = tmp_path / "d"
    scene, labels = scene_and_labels(work)
    (work / "notes.txt").write_text("keep")
    before = snapshot(tmp_path)
    out = {"holds the inputs": work, "the current folder": Path("."),
           "inside an input folder's parent": tmp_path}[where]
    monkeypatch.chdir(work)
    result = run("prepare", scene, labels, "-o", out, "--overwrite", "-q")
    assert_refused(result, out)
    assert "input" in result.stderr
    assert snapshot(tmp_path) == before


def test_prepare_overwrite_replaces_only_a_shipseg_dataset(tmp_path):
    scene, labels = scene_and_labels(tmp_path / "in")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    result = run("prepare", scene, labels, "-o", other, "--overwrite", "-q", "--tile-size", "32", "--overlap", "4")
    assert_refused(result, other)
    assert "not a shipseg dataset" in result.stderr and (other / "notes.txt").read_text() == "keep"
    dataset = tmp_path / "ds"
    assert run("prepare", scene, labels, "-o", dataset, "-q", "--tile-size", "32", "--overlap", "4").exit_code == 0
    (dataset / "stale.txt").write_text("from the last run")
    result = run("prepare", scene, labels, "-o", dataset, "--overwrite", "-q", "--tile-size", "32", "--overlap", "4")
    assert result.exit_code == 0, result.output
    assert not (dataset / "stale.txt").exists() and (dataset / "dataset.json").exists()


# ---- an output that is an input -----------------------------------------------------------------------------------
def _hard_link(src: Path, dst: Path) -> Path:
    os.link(src, dst)
    return dst


@pytest.mark.parametrize("case", ["synth truth = out", "evaluate json = truth", "evaluate json = hard link of truth",
                                  "detect -o = boxes", "detect preview = output", "train -o = init",
                                  "oneshot -o = base"])
def test_an_output_that_is_an_input_is_refused(tmp_path, tiny_bundle, case):
    scene, labels = scene_and_labels(tmp_path / "in")
    copy = tmp_path / "in" / "model.safetensors"
    copy.write_bytes(tiny_bundle.read_bytes())
    argv, out = {
        "synth truth = out": (["synth", tmp_path / "x.tif", "--truth", tmp_path / "x.tif", "--size", "32x32"],
                              tmp_path / "x.tif"),
        "evaluate json = truth": (["evaluate", copy, scene, labels, "--json", labels], labels),
        "evaluate json = hard link of truth": (["evaluate", copy, scene, labels, "--json",
                                                _hard_link(labels, tmp_path / "in" / "link.json")], "link.json"),
        "detect -o = boxes": (["detect", scene, "-m", copy, "--boxes", labels, "-o", labels], labels),
        "detect preview = output": (["detect", scene, "-m", copy, "-o", tmp_path / "a.geojson", "--preview",
                                     tmp_path / "a.geojson"], "a.geojson"),
        "train -o = init": (["train", tmp_path / "in", "--init", copy, "-o", copy], copy),
        "oneshot -o = base": (["oneshot", scene, labels, "-m", copy, "-o", copy], copy),
    }[case]
    before = snapshot(tmp_path)
    result = run(*argv)
    assert_refused(result, out)
    assert snapshot(tmp_path) == before


# ---- every destination checked before any work; all outputs or none ------------------------------------------------
def test_detect_with_a_preview_into_a_missing_folder_writes_nothing(tmp_path, tiny_bundle, monkeypatch):
    scene, _ = scene_and_labels(tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    result = run("detect", scene, "-m", tiny_bundle, "-o", "a.geojson", "--preview", "nodir/a.png", "-q")
    assert_refused(result, "nodir/a.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


@pytest.mark.parametrize("option,value", [("--json", "nodir/x.json"), ("--figure", "nodir/x.png"),
                                          ("--json", "x.txt"), ("--figure", "x.jpg")])
def test_evaluate_refuses_its_outputs_before_evaluating(tmp_path, tiny_bundle, monkeypatch, option, value):
    scene, labels = scene_and_labels(tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    called = []
    monkeypatch.setattr("shipseg_cli.evaluate.evaluate_scene", lambda *a, **k: called.append(1))
    result = run("evaluate", tiny_bundle, scene, labels, option, value)
    assert_refused(result, value)
    assert not called


def test_a_read_only_folder_is_refused_before_any_work(tmp_path, tiny_bundle, monkeypatch):
    """The OS says the folder cannot be written (as it does for a read-only mount or without permission; the test
    runs as root, for whom chmod would not do)."""
    scene, _ = scene_and_labels(tmp_path / "in")
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: Path(p) != locked and real(p, mode, **k))
    called = []
    monkeypatch.setattr("samgeo_ship.inference.detector.ShipDetector.detect", lambda *a, **k: called.append(1))
    result = run("detect", scene, "-m", tiny_bundle, "-o", locked / "ships.geojson", "-q")
    assert_refused(result, locked / "ships.geojson")
    assert "read-only" in result.stderr and not called


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_disk_keeps_the_old_outputs_and_removes_temporary_files(tmp_path, tiny_bundle, monkeypatch, code):
    scene, _ = scene_and_labels(tmp_path / "in")
    out, preview = tmp_path / "ships.geojson", tmp_path / "look.png"
    out.write_text("old ships")
    preview.write_bytes(b"old preview")
    real = Path.write_text

    def full(self, *a, **k):
        if self.suffix == ".geojson":
            real(self, "{half")
            raise OSError(code, os.strerror(code))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", full)
    result = run("detect", scene, "-m", tiny_bundle, "-o", out, "--preview", preview, "-q")
    assert_refused(result, out)
    assert os.strerror(code) in result.stderr
    assert out.read_text() == "old ships" and preview.read_bytes() == b"old preview"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "look.png", "ships.geojson"]


def test_a_full_disk_while_preparing_keeps_the_old_dataset(tmp_path, monkeypatch):
    scene, labels = scene_and_labels(tmp_path / "in")
    dataset = tmp_path / "ds"
    assert run("prepare", scene, labels, "-o", dataset, "-q", "--tile-size", "32", "--overlap", "4").exit_code == 0
    before = snapshot(tmp_path)

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    result = run("prepare", scene, labels, "-o", dataset, "--overwrite", "-q", "--tile-size", "32", "--overlap", "4")
    assert_refused(result, dataset)
    assert snapshot(tmp_path) == before


def test_an_unreachable_scheduler_is_one_line_within_seconds_and_leaves_no_folder(tmp_path, tiny_bundle,
                                                                                   monkeypatch):
    """Refused by shipseg's own probe, whose connect timeout is a few seconds, before any Dask client is made
    (Dask's client retries for half a minute and ends in a traceback)."""
    scene, _ = scene_and_labels(tmp_path / "in")
    out = tmp_path / "out"
    timeouts, real = [], socket.create_connection
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: timeouts.append(k.get("timeout")) or real(*a, **k))
    monkeypatch.setattr("distributed.Client", lambda *a, **k: pytest.fail("a Dask client was made"))
    result = run("batch", tmp_path / "in", "-o", out, "-m", tiny_bundle, "--scheduler", "tcp://127.0.0.1:9")
    assert_refused(result, "tcp://127.0.0.1:9")
    assert timeouts and all(t is not None and t <= 10 for t in timeouts)
    assert not out.exists()


@pytest.mark.parametrize("address", ["127.0.0.1", "http://host:1", "tcp://:8786", "tcp://host:notaport"])
def test_a_malformed_scheduler_address_is_refused(tmp_path, tiny_bundle, address):
    scene_and_labels(tmp_path / "in")
    result = run("batch", tmp_path / "in", "-o", tmp_path / "out", "-m", tiny_bundle, "--scheduler", address)
    assert_refused(result, address)
    assert not (tmp_path / "out").exists()


def test_synth_writes_the_scene_and_its_truth_or_neither(tmp_path, monkeypatch):
    def full(result, path):
        Path(path).write_text("{half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("shipseg_cli.synth.write_truth", full)
    result = run("synth", tmp_path / "s.tif", "--size", "32x32", "--ships", "1", "-q")
    assert_refused(result, tmp_path / "s.tif")
    assert list(tmp_path.iterdir()) == []
