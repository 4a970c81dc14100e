"""Reading ``.agentdeck.toml`` files into a :class:`~agentdeck.config.schema.Config`.

Files are found nearest-first: the repository's ``.agentdeck.toml`` wins over
``$AGENTDECK_HOME/config.toml`` (or ``~/.config/agentdeck/config.toml``), table by table.  Each file
is validated on its own (so an error names the file that is wrong), then the merged tables are built
into the typed sections of :mod:`agentdeck.config.schema`.

A syntax error, an unknown key, a wrong type or a value outside what the setting accepts (its
:class:`~agentdeck.config.schema.Rule`) raises :class:`ConfigError` (exit 2) with one message naming
the file, the key, the line (where it can be found) and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from agentdeck import paths
from agentdeck.config.schema import BUILTIN_KINDS, AgentDef, Config, Rule, socket_name_problem
from agentdeck.errors import ConfigError


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is list:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "a table"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


class _Loader:
    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, dotted: str) -> str:
        """Best-effort line number of a key (the TOML parser only reports syntax errors)."""
        dotted = re.sub(r"(\[\d+\])+$", "", dotted)  # an item of a list: the list's line
        parts = dotted.split(".")
        key = parts[-1]
        section = ".".join(parts[:-1])
        current = ""
        pattern = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=")
        header = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+")
        for number, line in enumerate(self.lines, 1):
            m = header.match(line)
            if m:
                current = m.group(1).replace('"', "")
                if current == dotted:
                    return f", line {number}"
                continue
            if pattern.match(line) and (current == section or (section.endswith(current) and current)):
                return f", line {number}"
        # a key inside an inline table (``lr = { low = 1 }``): the line of the table's own key
        return self.line_of(section) if "." in section else ""

    def fail(self, dotted: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {dotted}{self.line_of(dotted)}: {problem}")

    def value(self, dotted: str, tp: Any, raw: Any) -> Any:
        origin = get_origin(tp)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a section's class (never an instance)
            if not isinstance(raw, dict):
                raise self.fail(dotted, f"expected a table [{dotted}], got {type(raw).__name__}")
            return self.table(dotted, tp, raw)
        if origin is Literal:
            if raw not in get_args(tp):
                raise self.fail(dotted, f"expected {_type_name(tp)}, got {raw!r}")
            return raw
        if origin in (Union, types.UnionType):
            for option in get_args(tp):
                try:
                    return self.value(dotted, option, raw)
                except ConfigError:
                    continue
            raise self.fail(dotted, f"expected {_type_name(tp)}, got {raw!r}")
        if origin is list:
            (item_tp,) = get_args(tp)
            if not isinstance(raw, list):
                raise self.fail(dotted, f"expected {_type_name(tp)}, got {raw!r}")
            return [self.value(f"{dotted}[{i}]", item_tp, item) for i, item in enumerate(raw)]
        if origin is dict:
            _, val_tp = get_args(tp)
            if not isinstance(raw, dict):
                raise self.fail(dotted, f"expected a table, got {raw!r}")
            return {k: self.value(f"{dotted}.{k}", val_tp, v) for k, v in raw.items()}
        if tp is Any:
            return raw
        if tp is float:
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                raise self.fail(dotted, f"expected a number, got {raw!r}")
            return float(raw)
        if tp is int:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise self.fail(dotted, f"expected an integer, got {raw!r}")
            return raw
        if tp is bool:
            if not isinstance(raw, bool):
                raise self.fail(dotted, f"expected true or false, got {raw!r}")
            return raw
        if tp is str:
            if not isinstance(raw, str):
                raise self.fail(dotted, f"expected a string, got {raw!r}")
            return raw
        raise self.fail(dotted, f"unsupported setting type {tp!r}")  # pragma: no cover

    def table(self, prefix: str, cls: type, raw: dict[str, Any]) -> Any:
        hints = get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "sources"}
        kwargs = {}
        for key, val in raw.items():
            dotted = f"{prefix}.{key}" if prefix else key
            if key not in fields:
                allowed = ", ".join(sorted(fields))
                raise self.fail(dotted, f"unknown key {key!r}; expected one of: {allowed}")
            kwargs[key] = self.value(dotted, hints[key], val)
            rule = fields[key].metadata.get("rule")
            if rule is not None:
                self.check(dotted, rule, kwargs[key])
        return kwargs

    def check(self, dotted: str, rule: Rule, value: Any) -> None:
        """Raise ConfigError when a (well-typed) *value* breaks *rule*."""
        if isinstance(value, list):
            if rule.nonempty and not value:
                raise self.fail(dotted, "expected at least one item, got an empty list")
            for i, item in enumerate(value):
                self.check_one(dotted, rule, item, f"item {i + 1}: ")
        elif isinstance(value, dict):
            for key, item in value.items():
                if rule.keys and not re.fullmatch(rule.keys, key):
                    raise self.fail(f"{dotted}.{key}", f"expected {rule.keys_mean or rule.keys}, got key {key!r}")
                self.check_one(f"{dotted}.{key}", rule, item, "")
        else:
            self.check_one(dotted, rule, value, "")

    def check_one(self, dotted: str, rule: Rule, value: Any, which: str) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            noun = "an integer" if isinstance(value, int) else "a finite number"
            bounds = [(op, b) for op, b in ((">", rule.gt), (">=", rule.ge), ("<=", rule.le)) if b is not None]
            holds = {">": lambda b: value > b, ">=": lambda b: value >= b, "<=": lambda b: value <= b}
            if not math.isfinite(value) or not all(holds[op](b) for op, b in bounds):
                limits = " and ".join(f"{op} {b:g}" for op, b in bounds)
                raise self.fail(dotted, f"{which}expected {noun} {limits}".rstrip() + f", got {value!r}")
            return
        if not isinstance(value, str):
            return
        if rule.pattern and not re.fullmatch(rule.pattern, value):
            raise self.fail(dotted, f"{which}expected {rule.means or 'a match of ' + rule.pattern}, got {value!r}")
        if rule.regex and value:
            try:
                re.compile(value, re.MULTILINE)
            except re.error as exc:
                raise self.fail(dotted, f"{which}invalid regex: {exc}") from None
        if rule.relpath:
            parts = value.replace("\\", "/").split("/")
            if not value.strip() or value.startswith(("/", "~")) or ".." in parts or re.search(r"[\x00\r\n]", value):
                raise self.fail(dotted, f"{which}expected a relative path inside its folder (no leading '/' or '~', "
                                        f"no '..'), got {value!r}")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, val in over.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], val)
        else:
            out[key] = val
    return out


def _validate_file(path: Path) -> dict[str, Any]:
    """Parse and validate one file; returns its raw (validated) table."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}); fix its permissions") from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}; fix the file and try again") from exc
    loader = _Loader(path, text)
    _build(loader, raw)  # validate now, to name the file that is wrong
    return raw


def _build(loader: _Loader, raw: dict[str, Any]) -> Config:
    hints = get_type_hints(Config)
    kwargs: dict[str, Any] = {}
    for key, val in raw.items():
        if key not in hints or key == "sources":
            allowed = ", ".join(k for k in hints if k != "sources")
            raise loader.fail(key, f"unknown section [{key}]; expected one of: {allowed}")
        if key == "agents":
            if not isinstance(val, dict):
                raise loader.fail("agents", "expected tables [agents.NAME]")
            agents = {}
            for name, table in val.items():
                if not isinstance(table, dict):
                    raise loader.fail(f"agents.{name}", "expected a table [agents.NAME]")
                kw = loader.table(f"agents.{name}", AgentDef, table)
                if "kind" not in table and name in BUILTIN_KINDS:
                    kw["kind"] = name
                agent = AgentDef(**kw)
                if agent.kind not in BUILTIN_KINDS:
                    raise loader.fail(
                        f"agents.{name}.kind",
                        f"expected one of {', '.join(BUILTIN_KINDS)}, got {agent.kind!r}",
                    )
                if agent.kind == "generic" and not agent.command:
                    raise loader.fail(f"agents.{name}.command", "a generic agent needs a command")
                agents[name] = agent
            kwargs["agents"] = agents
            continue
        if key == "keymap":
            kwargs["keymap"] = loader.value("keymap", dict[str, str], val)
            continue
        section_kwargs = loader.value(key, hints[key], val)
        kwargs[key] = section_kwargs
    # Build nested dataclasses from the validated kwargs.
    return Config(**{k: _construct(hints[k], v) for k, v in kwargs.items()})


def _construct(tp: Any, value: Any) -> Any:
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, dict):
        sub = get_type_hints(tp)
        return tp(**{k: _construct(sub[k], v) for k, v in value.items()})
    if get_origin(tp) is dict and isinstance(value, dict) and dataclasses.is_dataclass(get_args(tp)[1]):
        return {k: _construct(get_args(tp)[1], v) for k, v in value.items()}  # [research.space]
    return value


def load_config(repo_root: Path | None = None) -> Config:
    """Load the user config, then the repository's over it.

    ``AGENTDECK_TMUX_SOCKET`` overrides ``[deck] tmux_socket``, so it is held to the same rule here.
    """
    files = [paths.user_config_file()]
    if repo_root is not None:
        files.append(Path(repo_root) / paths.CONFIG_FILENAME)
    merged: dict[str, Any] = {}
    sources = []
    for path in files:
        if path.is_file():
            merged = _merge(merged, _validate_file(path))
            sources.append(path)
    config = _build(_Loader(sources[-1] if sources else Path("<defaults>"), ""), merged)
    config.sources = sources
    socket_override = os.environ.get(paths.ENV_TMUX_SOCKET, "")
    if socket_override and socket_name_problem(socket_override):  # it overrides [deck] tmux_socket
        raise ConfigError(f"environment variable {paths.ENV_TMUX_SOCKET}: {socket_name_problem(socket_override)}; "
                          f"fix it or unset it")
    default = config.deck.default_agent
    if default not in config.agents and default not in BUILTIN_KINDS:
        where = sources[-1] if sources else Path(paths.CONFIG_FILENAME)
        raise ConfigError(
            f"{where}: deck.default_agent: unknown definition {default!r}; "
            f"expected one of {', '.join(config.definitions())}"
        )
    return config
