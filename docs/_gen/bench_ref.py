"""The benchmarks page: one table per benchmarks/results/*.json, rendered at build time.

Each says when (a `measured_at`/`when`/`date` key if the file has one, else the date of the last commit
that changed the file, else its modification time), on how many cores (`cores`, `cpu_cores`, or the
count in `machine`) and on which data (a `data` key, else the size keys of the file). Every value is
shown exactly as the JSON holds it.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from . import _md

WHEN_KEYS = ("measured_at", "when", "date", "timestamp")
CORE_KEYS = ("cores", "cpu_cores", "n_cores")
# Keys that say what a benchmark ran on (a size, a data set); every file has some of these.
DATA_KEY = re.compile(
    r"^(data|dataset|shop_(users|items|days)|users|items|days|events|raw_rows|test_users|users_per_run|"
    r"(small|large|retail|1m|10m)_(events|n_users|n_items|users|items)|online_retail_(lines|days|customers|"
    r"products|rows|test_orders|train_orders)|(online_retail|synthetic|synthetic_norebuy)_(train|test)_"
    r"(users|items)|duckdb_rows|postgres_rows|feast_1m_users)$"
)
HEADLINE = 14  # values shown before the "all values" fold


def when(path: Path, data: dict) -> str:
    for key in WHEN_KEYS:
        if isinstance(data.get(key), str):
            return f"{data[key]} (`{key}`)"
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%cs", "--", path.name], cwd=path.parent,
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        out = ""
    if out:
        return f"{out} (the last commit of the file)"
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).date().isoformat() + " (file time)"


def cores(data: dict) -> str:
    for key in CORE_KEYS:
        if key in data:
            return f"{data[key]} (`{key}`)"
    m = re.search(r"(\d+)\s*cores?", str(data.get("machine", "")) + " " + str(data.get("note_machine", "")))
    return f"{m.group(1)} (`machine`)" if m else "not recorded"


def data_keys(data: dict) -> dict:
    return {k: v for k, v in data.items() if DATA_KEY.match(k) and not isinstance(v, (dict, list))}


def summary(script: Path) -> str:
    """The first sentence of the benchmark script's docstring (what it runs, on what)."""
    import ast

    if not script.is_file():
        return ""
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return first.removeprefix("Benchmark: ").removeprefix("Benchmark ")


def flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def shown(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def results(directory: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def _rows(stem: str, items: list[tuple[str, object]]) -> str:
    body = "".join(
        f'<tr data-bench="{_md.esc(stem)}" data-key="{_md.esc(k)}"><td><code>{_md.esc(k)}</code></td>'
        f'<td class="bench-value" data-value-of="{_md.esc(stem)}">{_md.esc(shown(v))}</td></tr>'
        for k, v in items
    )
    return f"<table><thead><tr><th>key</th><th>value</th></tr></thead><tbody>{body}</tbody></table>"


# The tables inside the notes (docs/_gen/benchmark_notes.md marks each with `<!-- bench-table: NAME -->`):
# labels are prose, every number is read from the JSON file.
SEGMENT_MODELS = {
    "popularity": "popularity",
    "repeat_buy": "repeat-buy",
    "tifu": "TIFU-KNN",
    "nightly_default_tifu_deepfm": "nightly default (TIFU-KNN + 5 DeepFMs + trees)",
}
HISTORY_STAGES = [
    ("import", "import (read .csv.gz, count faults, land 374 day files, load)"),
    ("validate_history",
     "validate every day with the batch suite (374 days, 7,779 expectations; 21 warned, 0 failed)"),
    ("transform", "dbt build, full refresh (17 models, 93 data tests, 7 unit tests)"),
    ("validate_marts", "GX on the marts"),
    ("segments", "segments (K-means, k by silhouette)"),
    ("churn", "churn"),
    ("audiences", "audiences"),
    ("features", "Feast (snapshots, apply, materialize)"),
    ("train", "train the nightly model (TIFU-KNN + 5 DeepFMs + trees) + gate (first model promoted: 0.379 vs "
              "TIFU-KNN 0.343 on the 7-day hold-out, 431 users)"),
    ("promote", "promote"),
]  # fmt: skip


def _cell(stem: str, key: str, value: object) -> str:
    attrs = f'class="bench-value" data-bench="{_md.esc(stem)}" data-key="{_md.esc(key)}"'
    return f"<td {attrs}>{_md.esc(shown(value))}</td>"


def _table(header: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{_md.esc(h)}</th>" for h in header)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def segments_table(data: dict) -> str:
    segments = [k.removesuffix("_test_users") for k in data if k.endswith("_test_users")]
    header = ["model", f"all ({data.get('test_users', '?')})"]
    header += [f"{s.replace('_', ' ')} ({data[s + '_test_users']})" for s in segments]
    rows = []
    for model, label in SEGMENT_MODELS.items():
        keys = [f"{model}_ndcg_at_10"] + [f"{model}_{s}_ndcg_at_10" for s in segments]
        cells = "".join(_cell("segments", k, data[k]) if k in data else "<td></td>" for k in keys)
        rows.append(f"<tr><td>{_md.esc(label)}</td>{cells}</tr>")
    return _table(header, rows)


def history_table(data: dict) -> str:
    prefix = "online_retail_history_"
    rows = []
    for stage, label in HISTORY_STAGES + [("total", "total (wall time of the command, imports included)")]:
        s_key, m_key = f"{prefix}{stage}_s", f"{prefix}{stage}_peak_rss_mb"
        if stage == "total":
            m_key = f"{prefix}peak_rss_mb"
        if s_key not in data:
            continue
        mem = _cell("history", m_key, data[m_key]) if m_key in data else "<td></td>"
        rows.append(f"<tr><td>{_md.esc(label)}</td>{_cell('history', s_key, data[s_key])}{mem}</tr>")
    return _table(["stage of personaflow history", "seconds", "peak RSS MB"], rows)


CURATED = {"segments": segments_table, "history": history_table}


def render(directory: Path, notes: str = "") -> str:
    out = ["# Benchmarks\n"]
    files = results(directory)
    for name, make in CURATED.items():
        marker = f"<!-- bench-table: {name} -->"
        if marker in notes and name in files:
            notes = notes.replace(marker, make(files[name]))
    if notes:
        out.append(notes)
    out.append("\n## Results, from `benchmarks/results/*.json`\n")
    out.append(
        f"Rendered at build time from the {len(files)} committed result files; every value exactly as its "
        "file holds it.\n"
    )
    for stem, data in files.items():
        flat = flatten(data)
        sizes = data_keys(flat)
        what = summary(directory.parent / f"{stem}.py")
        data_text = (
            str(data["data"]) if isinstance(data.get("data"), str) else
            ", ".join(f"`{k}` = {shown(v)}" for k, v in sizes.items()) or what or "not recorded"
        )  # fmt: skip
        out.append(f'\n### {stem} {{#bench-{stem} }}\n')
        out.append(
            f'<p class="bench-meta" data-bench="{_md.esc(stem)}">'
            f"<code>benchmarks/results/{_md.esc(stem)}.json</code>, {len(flat)} values. "
            f"<strong>When:</strong> {_md.esc(when(directory / (stem + '.json'), data))}. "
            f"<strong>Cores:</strong> {_md.esc(cores(flat))}. "
            f"<strong>Data:</strong> {_md.esc(data_text.replace('`', '').rstrip('.'))}.</p>\n"
        )
        if what:
            out.append(f"Measured by `benchmarks/{stem}.py`: {what}\n")
        items = list(flat.items())
        out.append(_rows(stem, items[:HEADLINE]) + "\n")
        if len(items) > HEADLINE:
            rest = _rows(stem, items[HEADLINE:])
            out.append(f"<details><summary>all {len(items)} values</summary>{rest}</details>\n")
    return "\n".join(out)


# A number from a result file inside any page's text: [[bench:FILE:KEY]] or [[bench:FILE:KEY:FORMAT]]
# (FORMAT: .Nf, +.Nf or , for thousands), so prose and hand-laid tables quote the files, not copies.
# KEY may be A-B or A/B: the difference or ratio of two keys of the file (a gain or share it does not
# store); FORMAT .N% shows a ratio in per cent.
REF = re.compile(r"\[\[bench:(?P<file>\w+):(?P<key>[\w.]+(?:[-/][\w.]+)?)(?::(?P<spec>[^\]]*))?\]\]")


def keys_of(key: str) -> list[str]:
    return re.split(r"[-/]", key)


def lookup(data: dict, key: str) -> object:
    if "-" in key:
        a, b = key.split("-")
        return data[a] - data[b]
    if "/" in key:
        a, b = key.split("/")
        return data[a] / data[b]
    return data[key]


def formatted(value: object, spec: str | None) -> str:
    from decimal import ROUND_HALF_UP, Decimal

    if not spec or isinstance(value, (str, bool)) or value is None:
        return shown(value)
    m = re.fullmatch(r"(\+)?(,)?\.(\d+)f", spec)
    if spec == ",":
        return f"{value:,}"
    if spec.endswith("%"):
        return format(value, spec).replace("%", " %")
    if not m:
        raise ValueError(f"unknown bench format {spec!r}")
    places = int(m.group(3))
    quantum = Decimal(1).scaleb(-places)
    number = Decimal(repr(value)).quantize(quantum, rounding=ROUND_HALF_UP)
    text = f"{number:{',' if m.group(2) else ''}.{places}f}"
    if m.group(1) and number >= 0:
        text = "+" + text
    return text.replace("-", "−")


def substitute(markdown: str, files: dict[str, dict], where: str) -> str:
    def one(m: re.Match) -> str:
        data = files.get(m["file"])
        if data is None or any(k not in data for k in keys_of(m["key"])):
            raise KeyError(f"{where}: [[bench:{m['file']}:{m['key']}]]: no such result file or key")
        value = lookup(data, m["key"])
        return (
            f'<span class="bench-ref" data-bench="{_md.esc(m["file"])}" data-key="{_md.esc(m["key"])}">'
            f"{_md.esc(formatted(value, m['spec']))}</span>"
        )

    return REF.sub(one, markdown)
