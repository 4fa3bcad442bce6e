"""Serializer fields every API module shares: integrations' text made storable, and a member of
the tenant named by user id or e-mail address."""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from helpdesk_site.untrusted import untrusted_text_clean


class TextField(serializers.CharField):
    """Text from an integration, made storable (``untrusted_text_clean``)."""

    def to_internal_value(self, data: Any) -> str:
        return untrusted_text_clean(super().to_internal_value(data))


def _is_email(text: str) -> bool:
    try:
        validate_email(text)
    except DjangoValidationError:
        return False
    return True


@extend_schema_field(
    {
        "oneOf": [{"type": "integer"}, {"type": "string", "format": "email"}],
        "description": "A member of the tenant who works conversations and tickets (owner, "
        "admin or agent): their user id or e-mail address.",
    }
)
class MemberField(serializers.Field):
    """A member of the tenant named by user id (an int) or e-mail address (a str); the view
    looks them up (``conversations.selectors.agent_for_member``)."""

    default_error_messages = {"invalid": gettext_lazy("Give a user id or an e-mail address.")}

    def to_internal_value(self, data: Any) -> int | str:
        if isinstance(data, int) and not isinstance(data, bool) and data > 0:
            return data
        text = data.strip() if isinstance(data, str) else ""
        if text.isascii() and text.isdigit() and int(text) > 0:
            return int(text)
        if _is_email(text):
            return text
        self.fail("invalid")

    def to_representation(self, value: Any) -> Any:
        return value
