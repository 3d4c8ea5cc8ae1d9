"""End to end in the real QGIS desktop under Xvfb: the plugin enabled in a fresh profile, the button clicked by
desktop_script.py, the ships layer added, a screenshot saved, QGIS quitting with status 0."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from conftest import PLUGIN, PLUGIN_DIR, truth_count

SCRIPT = Path(__file__).resolve().parent / "desktop_script.py"
SHOTS = Path(os.environ.get("SHIPSEG_SCREENSHOT_DIR", Path(__file__).resolve().parents[1] / "out" / "qgis"))


def make_profile(root: Path, executable: str, output_dir: Path) -> None:
    """A QGIS profile with the plugin enabled and set up, and no first-run dialogs."""
    ini = root / "profiles" / "default" / "QGIS" / "QGIS3.ini"  # --profiles-path ROOT
    ini.parent.mkdir(parents=True)
    ini.write_text("\n".join([
        "[PythonPlugins]", f"{PLUGIN}=true",
        "[shipseg]", f"executable={executable}", "device=cpu", "output_format=gpkg", f"output_dir={output_dir}",
        "[qgis]", "checkVersion=false", "showTips322=false", "allowCrashReporting=false",
        "[core]", "NewsFeed\\httpsfeedqgisorg\\disabled=true",
        "[UI]", "UI\\hidePluginsManagerInfo=true", ""]))
    (root / "profiles" / "profiles.ini").write_text("[core]\ndefaultProfile=default\n")


def run_desktop(tmp_path, executable, scene, timeout_s=150):
    assert shutil.which("qgis") and shutil.which("xvfb-run"), "run `make qgis-deps`"
    profiles = tmp_path / "profiles"
    out_dir = tmp_path / "ships"
    out_dir.mkdir()
    make_profile(profiles, executable, out_dir)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "desktop_ships.png"
    result = tmp_path / "result.json"
    for old in (shot, SHOTS / "desktop_ships_window.png"):
        old.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}  # the real desktop, on Xvfb
    env.update(QGIS_PLUGINPATH=str(PLUGIN_DIR), SHIPSEG_DESKTOP_SCENE=str(scene), SHIPSEG_DESKTOP_RESULT=str(result),
               SHIPSEG_DESKTOP_SHOT=str(shot), SHIPSEG_DESKTOP_TIMEOUT=str(timeout_s - 40))
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1400x900x24", "qgis", "--profiles-path", str(profiles),
           "--profile", "default", "--nologo", "--noversioncheck", "--code", str(SCRIPT)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    state = json.loads(result.read_text()) if result.exists() else {}
    assert proc.returncode == 0, f"qgis exited {proc.returncode}; result {state}; stderr {proc.stderr[-6000:]}"
    return state, shot


def test_desktop_button_adds_ships_and_screenshot(tmp_path, fake_exe, scene):
    state, shot = run_desktop(tmp_path, fake_exe, scene)
    assert PLUGIN in state["active_plugins"]
    assert state["toolbar_button"], "the action is not on a toolbar"
    assert state["features"] == state["reported"] == truth_count(scene) > 0
    assert state["layer_crs"] == state["raster_crs"]
    assert state["labels"]
    assert state["layer_order"][:2] == ["harbour ships", "harbour"]
    assert shot.stat().st_size > 10_000 and shot.with_name("desktop_ships_window.png").exists()
