import secrets
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from tenants.models import TenantOwnedModel


class Channel(models.TextChoices):
    WIDGET = "widget", _("Website widget")
    API = "api", _("API")
    WECHAT = "wechat", _("WeChat")


class Priority(models.TextChoices):
    LOW = "low", _("Low")
    NORMAL = "normal", _("Normal")
    HIGH = "high", _("High")
    URGENT = "urgent", _("Urgent")


class Customer(TenantOwnedModel):
    """Somebody a tenant talks to, identified per channel by an external id."""

    channel = models.CharField(
        _("channel"), max_length=10, choices=Channel.choices, default=Channel.WIDGET
    )
    external_id = models.CharField(_("external id"), max_length=128)
    display_name = models.CharField(_("display name"), max_length=120, blank=True)
    email = models.EmailField(_("e-mail"), blank=True)
    phone = models.CharField(_("phone"), max_length=40, blank=True)
    identified = models.BooleanField(
        _("identified"), default=False, help_text=_("Identity vouched for by the tenant's site.")
    )
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    last_seen_at = models.DateTimeField(_("last seen at"), null=True, blank=True)
    anonymized_at = models.DateTimeField(
        _("anonymised at"),
        null=True,
        blank=True,
        help_text=_("The customer's personal data was erased; the statistics are kept."),
    )

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "channel", "external_id"], name="customer_unique_external_id"
            )
        ]

    def __str__(self) -> str:
        # The external id is a random token for widget visitors: unreadable, and not a name.
        return (
            self.display_name or self.email or gettext("Visitor #%(number)s") % {"number": self.pk}
        )


def new_conversation_key() -> str:
    return secrets.token_urlsafe(12)


class Conversation(TenantOwnedModel):
    class Status(models.TextChoices):
        BOT = "bot", _("With the assistant")
        QUEUED = "queued", _("Waiting for an agent")
        HUMAN = "human", _("With an agent")
        RESOLVED = "resolved", _("Resolved")
        CLOSED = "closed", _("Closed")

    class ResolutionKind(models.TextChoices):
        AI = "ai", _("Resolved by the assistant")
        AGENT = "agent", _("Resolved by an agent")
        TICKET = "ticket", _("Turned into a ticket")
        ABANDONED = "abandoned", _("Abandoned")

    class HandoffReason(models.TextChoices):
        CUSTOMER_REQUEST = "customer_request", _("Customer asked for a person")
        LOW_CONFIDENCE = "low_confidence", _("Low-confidence answers")
        NEGATIVE_FEEDBACK = "negative_feedback", _("Negative feedback")
        REPEATED_QUESTION = "repeated_question", _("Question repeated")
        PROVIDER_FAILURE = "provider_failure", _("AI providers failing")
        BLOCKED_CONTENT = "blocked_content", _("Blocked content")

    customer = models.ForeignKey(
        Customer,
        on_delete=models.CASCADE,
        related_name="conversations",
        verbose_name=_("customer"),
    )
    channel = models.CharField(
        _("channel"), max_length=10, choices=Channel.choices, default=Channel.WIDGET
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.BOT
    )
    language = models.CharField(_("language"), max_length=10, blank=True)
    priority = models.CharField(
        _("priority"), max_length=10, choices=Priority.choices, default=Priority.NORMAL
    )
    tags = models.JSONField(_("tags"), default=list, blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_conversations",
        verbose_name=_("assignee"),
    )
    handoff_reason = models.CharField(
        _("handoff reason"), max_length=20, choices=HandoffReason.choices, blank=True
    )
    resolution_kind = models.CharField(
        _("resolution"), max_length=10, choices=ResolutionKind.choices, blank=True
    )
    csat_rating = models.PositiveSmallIntegerField(
        _("satisfaction (1–5)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
    )
    csat_comment = models.TextField(_("satisfaction comment"), blank=True)
    last_message_at = models.DateTimeField(_("last message at"), null=True, blank=True)
    queued_at = models.DateTimeField(_("queued at"), null=True, blank=True)
    assigned_at = models.DateTimeField(_("assigned at"), null=True, blank=True)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    # Names the conversation in Redis and in-process caches (its memory), with its id: a
    # database that is reset or restored from a backup hands old ids to new conversations, but
    # never this random key, so no conversation reads what another left behind.
    cache_key = models.CharField(
        _("cache key"), max_length=16, default=new_conversation_key, editable=False
    )

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        ordering = ["-last_message_at", "-id"]
        indexes = [
            # A tenant's open conversations, newest activity first (queue and agent console).
            models.Index(
                fields=["tenant", "status", "-last_message_at"], name="conv_tenant_status_recent"
            ),
            models.Index(fields=["tenant", "assignee", "status"], name="conv_tenant_assignee"),
            models.Index(fields=["tenant", "-created_at"], name="conv_tenant_created"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(csat_rating__isnull=True)
                | (models.Q(csat_rating__gte=1) & models.Q(csat_rating__lte=5)),
                name="conversation_csat_range",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} · {self.customer}"


# The error code of an answer whose stream broke off: the customer saw part of it at most.
ANSWER_CUT_OFF = "interrupted"


class Message(TenantOwnedModel):
    class Role(models.TextChoices):
        CUSTOMER = "customer", _("Customer")
        ASSISTANT = "assistant", _("Assistant")
        AGENT = "agent", _("Agent")
        SYSTEM = "system", _("System")

    class Source(models.TextChoices):
        FAQ = "faq", _("FAQ")
        RAG = "rag", _("Knowledge + LLM")
        LLM = "llm", _("LLM")
        OFFLINE = "offline", _("Offline responder")
        AGENT = "agent", _("Agent")
        FALLBACK = "fallback", _("Fallback")

    class Feedback(models.TextChoices):
        UP = "up", _("Helpful")
        DOWN = "down", _("Not helpful")

    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.CASCADE,
        related_name="messages",
        verbose_name=_("conversation"),
    )
    role = models.CharField(_("role"), max_length=10, choices=Role.choices)
    content = models.TextField(_("content"))
    source = models.CharField(_("source"), max_length=10, choices=Source.choices, blank=True)
    client_message_id = models.CharField(_("client message id"), max_length=64, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("author"),
    )
    internal = models.BooleanField(
        _("internal note"), default=False, help_text=_("Seen by agents only.")
    )
    provider = models.CharField(_("provider"), max_length=100, blank=True)
    model = models.CharField(_("model"), max_length=100, blank=True)
    tokens_in = models.PositiveIntegerField(_("input tokens"), default=0)
    tokens_out = models.PositiveIntegerField(_("output tokens"), default=0)
    cost = models.DecimalField(_("cost"), max_digits=12, decimal_places=6, default=Decimal("0"))
    first_token_ms = models.PositiveIntegerField(
        _("time to first token (ms)"), null=True, blank=True
    )
    latency_ms = models.PositiveIntegerField(_("total latency (ms)"), null=True, blank=True)
    confidence = models.FloatField(_("confidence"), null=True, blank=True)
    knowledge_refs = models.JSONField(
        _("knowledge used"), default=list, blank=True, help_text=_("Entries and chunks cited.")
    )
    moderation_flags = models.JSONField(_("moderation flags"), default=list, blank=True)
    error_code = models.CharField(_("error code"), max_length=40, blank=True)
    feedback = models.CharField(_("feedback"), max_length=4, choices=Feedback.choices, blank=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["created_at", "id"]
        indexes = [
            # A conversation's messages in order.
            models.Index(fields=["conversation", "created_at", "id"], name="msg_conv_order"),
            models.Index(fields=["tenant", "source", "created_at"], name="msg_tenant_source"),
        ]
        constraints = [
            # A repeated client message id (a resend after a reconnect) is stored once.
            models.UniqueConstraint(
                fields=["conversation", "client_message_id"],
                condition=~models.Q(client_message_id=""),
                name="message_unique_client_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_role_display()}: {self.content[:60]}"


class Ticket(TenantOwnedModel):
    """Follow-up work when no agent could take the conversation live."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        PENDING = "pending", _("Pending")
        SOLVED = "solved", _("Solved")

    Priority = Priority  # shared with conversations

    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="tickets", verbose_name=_("customer")
    )
    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="tickets",
        verbose_name=_("conversation"),
    )
    subject = models.CharField(_("subject"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    contact_email = models.EmailField(_("contact e-mail"), blank=True)
    contact_phone = models.CharField(_("contact phone"), max_length=40, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.OPEN
    )
    priority = models.CharField(
        _("priority"), max_length=10, choices=Priority.choices, default=Priority.NORMAL
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_tickets",
        verbose_name=_("assignee"),
    )
    sla_due_at = models.DateTimeField(_("SLA due at"), null=True, blank=True)
    # When the ticket was first seen past its due time unsolved (recorded once, by the sweep).
    sla_breached_at = models.DateTimeField(
        _("SLA breached at"), null=True, blank=True, editable=False
    )
    solved_at = models.DateTimeField(_("solved at"), null=True, blank=True)
    agents_emailed_at = models.DateTimeField(_("agents e-mailed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("ticket")
        verbose_name_plural = _("tickets")
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["tenant", "status", "sla_due_at"], name="ticket_tenant_status_sla"
            ),
            models.Index(fields=["tenant", "assignee", "status"], name="ticket_tenant_assignee"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.subject}"


class TicketReply(TenantOwnedModel):
    """A reply on a ticket, by an agent (e-mailed to the customer) or by the customer."""

    ticket = models.ForeignKey(
        Ticket, on_delete=models.CASCADE, related_name="replies", verbose_name=_("ticket")
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("author"),
    )
    from_customer = models.BooleanField(_("from the customer"), default=False)
    content = models.TextField(_("reply"))
    emailed_at = models.DateTimeField(_("e-mailed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("ticket reply")
        verbose_name_plural = _("ticket replies")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.content[:60]


class CannedResponse(TenantOwnedModel):
    """A ready-made reply agents insert with one click."""

    title = models.CharField(_("title"), max_length=100)
    text = models.TextField(_("text"))

    class Meta:
        verbose_name = _("canned response")
        verbose_name_plural = _("canned responses")
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title
