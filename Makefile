# The two commands of the README. Each sets up (or updates) the virtual environment first.
#   make demo   the whole pipeline on the embedded tiny teacher and student, on CPU
#   make test   the test suite (all but GPU tests)
VENV ?= .venv
STAMP := $(VENV)/.installed-stamp
DEMO_STAMP := $(VENV)/.installed-demo-stamp
PYTEST_ARGS ?= -m "not gpu"

.PHONY: demo test setup clean-demo

$(STAMP): pyproject.toml scripts/setup_env.sh
	bash scripts/setup_env.sh $(VENV) dev
	touch $(STAMP) $(DEMO_STAMP)

# The demo needs no test tools: a fresh clone's `make demo` installs without the dev extra.
$(DEMO_STAMP): pyproject.toml scripts/setup_env.sh
	bash scripts/setup_env.sh $(VENV)
	touch $(DEMO_STAMP)

setup: $(STAMP)

demo: $(DEMO_STAMP)
	$(VENV)/bin/sky-distill pipeline $(ARGS)

test: $(STAMP)
	bash scripts/system_deps.sh
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean-demo:
	rm -rf runs/demo runs/demo_kd models/tiny-teacher-* models/tiny-student-*
