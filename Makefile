# One command each for the usual tasks (the README's commands, spelled short).
.PHONY: setup run test lint

setup:
	bash scripts/bootstrap.sh --test

run:
	bash scripts/bootstrap.sh && .venv/bin/citywifi serve --config deploy/citywifi.example.toml

test:
	bash scripts/bootstrap.sh --test && .venv/bin/python -m pytest -q

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check controller radius && .venv/bin/mypy
