"""Output destinations checked before any work: a command that cannot write all its outputs, or whose output would
replace one of its own inputs, fails at once in one line instead of after the run (or, worse, destroying data)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Mapping

from samgeo_ship.errors import fail


def _same(a: Path, b: Path) -> bool:
    """The same file: equal resolved paths, or one inode reached by two names (a hard link, a bind mount)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _writable_folder(path: Path, folder: Path) -> None:
    if not folder.is_dir():
        raise fail(path, "cannot be written: its folder does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise fail(path, "cannot be written: its folder is read-only")


def check_outputs(outputs, inputs: Iterable = ()) -> list[Path]:
    """Refuse, before any work, output files that are one of the inputs (or each other), that are folders, whose
    folder is missing or read-only, or whose suffix is not one their format allows.

    ``outputs``: paths, or a mapping {path: allowed suffixes (lower case, with the dot) or None}. ``None`` paths
    are skipped, so optional outputs can be passed as they are. Returns the outputs as Paths."""
    pairs = outputs.items() if isinstance(outputs, Mapping) else ((o, None) for o in outputs)
    pairs = [(Path(o), allowed) for o, allowed in pairs if o is not None]
    outs = [o for o, _ in pairs]
    ins = [Path(i) for i in inputs if i is not None]
    for k, (out, allowed) in enumerate(pairs):
        if allowed and out.suffix.lower() not in allowed:
            raise fail(out, f"must be named *{' or *'.join(sorted(allowed))}")
        for source in ins:
            if _same(out, source):
                raise fail(out, "is also an input of this command; writing it would destroy that input")
        if any(_same(out, other) for other in outs[:k]):
            raise fail(out, "is named as two outputs of this command")
        if out.is_dir():
            raise fail(out, "is a folder; give a file name")
        _writable_folder(out, out.parent if str(out.parent) else Path("."))
        if out.exists() and not os.access(out, os.W_OK):
            raise fail(out, "cannot be written: the file is read-only")
    return outs


def check_output_folder(folder, inputs: Iterable = (), overwrite: bool = False,
                        replaceable: Callable[[Path], bool] = lambda folder: False, kind: str = "output") -> Path:
    """Refuse, before any work, an output folder that is, holds or lies inside one of the inputs (replacing it
    would delete them), an existing folder without ``overwrite``, an existing folder that ``replaceable`` does not
    accept as an earlier ``kind`` (``overwrite`` replaces only those, never a folder of other files), or one whose
    parent is missing or read-only."""
    folder = Path(folder)
    target = folder.resolve()
    for source in (Path(i) for i in inputs if i is not None):
        src = source.resolve()
        if src == target or target in src.parents or src in target.parents:
            raise fail(folder, f"holds or lies inside the input {source}; choose an output folder of its own")
    if folder.exists():
        if not folder.is_dir():
            raise fail(folder, "exists and is not a folder")
        if not overwrite:
            raise fail(folder, "already exists (use --overwrite to replace it)")
        if not replaceable(folder):
            raise fail(folder, f"is not a shipseg {kind}, so --overwrite does not replace it (that would delete "
                               "whatever the folder holds); choose another output folder")
    _writable_folder(folder, target.parent)
    return folder
