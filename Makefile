# Two commands do all the setup on a fresh machine: `make demo` (the main job) and `make test` (the tests).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test samples lock

$(BIN)/shipseg: requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

install: $(BIN)/shipseg

demo: install
	$(BIN)/shipseg --help
	$(BIN)/shipseg prepare sample_tiles/harbour_s2_16bit.tif sample_tiles/harbour_s2_16bit.geojson -o out/demo_dataset --overwrite

test: install
	$(BIN)/python -m pytest -q

# Regenerates sample_tiles/ with our own generator (deterministic seeds).
samples: install
	$(BIN)/python -m samgeo_ship.synthetic sample_tiles

# Re-pins every dependency from the current environment.
lock: install
	$(BIN)/pip freeze --exclude-editable | grep -v '^shipseg' > requirements.lock
