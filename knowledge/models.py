from django.core.validators import MaxValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from tenants.models import TenantOwnedModel, TimeStampedModel
from tenants.scoping import TenantOrGlobalScopedManager


class KnowledgeEntry(TenantOwnedModel):
    """A FAQ: a question, other ways customers phrase it, and the answer."""

    question = models.CharField(_("question"), max_length=500)
    alternate_questions = models.JSONField(_("alternate phrasings"), default=list, blank=True)
    answer = models.TextField(_("answer"))
    tags = models.JSONField(_("tags"), default=list, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    external_key = models.CharField(
        _("external key"),
        max_length=100,
        blank=True,
        help_text=_(
            "Your own id for this entry, for updates from another system (API bulk upsert)."
        ),
    )
    hit_count = models.PositiveIntegerField(_("hits"), default=0, editable=False)
    last_hit_at = models.DateTimeField(_("last hit at"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("FAQ entry")
        verbose_name_plural = _("FAQ entries")
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["tenant", "enabled"], name="kentry_tenant_enabled")]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "external_key"],
                condition=~models.Q(external_key=""),
                name="kentry_unique_external_key",
            )
        ]

    def __str__(self) -> str:
        return self.question


class Document(TenantOwnedModel):
    """A longer article, split into chunks for retrieval."""

    class Format(models.TextChoices):
        MARKDOWN = "markdown", _("Markdown")
        TEXT = "text", _("Plain text")
        HTML = "html", _("HTML")
        PDF = "pdf", _("PDF")

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting")
        PROCESSING = "processing", _("Processing")
        READY = "ready", _("Ready")
        FAILED = "failed", _("Failed")

    title = models.CharField(_("title"), max_length=200)
    format = models.CharField(
        _("format"), max_length=10, choices=Format.choices, default=Format.MARKDOWN
    )
    source_file = models.FileField(_("file"), upload_to="documents/%Y/%m/", blank=True)
    content = models.TextField(_("text"), blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.PENDING
    )
    progress = models.PositiveSmallIntegerField(
        _("progress (%)"), default=0, validators=[MaxValueValidator(100)]
    )
    error = models.TextField(_("error"), blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)

    class Meta:
        verbose_name = _("document")
        verbose_name_plural = _("documents")
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["tenant", "status"], name="doc_tenant_status")]

    def __str__(self) -> str:
        return self.title


class Chunk(TenantOwnedModel):
    document = models.ForeignKey(
        Document, on_delete=models.CASCADE, related_name="chunks", verbose_name=_("document")
    )
    ordinal = models.PositiveIntegerField(_("position"))
    heading = models.CharField(_("heading"), max_length=300, blank=True)
    content = models.TextField(_("content"))

    class Meta:
        verbose_name = _("chunk")
        verbose_name_plural = _("chunks")
        ordering = ["document", "ordinal"]
        constraints = [
            models.UniqueConstraint(fields=["document", "ordinal"], name="chunk_unique_ordinal")
        ]
        indexes = [models.Index(fields=["tenant", "document"], name="chunk_tenant_document")]

    def __str__(self) -> str:
        return f"{self.document} · {self.ordinal}"


class SensitiveWordList(TimeStampedModel):
    """Words to block, mask or send for review. Global lists (no tenant) apply to everyone."""

    class Action(models.TextChoices):
        BLOCK = "block", _("Block the message")
        MASK = "mask", _("Mask the word")
        REVIEW = "review", _("Flag for review")

    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("tenant"),
        help_text=_("Empty for a global list that applies to every tenant."),
    )
    name = models.CharField(_("name"), max_length=100)
    action = models.CharField(
        _("action"), max_length=10, choices=Action.choices, default=Action.MASK
    )
    words = models.TextField(_("words"), blank=True, help_text=_("One word or phrase per line."))
    enabled = models.BooleanField(_("enabled"), default=True)

    # In a tenant's scope: its own lists and the global ones (tenants.scoping).
    objects = TenantOrGlobalScopedManager()

    class Meta:
        verbose_name = _("sensitive-word list")
        verbose_name_plural = _("sensitive-word lists")
        ordering = ["name"]
        indexes = [models.Index(fields=["tenant", "enabled"], name="swlist_tenant_enabled")]

    def __str__(self) -> str:
        return self.name

    def word_set(self) -> list[str]:
        """The list's words, stripped, de-duplicated, in their first order."""
        seen: dict[str, None] = {}
        for line in self.words.splitlines():
            word = line.strip()
            if word:
                seen.setdefault(word, None)
        return list(seen)


class EmbeddingVector(TenantOwnedModel):
    """A text's embedding under one model, cached by the text's digest.

    Keyed by text, not by entry or chunk: editing an answer does not re-embed its unchanged
    questions, and a rebuilt index finds every vector it needs in one query.
    """

    model = models.CharField(_("model"), max_length=150)
    text_hash = models.CharField(_("text digest"), max_length=64)
    dimensions = models.PositiveSmallIntegerField(_("dimensions"))
    vector = models.BinaryField(_("vector"))  # float32, little-endian

    class Meta:
        verbose_name = _("embedding")
        verbose_name_plural = _("embeddings")
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "model", "text_hash"], name="embedding_unique_text"
            )
        ]
