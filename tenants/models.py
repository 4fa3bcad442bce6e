import secrets
import zoneinfo
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from tenants.fields import EncryptedTextField
from tenants.scoping import TenantScopedManager


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        abstract = True


class TenantOwnedModel(TimeStampedModel):
    """A row that belongs to exactly one tenant. Every read of it is scoped by that tenant."""

    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, related_name="+", verbose_name=_("tenant")
    )

    # Fail closed: with no tenant in scope a query raises (tenants.scoping).
    objects = TenantScopedManager()

    class Meta:
        abstract = True


class Language(models.TextChoices):
    ENGLISH = "en", _("English")
    CHINESE = "zh-hans", _("Simplified Chinese")


def new_public_key() -> str:
    return "pk_" + secrets.token_urlsafe(18)


def default_faq_threshold() -> float:
    return settings.KEFU_DEFAULT_FAQ_THRESHOLD


def default_handoff_phrases() -> list[str]:
    return ["人工", "转人工", "人工客服", "找客服", "真人", "human", "agent", "real person"]


def default_time_zone() -> str:
    return settings.TIME_ZONE


def validate_time_zone(value: str) -> None:
    """An IANA time zone name that this system knows (``Asia/Shanghai``, ``UTC``)."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise ValidationError(
            _("%(value)s is not a known time zone (for example Asia/Shanghai)."),
            params={"value": value},
        ) from error


class Tenant(TimeStampedModel):
    """A company using Kefu: its knowledge, conversations, people and settings."""

    class WidgetPosition(models.TextChoices):
        RIGHT = "right", _("Bottom right")
        LEFT = "left", _("Bottom left")

    name = models.CharField(_("name"), max_length=120)
    slug = models.SlugField(_("slug"), max_length=60, unique=True)
    public_key = models.CharField(
        _("public widget key"),
        max_length=64,
        unique=True,
        default=new_public_key,
        help_text=_("Pasted into the website's widget script tag. Not a secret."),
    )
    allowed_origins = models.JSONField(
        _("allowed widget origins"),
        default=list,
        blank=True,
        help_text=_("Origins such as https://shop.example.com that may embed the widget."),
    )
    faq_threshold = models.FloatField(
        _("FAQ direct-answer threshold"),
        default=default_faq_threshold,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text=_("A FAQ entry matched with at least this confidence is answered directly."),
    )
    persona = models.TextField(
        _("assistant persona"),
        blank=True,
        help_text=_("System prompt describing the assistant's role, tone and limits."),
    )
    default_language = models.CharField(
        _("default language"), max_length=10, choices=Language.choices, default=Language.CHINESE
    )
    widget_color = models.CharField(_("widget colour"), max_length=7, default="#2563eb")
    widget_position = models.CharField(
        _("widget position"),
        max_length=5,
        choices=WidgetPosition.choices,
        default=WidgetPosition.RIGHT,
    )
    widget_greeting = models.CharField(_("widget greeting"), max_length=200, blank=True)
    identity_secret = EncryptedTextField(
        _("visitor identity secret"),
        blank=True,
        help_text=_("Signs identified visitors (HMAC) so nobody can pose as another customer."),
    )
    handoff_phrases = models.JSONField(
        _("phrases that ask for a person"),
        default=default_handoff_phrases,
        blank=True,
        help_text=_("A customer message containing one of these goes to a person."),
    )
    handoff_after_unanswered = models.PositiveSmallIntegerField(
        _("hand off after unanswered questions"),
        default=2,
        help_text=_(
            "Answers in a row that found nothing in the knowledge base before a person takes "
            "over; 0 turns this off."
        ),
    )
    handoff_on_negative_feedback = models.BooleanField(
        _("hand off on negative feedback"), default=True
    )
    handoff_on_repeated_question = models.BooleanField(
        _("hand off when a question is repeated"), default=True
    )
    handoff_on_provider_failure = models.BooleanField(
        _("hand off when the AI is unavailable"), default=True
    )
    auto_assign = models.BooleanField(
        _("assign automatically"),
        default=False,
        help_text=_("Give queued conversations to the least busy online agent."),
    )
    business_hours = models.JSONField(
        _("business hours"),
        default=dict,
        blank=True,
        help_text=_(
            'Empty: always open. For example {"timezone": "Asia/Shanghai", "days": [0, 1, 2, 3, '
            '4], "open": "09:00", "close": "18:00"} (days: 0 = Monday).'
        ),
    )
    ticket_sla_hours = models.PositiveSmallIntegerField(_("ticket SLA (hours)"), default=24)
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        default=default_time_zone,
        validators=[validate_time_zone],
        help_text=_("Reports count days and hours in this time zone (IANA name)."),
    )
    api_rate_limit = models.CharField(
        _("API rate limit"),
        max_length=20,
        blank=True,
        validators=[
            RegexValidator(
                r"^[1-9][0-9]*/[1-9][0-9]*$", _("Write it as count/seconds, e.g. 600/60.")
            )
        ],
        help_text=_(
            "Requests per API key as count/seconds, for example 600/60. Empty: the server's "
            "default."
        ),
    )
    is_active = models.BooleanField(_("active"), default=True)
    knowledge_version = models.PositiveBigIntegerField(
        _("knowledge version"),
        default=0,
        editable=False,
        help_text=_("Goes up with every change to the knowledge base; search indexes follow it."),
    )

    class Meta:
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(faq_threshold__gte=0) & models.Q(faq_threshold__lte=1),
                name="tenant_faq_threshold_range",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", _("Owner")
    ADMIN = "admin", _("Admin")
    AGENT = "agent", _("Agent")
    VIEWER = "viewer", _("Viewer")


class Membership(TimeStampedModel):
    """A user's place in a tenant. A user may belong to several tenants."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="memberships",
        verbose_name=_("user"),
    )
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("tenant")
    )
    role = models.CharField(_("role"), max_length=10, choices=Role.choices, default=Role.AGENT)

    # Reading a user's memberships to choose the scope crosses tenants on purpose
    # (``tenants.selectors.membership_list_for_user``); everything else sees the scope's.
    objects = TenantScopedManager()

    class Meta:
        verbose_name = _("member")
        verbose_name_plural = _("members")
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.get_role_display()})"


class ApiKey(TenantOwnedModel):
    """A key for the REST API. Only its SHA-256 digest is stored; the prefix identifies it."""

    class Scope(models.TextChoices):
        CHAT = "chat", _("Chat as customers (headless chat)")
        CONVERSATIONS_READ = "conversations:read", _("Read conversations and customers")
        CONVERSATIONS_WRITE = "conversations:write", _("Write conversations and customers")
        TICKETS_READ = "tickets:read", _("Read tickets")
        TICKETS_WRITE = "tickets:write", _("Write tickets")
        KNOWLEDGE_READ = "knowledge:read", _("Read knowledge")
        KNOWLEDGE_WRITE = "knowledge:write", _("Write knowledge")
        REPORTS_READ = "reports:read", _("Read reports")
        ADMIN = "admin", _("Everything (all scopes)")

    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True, editable=False)
    key_hash = models.CharField(_("key digest"), max_length=64, unique=True, editable=False)
    scopes = models.JSONField(_("scopes"), default=list, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class LLMProvider(TenantOwnedModel):
    """An OpenAI-compatible endpoint in the tenant's ordered fallback chain."""

    name = models.CharField(_("name"), max_length=100)
    base_url = models.URLField(
        _("base URL"), max_length=300, help_text=_("For example https://api.deepseek.com/v1")
    )
    model = models.CharField(_("model"), max_length=100)
    embedding_model = models.CharField(
        _("embedding model"),
        max_length=100,
        blank=True,
        help_text=_("Leave empty when this provider is not used for embeddings."),
    )
    api_key = EncryptedTextField(_("API key"), blank=True)
    priority = models.PositiveSmallIntegerField(
        _("priority"), default=10, help_text=_("Lower numbers are tried first.")
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    connect_timeout = models.FloatField(_("connect timeout (s)"), default=5.0)
    first_token_timeout = models.FloatField(_("first-token timeout (s)"), default=15.0)
    total_timeout = models.FloatField(_("total timeout (s)"), default=60.0)
    price_input_per_1k = models.DecimalField(
        _("price per 1k input tokens"), max_digits=10, decimal_places=6, default=Decimal("0")
    )
    price_output_per_1k = models.DecimalField(
        _("price per 1k output tokens"), max_digits=10, decimal_places=6, default=Decimal("0")
    )

    class Meta:
        verbose_name = _("LLM provider")
        verbose_name_plural = _("LLM providers")
        ordering = ["tenant", "priority", "id"]
        indexes = [models.Index(fields=["tenant", "enabled", "priority"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(connect_timeout__gt=0)
                & models.Q(first_token_timeout__gt=0)
                & models.Q(total_timeout__gt=0),
                name="llmprovider_positive_timeouts",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} · {self.model}"


class IdempotencyRecord(TenantOwnedModel):
    """The first response to a POST made with an ``Idempotency-Key``: a retry with the same key
    gets it again instead of doing the work twice. Kept ``API_IDEMPOTENCY_TTL_SECONDS``."""

    api_key = models.ForeignKey(
        ApiKey, on_delete=models.CASCADE, related_name="+", verbose_name=_("API key")
    )
    key = models.CharField(_("idempotency key"), max_length=255)
    # What the key was first used for (method, path and a digest of the body): the same key
    # with another request is an error, not a replay.
    fingerprint = models.CharField(_("request fingerprint"), max_length=64)
    status_code = models.PositiveSmallIntegerField(_("status code"), null=True, blank=True)
    body = models.JSONField(_("response body"), null=True, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        verbose_name = _("idempotency record")
        verbose_name_plural = _("idempotency records")
        constraints = [
            models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_unique_key")
        ]

    def __str__(self) -> str:
        return self.key
