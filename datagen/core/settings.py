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


def _extra(info: Any) -> dict[str, Any]:
    return info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}


def field_flag(model: type[BaseModel], name: str, prefix: str = "") -> str:
    """The flag of a field: its ``flag`` (``json_schema_extra``), else ``--field-name``; with
    ``prefix`` (``judge_``) in front of the name."""
    own = _extra(model.model_fields[name]).get("flag")
    if own and not prefix:
        return own
    return flag_name(prefix + (_key_of(own) if own else name))


def _key_of(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def aliases(model: type[BaseModel]) -> dict[str, str]:
    """Keys people may write for a field whose flag is not its name (``llm`` for ``backend``,
    after ``--llm``): the flag's name with underscores -> the field."""
    out = {}
    for name, info in model.model_fields.items():
        own = _extra(info).get("flag")
        if own:
            out[_key_of(own)] = name
    return out


def add_flags(parser: argparse.ArgumentParser | Any, model: type[BaseModel], *, only: Sequence[str] | None = None,
              skip: Sequence[str] = (), flags: Mapping[str, str] | None = None, prefix: str = "") -> None:
    """One flag per field of ``model`` (``only`` those, without ``skip``), named as
    :func:`field_flag` says unless ``flags`` renames it; its default is None (not given), so that
    :func:`build` can tell a flag given from one left out. ``prefix`` puts the same settings under
    other names (``--judge-model``, dest ``judge_model``) beside a command's own.

    A field's ``json_schema_extra`` may hold ``flag`` (its name on the command line), ``short``
    (``-o``), ``metavar``, ``negatable: false`` (a yes-only switch such as ``--force``),
    ``repeatable: true`` (a value that may be given several times, collected in a list) and, for a
    list, ``split: false`` (each value one item, commas and all)."""
    names = list(only) if only is not None else list(model.model_fields)
    for name in names:
        if name in skip:
            continue
        info = model.model_fields[name]
        kind, _ = _plain(info.annotation)
        if info.is_required():
            help_text = f"{info.description or name} (required)"
        elif (kind is bool and info.get_default() is False and _extra(info).get("negatable") is False) or "default" in (info.description or ""):
            help_text = info.description or name  # a yes-only switch, or a help that says its default itself
        else:
            default = info.get_default(call_default_factory=True)
            shown = "none" if default is None or default == [] else ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
            help_text = f"{info.description or name} (default: {shown})"
        extra = _extra(info)
        kw: dict[str, Any] = {"dest": prefix + name, "default": None, "help": help_text}
        metavar = extra.get("metavar") or {int: "N", float: "X", str: "VALUE"}.get(kind)
        if metavar and kind is not bool and typing.get_origin(kind) is not Literal:
            kw["metavar"] = metavar
        if kind is bool:
            kw["action"] = "store_const" if extra.get("negatable") is False else argparse.BooleanOptionalAction
            if kw["action"] == "store_const":
                kw["const"] = True
        elif typing.get_origin(kind) is Literal:
            kw["choices"] = typing.get_args(kind)
        elif kind in (int, float):
            kw["type"] = kind
        elif extra.get("repeatable") or typing.get_origin(kind) in (list, tuple):
            # given several times; a list's values comma-separated too, unless split: false
            split = typing.get_origin(kind) in (list, tuple) and extra.get("split", True)
            kw["type"] = (lambda text: [x.strip() for x in text.split(",") if x.strip()]) if split else (lambda text: [text])
            kw["action"] = "append"
        names_on_line = [flags[name] if flags and name in flags else field_flag(model, name, prefix)]
        if extra.get("short") and not prefix:
            names_on_line.insert(0, extra["short"])
        parser.add_argument(*names_on_line, **kw)


def given(args: argparse.Namespace, model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """The fields of ``model`` whose flags were given in ``args`` (a repeated list flag's items
    joined into one list)."""
    out: dict[str, Any] = {}
    for k in model.model_fields:
        v = getattr(args, prefix + k, None)
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


def build_all(models: Sequence[type[BaseModel]], *, file: str | os.PathLike[str] | None = None, sets: Sequence[str] = (),
              flags: Sequence[Mapping[str, Any]] = ()) -> list[Any]:
    """Several models from one settings file and one list of ``--set`` items (a command's own
    settings, its model backend, its sampling): each key goes to the model that has it, a key
    no model has is an error; ``flags[i]`` are the flags given for ``models[i]``."""
    layers = _file_layers(file, None, sets)
    owner = {k: i for i, m in enumerate(models) for k in (*m.model_fields, *aliases(m))}
    for src, values in layers:
        check_keys(models, src, {k: v for k, v in values.items() if k not in owner})
    out = []
    for i, m in enumerate(models):
        own = [(src, {k: v for k, v in values.items() if owner[k] == i}) for src, values in layers]
        flag_values = flags[i] if i < len(flags) else None
        out.append(validate(m, *_merged(m, own, flag_values, None, None)))
    return out


def merge_layers(model: type[BaseModel], *, file: str | os.PathLike[str] | None = None, file_values: Mapping[str, Any] | None = None,
                 sets: Sequence[str] = (), flags: Mapping[str, Any] | None = None, hints: Mapping[str, str] | None = None,
                 listing: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The layers merged, lowest first: ``file`` (or ``file_values``, read from it by the caller),
    the ``--set`` items, the flags given; every key checked against ``model``
    (:func:`check_keys`), a flag's own name taken for its field (:func:`aliases`). Returns the
    values and, per key, the layer that set it."""
    return _merged(model, _file_layers(file, file_values, sets), flags, hints, listing)


def _file_layers(file: str | os.PathLike[str] | None, file_values: Mapping[str, Any] | None,
                 sets: Sequence[str]) -> list[tuple[str, Mapping[str, Any]]]:
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if file is not None:
        layers.append((str(file), file_values if file_values is not None else read_yaml(file)))
    if sets:
        layers.append(("--set", parse_set(sets)))
    return layers


def _merged(model: type[BaseModel], layers: Sequence[tuple[str, Mapping[str, Any]]], flags: Mapping[str, Any] | None,
            hints: Mapping[str, str] | None, listing: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    alias = aliases(model)
    layers = [(src, {(alias[k] if k in alias and k not in model.model_fields else k): v for k, v in values.items()})
              for src, values in layers]
    if flags:
        layers.append(("command line", {k: v for k, v in flags.items() if v is not None}))
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, values in layers:
        check_keys(model, source, values, hints, listing)
        merged.update(values)
        origin.update(dict.fromkeys(values, source))
    return merged, origin


def check_keys(model: type[BaseModel] | Sequence[type[BaseModel]], source: str, values: Mapping[str, Any],
               hints: Mapping[str, str] | None = None, listing: str | None = None) -> None:
    """A :class:`UserError` for the first key of ``values`` that ``model`` (or none of several
    models) has: the closest known key (or ``hints``' guess) when there is one, else ``listing``
    (default: the known keys)."""
    models = model if isinstance(model, Sequence) else (model,)
    known = [k for m in models for k in m.model_fields]
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
        return field_flag(model, key) if where(key) == "command line" and key in model.model_fields else f"'{key}'"

    try:
        return model.model_validate(dict(values))
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = str(err["loc"][0]) if err["loc"] else ""
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "missing":
                problems.append(f"{field_flag(model, key) if key in model.model_fields else flag_name(key)} is required")
                continue
            problems.append(f"{where(key)}: {name(key)}: {msg} (got {err.get('input')!r})" if key else f"{where(key)}: {msg}")
        raise UserError("; ".join(problems)) from None
