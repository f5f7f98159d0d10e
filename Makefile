# Two commands for everything (see README):
#   make course [PROFILE=smoke|cpu|gpu]   install, build the student notebooks, run the whole course
#   make test                              install, run the full test suite
PY ?= python3
VENV ?= .venv
PROFILE ?= cpu
# torch is installed first, pinned, so that pip does not pick another build; override
# TORCH_SPEC for your platform (e.g. TORCH_SPEC="torch torchvision").
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
BIN = $(VENV)/bin

.PHONY: install course test build check-generated lab lab-instructor grade

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@t0=$$(date +%s); \
	$(PY) -m venv $(VENV) && \
	$(BIN)/pip install --quiet $(TORCH_SPEC) && \
	$(BIN)/pip install --quiet -e ".[dev]" && \
	touch $@ && echo "[stage] install: $$(( $$(date +%s) - t0 )) s"

build: install
	$(BIN)/python -m autograder build

course: install
	$(BIN)/python -m autograder build
	$(BIN)/python -m autograder run --profile $(PROFILE)

test: install
	@t0=$$(date +%s); WORKBOOK_OFFLINE=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadgroup --durations=15; rc=$$?; \
	echo "[stage] tests: $$(( $$(date +%s) - t0 )) s"; exit $$rc

# The learner's JupyterLab: learner tools only (course/.jupyter: Validate, no Formgrader or
# Create Assignment), and the answers file of the open course so that every question gives
# feedback at once (build/answers.json, outside course/). `make lab-instructor`: every tool.
lab: install
	$(BIN)/python -m autograder answers --out build/answers.json
	cd course && WORKBOOK_ANSWERS="$(CURDIR)/build/answers.json" JUPYTER_CONFIG_PATH="$(CURDIR)/course/.jupyter" \
		../$(BIN)/jupyter lab

lab-instructor: install
	$(BIN)/jupyter lab

check-generated: install
	$(BIN)/python -m autograder build --check
