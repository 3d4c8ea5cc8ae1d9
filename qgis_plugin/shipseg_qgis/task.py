"""The background task behind the toolbar button: one `shipseg detect` process, followed from a QgsTask."""

from __future__ import annotations

from qgis.core import Qgis, QgsMessageLog, QgsTask

from . import runner

LOG_TAG = "Shipseg"


class DetectTask(QgsTask):
    """Runs ``cmd`` in run() (a worker thread); ``on_finished(task)`` is then called in the main thread.

    After it ends: ``done`` is shipseg's final event (output path, ship count) or None, ``error`` a sentence or
    None, ``cancelled`` whether it was cancelled. ``detach()`` drops the callback: QGIS calls ``finished()``
    from ``QgsTaskManager.cancelAll()`` while the application shuts down, when neither the plugin nor the message
    log may exist any more, so a detached task touches nothing outside itself.
    """

    def __init__(self, description: str, cmd: list, output: str, on_finished=None, cleanup=()):
        super().__init__(description, QgsTask.CanCancel)
        self.cmd = cmd
        self.output = output
        self.on_finished = on_finished
        self.cleanup = list(cleanup)  # temporary files (prompts) removed when the run ends
        self.done = None
        self.error = None
        self.cancelled = False
        self.ended = False  # set once finished() ran (main thread)
        self.tiles, self.ships_so_far = (0, 0), 0  # from shipseg's latest progress line

    def detach(self) -> None:
        self.on_finished = None

    def _progress(self, done: int, total: int, ships: int) -> None:
        self.tiles, self.ships_so_far = (done, total), ships
        if total > 0:
            self.setProgress(min(100.0, 100.0 * done / total))

    def _log(self, line: str) -> None:
        if self.on_finished is not None and not self.isCanceled():  # nothing once cancelled or detached
            QgsMessageLog.logMessage(line, LOG_TAG, Qgis.Info)

    def run(self) -> bool:
        self._log(" ".join(self.cmd))
        try:
            self.done = runner.run_shipseg(self.cmd, self._progress, self.isCanceled, self._log)
            return True
        except runner.ShipsegCancelled:
            self.cancelled = True
        except runner.ShipsegError as exc:
            self.error = str(exc)
        except Exception as exc:  # never let a traceback reach the user as the only explanation
            self.error = f"Ship detection failed: {exc!r}"
        finally:
            runner.remove_files(self.cleanup)
        runner.remove_files([self.output])
        return False

    def finished(self, result: bool) -> None:
        self.cancelled = self.cancelled or (not result and self.error is None)
        callback, self.on_finished = self.on_finished, None
        try:
            if callback is not None:
                callback(self)
        finally:
            self.ended = True

