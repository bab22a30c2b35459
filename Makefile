# Shortcuts for the scripts under scripts/ (the scripts are the source of truth).
.PHONY: setup demo test lint up down status bench

setup:
	scripts/setup

demo:
	scripts/demo

test:
	scripts/test

lint:
	.venv/bin/ruff check .
	shellcheck scripts/* .ci/run cluster/*/*.sh

up:
	scripts/up

down:
	scripts/down

status:
	scripts/status

bench:
	for bench in bench/bench_*.py; do .venv/bin/python "$$bench" || exit 1; done
