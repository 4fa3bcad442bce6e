from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = _("Workspace")

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from tenants.api_key_cache import api_keys_changed
        from tenants.models import ApiKey, Tenant

        # Remembered keys are forgotten whatever changed a key or a tenant (tenants.api_key_cache).
        for model in (ApiKey, Tenant):
            post_save.connect(api_keys_changed, sender=model, dispatch_uid=f"api-keys-{model}")
            post_delete.connect(api_keys_changed, sender=model, dispatch_uid=f"api-keys-{model}")
