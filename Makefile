# cityops — the two commands are `make run` and `make test`; each sets itself up.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv compiled run test test-cluster test-reliability lint bench clean kafka-up kafka-down

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[test,bench]"
	@touch $(STAMP)

venv: $(STAMP)

# the worker's hot modules compiled with mypyc (cityops/compiled.py lists them; a stale or
# missing build runs them from source); rebuilt when one of them or the build changes
HOT := cityops/core/intervals.py cityops/streams/windows.py cityops/streams/aggregators.py \
	cityops/streams/state_chain.py cityops/streams/pipeline.py cityops/streams/partition_dedup.py
COMPILED := cityops/compiled.json

$(COMPILED): $(STAMP) $(HOT) cityops/compiled.py scripts/build_compiled.py
	$(BIN)/python scripts/build_compiled.py

## compiled: build the compiled hot modules now (CITYOPS_COMPILED=0 removes them instead).
compiled: venv
	$(BIN)/python scripts/build_compiled.py

## run: the whole pipeline locally on the embedded defaults (Ctrl-C stops it); a second run
## carries on where the first stopped; `make run RUN_ARGS=--fresh` starts afresh (asks first).
run: venv $(COMPILED)
	$(BIN)/cityops run $(RUN_ARGS)

## test: the whole suite against the real broker and engines, then the 3-broker fault test
## (make test-cluster) once the suite's broker and services are stopped. Both steps always
## run; make test fails when either fails, reporting the suite's status first ("Error 3":
## incomplete); make itself then exits with 2, as for any failed recipe.
test: venv $(COMPILED)
	@VENV=$(VENV) scripts/test.sh $(PYTEST_ARGS); suite=$$?; \
	VENV=$(VENV) scripts/test-cluster.sh; cluster=$$?; \
	echo "make test: main suite exit $$suite, 3-broker fault test exit $$cluster"; \
	if [ $$suite -ne 0 ]; then exit $$suite; fi; exit $$cluster

## test-cluster: the 3-broker fault test alone (a broker killed mid-stream; ~3-4 min, 3 JVMs).
test-cluster: venv $(COMPILED)
	VENV=$(VENV) scripts/test-cluster.sh $(PYTEST_ARGS)

## test-reliability: every fault case, the long ones included (10-minute soak); figures in
## docs/reliability.md. The short cases also run in make test.
test-reliability: venv $(COMPILED)
	VENV=$(VENV) scripts/test.sh -m reliability -s tests/integration/streams $(PYTEST_ARGS)

## lint: ruff on the code, tests and benchmarks; mypy on the package (settings in pyproject).
lint: venv
	$(BIN)/ruff check cityops tests bench
	$(BIN)/mypy

## bench: benchmarks that print figures (not part of make test).
bench: venv $(COMPILED)
	VENV=$(VENV) scripts/bench.sh

kafka-up: venv
	$(BIN)/cityops kafka up

kafka-down: venv
	$(BIN)/cityops kafka down

clean:
	rm -f $(COMPILED)
	find cityops -name '*.so' -delete
	rm -rf .cityops-test build *.egg-info
