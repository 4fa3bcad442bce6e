from django.contrib.admin.apps import AdminConfig


class ConsoleAdminConfig(AdminConfig):
    """The Django admin, replaced by Kefu's tenant console site."""

    default_site = "helpdesk_site.console.ConsoleAdminSite"

    def ready(self) -> None:
        super().ready()
        from helpdesk_site import checks  # noqa: F401 - registers the deployment checks
