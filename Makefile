# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
MELTANO_VENV := .venv-meltano
MELTANO_VERSION := 4.4.1
export MELTANO_SEND_ANONYMOUS_USAGE_STATS := false
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Meltano installs plugins with uv, which otherwise trusts only its bundled CA list;
# behind a TLS-inspecting proxy (as on CI machines) the platform's store is needed.
export UV_SYSTEM_CERTS := true

.PHONY: demo test lint venv meltano clean

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

# Meltano lives in its own venv: it installs the tap and the targets in venvs of its own.
meltano: $(MELTANO_VENV)/.installed
$(MELTANO_VENV)/.installed:
	$(PYTHON) -m venv $(MELTANO_VENV)
	$(MELTANO_VENV)/bin/pip install -q 'meltano==$(MELTANO_VERSION)'
	touch $@

demo: venv meltano
	bash scripts/demo.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy tap_ad_invoices

test: lint meltano
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) $(MELTANO_VENV) .meltano output
