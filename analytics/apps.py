from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AnalyticsConfig(AppConfig):
    name = "analytics"
    verbose_name = _("Analytics")

    def ready(self) -> None:
        from analytics.gaps import entry_source_initial, entry_source_saved
        from analytics.services import report_rows_record
        from conversations import events
        from knowledge.entry_sources import EntrySource, entry_source_register

        # Reporting rows for everything that happens, after its commit (one insert a batch).
        events.subscribe_batch(report_rows_record)
        # The FAQ add form opened from a knowledge gap (?gap=ID): pre-filled, and covering it.
        entry_source_register(
            EntrySource(parameter="gap", initial=entry_source_initial, saved=entry_source_saved)
        )
