# personaflow: two commands. `make demo` installs and runs the nightly pipeline end to end;
# `make test` installs and runs the test suite. Everything else here is a helper for those two.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU torch wheel lies in the folder that pip's own config names; uv does not read pip's
# config, so hand it over at install time instead of hard-coding a machine path.
FIND_LINKS := $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
UV_FLAGS := $(if $(FIND_LINKS),--find-links $(FIND_LINKS))
export UV_COMPILE_BYTECODE := 1

.PHONY: install browser servers demo test lint docs docs-serve bench bench-pipeline bench-serving bench-airflow bench-models lock clean

install: $(VENV)/.installed

# LightGBM's wheel (the re-ranker's LambdaRanks) links the system's OpenMP runtime; a slim Debian image
# lacks it, so it is installed from Debian once if missing, as the servers below are.
$(VENV)/.installed: pyproject.toml requirements.lock
	ldconfig -p | grep -q 'libgomp.so.1 ' || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libgomp1)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==0.13.9
	$(BIN)/uv pip install --python $(BIN)/python $(UV_FLAGS) -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python $(UV_FLAGS) --no-deps -e .
	touch $@

# Re-resolve the pinned set (needs the registry); commit the result.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 $(UV_FLAGS) \
		--no-emit-find-links -o requirements.lock

demo: install
	$(BIN)/personaflow demo

# The UI test drives the distribution's Chromium through Playwright (which never downloads browsers
# here); install it once if missing. Needs root, as on CI and this project's machines.
browser:
	test -x /usr/bin/chromium || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

# The scale path's servers, for its tests and `personaflow stack up`: Debian's PostgreSQL and Redis
# (and nginx for the reverse-proxy test),
# installed once if missing (started by whoever needs them, on free loopback ports; never as services).
.PHONY: servers
servers:
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql)
	command -v redis-server >/dev/null || test -x /usr/bin/redis-server || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server)
	# nginx in front of the API (deploy/nginx/personaflow.conf, tests/integration/test_nginx.py); the
	# package's own service is never started (no init system runs it here, and the test starts its own).
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light)

# The Spark path's JVM (pyspark 3.5 in local mode, docs/guides/spark.md): Debian's OpenJDK 17 JRE,
# installed once if no `java` is on PATH (a cluster brings its own).
.PHONY: java
java:
	command -v java >/dev/null || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless)

# Two processes: most of the suite waits on servers and subprocesses (Airflow, Spark, dbt, BentoML) and
# leaves a core idle; the units of work (a module, or the modules sharing one server stack) are in
# tests/conftest.py. TEST_PROCESSES=0 runs it in one process.
# The Airflow night on Spark (tests/e2e/test_e2e_spark.py, a JVM per warehouse task) is in it again
# (issue 24): it had been left to `make test-spark` when the suite took 21 min 15 s with it on 2 idle
# cores; since, churn skips on dbt's record of an empty mart instead of starting a JVM to skip
# (docs/guides/spark.md has the night task by task) and TIFU-KNN's fit is 10x cheaper. Measured with it
# (d6d05d3): 696 passed in 17 min 19 s on 2 cores, nothing else running.
TEST_PROCESSES ?= 2
SPARK_NIGHT = tests/e2e/test_e2e_spark.py
test: install browser servers java
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --no-loadscope-reorder

# The Spark path alone (docs/guides/spark.md): the DuckDB-vs-Spark parity on two months of the real log,
# Spark in local mode on two cores bound to 127.0.0.1, then one night through Airflow on Spark with two
# Celery workers (about 30 minutes on a busy 2-core machine).
.PHONY: test-spark
test-spark: install java servers
	$(BIN)/python -m pytest tests/integration/test_spark_parity.py $(SPARK_NIGHT) -q

# The unit tests alone (no servers, no dbt): the quick loop while changing code, under 2 minutes.
.PHONY: test-fast
test-fast: install
	$(BIN)/python -m pytest tests/unit -q

lint: install
	$(BIN)/ruff check .

# The docs site (mkdocs.yml, docs/): the reference pages (settings, CLI, REST API, Python API) and the
# benchmark tables are generated from the code and benchmarks/results/*.json at build time
# (docs/_gen/). `docs` builds it into site/ (git-ignored); `docs-serve` serves it on 127.0.0.1.
DOCS_PORT ?= 8000
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs-serve: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict --dev-addr 127.0.0.1:$(DOCS_PORT)

bench: bench-pipeline bench-transform bench-serving bench-airflow bench-models bench-training bench-profiles bench-history bench-segments bench-similar

bench-pipeline: install
	$(BIN)/python benchmarks/pipeline.py

# Latency/throughput of the running API (and a bare FastAPI floor); writes benchmarks/results/serving.json.
bench-serving: install
	$(BIN)/python benchmarks/serving.py

# One nightly run through the real scheduler vs the same stages called directly (Airflow's overhead).
bench-airflow: install
	$(BIN)/python benchmarks/airflow_overhead.py

# Every recommender baseline and model on one time-cut split (synthetic shop by default; pass
# ARGS="--data online-retail" for retail-30d, ARGS="--data synthetic-norebuy --users 2500 --items 500"
# for the shop where nobody re-buys). ALS comes from `implicit`, a benchmark-only extra,
# installed here against the lock. Writes benchmarks/results/recommenders.json.
bench-models: install
	$(BIN)/uv pip install --python $(BIN)/python $(UV_FLAGS) -c requirements.lock "implicit==0.7.3"
	$(BIN)/python benchmarks/recommenders.py $(ARGS)
	$(MAKE) --no-print-directory bench-protocols

# The field's protocols and peers side by side (issue 21): our baselines (P-TopFreq and GP-TopFreq among
# them), cornac's TIFU-KNN and UP-CF, implicit's ALS, BPR and item-kNN (BM25), each tuned on the same
# validation cut, and the nightly default, on retail-30d and on each user's last basket, NDCG@10 and
# Recall@10 overall, on repeat and on explore items, on Online Retail, Complete Journey and the no-re-buy
# shop. The peers are benchmark-only extras (pyproject `bench`). Writes benchmarks/results/models.json.
.PHONY: bench-protocols
bench-protocols: install
	$(BIN)/uv pip install --python $(BIN)/python $(UV_FLAGS) -c requirements.lock \
		"implicit==0.7.3" "cornac==3.0.1" "similaripy==0.7.0"
	$(BIN)/python benchmarks/models.py --data online-retail
	$(BIN)/python benchmarks/models.py --data complete-journey --default-users 500
	$(BIN)/python benchmarks/models.py --data synthetic-norebuy --users 2500 --items 500

# The nightly recipe choice (training/choice.py) on Online Retail (ARGS="--data complete-journey": The
# Complete Journey): every option's validation NDCG@10 and fit seconds, the choice and its reason.
# Writes benchmarks/results/recipe_choice.json.
.PHONY: bench-recipe
bench-recipe: install
	$(BIN)/python benchmarks/recipe_choice.py $(ARGS)

# The nightly training task (training.pipeline.train_candidate) per model on ~10 M synthetic events:
# task and fit seconds, peak RSS, NDCG@10 vs baselines; on the GPU when present. Writes nightly_training.json.
.PHONY: bench-training
bench-training: install
	$(BIN)/python benchmarks/nightly_training.py $(ARGS)

# Review sentiment (ratings-trained model vs the VADER lexicon, a benchmark-only extra installed here
# against the lock) on a held-back 20 % of each real English review set; complaint keywords per
# department. Writes benchmarks/results/reviews.json.
.PHONY: bench-reviews
bench-reviews: install
	$(BIN)/uv pip install --python $(BIN)/python $(UV_FLAGS) -c requirements.lock "vadersentiment==3.3.2"
	$(BIN)/python benchmarks/reviews.py $(ARGS)

# How train's recommender parts grow (issue 21): TIFU-KNN's neighbour search (ANN vs exact), its whole
# fit and the re-ranker's candidate pools on synthetic shops of 5k, 20k and 80k users, with cost
# exponents, and TIFU-KNN's NDCG@10 with ANN vs exact neighbours on Online Retail.
# Writes benchmarks/results/train_scaling.json.
.PHONY: bench-train-scaling
bench-train-scaling: install
	$(BIN)/python benchmarks/train_scaling.py $(ARGS)

# One evaluation pass of a sparse model ranked from its sparse rows vs the dense path it replaced
# (issue 21), at 100k customers. Writes benchmarks/results/sparse_eval.json.
.PHONY: bench-sparse-eval
bench-sparse-eval: install
	$(BIN)/python benchmarks/sparse_eval.py $(ARGS)

# Customer segments (table, k by silhouette) and churn ROC/PR AUC on a shop longer than the horizon.
.PHONY: bench-profiles
bench-profiles: install
	$(BIN)/python benchmarks/profiles.py $(ARGS)

# dbt transform (+ GX validation) time and peak memory: a nightly incremental day vs a full rebuild,
# at ~1 M and ~10 M synthetic events (10 M needs ~5.5 GB to generate). Writes benchmarks/results/transform.json.
.PHONY: bench-transform
bench-transform: install
	$(BIN)/python benchmarks/transform.py $(ARGS)

# The whole Online Retail history built at once (`personaflow history`), per stage time and peak
# memory; one nightly day on top through Airflow; the last 7 days backfilled through a running
# Airflow (ARGS="--backfill-days 0" skips that). Writes benchmarks/results/history.json.
# Recommenders per RFM segment (and first-time buyers) on the real log's retail-30d split.
.PHONY: bench-segments
bench-segments: install
	$(BIN)/python benchmarks/segments.py

# Which co-purchase measure ranks /similar_items best, judged on orders placed later (Online Retail).
# Writes benchmarks/results/similar_items.json.
.PHONY: bench-similar
bench-similar: install
	$(BIN)/python benchmarks/similar_items.py --data online-retail

# Campaign response on The Complete Journey: per campaign redemption rate and incremental revenue per
# reached household (stratified comparison, bootstrap 95 % interval); the redemption model's ROC AUC on a
# later campaign than it trained on. Writes benchmarks/results/campaigns.json.
.PHONY: bench-campaigns
bench-campaigns: install
	$(BIN)/python benchmarks/campaigns.py $(ARGS)

# Churn with and without demographics on The Complete Journey (chosen out of time):
# benchmarks/results/churn_demographics.json
.PHONY: bench-churn-demographics
bench-churn-demographics: install
	$(BIN)/python benchmarks/churn_demographics.py $(ARGS)

# The Complete Journey folder (all its tables) through `personaflow history FOLDER`, /usr/bin/time -v,
# /profile for every household, one export-customer -> benchmarks/results/complete_journey_history.json
.PHONY: bench-complete-journey-history
bench-complete-journey-history: install
	$(BIN)/python benchmarks/complete_journey_history.py $(ARGS)

# The real Amazon All Beauty reviews as a shop through `personaflow history FOLDER` (each review one view
# event of its reviewer), /usr/bin/time -v -> benchmarks/results/reviews_history.json
.PHONY: bench-reviews-history
bench-reviews-history: install
	$(BIN)/python benchmarks/reviews_history.py $(ARGS)

# Demographics as re-ranker features on a household subsample of The Complete Journey, kept only where
# validation says they pay -> benchmarks/results/rerank_demographics.json
.PHONY: bench-rerank-demographics
bench-rerank-demographics: install
	$(BIN)/python benchmarks/rerank_demographics.py $(ARGS)

.PHONY: bench-history
bench-history: install
	$(BIN)/python benchmarks/history.py $(ARGS)

# The scale path: dbt full rebuild + nightly day on DuckDB vs PostgreSQL (real log) -> dbt_engines.json;
# a probe DAG on LocalExecutor/SQLite vs celery (Postgres + Redis, 2 workers) -> airflow_celery.json.
.PHONY: bench-dbt-engines bench-airflow-celery bench-abtest
bench-dbt-engines: install servers
	$(BIN)/python benchmarks/dbt_engines.py $(ARGS)

# Landing the whole real log, DuckDB vs PostgreSQL (one COPY per day) -> ingest_engines.json.
.PHONY: bench-ingest-engines
bench-ingest-engines: install servers
	$(BIN)/python benchmarks/ingest_engines.py $(ARGS)

bench-airflow-celery: install servers
	$(BIN)/python benchmarks/airflow_celery.py $(ARGS)

# The night's warehouse stages on DuckDB, PostgreSQL and Spark (local[2]) side by side, one run (issue 24):
# connect, ingest, transform (dbt), mart checks (GX), features (Feast) at ~1 M and ~10 M synthetic events,
# each stage's wall s, CPU s and peak memory of its whole process tree (Spark's JVM, PostgreSQL's backends).
# Each engine gets 25 min per size. ARGS="--sizes 1m" for one size. Writes benchmarks/results/engines.json.
.PHONY: bench-engines
bench-engines: install servers java
	$(BIN)/python benchmarks/engines.py $(ARGS)

# The local Spark driver's JIT (issue 24's suite work): the quick compiler alone, personaflow's local-mode
# default, against the JVM's C1+C2, on a night task's shape (72 small queries) and a 3 M-row job, each in
# a fresh JVM. Writes benchmarks/results/spark_jit.json (~8 minutes on a busy 2-core machine).
.PHONY: bench-spark-jit
bench-spark-jit: install java
	$(BIN)/python benchmarks/spark_jit.py

# Embedded vs scale stack, same data, same machine (issue 12): transform at 1 M/10 M events on DuckDB
# vs PostgreSQL, Feast materialize SQLite vs Redis, /recommend /profile /events on 1-2 BentoML workers
# next to the FastAPI floor, one night on LocalExecutor vs CeleryExecutor. One part alone:
# ARGS="--parts serving events". Writes benchmarks/results/scale.json (other parts' keys kept).
.PHONY: bench-scale
bench-scale: install servers
	$(BIN)/python benchmarks/scale.py $(ARGS)

# The A/B report on a simulated run (one arm truly better, and an A/A run) -> abtest_simulated.json.
bench-abtest: install
	$(BIN)/python benchmarks/abtest_simulated.py $(ARGS)

clean:
	rm -rf .personaflow

# One whole night stage by stage (each stage a child process: wall s, CPU s, peak RSS) on synthetic
# shops of 10k, 100k and 1M customers, the cost exponent per stage, and the features stage after 0, 30
# and 90 earlier nights -> benchmarks/results/scale_night.json. ARGS="--sizes 10000 --stages ingest".
.PHONY: bench-scale-night
bench-scale-night: install
	$(BIN)/python benchmarks/scale_night.py --features-series 100000 $(ARGS)

# Repurchase cadence (issue 21, item 4): the cadence-aware repeat retrieval (repeat_cadence) against
# repeat-buy, validation and test NDCG@10 overall, repeat and explore, with the paired gain interval and
# fit CPU s, and the nightly choice over the sparse options; ARGS="--rerank --ensemble 1": the re-ranker
# with and without the cadence cross features. ARGS="--data complete-journey" for the grocery shop.
# Writes benchmarks/results/cadence.json.
.PHONY: bench-cadence
bench-cadence: install
	$(BIN)/python benchmarks/cadence.py $(ARGS)
