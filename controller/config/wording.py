"""Pydantic's errors in our words: each ``ErrorDetails`` of a failed table becomes the key
path it names (its ``loc``, for the TOML line locator) and the message check-config has
always printed ("must be between 0 and 65535 (0 lets the OS choose), got 70000",
"unknown key 'daily_secs' (did you mean 'daily_seconds'?)").

The words depend on the field, so the field is looked up from the model along ``loc``:
its ``Field`` bounds (both named when both exist), its ``Literal`` choices, and the
``Why``/``Says`` notes of the schema. Our own checks raise with their final wording
(``schema.fail``) and pass through unchanged.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from controller.config.checks import did_you_mean, kind_of, one_of
from controller.config.problems import KeyPath
from controller.config.schema import Says, Why

_TYPES = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "datetime_type": "a date-time with offset, e.g. 2027-01-01T00:00:00+08:00",
}


def key_path(error: ErrorDetails) -> KeyPath:
    """The key path of an error; a dict key's own error (``[key]``) is the key."""
    return tuple(part for part in error["loc"] if part != "[key]")


def _model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (itself, or inside ``X | None``, ``list[X]``, ``dict[K, X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model(arg)
        if found is not None:
            return found
    return None


def _locate(model: type[BaseModel], loc: KeyPath) -> tuple[type[BaseModel], FieldInfo | None]:
    """The innermost model along ``loc`` and the field of it that ``loc`` names, if any."""
    for i, part in enumerate(loc):
        info = model.model_fields.get(part) if isinstance(part, str) else None
        if info is None:
            return model, None
        inner = _model(info.annotation)
        rest = [p for p in loc[i + 1 :] if isinstance(p, str)]
        if inner is None or not rest:
            return model, info
        model = inner
    return model, None


def _choices(annotation: Any) -> tuple[str, ...]:
    if typing.get_origin(annotation) is typing.Literal:
        return tuple(str(a) for a in typing.get_args(annotation))
    for arg in typing.get_args(annotation):
        found = _choices(arg)
        if found:
            return found
    return ()


def _array_of_strings(annotation: Any) -> bool:
    """``list[str]`` (its items maybe ``Annotated``, the list maybe ``| None``)."""
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if typing.get_origin(item) is typing.Annotated:
            item = typing.get_args(item)[0]
        return item is str
    return any(_array_of_strings(arg) for arg in typing.get_args(annotation))


def _note(info: FieldInfo | None, kind: type[Why] | type[Says], error: str = "") -> str:
    for meta in info.metadata if info is not None else ():
        if isinstance(meta, Why) and kind is Why and (not meta.only or error in meta.only):
            return meta.text
        if isinstance(meta, Says) and kind is Says:
            return meta.text
    return ""


def _bound(info: FieldInfo | None, error: ErrorDetails) -> str:
    """ "must be between 1 and 10 (why), got 11": both bounds when the field has both."""
    meta = info.metadata if info is not None else []
    # pydantic keeps Field(ge=, le=) as annotated-types' Ge and Le objects
    low = next((m.ge for m in meta if hasattr(m, "ge")), None)
    high = next((m.le for m in meta if hasattr(m, "le")), None)
    value = error["input"]
    got = f"{value:g}" if isinstance(value, float) else str(value)
    ctx = error.get("ctx", {})
    if low is not None and high is not None:
        bound = f"between {low} and {high}"
    elif error["type"] == "greater_than_equal":
        bound = f"at least {ctx['ge']:g}"
    elif error["type"] == "greater_than":
        bound = f"greater than {ctx['gt']:g}"
    elif error["type"] == "less_than_equal":
        bound = f"at most {ctx['le']:g}"
    else:
        bound = f"below {ctx['lt']:g}"
    why = _note(info, Why, error["type"])
    return f"must be {bound}{f' ({why})' if why else ''}, got {got}"


def message(model: type[BaseModel], error: ErrorDetails, skip: int = 0) -> str:
    """Our words for one of pydantic's errors about ``model`` (``skip``: the parts of its
    ``loc`` before the model, such as a row's index in a list of them)."""
    kind, value = error["type"], error["input"]
    loc = key_path(error)[skip:]
    owner, info = _locate(model, loc)
    if kind == "citywifi":
        return error["msg"]
    if kind == "missing":
        return f"missing required key '{loc[-1]}'"
    if kind == "extra_forbidden":
        key = str(loc[-1])
        unknown = getattr(owner, "UNKNOWN", None)
        if isinstance(unknown, str):
            return unknown.format(key=key)
        return f"unknown key '{key}'{did_you_mean(key, owner.model_fields)}"
    if kind in _TYPES:
        return f"expected {_TYPES[kind]}, got {kind_of(value)}"
    if kind == "finite_number":
        return f"must be a finite number, got {value}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return _bound(info, error)
    if kind == "literal_error" and not isinstance(value, str) and not isinstance(loc[-1], int):
        return f"expected a string, got {kind_of(value)}"  # a setting (not an array's item)
    if kind == "literal_error":
        choices = _choices(info.annotation) if info is not None else ()
        shown = f"'{value}'" if isinstance(value, str) else kind_of(value)
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        return f"{shown} is not one of {one_of(choices)}{hint}"
    says = _note(info, Says)
    if kind in ("list_type", "too_short") and says:
        choices = _choices(info.annotation) if info is not None else ()
        return says.format(choices=one_of(choices), got=kind_of(value))
    if kind == "list_type":
        strings = info is not None and _array_of_strings(info.annotation)
        return f"expected an array{' of strings' if strings else ''}, got {kind_of(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a table{f' {says}' if says else ''}, got {kind_of(value)}"
    return str(error["msg"])


def messages(model: type[BaseModel], errors: Sequence[ErrorDetails]) -> list[tuple[KeyPath, str]]:
    """Each error of one table as (key path inside the table, message)."""
    return [(key_path(e), message(model, e)) for e in errors]
