"""One way to declare a command's settings: a pydantic model whose fields carry their help.

:func:`add_flags` derives a command's flags from the model (``--kebab-case`` names, types,
choices and yes/no flags from the annotations, the help from each field's ``description`` with
its default); :func:`build` merges the layers the same way for every command, lowest to
highest: the model's defaults, a YAML file (``--config``), each ``--set key=value`` in order,
then the flags given on the command line. A flag left out is not given: it never overrides the
file. Values of ``--set`` are parsed as YAML scalars (``--set patience=3``, ``--set
operations=[deepening,breadth]``). An unknown key, or a value the model refuses, is a
:class:`~datagen.core.errors.UserError` naming the key, where it was set and, for a typo, the
closest known key::

    error: si.yaml: unknown key 'rouge_treshold' (did you mean 'rouge_threshold'?)
"""

from __future__ import annotations

import argparse
import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from datagen.core.errors import UserError

M = TypeVar("M", bound=BaseModel)


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _plain(annotation: Any) -> tuple[Any, bool]:
    """The annotation without ``None`` (``int | None`` -> ``int``), and whether None was allowed."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else annotation), True
    return annotation, False


def add_flags(parser: argparse.ArgumentParser | Any, model: type[BaseModel], *, only: Sequence[str] | None = None,
              skip: Sequence[str] = (), flags: Mapping[str, str] | None = None) -> None:
    """One flag per field of ``model`` (``only`` those, without ``skip``), named ``--field-name``
    unless ``flags`` renames it; its default is None (not given), so that :func:`build` can tell
    a flag given from one left out."""
    names = list(only) if only is not None else list(model.model_fields)
    for name in names:
        if name in skip:
            continue
        info = model.model_fields[name]
        kind, _ = _plain(info.annotation)
        if info.is_required():
            help_text = f"{info.description or name} (required)"
        else:
            default = info.get_default(call_default_factory=True)
            shown = "none" if default is None else ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
            help_text = f"{info.description or name} (default: {shown})"
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        kw: dict[str, Any] = {"dest": name, "default": None, "help": help_text}
        metavar = extra.get("metavar") or {int: "N", float: "X", str: "VALUE"}.get(kind)
        if metavar and kind is not bool and typing.get_origin(kind) is not Literal:
            kw["metavar"] = metavar
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is Literal:
            kw["choices"] = typing.get_args(kind)
        elif kind in (int, float):
            kw["type"] = kind
        elif typing.get_origin(kind) in (list, tuple):  # repeatable, each comma-separated
            kw["type"] = lambda text: [x.strip() for x in text.split(",") if x.strip()]
            kw["action"] = "append"
        parser.add_argument(flags.get(name, flag_name(name)) if flags else flag_name(name), **kw)


def given(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    """The fields of ``model`` whose flags were given in ``args`` (a repeated list flag's items
    joined into one list)."""
    out: dict[str, Any] = {}
    for k in model.model_fields:
        v = getattr(args, k, None)
        if v is None:
            continue
        if isinstance(v, list) and all(isinstance(x, list) for x in v):
            v = [item for part in v for item in part]
        out[k] = v
    return out


def read_yaml(path: str | os.PathLike[str], what: str = "a settings file") -> dict[str, Any]:
    """The mapping in a YAML file (an empty file is an empty mapping)."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"{p}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise UserError(f"{p}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{p}: {what} is a mapping of settings (key: value), not a {type(data).__name__}")
    return data


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``["lr=1e-4", "packing=false"]`` -> ``{"lr": 1e-4, "packing": False}`` (values parsed as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out[key.strip()] = value
    return out


def build(model: type[M], *, file: str | os.PathLike[str] | None = None, sets: Sequence[str] = (),
          flags: Mapping[str, Any] | None = None, hints: Mapping[str, str] | None = None) -> M:
    """Defaults < ``file`` < ``--set`` items < ``flags`` (None values mean "not given"), validated.
    ``hints`` maps names people type from habit to the key they mean, for the "did you mean" of
    an unknown key."""
    return validate(model, *merge_layers(model, file=file, sets=sets, flags=flags, hints=hints))


def merge_layers(model: type[BaseModel], *, file: str | os.PathLike[str] | None = None, file_values: Mapping[str, Any] | None = None,
                 sets: Sequence[str] = (), flags: Mapping[str, Any] | None = None, hints: Mapping[str, str] | None = None,
                 listing: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The layers merged, lowest first: ``file`` (or ``file_values``, read from it by the caller),
    the ``--set`` items, the flags given; every key checked against ``model``
    (:func:`check_keys`). Returns the values and, per key, the layer that set it."""
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if file is not None:
        layers.append((str(file), file_values if file_values is not None else read_yaml(file)))
    if sets:
        layers.append(("--set", parse_set(sets)))
    if flags:
        layers.append(("command line", {k: v for k, v in flags.items() if v is not None}))
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, values in layers:
        check_keys(model, source, values, hints, listing)
        merged.update(values)
        origin.update(dict.fromkeys(values, source))
    return merged, origin


def check_keys(model: type[BaseModel], source: str, values: Mapping[str, Any], hints: Mapping[str, str] | None = None,
               listing: str | None = None) -> None:
    """A :class:`UserError` for the first key of ``values`` that ``model`` does not have: the
    closest known key (or ``hints``' guess) when there is one, else ``listing`` (default: the
    known keys)."""
    known = list(model.model_fields)
    for key in values:
        if key not in known:
            close = [hints[key]] if hints and key in hints else difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else f" ({listing or 'known: ' + ', '.join(known)})"
            raise UserError(f"{source}: unknown key '{key}'{hint}")


def validate(model: type[M], values: Mapping[str, Any], origin: Mapping[str, str] | str = "settings") -> M:
    """``model`` from a mapping, or a :class:`UserError` naming each bad key and where it was set
    (``origin``: one source for all keys, or a source per key); a key set by a flag is named as
    the flag."""
    def where(key: str) -> str:
        return origin if isinstance(origin, str) else origin.get(key, "settings")

    def name(key: str) -> str:
        return flag_name(key) if where(key) == "command line" else f"'{key}'"

    try:
        return model.model_validate(dict(values))
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = str(err["loc"][0]) if err["loc"] else ""
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "missing":
                problems.append(f"{flag_name(key)} is required")
                continue
            problems.append(f"{where(key)}: {name(key)}: {msg} (got {err.get('input')!r})" if key else f"{where(key)}: {msg}")
        raise UserError("; ".join(problems)) from None
