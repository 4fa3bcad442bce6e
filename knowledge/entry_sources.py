"""Pages of apps above knowledge that open the FAQ add form pre-filled, and hear of the entry
saved from it (analytics' knowledge gaps: ``?gap=ID``).

knowledge may not import those apps (the import layers in pyproject.toml), so they register
here, in their ``AppConfig.ready``. The add form keeps its query string when posted, so the
parameter comes back with the save.
"""

from collections.abc import Callable
from dataclasses import dataclass

from knowledge.models import KnowledgeEntry
from tenants.models import Tenant


@dataclass(frozen=True)
class EntrySource:
    parameter: str  # the query-string parameter naming the source object
    # The form's initial values for the tenant's object named by the parameter; None when the
    # tenant has no such object (another tenant's id is ignored, never used).
    initial: Callable[[Tenant, str], dict[str, object] | None]
    # Told of the entry saved from the form (within its transaction).
    saved: Callable[[Tenant, str, KnowledgeEntry], None]


_sources: dict[str, EntrySource] = {}


def entry_source_register(source: EntrySource) -> None:
    _sources[source.parameter] = source


def entry_sources() -> list[EntrySource]:
    return list(_sources.values())
