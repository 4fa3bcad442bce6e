"""The tables of docs/widget-protocol.md, rendered from the sockets' frame models.

Each table sits between a pair of markers in the document::

    <!-- BEGIN generated: widget-client -->
    ...
    <!-- END generated: widget-client -->

``python manage.py protocol_docs`` rewrites what is between them; a test fails while the
document differs from what the models say.
"""

import re
import types
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, JsonValue
from pydantic.fields import FieldInfo

from conversations import agent_protocol, protocol

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "widget-protocol.md"
_BLOCK = re.compile(
    r"(<!-- BEGIN generated: (?P<name>[\w-]+) -->\n)"
    r"(?P<body>.*?)"
    r"(<!-- END generated: (?P=name) -->)",
    re.DOTALL,
)


def _type_name(annotation: Any) -> str:
    if annotation is JsonValue:
        return "any JSON"
    origin = get_origin(annotation)
    if origin is Literal:
        return " or ".join(f"`{value!r}`".replace("'", '"') for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        names = [_type_name(arg) for arg in get_args(annotation) if arg is not type(None)]
        nullable = type(None) in get_args(annotation)
        return " or ".join(names) + (" or null" if nullable else "")
    if origin is list:
        return f"list of {_type_name(get_args(annotation)[0])}"
    if origin is dict or annotation is dict:
        return "object"
    if annotation in (protocol.WidgetErrorCode, agent_protocol.AgentErrorCode):
        return "code (below)"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "`{" + ", ".join(annotation.model_fields) + "}`"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " or ".join(f"`{member.value}`" for member in annotation)
    return {str: "string", int: "integer", float: "number", bool: "boolean"}[annotation]


def _limits(field: FieldInfo) -> str:
    bounds: dict[str, Any] = {}
    for item in field.metadata:
        for name in ("min_length", "max_length", "gt", "ge", "le"):
            value = getattr(item, name, None)
            if value is not None and isinstance(item, annotated_types.BaseMetadata):
                bounds[name] = value
    if "max_length" in bounds and "min_length" in bounds:
        return f"{bounds['min_length']}–{bounds['max_length']:,} characters"
    if "max_length" in bounds:
        return f"at most {bounds['max_length']:,} characters"
    if "ge" in bounds and "le" in bounds:
        return f"{bounds['ge']}–{bounds['le']}"
    if bounds.get("gt") == 0:
        return "positive"
    return ""


def _field(name: str, field: FieldInfo, *, server: bool) -> str:
    omitted = any(getattr(item, "exclude_if", None) for item in field.metadata) or (
        field.exclude_if is not None
    )
    annotation: Any = field.annotation
    if field.default is None and get_origin(annotation) in (Union, types.UnionType):
        # Absent, not null: an optional field and a field sent only when set.
        annotation = Union[tuple(arg for arg in get_args(annotation) if arg is not type(None))]  # noqa: UP007
    notes = [_type_name(annotation)]
    if limits := _limits(field):
        notes.append(limits)
    if server and omitted:
        notes.append("only when set")
    elif not server and not field.is_required():
        notes.append("optional")
    described = f": {field.description}" if field.description else ""
    return f"`{name}` ({', '.join(notes)}){described}"


def _text(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").split()).replace("|", "\\|")


def frames_table(models: Iterable[type[BaseModel]], *, server: bool) -> str:
    rows = ["| type | fields | meaning |", "| --- | --- | --- |"]
    for model in models:
        kind = model.model_fields["type"]
        fields = [
            _field(name, field, server=server).replace("|", "\\|")
            for name, field in model.model_fields.items()
            if name not in ("type", "v")
        ]
        kind_name = get_args(kind.annotation)[0]
        rows.append(f"| `{kind_name}` | {'; '.join(fields) or '—'} | {_text(model)} |")
    return "\n".join(rows) + "\n"


def codes_table(meanings: dict[Any, str]) -> str:
    rows = ["| code | meaning |", "| --- | --- |"]
    rows += [f"| `{code.value}` | {meaning} |" for code, meaning in meanings.items()]
    return "\n".join(rows) + "\n"


TABLES = {
    "widget-client": lambda: frames_table(protocol.CLIENT_FRAME_MODELS, server=False),
    "widget-server": lambda: frames_table(protocol.SERVER_FRAME_MODELS, server=True),
    "widget-errors": lambda: codes_table(protocol.ERROR_MEANINGS),
    "agent-client": lambda: frames_table(agent_protocol.AGENT_CLIENT_FRAME_MODELS, server=False),
    "agent-server": lambda: frames_table(agent_protocol.AGENT_SERVER_FRAME_MODELS, server=True),
    "agent-errors": lambda: codes_table(agent_protocol.ERROR_MEANINGS),
}


def document_render(text: str) -> str:
    """``text`` (the document) with every generated table as the models say it is. A table
    whose markers are missing is an error: the document must show every table."""
    missing = set(TABLES) - {match["name"] for match in _BLOCK.finditer(text)}
    if missing:
        raise ValueError(f"no markers for the tables: {', '.join(sorted(missing))}")
    return _BLOCK.sub(lambda match: match.group(1) + TABLES[match["name"]]() + match.group(4), text)
