"""Build the QGIS plugin ZIP ("Install from ZIP"): the plugin folder at the top of the archive, no caches."""

import sys
import zipfile
from pathlib import Path

src, dest = Path(sys.argv[1]), Path(sys.argv[2])
dest.parent.mkdir(parents=True, exist_ok=True)
tmp = dest.with_name(dest.name + ".tmp")
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
    for path in sorted(src.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            zf.write(path, Path(src.name) / path.relative_to(src))
tmp.replace(dest)
print(f"{dest}: {len(zipfile.ZipFile(dest).namelist())} files")
