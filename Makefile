# Two commands: `make run` starts the whole platform, `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: install run test bench bench-dashboard lint check-ledger

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) scripts/run_platform.py

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) bench/run.py $(BENCH_ARGS)

# 500 parallel streams from a cold and a warm key vs the simulator direct (issue 13); BURST_ARGS e.g. --rounds 3
.PHONY: bench-burst
bench-burst: install
	$(PY) bench/burst.py $(BURST_ARGS)

# The chatroom socket: 125 sockets × 4 models at 20 tokens/s, one Daphne worker (quiet machine); CHATROOM_ARGS e.g. --sockets 5
.PHONY: bench-chatroom
bench-chatroom: install
	$(PY) bench/chatroom.py $(CHATROOM_ARGS)

lint: install
	$(VENV)/bin/ruff check .

check-ledger: install
	$(PY) manage.py check_ledger
	$(PY) manage.py check_rollups

# The dashboard at scale: seeds 1,000,000 generations for bench@example.com if missing (use PostgreSQL).
bench-dashboard: install
	$(PY) bench/dashboard.py $(BENCH_ARGS)

# Codex CLI (the Responses API's main client) into a git-ignored folder; tests/routing/test_codex_cli.py uses it
.PHONY: agents-codex
agents-codex:
	mkdir -p .agents-node && (test -f .agents-node/package.json || echo '{"private": true}' > .agents-node/package.json)
	cd .agents-node && npm install --no-audit --no-fund @openai/codex@0.171.0

# The real coding agent for tests/test_agent_claude_code.py: Claude Code from npm into the git-ignored
# .agents-node/ (2.1.197: the newest whose engines accept Node 20).
.PHONY: agents
agents:
	npm install --no-audit --no-fund --prefix .agents-node @anthropic-ai/claude-code@2.1.197
