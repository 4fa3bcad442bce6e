"""What each membership role may do in each area of the console and the API."""

from enum import StrEnum

from tenants.models import Role


class Area(StrEnum):
    TENANT = "tenant"
    MEMBERS = "members"
    API_KEYS = "api_keys"
    PROVIDERS = "providers"
    KNOWLEDGE = "knowledge"
    MODERATION = "moderation"
    CONVERSATIONS = "conversations"
    CUSTOMERS = "customers"
    TICKETS = "tickets"
    ANALYTICS = "analytics"  # hot topics and knowledge gaps


class Action(StrEnum):
    VIEW = "view"
    ADD = "add"
    CHANGE = "change"
    DELETE = "delete"


_ALL = frozenset(Action)
_READ = frozenset({Action.VIEW})
_WORK = frozenset({Action.VIEW, Action.CHANGE})

ROLE_PERMISSIONS: dict[str, dict[Area, frozenset[Action]]] = {
    Role.OWNER: dict.fromkeys(Area, _ALL) | {Area.TENANT: _WORK},
    Role.ADMIN: dict.fromkeys(Area, _ALL) | {Area.TENANT: _WORK},
    Role.AGENT: {
        Area.KNOWLEDGE: _READ,
        Area.CONVERSATIONS: _WORK,
        Area.CUSTOMERS: _WORK,
        Area.TICKETS: frozenset({Action.VIEW, Action.ADD, Action.CHANGE}),
    },
    Role.VIEWER: {
        Area.KNOWLEDGE: _READ,
        Area.CONVERSATIONS: _READ,
        Area.CUSTOMERS: _READ,
        Area.TICKETS: _READ,
        Area.ANALYTICS: _READ,
    },
}


def role_allows(role: str, area: Area, action: Action) -> bool:
    return action in ROLE_PERMISSIONS.get(role, {}).get(area, frozenset())
