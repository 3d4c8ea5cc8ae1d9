"""Runs the ``shipseg`` command in a separate process and follows its JSON progress lines.

This module uses only the standard library: it is imported by the QGIS plugin, which must never load torch,
rasterio, shapely or geopandas into the QGIS process (they clash with QGIS's own GDAL/PROJ/GEOS and Qt).
"""

from __future__ import annotations

import collections
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

INSTALL_HINT = ("Install it from a clone of the shipseg repository with `make install`, then set "
                "<clone>/.venv/bin/shipseg (or the <clone>/.venv folder) in Plugins > Shipseg > Settings.")
REINSTALL_HINT = "Update its clone and run `make install` there again."
DEVICES = ("auto", "cpu", "cuda")
OUTPUT_FORMATS = ("gpkg", "geojson", "fgb", "parquet")
# Variables that QGIS (or its installer) sets for its own Python, GDAL and PROJ; passed on, they make the shipseg
# environment load QGIS's modules or an older proj.db instead of its own.
_CLEAN_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "GDAL_DATA", "GDAL_DRIVER_PATH",
              "PROJ_LIB", "PROJ_DATA", "QGIS_PREFIX_PATH", "QT_PLUGIN_PATH")
_WINDOWS = sys.platform.startswith("win")


class ShipsegError(Exception):
    """A problem to show the user as one sentence (never a traceback)."""


class ShipsegNotFound(ShipsegError):
    """No usable shipseg executable: ``problem`` says what is wrong, the message adds how to install it."""

    def __init__(self, problem: str):
        super().__init__(f"{problem} {INSTALL_HINT}")
        self.problem = problem


class ShipsegCancelled(ShipsegError):
    """The user cancelled the run; the process was killed."""


def _candidates(folder: Path):
    for rel in ("bin/shipseg", "Scripts/shipseg.exe", "Scripts/shipseg", "shipseg", "shipseg.exe",
                ".venv/bin/shipseg", ".venv/Scripts/shipseg.exe"):  # an environment, or a clone after make install
        yield folder / rel


def _is_exe(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def resolve_executable(configured: Optional[str] = None) -> str:
    """The shipseg executable: ``configured`` (a file, or a virtualenv/conda environment folder), else PATH.

    Raises ShipsegNotFound with what to install or set.
    """
    configured = (configured or "").strip()
    if configured:
        path = Path(os.path.expanduser(configured))
        if path.is_dir():
            for cand in _candidates(path):
                if _is_exe(cand):
                    return str(cand)
            raise ShipsegNotFound(f"No bin/shipseg nor .venv/bin/shipseg in the folder {path}.")
        if _is_exe(path):
            return str(path)
        what = "is not executable" if path.exists() else "does not exist"
        raise ShipsegNotFound(f"The shipseg executable {path} {what}.")
    found = shutil.which("shipseg")
    if found:
        return found
    for folder in (Path.home() / ".local", Path(sys.prefix)):  # pip install --user; the interpreter's own prefix
        for cand in _candidates(folder):
            if _is_exe(cand):
                return str(cand)
    raise ShipsegNotFound("shipseg is not on PATH.")


def child_env(extra: Optional[dict] = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _CLEAN_ENV}
    env["PYTHONUNBUFFERED"] = "1"  # progress lines arrive as they are printed
    env.update(extra or {})
    return env


def build_detect_command(exe: str, scene: str, output: str, model: Optional[str] = None,
                         bands: Optional[str] = None, boxes: Optional[str] = None, points: Optional[str] = None,
                         device: Optional[str] = None) -> list:
    cmd = [exe, "detect", str(scene), "-o", str(output), "--progress", "json"]
    if model:
        cmd += ["-m", str(model)]
    if bands and bands.strip():
        cmd += ["--bands", bands.strip().replace(" ", "")]
    if boxes:
        cmd += ["--boxes", str(boxes)]
    if points:
        cmd += ["--points", str(points)]
    if device and device != "auto":
        cmd += ["--device", device]
    return cmd


def remove_files(paths) -> None:
    """Remove what exists of ``paths`` (partial outputs, temporary prompt files); never raises."""
    for path in paths:
        try:
            if path and os.path.exists(path):
                os.remove(path)
        except OSError:
            pass


def _popen(cmd: Sequence[str], env: dict) -> subprocess.Popen:
    kwargs = dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                  text=True, encoding="utf-8", errors="replace", bufsize=1)
    if _WINDOWS:
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
    else:
        kwargs["start_new_session"] = True  # its own process group: a cancel kills the workers it starts too
    try:
        return subprocess.Popen(list(cmd), **kwargs)
    except OSError as exc:
        raise ShipsegNotFound(f"Could not start {cmd[0]}: {exc.strerror or exc}.") from None


def kill_tree(proc: subprocess.Popen, grace_s: float = 3.0) -> None:
    """Terminate ``proc`` and every process in its group; SIGKILL what is still alive after ``grace_s``."""
    if _WINDOWS:
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True)
        proc.wait()
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(proc.pid):
                return
            time.sleep(0.05)
    proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _pump(stream, sink: Callable[[Optional[str]], None]) -> None:
    try:
        for line in stream:
            sink(line.rstrip("\r\n"))
    except ValueError:  # stream closed under us after a kill
        pass
    finally:
        sink(None)


def failure_message(cmd: Sequence[str], code: int, stderr_lines) -> str:
    lines = [ln for ln in stderr_lines if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    if errors:  # shipseg's own one-sentence error (bad input, exit 2)
        text = errors[-1][len("Error:"):].strip()
        if "No such command 'detect'" in text:
            return f"{cmd[0]} has no `detect` command. {REINSTALL_HINT}"
        return f"shipseg: {text}"
    if code < 0 or code > 128:
        sig = -code if code < 0 else code - 128
        return (f"shipseg stopped with signal {sig} (out of memory or crashed). Last output: "
                f"{lines[-1] if lines else 'none'}")
    last = lines[-1] if lines else "no error output"
    if any(("ModuleNotFoundError" in ln or "ImportError" in ln) for ln in lines):
        return f"shipseg at {cmd[0]} is broken ({last}). {REINSTALL_HINT}"
    return f"shipseg failed (exit code {code}): {last}"


def run_shipseg(cmd: Sequence[str], on_progress: Optional[Callable[[int, int, int], None]] = None,
                is_canceled: Callable[[], bool] = lambda: False, on_log: Optional[Callable[[str], None]] = None,
                env: Optional[dict] = None, poll_s: float = 0.1) -> dict:
    """Run ``cmd`` (a shipseg command with ``--progress json``) to the end and return its ``done`` event.

    ``on_progress(tiles_done, tiles_total, ships)`` is called for each progress line (from this thread).
    ``is_canceled()`` is polled; when it turns true the process and its children are killed and
    ShipsegCancelled is raised. Failures raise ShipsegError with one readable sentence.
    """
    proc = _popen(cmd, child_env(env))
    events: "queue.Queue[tuple[str, Optional[str]]]" = queue.Queue()
    stderr_tail = collections.deque(maxlen=40)

    def on_err(line):
        if line is not None:
            stderr_tail.append(line)
            if on_log:
                on_log(line)

    threads = [threading.Thread(target=_pump, args=(proc.stdout, lambda ln: events.put(("out", ln))), daemon=True),
               threading.Thread(target=_pump, args=(proc.stderr, on_err), daemon=True)]
    for t in threads:
        t.start()
    done_event = None
    error_message = None
    stdout_open = True
    try:
        while stdout_open or proc.poll() is None:
            if is_canceled():
                kill_tree(proc)
                raise ShipsegCancelled("Ship detection was cancelled.")
            try:
                _, line = events.get(timeout=poll_s)
            except queue.Empty:
                continue
            if line is None:
                stdout_open = False
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                if on_log and line.strip():
                    on_log(line)
                continue
            if event.get("event") == "progress" and on_progress:
                on_progress(int(event.get("tiles_done", 0)), int(event.get("tiles_total", 0) or 0),
                            int(event.get("ships", 0)))
            elif event.get("event") == "done":
                done_event = event
            elif event.get("event") == "error" and event.get("message"):
                error_message = str(event["message"])
        code = proc.wait()
    except BaseException:
        if proc.poll() is None:
            kill_tree(proc)
        raise
    finally:
        for t in threads:
            t.join(timeout=2)
        for stream in (proc.stdout, proc.stderr):
            try:
                stream.close()
            except Exception:
                pass
    if code != 0:
        if error_message and not any(ln.startswith("Error:") for ln in stderr_tail):
            stderr_tail.append(f"Error: {error_message}")
        raise ShipsegError(failure_message(cmd, code, stderr_tail))
    if done_event is None:
        raise ShipsegError(f"{cmd[0]} finished without reporting its output; is it a shipseg version with "
                           f"`detect --progress json`? {REINSTALL_HINT}")
    return done_event
