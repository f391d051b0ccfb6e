# The two commands of the README's quick start (as root on Debian 12 / Ubuntu):
#   make run    set everything up, then run Asterisk and the controller (Ctrl-C stops both)
#   make test   set everything up, then run every test, end-to-end ones included
.PHONY: run test setup unit store lint bench clean

run:
	deploy/setup.sh
	.venv/bin/ivr run --with-asterisk -c ivr.toml

test:
	deploy/setup.sh --test
	.venv/bin/ruff check ivr tests bench
	.venv/bin/pytest -ra

setup:
	deploy/setup.sh --test

unit:
	.venv/bin/pytest -ra tests/unit

store:         # every store test on SQLite and on a throw-away PostgreSQL server
	.venv/bin/pytest -ra tests/store

lint:
	.venv/bin/ruff check ivr tests bench

bench:         # load bench (README "Benchmark"): server vs plain dialplan, report in bench/results/
	deploy/setup.sh --test
	.venv/bin/python -m bench.load $(BENCH_ARGS)

clean:
	rm -rf var .pytest_cache .ruff_cache
