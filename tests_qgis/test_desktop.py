"""End to end in the real QGIS desktop under Xvfb: the plugin installed from its zip and enabled in a fresh profile,
driven by desktop_script.py as a user would (see its steps), screenshots saved, and QGIS quitting with status 0
while a run is still going."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import PLUGIN, PLUGIN_DIR, REPO, pid_gone, truth_count

SCRIPT = Path(__file__).resolve().parent / "desktop_script.py"
SHOTS = Path(os.environ.get("SHIPSEG_SCREENSHOT_DIR", Path(__file__).resolve().parents[1] / "out" / "qgis"))
# A safety net for a hung QGIS, not a wait: the script ends QGIS itself as soon as its last step is done.
LIMIT_S = 600


def make_profile(root: Path, executable: str, output_dir: Path) -> None:
    """A QGIS profile with the plugin enabled and set up, and no first-run dialogs."""
    ini = root / "profiles" / "default" / "QGIS" / "QGIS3.ini"  # --profiles-path ROOT
    ini.parent.mkdir(parents=True)
    ini.write_text("\n".join([
        "[PythonPlugins]", f"{PLUGIN}=true",
        "[shipseg]", f"executable={executable}", "device=cpu", "output_format=gpkg", f"output_dir={output_dir}",
        "[app]", "minTaskLengthForSystemNotification=0",  # QGIS's own "Task complete" notice for every task
        "[qgis]", "checkVersion=false", "showTips322=false", "allowCrashReporting=false",
        "[core]", "NewsFeed\\httpsfeedqgisorg\\disabled=true",
        "[UI]", "UI\\hidePluginsManagerInfo=true", ""]))
    (root / "profiles" / "profiles.ini").write_text("[core]\ndefaultProfile=default\n")


def install_from_zip(profiles: Path) -> None:
    """What Install from ZIP does: the zip that `make plugin-zip` builds, unpacked in the profile's plugins."""
    archive = profiles.parent / "shipseg_qgis.zip"
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_plugin_zip.py"), str(PLUGIN_DIR / PLUGIN),
                    str(archive)], check=True, capture_output=True)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(profiles / "profiles" / "default" / "python" / "plugins")


def run_desktop(tmp_path, executable, scene, steps=""):
    assert shutil.which("qgis") and shutil.which("xvfb-run"), "run `make qgis-deps`"
    profiles = tmp_path / "profiles"
    out_dir = tmp_path / "ships"
    out_dir.mkdir()
    make_profile(profiles, executable, out_dir)
    install_from_zip(profiles)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("desktop_*.png"):
        old.unlink()
    result = tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}  # the real desktop, on Xvfb
    env.update(SHIPSEG_DESKTOP_SCENE=str(scene), SHIPSEG_DESKTOP_RESULT=str(result),
               SHIPSEG_DESKTOP_SHOTS=str(SHOTS), SHIPSEG_DESKTOP_TIMEOUT=str(LIMIT_S - 60),
               FAKE_SHIPSEG_PIDFILE=str(tmp_path / "pid.json"), SHIPSEG_DESKTOP_STEPS=steps)
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1400x900x24", "qgis", "--profiles-path", str(profiles),
           "--profile", "default", "--nologo", "--noversioncheck", "--code", str(SCRIPT)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=LIMIT_S)
    state = json.loads(result.read_text()) if result.exists() else {}
    assert proc.returncode == 0, (f"qgis exited {proc.returncode}; result {state}; stderr {proc.stderr[-3000:]}; "
                                  f"stdout {proc.stdout[-6000:]}")
    assert state.get("exit_code") == 0 and "error" not in state, state
    return state


def test_desktop_session(tmp_path, fake_exe, scene):
    state = run_desktop(tmp_path, fake_exe, scene)
    assert PLUGIN in state["active_plugins"]
    assert state["toolbar_button"], "the action is not on a toolbar"
    assert state["steps"] == ["settings", "notfound", "dialog", "started", "result", "processing", "cancel"]
    # "Check shipseg" answers at once and reports when shipseg does (its --version takes a second here)
    assert state["settings_check_returned_early"] and "Checking" in state["settings_checking_text"]
    assert state["settings_checked"] and "0.0.0-fake" in state["settings_text"]
    # no shipseg: a warning that says what to install, with a button to the settings
    assert "make install" in state["notfound_text"] and state["notfound_button"]
    # the click says at once what is happening
    assert state["started_text"].startswith("Detecting ships in 'harbour'")
    # the ships, styled, above the raster; the result message on top, QGIS's "Task complete" gone
    assert state["features"] == state["reported"] == truth_count(scene) > 0
    assert state["layer_crs"] == state["raster_crs"]
    assert state["labels"]
    assert state["layer_order"][:2] == ["harbour ships", "harbour"]
    assert "ships found in 'harbour'" in state["result_text"], state["result_bar"]
    assert not [i for i in state["result_bar"] if i["text"] == "Detecting ships in harbour"], state["result_bar"]
    # Processing's output as loaded: named after the raster, styled like the button's
    assert state["processing"] == {"name": "harbour ships", "features": truth_count(scene), "labels": True,
                                   "stroke": "#ff00ff"}
    # a cancel is called a cancel, within seconds
    assert "cancelled" in state["cancel_text"] and state["cancel_seconds"] < 10
    assert not [i for i in state["cancel_bar"] if "fail" in (i["title"] + i["text"]).lower()], state["cancel_bar"]
    # QGIS quit with a run going: exit status 0 (checked above) and the shipseg process is gone
    assert pid_gone(state["quit_pid"])
    for name in ("settings", "notfound", "run_dialog", "started", "ships", "cancelled"):
        assert (SHOTS / f"desktop_{name}.png").stat().st_size > 10_000


def screenshot_for_docs(dest: Path) -> None:
    """The picture in docs/qgis.md: the real shipseg of this repository (.venv) with its default model on
    sample_tiles/harbour_rgb.tif, as the desktop shows it after the run (`make qgis-screenshot`)."""
    import tempfile

    from conftest import REAL_SHIPSEG
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtGui import QImage
    with tempfile.TemporaryDirectory() as tmp:
        state = run_desktop(Path(tmp), str(REAL_SHIPSEG), REPO / "sample_tiles" / "harbour_rgb.tif",
                            steps="dialog,started,result")
    image = QImage(str(SHOTS / "desktop_ships.png"))
    image.scaledToWidth(1120, Qt.SmoothTransformation).save(str(dest), "PNG", 0)
    print(f"{dest}: {state['features']} ships, {state['result_text']}")


if __name__ == "__main__":
    import sys
    screenshot_for_docs(Path(sys.argv[1]))
