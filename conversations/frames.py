"""What the sockets' protocols share: client frames parsed once at the edge, server frames
built as models and sent as JSON.

A client frame is a pydantic model in strict mode (no ``"5"`` for ``5``, no ``true`` for
``1``), parsed from the cleaned JSON object (``helpdesk_site.untrusted.frame_clean``) by one
module-level ``TypeAdapter`` of a union discriminated on ``type``. Fields a client does not know
are ignored. A frame that does not parse is answered with the error code and text its model
names for the first field that failed (``ClientFrame.refusal``), in the order its handler has
always checked them; it changes nothing.

A server frame is a model too; fields declared ``Omitted`` are left out of the JSON while they
are ``None`` (``interrupted``, ``reply_to``…), every other field is always sent, ``null``
included.
"""

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WrapValidator
from pydantic_core import ErrorDetails

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

T = TypeVar("T")


def _is_none(value: object) -> bool:
    return value is None


# A server frame's field that is sent only when it has a value (declare it ``= None``).
Omitted = Annotated[T | None, Field(exclude_if=_is_none)]


def _none_when_invalid(value: Any, handler: Callable[[Any], Any]) -> Any:
    try:
        return handler(value)
    except ValidationError:
        return None


# A client frame's field that is ignored (taken as absent) when it has the wrong shape.
IgnoredWhenInvalid = Annotated[T | None, WrapValidator(_none_when_invalid), Field(default=None)]


class ClientFrame(BaseModel):
    """A frame from a client. ``refusals`` names, field by field in the order they are checked,
    the error code and text a frame gets when that field is missing or has the wrong shape;
    ``refused`` is the answer when no named field failed."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    refusals: ClassVar[dict[str, tuple[str, "StrOrPromise"]]] = {}
    refused: ClassVar[tuple[str, "StrOrPromise"]] = ("bad_frame", "The frame is not valid.")

    @classmethod
    def refusal(cls, errors: Sequence[ErrorDetails]) -> tuple[str, "StrOrPromise"]:
        """The error code and text for a frame of this type that failed with ``errors`` (the
        location of each starts with the frame's type, as the discriminated union reports)."""
        failed = {error["loc"][1] for error in errors if len(error["loc"]) > 1}
        for field, answer in cls.refusals.items():
            if field in failed:
                return answer
        return cls.refused


class ServerFrame(BaseModel):
    """A frame the server sends. Built by the server's own code, so a field of the wrong type
    is a server bug: it raises where the frame is built, never reaches a client."""

    model_config = ConfigDict(frozen=True, extra="forbid")
