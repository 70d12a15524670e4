"""The settings reference, from the settings model in personaflow/core/settings.py.

Works whether `Settings` is a dataclass or a pydantic(-settings) model: the fields come from
`dataclasses.fields` or `model_fields`, the defaults from loading the settings with no PERSONAFLOW_*
variable set, the variable names from the model (a pydantic alias or env_prefix) or, for a dataclass,
from the `name=_env("VAR", ...)` calls in settings.py. Variables read elsewhere in the package are
found by scanning its source.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
from contextlib import contextmanager
from pathlib import Path

from . import _md
from .settings_help import HELP

_HOME_VARS = ("BENTOML_HOME", "AIRFLOW_HOME")


@contextmanager
def _clean_env():
    saved = dict(os.environ)
    try:
        for name in list(os.environ):
            if name.startswith("PERSONAFLOW_") or name in _HOME_VARS:
                del os.environ[name]
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _type_name(annotation: object) -> str:
    if isinstance(annotation, str):
        return annotation
    text = getattr(annotation, "__name__", None) if not getattr(annotation, "__args__", None) else None
    return text or repr(annotation).replace("typing.", "").replace("pathlib.", "")


def _source_env_names(module) -> dict[str, str]:
    """field -> variable, from `field=_env("VAR", ...)` / `_path("VAR", ...)` in the module's source."""
    src = inspect.getsource(module)
    pattern = r"(\w+)\s*=\s*(?:[\w.]+\()*\s*_(?:env|path)\(\s*\"([A-Z0-9_]+)\""
    return {field: var for field, var in re.findall(pattern, src)}


def _source_comments(module) -> dict[str, str]:
    """field -> the `#` comment lines just above `field=` in the module's source (dataclass case)."""
    lines = inspect.getsource(module).splitlines()
    out: dict[str, str] = {}
    for i, line in enumerate(lines):
        m = re.match(r"\s*(\w+)\s*[=:]", line)
        if not m:
            continue
        j, comment = i - 1, []
        while j >= 0 and lines[j].strip().startswith("#"):
            comment.insert(0, lines[j].strip().lstrip("#").strip())
            j -= 1
        if comment and m.group(1) not in out:
            out[m.group(1)] = " ".join(comment)
    return out


def fields(module) -> list[dict]:
    """Every setting: field, variable, type, description (from the model)."""
    model = module.Settings
    rows = []
    if dataclasses.is_dataclass(model):
        env = _source_env_names(module)
        for f in dataclasses.fields(model):
            row = {"field": f.name, "type": _type_name(f.type), "env": env.get(f.name), "description": ""}
            rows.append(row)
    else:
        config = getattr(model, "model_config", {}) or {}
        prefix = config.get("env_prefix", "") or ""
        for name, info in model.model_fields.items():
            alias = info.validation_alias or info.alias
            if alias is not None and not isinstance(alias, str):  # AliasChoices / AliasPath
                choices = getattr(alias, "choices", None) or [alias]
                alias = next((c for c in choices if isinstance(c, str)), None)
            env = alias or (prefix + name).upper()
            rows.append({"field": name, "type": _type_name(info.annotation), "env": env,
                         "description": info.description or ""})  # fmt: skip
    for row in rows:
        row["env"] = row["env"] or f"PERSONAFLOW_{row['field'].upper()}"
    return rows


def defaults(module) -> dict[str, str]:
    """field -> its default as shown: loaded with no variable set, paths relative to the home / repo."""
    with _clean_env():
        load = getattr(module, "load", None)
        if load is not None and hasattr(load, "cache_clear"):
            load.cache_clear()
        s = load() if load is not None else module.Settings()
        if load is not None and hasattr(load, "cache_clear"):
            load.cache_clear()
    home = str(Path(s.home))
    repo = str(Path(getattr(module, "REPO_ROOT", Path(home).parent)))
    out = {}
    values = s.model_dump() if hasattr(s, "model_dump") else dataclasses.asdict(s)
    for name, value in values.items():
        if isinstance(value, (tuple, list)):
            text = ", ".join(str(v) for v in value) or "(none)"
        elif isinstance(value, bool):
            text = str(value).lower()
        elif value is None or value == "":
            text = "(none)"
        else:
            text = str(value)
        if name != "home":
            text = text.replace(home, "$PERSONAFLOW_HOME")
        text = text.replace(repo, "<repo>")
        out[name] = text
    return out


def other_variables(package_dir: Path, known: set[str]) -> list[str]:
    """PERSONAFLOW_* names the package reads outside the settings model."""
    found: set[str] = set()
    for path in package_dir.rglob("*.py"):
        found |= set(re.findall(r"\b(PERSONAFLOW_[A-Z0-9_]*[A-Z0-9])\b", path.read_text()))
    return sorted(found - known - {"PERSONAFLOW_HOME"} - {k for k in found if k.endswith("_")})


def render() -> str:
    from personaflow.core import settings as module

    rows = fields(module)
    default = defaults(module)
    comments = _source_comments(module)
    out = [
        "# Settings\n",
        'One surface: environment variables, read by one frozen pydantic-settings model, `Settings` in '
        '`personaflow/core/settings.py` (env prefix `PERSONAFLOW_`, plus `BENTOML_HOME` and '
        '`AIRFLOW_HOME`; an empty variable means its default; `settings.load()` reads them, and a '
        'changed copy is `s.model_copy(update={...})`). Everything else gets its values passed in; the '
        'only other module that reads or writes `os.environ` is the process edge '
        "`personaflow/core/tool_env.py`, which exports the tools' own variables (dbt profile, Feast "
        "yaml, BentoML, Airflow) once at the CLI's entry, an Airflow task's start and the API server's "
        'start, and builds child-process environments (`tests/unit/test_config_channel.py` enforces '
        'this).\n',
        f"Generated at build time from `{module.Settings.__module__}.Settings` ({len(rows)} fields): the "
        "variable, the field, its type and its default with no variable set (`$PERSONAFLOW_HOME` is the "
        "home, `<repo>` the repository). `$HOME` in a description means `$PERSONAFLOW_HOME`.\n",
    ]
    table = []
    for r in rows:
        what = r["description"] or HELP.get(r["env"]) or comments.get(r["field"], "")
        table.append([_md.code(r["env"]), _md.code(r["field"]), _md.code(r["type"]),
                      _md.code(default.get(r["field"], "")), what])  # fmt: skip
    out.append(_md.table(["variable", "field", "type", "default", "what"], table))
    known = {r["env"] for r in rows}
    extra = other_variables(Path(module.__file__).resolve().parents[1], known)
    if extra:
        out.append("\n## Read outside the settings model\n")
        out.append("Found by scanning the package's source for `PERSONAFLOW_*` names.\n")
        out.append(_md.table(["variable", "what"], [[_md.code(v), HELP.get(v, "")] for v in extra]))
    return "\n".join(out)
