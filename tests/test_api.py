"""The public face: the names a Python user imports from samgeo_ship, and what the package installs."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import samgeo_ship

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ["ShipDetector", "detect", "prepare_dataset", "train", "TrainConfig", "evaluate", "calibrate", "load_model",
          "ShipsegError"]


def test_every_public_name_resolves_and_is_documented():
    assert set(PUBLIC) <= set(samgeo_ship.__all__)
    for name in PUBLIC:
        value = getattr(samgeo_ship, name)
        assert value.__doc__ and value.__doc__.strip(), name


def test_importing_the_package_registers_every_bundle_kind_and_nothing_heavier():
    code = ("import sys, samgeo_ship; from samgeo_ship.models.bundle import BUNDLE_KINDS; "
            "print(sorted(BUNDLE_KINDS), 'samgeo_ship.inference.detector' in sys.modules, "
            "'samgeo_ship.training.trainer' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["['native',", "'oneshot',", "'shipsam']", "False", "False"]


def test_models_import_nothing_above_them():
    """The model layer is below every feature package: bundle kinds defined above it register themselves."""
    above = ("samgeo_ship.oneshot", "samgeo_ship.training", "samgeo_ship.inference", "samgeo_ship.vector",
             "samgeo_ship.batch", "shipseg_cli")
    for path in (ROOT / "samgeo_ship" / "models").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.startswith(above)], f"{path.name} imports {names}"


def test_pyproject_installs_every_package_and_the_cli_under_its_own_name():
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = set(setup["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "samgeo_ship").rglob("__init__.py")}
    assert found <= packages, f"not installed: {sorted(found - packages)}"
    assert setup["package-dir"]["shipseg_cli"] == "cli" and "cli" not in packages
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["shipseg"] == "shipseg_cli.main:main"


def test_the_cli_package_imports_itself_relatively_so_it_works_under_its_installed_name():
    for path in (ROOT / "cli").glob("*.py"):
        for line in path.read_text().splitlines():
            assert not line.startswith(("from cli ", "from cli.", "import cli ", "import cli.")), f"{path.name}: {line}"
