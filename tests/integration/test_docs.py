"""The docs site (issue 25): `mkdocs build --strict` passes (no broken link, no missing page) into a
temporary folder, then headless Chromium (the Debian `chromium` package, driven by Playwright, which
never downloads a browser here) reads the built site from a local http.server: the home page, a guide,
the CLI reference (every `personaflow` command of the Typer app is on it) and the benchmarks page (its
values are the JSON files' values). Screenshots go to tests/artifacts/ (git-ignored). README.md stays a
front door: at most 200 lines.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer.main
from playwright.sync_api import sync_playwright

from personaflow.cli import app

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
# No network, no background services, no GPU: a browser that only talks to 127.0.0.1.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def test_readme_is_a_front_door():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines (at most 200: the rest belongs in docs/)"


def test_settings_reference_reads_a_pydantic_settings_model_too(monkeypatch):
    """The generator reads `model_fields` when Settings is a pydantic-settings model (aliases, prefix,
    descriptions), as it reads `dataclasses.fields` for today's dataclass."""
    import types
    from pathlib import Path as P

    from pydantic import Field
    from pydantic_settings import BaseSettings, SettingsConfigDict

    sys.path.insert(0, str(REPO / "docs"))
    try:
        from _gen import settings_ref
    finally:
        sys.path.remove(str(REPO / "docs"))

    class Settings(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="PERSONAFLOW_")
        home: P = P("/srv/pf")
        airflow_home: P = Field(default=P("/srv/pf/airflow"), validation_alias="AIRFLOW_HOME")
        serve_port: int = Field(default=3000, description="BentoML port")

    module = types.ModuleType("fake_settings")
    module.Settings, module.REPO_ROOT = Settings, P("/srv")
    module.load = lambda: Settings()
    monkeypatch.setenv("PERSONAFLOW_SERVE_PORT", "9999")  # the reference shows defaults, not this shell
    rows = {r["field"]: r for r in settings_ref.fields(module)}
    assert rows["airflow_home"]["env"] == "AIRFLOW_HOME"
    assert rows["serve_port"]["env"] == "PERSONAFLOW_SERVE_PORT"
    assert rows["serve_port"]["description"] == "BentoML port"
    defaults = settings_ref.defaults(module)
    assert defaults["serve_port"] == "3000"
    assert defaults["airflow_home"] == "$PERSONAFLOW_HOME/airflow"


@pytest.fixture(scope="module")
def site():
    """The site built with `mkdocs build --strict` into a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="personaflow-site-") as tmp:
        out = Path(tmp) / "site"
        env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
        proc = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-4000:]
        assert "WARNING" not in log, log[-4000:]
        yield out


@pytest.fixture(scope="module")
def base_url(site):
    """The built site over HTTP on a free loopback port, stopped when the module's tests end."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):  # no access log in the test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser_context():
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 1000},
        )  # fmt: skip
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser_context, base_url):
    page = browser_context.new_page()
    # Nothing but the local server: a request anywhere else fails the test.
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(base_url) else outside.append(r.url))
    yield page
    page.close()
    assert not outside, f"the site fetched from outside: {outside[:5]}"


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"docs_{name}.png"), full_page=False)


def test_every_page_of_the_nav_is_built(site):
    for page in (
        "index.html", "getting-started/index.html", "concepts/night/index.html",
        "concepts/gate-and-registry/index.html", "guides/own-data/index.html", "guides/scale-path/index.html",
        "operations/security/index.html", "operations/reverse-proxy/index.html",
        "reference/settings/index.html", "reference/cli/index.html", "reference/rest-api/index.html",
        "reference/python/index.html", "reference/python/pipeline/history/index.html",
        "reference/python/core/settings/index.html", "reference/openapi.json", "benchmarks/index.html",
    ):  # fmt: skip
        assert (site / page).is_file(), page
    spec = json.loads((site / "reference" / "openapi.json").read_text())
    endpoints = {"/recommend", "/similar_items", "/profile", "/events", "/audiences", "/metadata"}
    assert endpoints <= set(spec["paths"])


def test_home_page(page, base_url):
    page.goto(f"{base_url}/")
    assert "personaflow" in page.title()
    body = page.locator("article").inner_text()
    assert "MLOps platform for e-commerce user analytics" in body
    assert page.locator("nav.md-nav >> text=Getting started").count() >= 1
    _shot(page, "home")


def test_a_guide(page, base_url):
    page.goto(f"{base_url}/guides/own-data/")
    assert page.locator("article h1").inner_text().startswith("Your own data")
    body = page.locator("article").inner_text()
    assert "personaflow history PATH" in body
    assert "--format online-retail" in body
    _shot(page, "guide_own_data")


def _typer_commands() -> set[str]:
    """Every command of the Typer app, subcommands of groups included, as `personaflow a b`."""
    names: set[str] = set()

    def walk(group, prefix: str) -> None:
        for name, cmd in group.commands.items():
            if getattr(cmd, "hidden", False):
                continue
            names.add(f"{prefix} {name}")
            if hasattr(cmd, "commands"):
                walk(cmd, f"{prefix} {name}")

    walk(typer.main.get_command(app), "personaflow")
    return names


def test_cli_reference_lists_every_command(page, base_url):
    expected = _typer_commands()
    some = {"personaflow history", "personaflow ingest", "personaflow stack up", "personaflow abtest start"}
    assert some <= expected
    page.goto(f"{base_url}/reference/cli/")
    headings = {" ".join(h.split()).rstrip("¶").strip() for h in page.locator("article h2").all_inner_texts()}
    missing = expected - headings
    assert not missing, f"commands missing from the CLI reference: {sorted(missing)}"
    assert not headings - expected - {""}, f"commands on the page that the app lacks: {headings - expected}"
    # One command's options, as the app declares them.
    ingest = page.locator("xpath=//h2[@id='personaflow-ingest']/following::table[1]").inner_text()
    assert "--format" in ingest and "--max-rejects" in ingest
    _shot(page, "cli_reference")


def _bench_value(page, stem: str, key: str) -> str:
    cell = page.locator(f'tr[data-bench="{stem}"][data-key="{key}"] td.bench-value')
    assert cell.count() == 1, f"{stem}.json {key}: not on the benchmarks page"
    return cell.text_content().strip()


def test_benchmarks_page_equals_the_json(page, base_url):
    files = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    assert files, "no benchmarks/results/*.json"
    page.goto(f"{base_url}/benchmarks/")
    # A few keys from the files themselves: numbers and texts, first-shown and folded-away rows alike.
    picks = [
        ("history", "online_retail_history_total_s"),
        ("recommenders", "online_retail_tifu_deepfm_ndcg_at_10"),
        ("segments", "data"),
        ("pipeline", "cores"),
        ("serving", "cpu_cores"),
    ]
    for stem, data in files.items():  # plus the first and the last number of every file
        numbers = [k for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        picks += [(stem, numbers[0]), (stem, numbers[-1])] if numbers else []
    checked = 0
    for stem, key in picks:
        if key not in files.get(stem, {}):
            continue
        want = files[stem][key]
        shown = _bench_value(page, stem, key)
        if isinstance(want, (int, float)) and not isinstance(want, bool):
            assert float(shown) == pytest.approx(want, rel=0, abs=0), (stem, key, shown, want)
        else:
            assert shown == str(want), (stem, key, shown, want)
        checked += 1
    assert checked >= len(files) * 2
    # The tables inside the notes (per customer segment, the real log's history): every number from JSON.
    for cell in page.locator("td.bench-value[data-bench][data-key]").all():
        stem, key = cell.get_attribute("data-bench"), cell.get_attribute("data-key")
        assert float(cell.text_content()) == files[stem][key], (stem, key)
        checked += 1
    assert checked >= len(files) * 2 + 30
    # Each file says when, on how many cores and on which data it was measured.
    for stem, data in files.items():
        meta = page.locator(f'p.bench-meta[data-bench="{stem}"]').inner_text()
        assert "When:" in meta and "Cores:" in meta and "Data:" in meta, meta
        cores = data.get("cores", data.get("cpu_cores"))
        if cores is not None:
            assert f"Cores: {cores}" in meta, meta
        assert "not recorded" not in meta.split("Data:")[1], meta
    page.locator("#bench-history").scroll_into_view_if_needed()
    _shot(page, "benchmarks")


def test_numbers_quoted_in_pages_are_the_json(page, base_url):
    """[[bench:FILE:KEY:FORMAT]] in a page (Models' recommenders tables, the similar-items measures, the
    scale path's serving table) shows that file's value, rounded to the places shown."""
    files = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    spans = []
    for path in ("getting-started/", "concepts/models/", "guides/scale-path/"):
        page.goto(f"{base_url}/{path}")
        spans += [(s.get_attribute("data-bench"), s.get_attribute("data-key"), s.text_content())
                  for s in page.locator("span.bench-ref").all()]  # fmt: skip
    assert len(spans) >= 110
    for stem, key, text in spans:
        text = text.replace("\u2212", "-").replace(",", "")
        scale = 100 if text.endswith("%") else 1  # a share shown in per cent
        text = text.rstrip(" %")
        places = len(text.split(".")[1]) if "." in text else 0
        tolerance = 0.5 * 10**-places / scale + 1e-12  # the page rounds to the places it shows
        data = files[stem]
        if "-" in key:  # A-B: a difference of two keys
            want = data[key.split("-")[0]] - data[key.split("-")[1]]
        elif "/" in key:  # A/B: a ratio
            want = data[key.split("/")[0]] / data[key.split("/")[1]]
        else:
            want = data[key]
        assert float(text) / scale == pytest.approx(want, abs=tolerance), (stem, key, text)
    page.locator("span.bench-ref").first.scroll_into_view_if_needed()
    _shot(page, "models_table")
