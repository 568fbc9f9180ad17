# Creates the virtual environment and runs the project's two entry points.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin

.PHONY: install demo test clean

install: $(VENV)/.installed

# torch first and pinned: on this machine kind, pip's configuration offers a
# local CPU build of torch 2.13.0 (find-links), which `pip install
# torch==2.13.0` takes; a resolver-chosen torch would pull several GB of CUDA
# wheels. Elsewhere, point pip at a CPU wheel index before `make install`.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/warehouse demo

# Two workers (this machine kind has two cores), whole files to each so module fixtures are built once, the
# longest first (tests/durations.json: refresh it with --record-durations; tests/conftest.py says why);
# every worker starts its own embedded PostgreSQL and its own databases. The whole suite runs on the DuckDB
# file; then the modules marked both_backends run again on a DuckLake (catalog databases on the tests' server),
# but for the few marked long_on_lake (whole Dagster runs and variants that add minutes, not backend coverage).
# Both passes always run; make fails if either failed.
# The tests' temporary folders (their PostgreSQL servers, DuckDB files, Dagster instances) go in memory when
# /dev/shm has TEST_SHM_MIN_KB free and as much memory is available: the tests then wait on no disk sync (SQLite
# syncs every event Dagster stores); 207 s -> 157 s for two of the Dagster-heavy modules, measured. Else pytest's
# default, on disk. A pass that passed has its folders removed; a failed one's are kept, and their place said.
TEST_SHM_MIN_KB = 8000000
test: install
	@status=0; tmp=""; \
	if [ "$$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $$4}')" -gt $(TEST_SHM_MIN_KB) ] 2>/dev/null \
		&& [ "$$(awk '/^MemAvailable:/ {print $$2}' /proc/meminfo 2>/dev/null)" -gt $(TEST_SHM_MIN_KB) ] 2>/dev/null; then \
		tmp=$$(mktemp -d /dev/shm/companion-warehouse-tests.XXXXXX) \
		&& trap 'rm -rf "$$tmp"; exit 130' INT TERM HUP; \
	else echo "the tests' temporary folders go on disk (slower): /dev/shm or the available memory has under $(TEST_SHM_MIN_KB) kB free"; fi; \
	echo "== the whole suite, warehouse backend: file$${tmp:+ (temporary folders in $$tmp)}"; \
	if $(BIN)/pytest -q -n 2 --dist loadfile $${tmp:+--basetemp=$$tmp/file}; then \
		[ -z "$$tmp" ] || rm -rf "$$tmp/file"; else status=1; fi; \
	echo "== modules marked both_backends, warehouse backend: ducklake"; \
	if $(BIN)/pytest -q -n 2 --dist loadfile -m "both_backends and not long_on_lake" --warehouse-backend=ducklake \
		$${tmp:+--basetemp=$$tmp/lake}; then [ -z "$$tmp" ] || rm -rf "$$tmp/lake"; else status=1; fi; \
	if [ -n "$$tmp" ]; then rmdir "$$tmp" 2>/dev/null || echo "the failed tests' folders are kept in $$tmp"; fi; \
	exit $$status

clean:
	-$(BIN)/warehouse pg stop
	rm -rf $(VENV) .local
