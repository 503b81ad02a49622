# fakeclue-builder — every target installs what it needs first (make install is idempotent).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch stack: CUDA builds that also run on CPU (see ../shared/docs/ENVIRONMENT.md); override for your cluster.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= dev
CONFIG ?= stages/demo.yaml
RUN_DIR ?= runs/demo
ARGS ?=

.PHONY: install test bench build-dataset demo-sources tiny-models collect synthesize categorize prompts annotate aggregate export push train evaluate status report clean-run help

help:
	@echo "make build-dataset   install, then run every dataset stage on CONFIG (default stages/demo.yaml, offline) into RUN_DIR"
	@echo "make test            install, then run the test suite"
	@echo "make bench           install, then run the collect benchmark (figures and ratios, not a test)"
	@echo "make report          RUN_DIR/report/index.html: counts, shortcuts, captions, drops, gallery"
	@echo "make train|evaluate  FakeVLM training / evaluation on RUN_DIR's export (TRAIN_CONFIG=..., EVAL_CONFIG=...)"
	@echo "make push REPO_ID=org/name [ARGS=--dry-run]   upload RUN_DIR/export to the Hugging Face Hub"
	@echo "make collect|synthesize|categorize|prompts|annotate|aggregate|export|status   one stage / the run's status (CONFIG=..., RUN_DIR=..., ARGS='--set collect.seed=1')"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install $(TORCH_SPEC)
	$(BIN)/pip install -e '.[$(EXTRAS)]'
	touch $@

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python tests/bench/bench_collect.py
	$(BIN)/python tests/bench/bench_categorize.py
	$(BIN)/python tests/bench/bench_documents.py
	$(BIN)/python tests/bench/bench_diffusion.py
	$(BIN)/python tests/bench/bench_annotate.py
	$(BIN)/python tests/bench/bench_aggregate.py
	$(BIN)/python tests/bench/bench_export.py

# The demo profile reads demo sources generated offline into the run dir; other profiles read real data.
demo-sources: install
	$(BIN)/fakeclue-builder demo make-sources $(RUN_DIR)/sources

tiny-models: install
	$(BIN)/fakeclue-builder models make-tiny $(RUN_DIR)/models

ifeq ($(CONFIG),stages/demo.yaml)
build-dataset: demo-sources tiny-models
endif
build-dataset: install
	$(BIN)/fakeclue-builder collect --config $(CONFIG) --run-dir $(RUN_DIR) $(ARGS)
	$(BIN)/fakeclue-builder synthesize --config $(CONFIG) --run-dir $(RUN_DIR) $(ARGS)
	$(BIN)/fakeclue-builder categorize --config $(CONFIG) --run-dir $(RUN_DIR) $(ARGS)
	$(BIN)/fakeclue-builder prompts --config $(CONFIG) --run-dir $(RUN_DIR) $(ARGS)
	$(BIN)/fakeclue-builder annotate --config $(CONFIG) --run-dir $(RUN_DIR) $(ARGS)
	$(BIN)/fakeclue-builder aggregate --config $(CONFIG) --run-dir $(RUN_DIR) $(ARGS)
	$(BIN)/fakeclue-builder export --config $(CONFIG) --run-dir $(RUN_DIR) $(ARGS)
	$(BIN)/fakeclue-builder report --run-dir $(RUN_DIR) --quiet
	$(BIN)/fakeclue-builder status --run-dir $(RUN_DIR)
	@echo "dataset: $(RUN_DIR)/export   (datasets.load_dataset(\"$(RUN_DIR)/export\"); card: $(RUN_DIR)/export/README.md)"
	@echo "report:  $(RUN_DIR)/report/index.html"

collect synthesize categorize prompts annotate aggregate export: install
	$(BIN)/fakeclue-builder $@ --config $(CONFIG) --run-dir $(RUN_DIR) $(ARGS)

status: install
	$(BIN)/fakeclue-builder status --run-dir $(RUN_DIR)

report: install
	$(BIN)/fakeclue-builder report --run-dir $(RUN_DIR)

TRAIN_CONFIG ?= stages/train_demo.yaml
EVAL_CONFIG ?= stages/evaluate_demo.yaml

train: install
	$(BIN)/fakeclue-builder train --config $(TRAIN_CONFIG) --run-dir $(RUN_DIR) $(ARGS)

evaluate: install
	$(BIN)/fakeclue-builder evaluate --config $(EVAL_CONFIG) --run-dir $(RUN_DIR) $(ARGS)

push: install
	$(BIN)/fakeclue-builder push --run-dir $(RUN_DIR) --repo-id $(REPO_ID) $(ARGS)

clean-run:
	rm -rf $(RUN_DIR)
