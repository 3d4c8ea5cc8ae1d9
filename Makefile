# Two commands do all the setup on a fresh machine: `make demo` (the main job) and `make test` (the tests).
VENV ?= .venv
BIN := $(VENV)/bin
QVENV := .venv-qgis
# No wheel cache: torch's CUDA build and its nvidia wheels are ~5 GB installed, and caching the downloads beside
# them doubled the peak disk use (a CI machine ran out of space in pip).
export PIP_NO_CACHE_DIR := 1

.PHONY: install demo test samples lock

$(BIN)/shipseg: requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

install: $(BIN)/shipseg

demo: install
	mkdir -p out
	$(BIN)/shipseg detect sample_tiles/harbour_s2_16bit.tif -o out/harbour_s2_16bit.ships.geojson --preview out/harbour_s2_16bit.png
	$(BIN)/shipseg detect sample_tiles/harbour_aerial.tif -o out/harbour_aerial.ships.geojson --preview out/harbour_aerial.png

# The whole suite: the library and CLI tests in .venv, then the QGIS plugin tests under Debian's python3.
test: install qgis-deps $(QVENV)/.done
	$(BIN)/python -m pytest -q
	QT_QPA_PLATFORM=offscreen $(QVENV)/bin/python -m pytest -q tests_qgis

# Regenerates sample_tiles/ with our own generator (deterministic seeds).
samples: install
	$(BIN)/python -m samgeo_ship.synthetic sample_tiles

# Re-pins every dependency from the current environment.
lock: install
	$(BIN)/pip freeze --exclude-editable | grep -v '^shipseg' > requirements.lock

# --- QGIS plugin (qgis_plugin/shipseg_qgis): Debian's QGIS 3.22, tests under the system python3 -------------------
QGIS_PKGS := python3-qgis qgis-providers qgis xvfb xauth python3-venv python3-psutil
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: qgis-deps plugin-zip test-qgis qgis-screenshot

qgis-deps:
	@if [ "$$(dpkg-query -W -f='$${Status}\n' $(QGIS_PKGS) 2>/dev/null | grep -c 'install ok installed')" = "$(words $(QGIS_PKGS))" ]; then \
		echo "qgis-deps: $(QGIS_PKGS) already installed"; \
	else \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(QGIS_PKGS); \
	fi

plugin-zip:
	/usr/bin/python3 scripts/build_plugin_zip.py qgis_plugin/shipseg_qgis dist/shipseg_qgis.zip

$(QVENV)/.done: tests_qgis/requirements.txt
	/usr/bin/python3 -m venv --system-site-packages $(QVENV)
	$(QVENV)/bin/pip install -q -r tests_qgis/requirements.txt
	touch $@

test-qgis: qgis-deps install $(QVENV)/.done
	QT_QPA_PLATFORM=offscreen $(QVENV)/bin/python -m pytest -q tests_qgis

# The picture in docs/qgis.md: the real QGIS desktop under Xvfb, this repository's shipseg and default model.
qgis-screenshot: qgis-deps install $(QVENV)/.done
	cd tests_qgis && $(CURDIR)/$(QVENV)/bin/python test_desktop.py $(CURDIR)/docs/qgis.png
