"""YAML loading that remembers where every value came from, so errors can name FILE:LINE: field."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

Loc = tuple[str | int, ...]
# Which values may have ${VAR} filled from the environment (None: every value).
Fill = Callable[[Loc], bool] | None

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    # Field order is sort order: problems print grouped by file, then top to bottom.
    file: str
    line: int
    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.problem}"


class ConfigError(Exception):
    """One or more problems in configuration files; str() prints them one per line."""

    def __init__(self, problems: Iterable[Problem]):
        # Sorted, so `check` reads top to bottom file by file whatever order the checks ran in.
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def interpolate(value: str, environ: dict[str, str] | os._Environ[str] | None = None) -> str:
    env = os.environ if environ is None else environ

    def sub(m: re.Match[str]) -> str:
        got = env.get(m.group(1), "")
        return got if got else (m.group(2) or "")

    return _ENV.sub(sub, value)


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], env: Any, fill: Fill = None) -> Any:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            out[key] = _walk(value_node, (*loc, key), lines, env, fill)
            # A field's line is where its key is written, not where a nested value starts.
            lines[(*loc, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*loc, i), lines, env, fill) for i, item in enumerate(node.value)]
    value = _scalar(node)
    if isinstance(value, str) and "${" in value and (fill is None or fill(loc)):
        value = interpolate(value, env)
    return value


def _scalar(node: yaml.Node) -> Any:
    # Resolve one scalar with the safe constructor so "true", "0.5" and "null" keep their YAML types.
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def load_yaml(path: Path, env: Any = None, fill: Fill = None) -> tuple[Any, dict[Loc, int]]:
    """Parse a YAML file; returns the data (with ${VAR} filled in where fill allows, everywhere without
    it) and a map from field path to line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(str(path), 0, "file", exc.strerror or str(exc))]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        problem = f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {column}); save the file as UTF-8"
        raise ConfigError([Problem(str(path), line, "file", problem)]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(str(path), text, exc)]) from None
    lines: dict[Loc, int] = {}
    if node is None:
        return None, lines
    return _walk(node, (), lines, env, fill), lines


def _yaml_problem(file: str, text: str, exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        line = mark.line + 1
    elif isinstance(exc, yaml.reader.ReaderError):
        # The reader (a control character, say) gives a character position, not a mark.
        line = text.count("\n", 0, exc.position) + 1
    else:
        line = 0
    if isinstance(exc, yaml.reader.ReaderError):
        problem = f"character U+{exc.character:04X} is not allowed in YAML ({exc.reason}); remove it"
    else:
        problem = getattr(exc, "problem", None) or str(exc)
    return Problem(file, line, "yaml", f"invalid YAML: {problem}")


def line_of(lines: dict[Loc, int], loc: Loc) -> int:
    """The line of the deepest part of loc that exists in the file (a missing field points at its parent)."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def dotted(loc: Loc) -> str:
    """`triggers[1].regex`: list items are numbered as a person counts them, the first is [1]."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part + 1}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(file)"


def problems_from(exc: ValidationError, file: str, lines: dict[Loc, int], prefix: Loc = ()) -> list[Problem]:
    out = []
    for err in exc.errors():
        # pydantic puts union/tag names into loc; keep only the parts that exist in the document.
        loc: Loc = tuple(p for p in err["loc"] if isinstance(p, int) or not str(p).startswith(("function-", "tagged-")))
        full = (*prefix, *loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        out.append(Problem(file, line_of(lines, full), dotted(full), msg))
    return out
