"""Outputs appear whole or not at all: write beside the target under a temporary name, then rename. An OS error
while writing (read-only folder, full disk) leaves the old output as it was, removes the temporary file and is
reported as one line naming the target."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from samgeo_ship.errors import ShipsegError, fail


def _temp_name(target: Path) -> Path:
    # The suffix stays last, so writers that pick a format by extension (GDAL, geopandas) see the target's.
    return target.with_name(f".{target.stem}.tmp-{os.getpid()}{target.suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def write_error(target, exc: OSError):
    """The one-line error for an OS error writing ``target`` (ENOSPC, EROFS, EACCES, ...)."""
    return fail(target, f"cannot be written ({exc.strerror or exc}); nothing was changed")


@contextlib.contextmanager
def atomic_files(*targets):
    """Yield one temporary path beside each target; when the body succeeds they all replace their targets, when
    it fails they are all removed and every target keeps its old content, so a command writes all its outputs or
    none. ``None`` targets yield ``None`` (optional outputs); a temporary path the body did not write leaves its
    target as it was (a preview of a scene with nothing to show)."""
    paths = [None if t is None else Path(t) for t in targets]
    temps = [None if p is None else _temp_name(p) for p in paths]
    current = None
    try:
        yield temps
        for target, tmp in zip(paths, temps):
            if target is not None and os.path.lexists(tmp):
                current = target
                os.replace(tmp, target)
    except OSError as exc:
        raise write_error(current or next(p for p in paths if p is not None), exc) from None
    except ShipsegError as exc:  # a writer below names the temporary file; the user knows the target
        message = str(exc)
        for target, tmp in zip(paths, temps):
            if tmp is not None:
                message = message.replace(str(tmp), str(target))
        raise type(exc)(message) from None
    finally:
        for tmp in temps:
            if tmp is not None:
                _remove(tmp)


@contextlib.contextmanager
def atomic_file(target):
    """Yield a temporary path beside ``target``; on success it replaces ``target``, on error it is removed."""
    with atomic_files(target) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_dir(target, overwrite: bool = False):
    """Yield a temporary directory beside ``target``; on success it becomes ``target`` (replacing an existing one
    only when ``overwrite``; the caller checks first that it may, see samgeo_ship.outputs), on error it is
    removed, so no half-written directory is ever left behind."""
    target = Path(target)
    tmp = _temp_name(target)
    try:
        _remove(tmp)
        tmp.mkdir(parents=True)
        yield tmp
        if target.exists() and overwrite:
            # Moved aside first and deleted last: a failure before the swap keeps the old dataset.
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            _remove(old)
        else:
            os.replace(tmp, target)
    except OSError as exc:
        raise write_error(target, exc) from None
    finally:
        _remove(tmp)
