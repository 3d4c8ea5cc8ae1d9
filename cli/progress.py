"""Progress of every command: a tqdm bar on stderr for people, one JSON event per line on stdout for programs (the
QGIS plugin; the events are specified in docs/progress-protocol.md), or nothing."""

import contextlib
import json
import sys

from tqdm import tqdm

MODES = ("bar", "json", "none")


class Progress:
    """``show(done, total, **counts)`` drives the bar; ``emit(event, **fields)`` writes a JSON event. Each is a
    no-op in the modes it does not belong to, so a command calls both and the mode decides."""

    def __init__(self, mode: str, unit: str):
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r} is not one of {MODES}")
        self.mode = mode
        self._bar = tqdm(unit=f" {unit}", dynamic_ncols=True, leave=False, file=sys.stderr) if mode == "bar" else None

    def show(self, done: int, total: int, **counts) -> None:
        if self._bar is None:
            return
        self._bar.total = total
        self._bar.n = done
        if counts:
            self._bar.set_postfix(**counts, refresh=False)
        self._bar.refresh()

    def emit(self, event: str, **fields) -> None:
        if self.mode == "json":
            print(json.dumps({"event": event, **fields}), flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextlib.contextmanager
def progress(mode: str, unit: str):
    """A Progress for the duration of a command (``mode``: bar, json or none)."""
    reporter = Progress(mode, unit)
    try:
        yield reporter
    finally:
        reporter.close()


def tile_progress(reporter: Progress):
    """The ``progress(tiles_done, tiles_total, ships)`` callback of detection, as a bar and as "progress" events."""
    def update(done, total, ships):
        reporter.show(done, total, ships=ships)
        reporter.emit("progress", tiles_done=done, tiles_total=total, ships=ships)
    return update
