"""Progress of every command: a tqdm bar on stderr for people, one JSON event per line on stdout for programs (the
QGIS plugin; the events are specified in docs/progress-protocol.md), or nothing."""

import contextlib
import json
import sys

from tqdm import tqdm

MODES = ("bar", "json", "none")


class Progress:
    """``show(done, total, **counts)`` drives the bar; ``emit(event, **fields)`` writes a JSON event; ``plan(info)``
    states the tile count and the time they will take, as a "plan" event or a line above the bar. Each is a no-op in
    the modes it does not belong to, so a command calls them all and the mode decides.

    ``on_start()`` is called before the first report (``one_line_warnings``' release), and the bar is made only
    then, so input refused before any work prints its error line alone."""

    def __init__(self, mode: str, unit: str, on_start=None):
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r} is not one of {MODES}")
        self.mode, self.unit = mode, unit
        self._on_start = on_start
        self._bar = None

    def _start(self) -> None:
        if self._on_start is not None:
            self._on_start()
            self._on_start = None
        if self.mode == "bar" and self._bar is None:
            self._bar = tqdm(unit=f" {self.unit}", dynamic_ncols=True, leave=False, file=sys.stderr)

    def show(self, done: int, total: int, **counts) -> None:
        self._start()
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

    def plan(self, info: dict) -> None:
        """``info``: tiles_total, tiles_done, seconds_per_tile, eta_s (measured on the first batch); for detection
        also batch_size and memory_mb (the memory the run needs at its peak)."""
        self.emit("plan", **info)
        if self.mode == "bar":
            needs = (f", {_size(info['memory_mb'])} of memory at {info['batch_size']} per batch"
                     if "memory_mb" in info else "")
            tqdm.write(f"{info['tiles_total']} {self.unit}, about {_duration(info['eta_s'])} at "
                       f"{info['seconds_per_tile']:.3g} s per tile{needs}", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextlib.contextmanager
def progress(mode: str, unit: str, on_start=None):
    """A Progress for the duration of a command (``mode``: bar, json or none)."""
    reporter = Progress(mode, unit, on_start)
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


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:,.0f} h"


def _size(mb: float) -> str:
    return f"{mb / 1000:.1f} GB" if mb >= 1000 else f"{mb:.0f} MB"
