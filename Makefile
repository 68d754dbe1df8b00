# One entry point for people and CI. `make test` needs nothing but Python 3.11 and redis-server.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install browser pacs run test lint bench bench-quick bench-host demo-model clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[gateway,worker,training,dev]'
	touch $(STAMP)

run: install  ## Redis (AOF) + one worker + the gateway on http://127.0.0.1:8000, supervised
	$(BIN)/pneumo run-all --port "$${PNEUMO_GATEWAY_PORT:-8000}" --data-dir .run --log-dir .run

# The browser test drives Debian's Chromium (Playwright cannot download its own browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "chromium missing: the browser test will skip (sudo apt-get install chromium)"; fi; }

# The PACS tests start Debian's Orthanc (+ DICOMweb plugin) and validate with dciodvfy.
pacs:
	@{ command -v Orthanc && command -v dciodvfy && test -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so; } >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -q orthanc orthanc-dicomweb dicom3tools dcmtk; \
	  else echo "orthanc missing: the PACS tests will skip (sudo make pacs)"; fi; }

test: install browser pacs
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install  ## Throughput side by side (ceiling, worker, HTTP, sync baseline); minutes
	mkdir -p bench/out
	$(BIN)/python -m bench --json bench/out/results.json | tee bench/out/results.md

bench-quick: install
	$(BIN)/python -m bench --quick

bench-host: install  ## One host as deployed: N gateways, M workers per GPU, end to end @1/32/256
	mkdir -p bench/out
	$(BIN)/python -m bench --host --profile --json bench/out/host.json | tee bench/out/host.md

demo-model: install  ## Retrain the shipped demo model on phantoms (a few minutes on 2 cores)
	$(BIN)/pneumo train-demo --out models/demo

clean:
	rm -rf $(VENV) .run .pytest_cache .ruff_cache .mypy_cache
