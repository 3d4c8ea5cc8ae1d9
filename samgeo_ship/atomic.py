"""Outputs appear whole or not at all: write beside the target under a temporary name, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def _temp_name(target: Path) -> Path:
    # The suffix stays last: GDAL picks a driver's layout by it (FlatGeobuf writes a folder for a name without .fgb).
    return target.with_name(f".{target.stem}.tmp-{os.getpid()}{target.suffix}")


@contextlib.contextmanager
def atomic_file(target):
    """Yield a temporary path beside ``target``; on success it replaces ``target``, on error it is removed."""
    target = Path(target)
    tmp = _temp_name(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(target, overwrite: bool = False):
    """Yield a temporary directory beside ``target``; on success it becomes ``target`` (replacing an existing one
    only when ``overwrite``), on error it is removed, so no half-written directory is ever left behind."""
    target = Path(target)
    tmp = _temp_name(target)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if target.exists() and overwrite:
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
