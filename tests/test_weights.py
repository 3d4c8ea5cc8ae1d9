"""Checkpoint download against a local HTTP server: verified, atomic, resumable, and clear when it fails."""

import hashlib
import http.server
import os
import threading

import pytest
from click.testing import CliRunner

from shipseg_cli import weights as weights_cmd
from samgeo_ship.errors import ShipsegError
from samgeo_ship.models import weights as W
from samgeo_ship.models.registry import CONFIGS

PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)  # not a multiple of the 1 MiB chunk
SHA = hashlib.sha256(PAYLOAD).hexdigest()
CUT = 1_500_000  # where the "truncate" mode stops sending


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD with Range support; self.server.mode makes it misbehave on purpose."""

    def do_GET(self):
        server = self.server
        server.ranges.append(self.headers.get("Range"))
        body = PAYLOAD if server.mode != "wrong" else bytes(reversed(PAYLOAD))
        start = 0
        rng = self.headers.get("Range")
        if rng and server.mode != "no_range":
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if server.mode == "truncate":
            # Promise the whole body, send part of it, then drop the connection.
            self.wfile.write(body[start:CUT])
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.mode = "ok"
    srv.ranges = []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/sam_vit_b_01ec64.pth"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _get(server, cache, **kw):
    return W.download("vit_b", cache_dir=cache, url=server.url, sha256=SHA, offline=False, **kw)


def test_good_download_verifies_and_lands_atomically(server, tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy_replace(src, dst):
        # At the moment of the rename the final name must not exist yet and the .part must be whole.
        seen.append((os.path.exists(dst), os.path.getsize(src), str(src)))
        real_replace(src, dst)

    monkeypatch.setattr(W.os, "replace", spy_replace)
    progress = []
    path = _get(server, tmp_path, progress=lambda done, total: progress.append((done, total)))

    assert path == tmp_path / "sam_vit_b_01ec64.pth"
    assert path.read_bytes() == PAYLOAD
    assert seen == [(False, len(PAYLOAD), str(path) + ".part")]
    assert not (tmp_path / "sam_vit_b_01ec64.pth.part").exists()
    assert progress[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert W.verify(path, sha256=SHA) is True
    # A verified cached file is returned without asking the server again.
    assert _get(server, tmp_path) == path
    assert len(server.ranges) == 1


def test_truncated_download_keeps_part_and_rerun_resumes(server, tmp_path):
    server.mode = "truncate"
    with pytest.raises(ShipsegError, match="rerun to resume"):
        _get(server, tmp_path)
    part = tmp_path / "sam_vit_b_01ec64.pth.part"
    assert part.stat().st_size == CUT
    assert not (tmp_path / "sam_vit_b_01ec64.pth").exists()

    server.mode = "ok"
    path = _get(server, tmp_path)
    assert server.ranges == [None, f"bytes={CUT}-"]
    assert path.read_bytes() == PAYLOAD
    assert not part.exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    # A stale .part of junk: if it were kept and appended to, the hash would fail.
    (tmp_path / "sam_vit_b_01ec64.pth.part").write_bytes(b"x" * 1000)
    server.mode = "no_range"
    path = _get(server, tmp_path)
    assert server.ranges == ["bytes=1000-"]
    assert path.read_bytes() == PAYLOAD


def test_part_as_long_as_file_restarts_after_416(server, tmp_path):
    (tmp_path / "sam_vit_b_01ec64.pth.part").write_bytes(b"y" * len(PAYLOAD))
    path = _get(server, tmp_path)
    assert server.ranges == [f"bytes={len(PAYLOAD)}-", None]
    assert path.read_bytes() == PAYLOAD


def test_wrong_hash_raises_and_leaves_nothing(server, tmp_path):
    server.mode = "wrong"
    with pytest.raises(ShipsegError, match=f"expected {SHA}") as err:
        _get(server, tmp_path)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_server_gone_is_a_clear_error(server, tmp_path):
    server.shutdown()
    server.server_close()
    with pytest.raises(ShipsegError, match="could not connect") as err:
        _get(server, tmp_path)
    assert server.url in str(err.value)
    assert not (tmp_path / "sam_vit_b_01ec64.pth").exists()


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_offline_names_url_and_path(server, tmp_path, monkeypatch, how):
    monkeypatch.setenv("SHIPSEG_OFFLINE", "1")
    offline = True if how == "argument" else None
    if how == "argument":
        monkeypatch.delenv("SHIPSEG_OFFLINE")
    with pytest.raises(ShipsegError) as err:
        W.download("vit_b", cache_dir=tmp_path, offline=offline)
    message = str(err.value)
    assert W.CHECKPOINTS["vit_b"].url in message
    assert str(tmp_path / "sam_vit_b_01ec64.pth") in message
    assert server.ranges == []


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert W.cached_path("vit_h") == tmp_path / "home" / "weights" / "sam_vit_h_4b8939.pth"
    monkeypatch.delenv("SHIPSEG_HOME")
    assert W.weights_dir() == tmp_path / "xdg" / "shipseg" / "weights"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert W.weights_dir() == tmp_path / "user" / ".cache" / "shipseg" / "weights"


def test_official_table_matches_weights_doc_and_registry():
    b = W.CHECKPOINTS["vit_b"]
    assert b.url == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    assert b.sha256 == "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"
    assert b.size_bytes == 375_042_383
    assert W.CHECKPOINTS["vit_l"].sha256.startswith("3adcc4315b64")
    assert W.CHECKPOINTS["vit_h"].sha256.startswith("a7bf3b02f3eb")
    for name, config in CONFIGS.items():
        assert config.official == (name in W.CHECKPOINTS)
        if config.official:
            assert config.checkpoint == W.CHECKPOINTS[name].filename


def test_verify_refuses_bad_files(tmp_path):
    with pytest.raises(ShipsegError, match="shipseg weights download vit_l"):
        W.verify("vit_l", cache_dir=tmp_path)
    short = tmp_path / "sam_vit_b_01ec64.pth"
    short.write_bytes(b"abc")
    with pytest.raises(ShipsegError, match="not the 375,042,383 of vit_b"):
        W.verify(short)
    other = tmp_path / "mine.pth"
    other.write_bytes(b"abc")
    with pytest.raises(ShipsegError, match="matches no official SAM checkpoint"):
        W.verify(other)
    assert W.verify(other, sha256=hashlib.sha256(b"abc").hexdigest())


@pytest.fixture
def local_vit_b(server, monkeypatch):
    """Point the vit_b entry at the test server, as the CLI has no hash override."""
    monkeypatch.setitem(W.CHECKPOINTS, "vit_b", W.Checkpoint("vit_b", server.url, SHA, len(PAYLOAD)))
    monkeypatch.delenv("SHIPSEG_OFFLINE", raising=False)
    return server


def test_cli_download_list_verify(local_vit_b, tmp_path):
    runner = CliRunner()
    result = runner.invoke(weights_cmd.weights, ["download", "vit_b", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    path = tmp_path / "sam_vit_b_01ec64.pth"
    assert result.stdout.strip().endswith(str(path))
    assert path.read_bytes() == PAYLOAD

    listing = runner.invoke(weights_cmd.weights, ["list", "--cache-dir", str(tmp_path)])
    assert listing.exit_code == 0
    line = next(l for l in listing.stdout.splitlines() if l.startswith("vit_b"))
    assert "not cached" not in line and "cached" in line and str(path) in line

    assert runner.invoke(weights_cmd.weights, ["verify", "vit_b", "--cache-dir", str(tmp_path)]).exit_code == 0
    assert runner.invoke(weights_cmd.weights, ["verify", str(path)]).exit_code == 0

    path.write_bytes(PAYLOAD[:-1] + b"\0")
    bad = runner.invoke(weights_cmd.weights, ["verify", str(path)])
    assert bad.exit_code == 2
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("Error: ") and "SHA-256" in bad.stderr


def test_cli_download_failure_is_one_line_exit_2(local_vit_b, tmp_path):
    local_vit_b.shutdown()
    local_vit_b.server_close()
    result = CliRunner().invoke(weights_cmd.weights, ["download", "vit_b", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "could not connect" in result.stderr
    offline = CliRunner().invoke(weights_cmd.weights, ["download", "vit_b", "--offline", "--cache-dir", str(tmp_path)])
    assert offline.exit_code == 2 and str(tmp_path / "sam_vit_b_01ec64.pth") in offline.stderr


def test_weights_group_is_registered_in_shipseg():
    try:
        from shipseg_cli.main import cli
    except ImportError as exc:  # other commands may still be being written
        pytest.skip(f"shipseg_cli.main does not import yet: {exc}")
    assert cli.commands["weights"] is weights_cmd.weights
