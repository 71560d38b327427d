# vis_d2: `make demo` and `make test` set up .venv first (idempotent; see dev/setup_env.py).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

DATASETS ?= datasets
DEMO_DIR ?= output/demo
DEMO_CONFIG := configs/synthetic/SGNet_R18_synthetic.yaml
DEMO_VIDEO := $(DATASETS)/synthetic_vis/valid/JPEGImages/valid_00000

.PHONY: setup test lint demo env

setup:
	$(PYTHON) dev/setup_env.py --venv $(VENV)

lint: setup
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q

env: setup
	$(PY) -m vis_d2.collect_env

# the end-to-end demo: generate the synthetic set, train the CPU-sized SG-Net on it (resuming a
# previous demo's training, so a second run only evaluates), print its AP table, then overlay
# the tracked instances on a validation video
demo: setup
	$(PY) -m vis_d2.data.synthetic --out $(DATASETS)/synthetic_vis --workers 2
	DETECTRON2_DATASETS=$(DATASETS) $(PY) tools/train_net.py --config-file $(DEMO_CONFIG) \
		--resume OUTPUT_DIR $(DEMO_DIR)
	DETECTRON2_DATASETS=$(DATASETS) $(PY) tools/demo.py --config-file $(DEMO_CONFIG) \
		--input $(DEMO_VIDEO) --output $(DEMO_DIR)/overlay --json --overwrite \
		MODEL.WEIGHTS $(DEMO_DIR)/model_final.pth
	@echo "demo done:"
	@echo "  data set        $(DATASETS)/synthetic_vis/{train,valid}.json"
	@echo "  model, log      $(DEMO_DIR)/model_final.pth, $(DEMO_DIR)/log.txt, $(DEMO_DIR)/metrics.json"
	@echo "  AP, results     $(DEMO_DIR)/inference/synthetic_vis_val/"
	@echo "  overlay video   $(DEMO_DIR)/overlay/"
