"""The CLI reference, from the Typer app (`personaflow.cli:app`): `typer.main.get_command(app)` gives
the click command tree (click itself, or the copy Typer vendors: only its duck-typed API is used);
every command, every argument and option, with its type, default and help."""

from __future__ import annotations

import sys

from . import _md


def _context(cmd, name: str):
    """A click Context from the module that defines the command's click base class."""
    for klass in type(cmd).__mro__:
        module = sys.modules.get(klass.__module__)
        if module is not None and hasattr(module, "Context"):
            return module.Context(cmd, info_name=name)
    raise RuntimeError(f"no click Context for {type(cmd)}")


def _is_group(cmd) -> bool:
    return hasattr(cmd, "list_commands") and hasattr(cmd, "get_command")


def _is_argument(param) -> bool:
    return getattr(param, "param_type_name", "") == "argument"


def _type(param) -> str:
    if getattr(param, "is_flag", False):
        return "flag"
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    if annotation is not None:
        return getattr(annotation, "__name__", None) or str(annotation)
    ptype = getattr(param, "type", None)
    return getattr(ptype, "name", "") or ""


def command_tree(app=None) -> list[tuple[str, object]]:
    """(full name, click command) for every command of the app, groups' subcommands included."""
    import typer.main

    if app is None:
        from personaflow.cli import app
    root = typer.main.get_command(app)
    out: list[tuple[str, object]] = []

    def walk(group, prefix: str) -> None:
        ctx = _context(group, prefix)
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            if cmd is None or getattr(cmd, "hidden", False):
                continue
            full = f"{prefix} {name}"
            out.append((full, cmd))
            if _is_group(cmd):
                walk(cmd, full)

    walk(root, "personaflow")
    return out


def _default(param) -> str:
    if param.required:
        return "required"
    value = param.default
    if callable(value) or value is None or value == ():
        return ""
    if isinstance(value, bool) and not _is_argument(param) and param.secondary_opts:
        return (param.opts if value else param.secondary_opts)[-1]
    return str(value)


def _names(param) -> str:
    if _is_argument(param):
        return (param.metavar or param.name or "").upper()
    names = " / ".join(param.opts + param.secondary_opts)
    return names


def _usage(cmd, full: str) -> str:
    ctx = _context(cmd, full)
    return f"{full} {' '.join(cmd.collect_usage_pieces(ctx))}".strip()


def render() -> str:
    import typer.main

    from personaflow.cli import app

    commands = command_tree(app)
    root = typer.main.get_command(app)
    out = [
        "# CLI\n",
        f"Generated at build time from the Typer app `personaflow.cli:app`: {len(commands)} commands.\n",
        (root.help or "") + "\n",
        _md.table(["command", "what it does"], [
            [f"[`{full}`](#{full.replace(' ', '-')})", (cmd.get_short_help_str(limit=200))]
            for full, cmd in commands
        ]),
    ]  # fmt: skip
    for full, cmd in commands:
        out.append(f'\n## `{full}` {{#{full.replace(" ", "-")} }}\n')
        out.append(f"```text\n{_usage(cmd, full)}\n```\n")
        if cmd.help:
            out.append(cmd.help.strip().replace("\b\n", "") + "\n")
        params = [p for p in cmd.params if p.name not in ("help",) and not getattr(p, "hidden", False)]
        if _is_group(cmd):
            ctx = _context(cmd, full)
            subs = ", ".join(f"[`{full} {n}`](#{full.replace(' ', '-')}-{n})" for n in cmd.list_commands(ctx))
            out.append(f"Subcommands: {subs}.\n")
        if params:
            rows = []
            for p in params:
                kind = "argument" if _is_argument(p) else "option"
                ptype = _type(p)
                help_text = getattr(p, "help", "") or ""
                rows.append([_md.code(_names(p)), kind, ptype, _md.code(_default(p)), help_text])
            out.append(_md.table(["name", "kind", "type", "default", "help"], rows))
    return "\n".join(out)
