"""The plugin object QGIS loads: the "Detect ships" toolbar button and menu, settings, and the Processing provider.

All the work happens in the separate `shipseg` process (see runner.py); nothing here imports shipseg itself.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsProject, QgsTask, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QPushButton

from . import runner, settings
from .layers import local_raster_path, unique_output
from .prompts import write_prompts
from .rundialog import RunChoices, RunDialog
from .styling import style_ships
from .task import LOG_TAG, DetectTask

PLUGIN_DIR = Path(__file__).resolve().parent
ICON = str(PLUGIN_DIR / "icon.svg")
MENU = "&Shipseg"
STOP_TIMEOUT_S = 15  # a cancelled run ends within kill_tree's grace periods


class ShipsegPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.actions = []
        self.provider = None
        self.tasks = []  # keeps the Python side of running tasks alive
        self.last_task = None
        self.run_dialog = None
        self._descriptions = {}  # task id -> description, for the tasks this plugin started

    # --- QGIS plugin interface ---------------------------------------------------------------------------------

    def initProcessing(self):
        if self.provider is not None:
            return
        from .provider import ShipsegProvider
        self.provider = ShipsegProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):
        self.initProcessing()
        self.detect_action = QAction(QIcon(ICON), "Detect ships", self.iface.mainWindow())
        self.detect_action.setObjectName("shipsegDetectShips")
        self.detect_action.setToolTip("Detect ships in a raster layer with shipseg (runs in the background)")
        self.detect_action.triggered.connect(self.open_run_dialog)
        self.settings_action = QAction("Settings…", self.iface.mainWindow())
        self.settings_action.setObjectName("shipsegSettings")
        self.settings_action.triggered.connect(self.show_settings)
        self.iface.addToolBarIcon(self.detect_action)
        for action in (self.detect_action, self.settings_action):
            self.iface.addPluginToMenu(MENU, action)
            self.actions.append(action)
        # Stop our runs while Python and QGIS are still whole: left running, the task manager's cancelAll() at
        # shutdown would call back into Python objects that are being destroyed.
        QgsApplication.instance().aboutToQuit.connect(self.stop_tasks)
        QgsApplication.taskManager().statusChanged.connect(self._drop_qgis_notice)

    def unload(self):
        self.stop_tasks()
        for signal, slot in ((QgsApplication.instance().aboutToQuit, self.stop_tasks),
                             (QgsApplication.taskManager().statusChanged, self._drop_qgis_notice)):
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):
                pass
        if self.run_dialog is not None:
            self.run_dialog.reject()
            self.run_dialog = None
        self.iface.removeToolBarIcon(self.detect_action)
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
        self.actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    def stop_tasks(self):
        """Cancel every run and wait (bounded) until each has ended, its process killed; no callbacks."""
        tasks, self.tasks = list(self.tasks), []
        for task in tasks:
            task.detach()
            try:
                self.iface.messageBar().popWidget(task.notice)
            except RuntimeError:
                pass
            try:
                task.cancel()
            except RuntimeError:  # QGIS already deleted the C++ task
                task.ended = True
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(not t.ended for t in tasks) and time.monotonic() < deadline:
            QgsApplication.processEvents()  # delivers the workers' "terminated" to finished()
            time.sleep(0.02)

    # --- actions -----------------------------------------------------------------------------------------------

    def show_settings(self):
        settings.SettingsDialog(self.iface.mainWindow()).exec_()

    def open_run_dialog(self, *_args):
        """The toolbar button: the run dialog (window-modal, not blocking); its OK starts the run."""
        if self.run_dialog is not None:
            self.run_dialog.raise_()
            return self.run_dialog
        dialog = RunDialog(self.iface.activeLayer(), self.iface.mainWindow())
        dialog.accepted.connect(lambda: self.detect(dialog.choices()))
        dialog.finished.connect(lambda _result: setattr(self, "run_dialog", None))
        self.run_dialog = dialog
        dialog.open()
        return dialog

    def notify(self, text: str, level=Qgis.Info, duration: int = 8, button=None, details: str = ""):
        """Show ``text`` (one line: the bar cuts longer ones) in the message bar and log it with ``details``;
        ``button``: (label, slot) added to the message."""
        QgsMessageLog.logMessage(f"{text} {details}".strip(), LOG_TAG, Qgis.Info if level == Qgis.Success else level)
        bar = self.iface.messageBar()
        if button is None:
            if len(text) > 100:  # the bar shows about one line: the whole text one click away
                bar.pushMessage("Shipseg", text, text, level, duration)
            else:
                bar.pushMessage("Shipseg", text, level=level, duration=duration)
            return None
        item = bar.createMessage("Shipseg", text)
        push = QPushButton(button[0])
        push.clicked.connect(button[1])
        item.layout().addWidget(push)
        bar.pushWidget(item, level, duration)
        return item

    def detect(self, choices: RunChoices):
        """Start detection with ``choices``; return the task, or None after a message saying why not."""
        cleanup = []
        try:
            scene = local_raster_path(choices.layer)
            exe = settings.executable()
            boxes = points = None
            if choices.prompts is not None:
                layer = choices.prompts
                feats = layer.getSelectedFeatures() if choices.selected_only else layer.getFeatures()
                path, kind = write_prompts(feats, layer.crs(), layer.wkbType(),
                                           QgsProject.instance().transformContext())
                cleanup.append(path)
                boxes, points = (path, None) if kind == "boxes" else (None, path)
        except runner.ShipsegNotFound as exc:
            self.notify(f"{exc.problem} `make install` in a shipseg clone, then:", Qgis.Warning, 0,
                        button=("Open settings", self.show_settings), details=runner.INSTALL_HINT)
            return None
        except runner.ShipsegError as exc:
            self.notify(str(exc), Qgis.Warning, 15)
            return None
        layer = choices.layer
        output = unique_output(scene, choices.output_format, choices.output_dir)
        cmd = runner.build_detect_command(exe, scene, output, model=choices.model or settings.get("model") or None,
                                          bands=choices.bands, boxes=boxes, points=points, device=settings.device())
        task = DetectTask(f"Detecting ships in {layer.name()}", cmd, output, self._task_finished, cleanup)
        task.layer_id, task.layer_name, task.result_layer_id = layer.id(), layer.name(), None
        task.notice = self.notify(_running_text(task), Qgis.Info, 0, button=("Cancel", task.cancel))
        task.progressChanged.connect(lambda _value, t=task: _show_progress(t))
        self.tasks.append(task)
        self.last_task = task
        self._descriptions[QgsApplication.taskManager().addTask(task)] = task.description()
        return task

    def _task_finished(self, task: DetectTask):
        if task in self.tasks:
            self.tasks.remove(task)
        try:
            self.iface.messageBar().popWidget(task.notice)
        except RuntimeError:  # the user closed it
            pass
        if task.cancelled:
            self.notify(f"Ship detection in '{task.layer_name}' cancelled: no layer added.", Qgis.Info)
            return
        if task.error or not task.done:
            self.notify(task.error or "Ship detection failed.", Qgis.Critical, 0)
            return
        path = task.done.get("output") or task.output
        ships = QgsVectorLayer(path, f"{task.layer_name} ships", "ogr")
        if not ships.isValid():
            self.notify(f"shipseg wrote {path}, but QGIS cannot open it.", Qgis.Critical, 0)
            return
        style_ships(ships)
        project = QgsProject.instance()
        project.addMapLayer(ships, False)
        root = project.layerTreeRoot()
        node = root.findLayer(task.layer_id)
        parent = node.parent() if node is not None else root
        index = parent.children().index(node) if node is not None else 0
        parent.insertLayer(index, ships)  # directly above the raster
        task.result_layer_id = ships.id()
        self.notify(f"{task.done.get('ships', ships.featureCount())} ships found in '{task.layer_name}', saved as "
                    f"{os.path.basename(path)}.", Qgis.Success, 15, details=f"({path})")

    def _drop_qgis_notice(self, task_id, status):
        """QGIS announces a long task's end as "Task complete"/"Task failed" on top of ours (and calls a cancel
        a failure): remove that notice for our own tasks, once QGIS has pushed it, so that the plugin's message
        is the one shown."""
        if status not in (QgsTask.Complete, QgsTask.Terminated) or task_id not in self._descriptions:
            return
        description = self._descriptions.pop(task_id)

        def drop():
            bar = self.iface.messageBar()
            for item in list(bar.items()):
                if item.text() == description and item.title() != "Shipseg":
                    bar.popWidget(item)

        QTimer.singleShot(0, drop)


def _running_text(task: DetectTask) -> str:
    done, total = task.tiles
    so_far = f" {done}/{total} tiles, {task.ships_so_far} ships so far." if total else " (loading shipseg)"
    return f"Detecting ships in '{task.layer_name}'…{so_far}"


def _show_progress(task: DetectTask) -> None:
    try:
        task.notice.setText(_running_text(task))
    except RuntimeError:  # the user closed the message
        pass
