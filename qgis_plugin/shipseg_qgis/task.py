"""The background task behind the toolbar button: one `shipseg detect` process, followed from a QgsTask."""

from __future__ import annotations

import os

from qgis.core import QgsMessageLog, QgsTask

from . import runner

LOG_TAG = "Shipseg"


class DetectTask(QgsTask):
    """Runs ``cmd`` in run() (a worker thread); ``on_finished(task)`` is then called in the main thread.

    After it ends: ``done`` is shipseg's final event (output path, ship count) or None, ``error`` a sentence or
    None, ``cancelled`` whether the user cancelled it.
    """

    def __init__(self, description: str, cmd: list, output: str, on_finished=None):
        super().__init__(description, QgsTask.CanCancel)
        self.cmd = cmd
        self.output = output
        self.on_finished = on_finished
        self.done = None
        self.error = None
        self.cancelled = False
        self.ships_so_far = 0
        self.ended = False  # set once finished() ran (main thread)

    def _progress(self, done: int, total: int, ships: int) -> None:
        self.ships_so_far = ships
        if total > 0:
            self.setProgress(min(100.0, 100.0 * done / total))

    def _log(self, line: str) -> None:
        QgsMessageLog.logMessage(line, LOG_TAG)

    def run(self) -> bool:
        QgsMessageLog.logMessage(" ".join(self.cmd), LOG_TAG)
        try:
            self.done = runner.run_shipseg(self.cmd, self._progress, self.isCanceled, self._log)
            return True
        except runner.ShipsegCancelled:
            self.cancelled = True
        except runner.ShipsegError as exc:
            self.error = str(exc)
        except Exception as exc:  # never let a traceback reach the user as the only explanation
            self.error = f"Ship detection failed: {exc!r}"
        self._remove_partial_output()
        return False

    def _remove_partial_output(self) -> None:
        try:
            if os.path.exists(self.output):
                os.remove(self.output)
        except OSError:
            pass

    def finished(self, result: bool) -> None:
        if not result and self.isCanceled():
            self.cancelled = True
        try:
            if self.on_finished:
                self.on_finished(self)
        finally:
            self.ended = True
