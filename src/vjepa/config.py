"""Typed configs: dataclasses are the source of truth; YAML only serializes them.

``load_config(RunConfig, "recipe.yaml", ["optimization.lr=1e-3"])`` reads a YAML file, applies ``--set``
style overrides, and builds the nested dataclasses, checking every key and every value's type. An unknown
or mistyped key is an error that lists the valid keys at that level.

YAML is read strictly by :mod:`vjepa.yaml_reader` (duplicate keys, alias bombs and non-UTF-8 files are
refused). Numbers must be finite (no ``.nan`` or ``.inf``), integers must fit in 64 bits; each dataclass's
``__post_init__`` checks signs, ranges and divisibility with the helpers below (`check_range`,
`InvalidValue`), and its errors name the dotted key.

Renamed keys keep loading: :data:`RENAMED_KEYS` maps each old name to its new one, in YAML files, ``--set``
overrides and the model configs saved in our checkpoints, with a one-line warning naming both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from vjepa.errors import ConfigError, VjepaError, shown
from vjepa.io import write_text
from vjepa.renamed_keys import RENAMED_KEYS, join_key, renamed_keys, renamed_tree, warn_renamed
from vjepa.yaml_reader import parse_yaml, read_yaml

T = TypeVar("T")

INT64_MAX = 2**63 - 1


class InvalidValue(VjepaError):
    """Raised by a config dataclass's ``__post_init__`` for one field; `from_dict` prefixes the file and the
    section, so the message names the full dotted key.

    Args:
        key: the field (or ``field[i]``, or a dotted path below the dataclass).
        message: what is wrong, e.g. ``"must be positive, got -0.001"``.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key} {message}")
        self.key = key
        self.message = message


def check_range(
    owner: object,
    *names: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> None:
    """Check that each field (a number, or a list/tuple of numbers) of ``owner`` lies in the range.

    Args:
        owner: the dataclass.
        names: its fields.
        low, high: the bounds (None: unbounded).
        low_open, high_open: exclude the bound itself.
        optional: None is allowed.

    Raises:
        InvalidValue: naming the field (and the item of a list).
    """
    for name in names:
        value = getattr(owner, name)
        if value is None and optional:
            continue
        items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
        for i, v in items:
            key = name if i is None else f"{name}[{i}]"
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InvalidValue(key, f"must be a finite number, got {v!r}")
            if low is not None and (v < low or (low_open and v == low)):
                raise InvalidValue(key, f"must be {'>' if low_open else '>='} {low}, got {v!r}")
            if high is not None and (v > high or (high_open and v == high)):
                raise InvalidValue(key, f"must be {'<' if high_open else '<='} {high}, got {v!r}")


def from_dict(cls: type[T], data: Mapping[str, Any], *, source: str = "config", prefix: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) mapping, strictly.

    Args:
        cls: the dataclass type.
        data: the values; missing keys take the dataclass defaults.
        source: named in error messages (usually the YAML path).
        prefix: the dotted path of ``data`` inside the whole config (for messages).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {prefix or 'the config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    data = renamed_keys(data, fields, source, prefix)
    unknown = [k for k in data if k not in fields]
    if unknown:
        where = f"under '{prefix}'" if prefix else "at the top level"
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(repr(join_key(prefix, k)) for k in unknown)}; valid keys {where}: "
            f"{', '.join(sorted(fields))}"
        )
    values = {}
    for name, value in data.items():
        values[name] = _convert(hints[name], value, source, join_key(prefix, name))
    missing = [
        n
        for n, f in fields.items()
        if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(
            f"{source}: missing required key(s) {', '.join(repr(join_key(prefix, k)) for k in missing)}"
        )
    try:
        return cls(**values)
    except InvalidValue as err:
        raise ConfigError(f"{source}: {join_key(prefix, err.key)} {err.message}") from None
    except ConfigError:
        raise
    except (ValueError, TypeError, VjepaError) as err:  # __post_init__ checks; VjepaError: InvalidArgument
        raise ConfigError(f"{source}: {prefix or 'config'}: {err}") from None


def to_dict(obj: Any) -> Any:
    """The plain (YAML-ready) form of a config dataclass: tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str], *, source: str = "--set") -> dict:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML: ``1e-3``, ``true``, ``[1, 2]``, ``null``)."""
    result = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source}: override {shown(item)!r} is not of the form key.path=value")
        value = parse_yaml(raw, f"{source} {shown(key.strip())}")
        node = result
        parts = [RENAMED_KEYS.get(p, p) for p in key.strip().split(".")]
        if parts != key.strip().split("."):
            warn_renamed(source, key.strip(), ".".join(parts))
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: {shown(key)!r}: '{shown(part)}' holds a value, not a section")
            node = child
        node[parts[-1]] = value
    return result


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Read ``path`` (or start from the defaults), apply ``overrides``, build ``cls`` strictly."""
    source = str(path) if path is not None else "config"
    data = renamed_tree(read_yaml(path), source) if path is not None else {}
    data = apply_overrides(data, overrides)
    return from_dict(cls, data, source=source)


def shipped_recipes(kind: str) -> dict[str, Path]:
    """The recipes shipped in ``vjepa/configs/<kind>/`` (``pretrain``, ``eval``): name -> YAML path."""
    folder = resources.files("vjepa").joinpath("configs", kind)
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith((".yaml", ".yml"))}


def resolve_recipe(name_or_path: str | Path, kind: str) -> Path:
    """A YAML path as given, or the path of the shipped ``kind`` recipe named ``name_or_path``.

    Raises:
        ConfigError: neither, naming the shipped recipes.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    recipes = shipped_recipes(kind)
    if str(name_or_path) in recipes:
        return recipes[str(name_or_path)]
    raise ConfigError(
        f"{name_or_path}: neither a config file nor a shipped recipe; shipped {kind} recipes: "
        f"{', '.join(sorted(recipes))}"
    )


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (the file :func:`load_config` reads back to the same object)."""
    write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))


# ---------------------------------------------------------------------------------------------- internals


def _shown_value(value: Any) -> str:
    return shown(repr(value), 120)


def _type_name(tp: Any) -> str:
    return " | ".join(
        "null" if a is type(None) else getattr(a, "__name__", str(a)) for a in typing.get_args(tp)
    )


def _deep_copy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    """``value`` checked against (and converted to) the annotation ``tp``; errors name ``key``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _convert_union(tp, value, source, key)
    if origin is Literal:
        args = typing.get_args(tp)
        if isinstance(value, (dict, list)) or value not in args:
            raise ConfigError(
                f"{source}: {key} must be one of {', '.join(map(repr, args))}, got {_shown_value(value)}"
            )
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value if value is not None else {}, source=source, prefix=key)
    if origin in (tuple, list):
        return _convert_sequence(tp, value, source, key)
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {key} must be a mapping, got {_shown_value(value)}")
        args = typing.get_args(tp)
        vt = args[1] if args else Any
        return {str(k): _convert(vt, v, source, f"{key}.{k}") for k, v in value.items()}
    return _convert_scalar(tp, value, source, key)


def _convert_union(tp: Any, value: Any, source: str, key: str) -> Any:
    """The first option of ``X | Y | None`` that ``value`` fits."""
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    errors = []
    for option in (a for a in args if a is not type(None)):
        try:
            return _convert(option, value, source, key)
        except ConfigError as err:
            errors.append(str(err))
    if len(errors) == 1:
        raise ConfigError(errors[0])
    raise ConfigError(f"{source}: {key}: {_shown_value(value)} fits none of {_type_name(tp)}")


def _convert_sequence(tp: Any, value: Any, source: str, key: str) -> Any:
    """A ``list[X]``, ``tuple[X, ...]`` or fixed-length ``tuple[X, Y]``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{source}: {key} must be a list, got {_shown_value(value)}")
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise ConfigError(f"{source}: {key} must have {len(args)} items, got {_shown_value(list(value))}")
        return tuple(
            _convert(a, v, source, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    item = args[0] if args else Any
    items = [_convert(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _convert_scalar(tp: Any, value: Any, source: str, key: str) -> Any:
    """A bool, int (64-bit), float (finite), str or Path."""
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be true or false, got {_shown_value(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key} must be an integer, got {_shown_value(value)}")
        if abs(value) > INT64_MAX:
            raise ConfigError(f"{source}: {key} must fit in 64 bits, got {_shown_value(value)}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key} must be a number, got {_shown_value(value)}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{source}: {key} must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key} must be a string, got {_shown_value(value)}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{source}: {key} must be a path, got {_shown_value(value)}")
        return Path(value)
    raise ConfigError(f"{source}: {key}: unsupported config type {tp}")
