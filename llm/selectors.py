"""Which providers answer a tenant, in fallback order. Everything is scoped by tenant."""

import time
from decimal import Decimal

from django.conf import settings

from helpdesk_site.asyncdb import async_twin
from llm.gateway import ProviderConfig
from tenants.selectors import llm_provider_chain

PROVIDERS_CACHE_SECONDS = 5.0
# A dict rather than cachetools.TTLCache: a hit costs 0.2 µs against 1.7 µs (2.7 µs with the lock
# TTLCache needs across worker threads); a dict's get and set are atomic on their own.
_providers: dict[int, tuple[float, list[ProviderConfig]]] = {}


def default_provider() -> ProviderConfig | None:
    """The deployment-wide provider from the environment (``LLM_BASE_URL``…), if any."""
    config = settings.KEFU_LLM
    if not config["BASE_URL"]:
        return None
    return ProviderConfig(
        id=None,
        name="default",
        base_url=config["BASE_URL"],
        api_key=config["API_KEY"],
        model=config["MODEL"],
        embedding_model="",
        connect_timeout=config["CONNECT_TIMEOUT"],
        first_token_timeout=config["FIRST_TOKEN_TIMEOUT"],
        total_timeout=config["TOTAL_TIMEOUT"],
        price_input_per_1k=Decimal("0"),
        price_output_per_1k=Decimal("0"),
    )


def llm_providers_for_tenant(*, tenant_id: int) -> list[ProviderConfig]:
    """The tenant's fallback chain (its own providers, else the deployment default); empty
    when there is none, and the offline responder answers. Cached a few seconds per process:
    a provider edited in the console is used from the next few seconds on."""
    cached = _providers.get(tenant_id)
    now = time.monotonic()
    if cached is not None and now - cached[0] < PROVIDERS_CACHE_SECONDS:
        return cached[1]
    chain = [ProviderConfig.of(p) for p in llm_provider_chain(tenant_id=tenant_id)]
    if not chain:
        fallback = default_provider()
        chain = [fallback] if fallback is not None else []
    _providers[tenant_id] = (now, chain)
    return chain


def llm_providers_forget() -> None:
    _providers.clear()


# Async twins, for consumers (helpdesk_site/asyncdb.py) ----------------------------------------

allm_providers_for_tenant = async_twin(llm_providers_for_tenant, parallel=True)
