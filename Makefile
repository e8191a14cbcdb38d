# The two commands of the README: `make demo` (the main job) and `make test` (the test suite).
PY := .venv/bin/python

.PHONY: venv demo test bench lint

venv:
	bash scripts/setup.sh

demo: venv
	bash scripts/ensure_fashion_mnist.sh
	bash scripts/demo.sh

# pytest exits 5 when it collects no test: that is not a failure of the suite.
test: venv
	bash scripts/ensure_fashion_mnist.sh || echo "compat: without Fashion-MNIST its tests are skipped"
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc

bench: venv
	$(PY) bench/training.py
	$(PY) bench/retrieval.py
	$(PY) bench/prototypes.py
	$(PY) bench/large_head.py
	$(PY) bench/topk.py
	$(PY) bench/backfill.py

lint: venv
	.venv/bin/ruff check core cli tests bench
