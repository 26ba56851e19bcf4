# Convenience targets; each is a thin wrapper over a script that also works without make.
.PHONY: plan test lint fmt dev dev-down bench serve

STACK ?= staging

plan:          ## groundwork plan $(STACK): resources, policy verdicts, monthly cost (offline)
	bash scripts/plan.sh $(STACK)

test:          ## the whole suite: linters, types, tests with coverage (what CI runs)
	bash scripts/test.sh

lint:          ## ruff + mypy only
	uv run ruff check . && uv run ruff format --check . && uv run mypy

fmt:           ## apply ruff fixes and formatting
	uv run ruff check --fix . && uv run ruff format .

serve:         ## run the API, relay and worker locally against loopback servers
	uv run groundwork dev

dev:           ## the production-like local stack in Docker (see docs/image.md)
	docker compose up --build --wait

dev-down:
	docker compose down --volumes

bench:         ## benchmarks against same-run baselines (see docs/performance.md)
	bash bench/run.sh
