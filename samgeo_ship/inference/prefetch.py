"""A generator run ahead in a background thread, so reading tiles overlaps with the model."""

from __future__ import annotations

import queue
import threading


class Prefetch:
    """Runs a generator in a background thread at most ``depth`` items ahead (a bounded queue keeps memory flat when
    reading outpaces the model). Errors in the generator are raised where the items are consumed."""

    _END = object()

    def __init__(self, generator, depth: int):
        self._queue: queue.Queue = queue.Queue(max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(generator,), daemon=True, name="shipseg-read")
        self._thread.start()

    def _fill(self, generator):
        try:
            for item in generator:
                if not self._put((item, None)):
                    return
            self._put((self._END, None))
        except BaseException as exc:  # handed to the consumer, who raises it
            self._put((None, exc))

    def _put(self, message) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        while True:
            item, exc = self._queue.get()
            if exc is not None:
                raise exc
            if item is self._END:
                return
            yield item

    def close(self):
        """Stop the reader and wait for it, so the scene can be closed safely afterwards."""
        self._stop.set()
        self._thread.join()
