"""The plugin object QGIS loads: the "Detect ships" toolbar button and menu, settings, and the Processing provider.

All the work happens in the separate `shipseg` process (see runner.py); nothing here imports shipseg itself.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsProject, QgsVectorLayer
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from . import runner, settings
from .layers import local_raster_path, unique_output
from .styling import style_ships
from .task import LOG_TAG, DetectTask

PLUGIN_DIR = Path(__file__).resolve().parent
ICON = str(PLUGIN_DIR / "icon.svg")
MENU = "&Shipseg"


class ShipsegPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.actions = []
        self.provider = None
        self.tasks = []  # keeps the Python side of running tasks alive
        self.last_task = None

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
        self.detect_action.setToolTip("Detect ships in the active raster layer with shipseg (runs in the background)")
        self.detect_action.triggered.connect(self.detect_active_layer)
        self.settings_action = QAction("Settings…", self.iface.mainWindow())
        self.settings_action.setObjectName("shipsegSettings")
        self.settings_action.triggered.connect(self.show_settings)
        self.iface.addToolBarIcon(self.detect_action)
        for action in (self.detect_action, self.settings_action):
            self.iface.addPluginToMenu(MENU, action)
            self.actions.append(action)

    def unload(self):
        for task in list(self.tasks):
            task.cancel()
        self.iface.removeToolBarIcon(self.detect_action)
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
        self.actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    # --- actions -----------------------------------------------------------------------------------------------

    def show_settings(self):
        settings.SettingsDialog(self.iface.mainWindow()).exec_()

    def _message(self, text: str, level=Qgis.Info, duration: int = 8):
        QgsMessageLog.logMessage(text, LOG_TAG, level)
        self.iface.messageBar().pushMessage("Shipseg", text, level=level, duration=duration)

    def detect_active_layer(self, *_args, layer=None):
        """Start detection on ``layer`` (default: the active layer); return the task, or None after a message."""
        layer = layer or self.iface.activeLayer()
        try:
            scene = local_raster_path(layer)
            exe = settings.executable()
        except runner.ShipsegError as exc:
            self._message(str(exc), Qgis.Warning, 15)
            return None
        output = unique_output(scene, settings.output_format(), settings.get("output_dir"))
        cmd = runner.build_detect_command(exe, scene, output, model=settings.get("model") or None,
                                          device=settings.device())
        task = DetectTask(f"Detecting ships in {layer.name()}", cmd, output, self._task_finished)
        task.layer_id = layer.id()
        task.layer_name = layer.name()
        task.result_layer_id = None
        self.tasks.append(task)
        self.last_task = task
        QgsApplication.taskManager().addTask(task)
        return task

    def _task_finished(self, task: DetectTask):
        if task in self.tasks:
            self.tasks.remove(task)
        if task.cancelled:
            self._message(f"Ship detection in '{task.layer_name}' was cancelled.", Qgis.Info)
            return
        if task.error or not task.done:
            self._message(task.error or "Ship detection failed.", Qgis.Critical, 0)
            return
        path = task.done.get("output") or task.output
        ships = QgsVectorLayer(path, f"{task.layer_name} ships", "ogr")
        if not ships.isValid():
            self._message(f"shipseg wrote {path}, but QGIS cannot open it.", Qgis.Critical, 0)
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
        self._message(f"{task.done.get('ships', ships.featureCount())} ships found in '{task.layer_name}' "
                      f"({path}).", Qgis.Success)
