from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AnalyticsConfig(AppConfig):
    name = "analytics"
    verbose_name = _("Analytics")

    def ready(self) -> None:
        from analytics.services import report_rows_record
        from conversations import events

        # Reporting rows for everything that happens, after its commit (one insert a batch).
        events.subscribe_batch(report_rows_record)
