from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    """Demo data, the demo shop page and the mock LLM: installed for development and tests only."""

    name = "devtools"
    verbose_name = "Development tools"
