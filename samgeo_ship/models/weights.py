"""Official SAM checkpoints: pinned URLs and SHA-256 hashes, a resumable verified download, and the cache."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

from samgeo_ship.version import __version__
from samgeo_ship.errors import ShipsegError, fail

_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60


@dataclass(frozen=True)
class Checkpoint:
    """One published checkpoint file.

    Args:
        name: the model type it belongs to (a key of samgeo_ship.models.registry.CONFIGS).
        url: where Meta publishes it.
        sha256: lowercase hex SHA-256 of the whole file.
        size_bytes: file size in bytes, where published (a quick check before hashing), else None.
    """

    name: str
    url: str
    sha256: str
    size_bytes: Optional[int] = None

    @property
    def filename(self) -> str:
        """The file's name in the cache: the name Meta gives it, so users can also put it there by hand."""
        return self.url.rsplit("/", 1)[-1]


# From docs WEIGHTS.md, checked against several independent registries; never copy hashes from elsewhere.
CHECKPOINTS: Dict[str, Checkpoint] = {
    "vit_b": Checkpoint(
        "vit_b",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        375_042_383,
    ),
    "vit_l": Checkpoint(
        "vit_l",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "vit_h": Checkpoint(
        "vit_h",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
}

Progress = Callable[[int, Optional[int]], None]


def weights_dir() -> Path:
    """The checkpoint cache: $SHIPSEG_HOME/weights, else $XDG_CACHE_HOME/shipseg/weights, else ~/.cache/shipseg/weights."""
    if os.environ.get("SHIPSEG_HOME"):
        return Path(os.environ["SHIPSEG_HOME"]).expanduser() / "weights"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "shipseg" / "weights"
    return Path.home() / ".cache" / "shipseg" / "weights"


def is_offline() -> bool:
    """True when SHIPSEG_OFFLINE is set to 1/true/yes: nothing is downloaded, cached files still work."""
    return os.environ.get("SHIPSEG_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def checkpoint(name: str) -> Checkpoint:
    """The Checkpoint called ``name``; ShipsegError listing the known names otherwise."""
    try:
        return CHECKPOINTS[name]
    except KeyError:
        raise ShipsegError(f"unknown checkpoint {name!r}; choose one of {', '.join(CHECKPOINTS)}") from None


def cached_path(name: str, cache_dir=None) -> Path:
    """Where checkpoint ``name`` lives in the cache (whether or not it is there yet)."""
    return Path(cache_dir or weights_dir()) / checkpoint(name).filename


def sha256_file(path, progress: Optional[Progress] = None) -> str:
    """Lowercase hex SHA-256 of a file, read in 1 MiB chunks; progress(bytes_done, bytes_total) after each."""
    path = Path(path)
    total = path.stat().st_size
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return digest.hexdigest()


def verify(name_or_path, cache_dir=None, sha256: Optional[str] = None) -> bool:
    """Check a checkpoint's SHA-256: True when it matches, ShipsegError (one sentence) when it does not.

    Args:
        name_or_path: a checkpoint name ("vit_b": the cached file) or a path to a file. A file whose name is
            not an official one passes when its hash equals any official checkpoint's.
        cache_dir: cache folder for a name; default weights_dir().
        sha256: expected hash, overriding the official one (tests, private mirrors).
    """
    name = str(name_or_path)
    if name in CHECKPOINTS:
        path = cached_path(name, cache_dir)
        if not path.is_file():
            raise fail(path, f"{name} is not downloaded; run `shipseg weights download {name}`")
        known = CHECKPOINTS[name]
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise fail(path, f"file not found (nor is it a checkpoint name: {', '.join(CHECKPOINTS)})")
        known = next((c for c in CHECKPOINTS.values() if c.filename == path.name), None)

    if sha256 is None and known is not None and known.size_bytes is not None:
        size = path.stat().st_size
        if size != known.size_bytes:
            # Cheaper than hashing, and a clearer message for the common case of an incomplete copy.
            raise fail(path, f"is {size:,} bytes, not the {known.size_bytes:,} of {known.name}; the file is "
                       "incomplete or corrupt, download it again")
    digest = sha256_file(path)
    expected = (sha256 or (known.sha256 if known else "")).lower()
    if expected:
        if digest != expected:
            raise fail(path, f"SHA-256 is {digest}, expected {expected}; the file is corrupt or incomplete, "
                       "download it again")
        return True
    if any(c.sha256 == digest for c in CHECKPOINTS.values()):
        return True
    raise fail(path, f"SHA-256 {digest} matches no official SAM checkpoint")


def download(
    name: str,
    cache_dir=None,
    url: Optional[str] = None,
    offline: Optional[bool] = None,
    progress: Optional[Progress] = None,
    sha256: Optional[str] = None,
) -> Path:
    """Download checkpoint ``name`` into the cache, verified, and return its path.

    The bytes go to FILE.part, hashed as they stream; only a file with the right SHA-256 is renamed to FILE
    (atomically), so FILE is always whole. An interrupted download leaves FILE.part, and the next call
    resumes it with an HTTP Range request. A cached file that verifies is returned without network access.

    Args:
        name: a key of CHECKPOINTS.
        cache_dir: target folder; default weights_dir().
        url: fetch from here instead of the official URL (a mirror); the hash is still checked.
        offline: never touch the network; None reads SHIPSEG_OFFLINE.
        progress: called as progress(bytes_done, bytes_total_or_None) as bytes arrive.
        sha256: expected hash, overriding the official one (tests, private mirrors).

    Raises ShipsegError when offline and not cached, on a network failure (rerunning resumes), or on a hash
    mismatch (the partial file is deleted).
    """
    known = checkpoint(name)
    url = url or known.url
    expected = (sha256 or known.sha256).lower()
    dest = cached_path(name, cache_dir)
    part = dest.with_name(dest.name + ".part")
    offline = is_offline() if offline is None else offline

    if dest.is_file():
        if sha256_file(dest) == expected:
            return dest
        if offline:
            raise fail(dest, f"is corrupt (wrong SHA-256) and downloads are off; replace it with {url}")
        # A bad file in our own cache (e.g. copied in by hand, half-written) is ours to replace.
        dest.unlink()
    if offline:
        raise fail(dest, f"{name} is not downloaded and downloads are off (--offline or SHIPSEG_OFFLINE=1); "
                   f"download {url} yourself and put it at {dest}")

    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = _fetch(url, part, progress)
    if digest != expected:
        part.unlink(missing_ok=True)
        raise fail(url, f"the downloaded file has SHA-256 {digest}, expected {expected}, so it was deleted; "
                   "check the URL, or rerun to download again")
    os.replace(part, dest)
    return dest


def _fetch(url: str, part: Path, progress: Optional[Progress]) -> str:
    """Stream ``url`` into ``part``, resuming from its current length; return the whole file's SHA-256."""
    start = part.stat().st_size if part.is_file() else 0
    try:
        response = _open(url, start)
        if response is None:
            # 416: the .part is already as long as the file (or longer); it cannot be resumed, so restart.
            part.unlink()
            start = 0
            response = _open(url, 0)
    except urllib.error.HTTPError as exc:
        raise fail(url, f"the server answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = getattr(exc.reason, "strerror", None) or exc.reason
        raise fail(url, f"could not connect ({reason}); check the network and the URL, then rerun"
                   + (" to resume the partial download" if start else "")) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _interrupted(url, part, start, exc) from None

    with response:
        if start and response.status != 206:
            # The server ignored the Range header and sends the whole file: start the .part over.
            start = 0
        elif start and not response.headers.get("Content-Range", "").startswith(f"bytes {start}-"):
            raise fail(url, f"the server resumed at the wrong byte ({response.headers.get('Content-Range')!r} "
                       f"for a request from byte {start}); delete {part} and rerun")
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        digest = hashlib.sha256()
        if start:
            with open(part, "rb") as f:
                while chunk := f.read(_CHUNK_BYTES):
                    digest.update(chunk)
        done = start
        with open(part, "ab" if start else "wb") as f:
            while True:
                try:
                    chunk = response.read(_CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as exc:
                    f.flush()
                    raise _interrupted(url, part, done, exc) from None
                if not chunk:
                    break
                f.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if total is not None and done < total:
            raise fail(url, f"the server closed the connection after {done:,} of {total:,} bytes; {part.name} "
                       "is kept, rerun to resume")
    return digest.hexdigest()


def _open(url: str, start: int):
    """urlopen ``url`` from byte ``start``; None when the server says that range is not satisfiable (416)."""
    headers = {"User-Agent": f"shipseg/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:
            exc.close()
            return None
        raise


def _interrupted(url: str, part: Path, done: int, exc: BaseException) -> ShipsegError:
    what = "timed out" if isinstance(exc, (socket.timeout, TimeoutError)) else (
        getattr(exc, "strerror", None) or type(exc).__name__)
    return fail(url, f"the download broke off after {done:,} bytes ({what}); {part.name} is kept, rerun to resume")
