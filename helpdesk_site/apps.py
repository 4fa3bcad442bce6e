from django.contrib.admin.apps import AdminConfig
from django.core.signals import request_finished


class ConsoleAdminConfig(AdminConfig):
    """The Django admin, replaced by Kefu's tenant console site."""

    default_site = "helpdesk_site.console.ConsoleAdminSite"

    def ready(self) -> None:
        super().ready()
        from helpdesk_site import checks  # noqa: F401 - registers the deployment checks
        from helpdesk_site.asyncdb import request_connections_close

        request_finished.connect(request_connections_close, dispatch_uid="kefu-close-request-db")
