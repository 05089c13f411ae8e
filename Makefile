PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fleetplan plan --workload azure-conv-2023 --model llama-3.1-70b --gpus h100-sxm,h200-sxm,b200 --slo ttft_p95=1s,tpot_p95=50ms

test: $(STAMP)
	$(BIN)/python -m pytest

# bench/gpu_measure.py needs a GPU, torch and transformers: run it on a GPU machine only;
# bench/peer_aiconfigurator.py needs the peer (aiconfigurator) installed beside fleetplan;
# bench/external_points.py needs a points file from outside the repository (--points);
# bench/nested_cv.py (~15 min) and bench/cv_repeats.py (~2 min per assignment) are run on
# demand (docs/FIDELITY.md).
bench: $(STAMP)
	@for f in bench/*.py; do case $$f in bench/gpu_measure.py|bench/gpu_kernels.py|bench/peer_aiconfigurator.py|bench/external_points.py|bench/nested_cv.py|bench/cv_repeats.py) continue;; esac; \
	  echo "== $$f"; $(BIN)/python $$f || exit 1; done
	$(BIN)/fleetplan calibrate-steps
	$(BIN)/fleetplan calibrate-kernels

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info
