"""The knowledge base over the REST API: FAQ entries (one by one and in bulk), documents and
their chunks, and hit testing. Writes go through ``knowledge.services``, so an edit made here
is searchable by the next question in every process, as one made in the console."""

from pathlib import PurePosixPath
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from helpdesk_site.api import api_tenant, found, paginated_response, query_filters, validated
from helpdesk_site.api_view import IDEMPOTENCY_PARAMETER, ApiView
from knowledge import ingest, selectors, services
from knowledge.models import Chunk, Document, KnowledgeEntry
from knowledge.search import knowledge_hit_test
from tenants.models import ApiKey

Scope = ApiKey.Scope
TAGS = ["knowledge"]

QUESTION_MAX_CHARS = KnowledgeEntry._meta.get_field("question").max_length
EXTERNAL_KEY_MAX_CHARS = KnowledgeEntry._meta.get_field("external_key").max_length
ANSWER_MAX_CHARS = 20_000
PHRASINGS_MAX = 100
TAGS_MAX = 50
TAG_MAX_CHARS = 50
BULK_UPSERT_MAX_ITEMS = 1000
RETRIEVE_QUERY_MAX_CHARS = 500
EXCERPT_CHARS = 300
DOCUMENT_TEXT_FORMATS = [Document.Format.MARKDOWN, Document.Format.TEXT, Document.Format.HTML]


def _distinct(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# FAQ entries -------------------------------------------------------------------------------------


class FaqOutputSerializer(serializers.ModelSerializer):
    alternate_questions = serializers.ListField(child=serializers.CharField())
    tags = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = KnowledgeEntry
        ref_name = "KnowledgeFaq"
        fields = [
            "id",
            "question",
            "alternate_questions",
            "answer",
            "tags",
            "enabled",
            "external_key",
            "hit_count",
            "last_hit_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class _FaqFieldsSerializer(serializers.Serializer):
    question = serializers.CharField(max_length=QUESTION_MAX_CHARS)
    alternate_questions = serializers.ListField(
        child=serializers.CharField(max_length=QUESTION_MAX_CHARS),
        required=False,
        max_length=PHRASINGS_MAX,
        help_text="Other ways customers ask the same question.",
    )
    answer = serializers.CharField(max_length=ANSWER_MAX_CHARS)
    tags = serializers.ListField(
        child=serializers.CharField(max_length=TAG_MAX_CHARS), required=False, max_length=TAGS_MAX
    )
    enabled = serializers.BooleanField(required=False)

    def validate_alternate_questions(self, value: list[str]) -> list[str]:
        return _distinct(value)

    def validate_tags(self, value: list[str]) -> list[str]:
        return _distinct(value)


class FaqInputSerializer(_FaqFieldsSerializer):
    external_key = serializers.CharField(
        max_length=EXTERNAL_KEY_MAX_CHARS,
        required=False,
        allow_blank=True,
        help_text="Your own id for the entry, unique in your knowledge base (bulk upsert).",
    )

    class Meta:
        ref_name = "KnowledgeFaqInput"


class FaqFilterSerializer(serializers.Serializer):
    q = serializers.CharField(
        required=False, allow_blank=True, help_text="Text in the question, phrasings or answer."
    )
    tag = serializers.CharField(required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False, allow_null=True, default=None)
    external_key = serializers.CharField(required=False, allow_blank=True)

    class Meta:
        ref_name = "KnowledgeFaqFilter"


FAQ_EXAMPLE = OpenApiExample(
    "A FAQ entry",
    value={
        "question": "How do I get an invoice?",
        "alternate_questions": ["Can I have a VAT invoice?", "发票怎么开？"],
        "answer": "Open the order and click “Request invoice”.",
        "tags": ["billing"],
        "enabled": True,
        "external_key": "crm-faq-1042",
    },
    request_only=True,
)


class FaqListApi(ApiView):
    """FAQ entries: list (filtered, newest first) and create. A new entry answers the next
    customer question."""

    required_scope = {"GET": Scope.KNOWLEDGE_READ, "POST": Scope.KNOWLEDGE_WRITE}
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="knowledge_faqs_list",
        tags=TAGS,
        parameters=[FaqFilterSerializer],
        responses=FaqOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = query_filters(FaqFilterSerializer, request)
        entries = selectors.knowledge_entry_list(tenant=api_tenant(request), **filters)
        return paginated_response(
            request=request, view=self, queryset=entries, serializer_class=FaqOutputSerializer
        )

    @extend_schema(
        operation_id="knowledge_faqs_create",
        tags=TAGS,
        parameters=[IDEMPOTENCY_PARAMETER],
        request=FaqInputSerializer,
        responses={201: FaqOutputSerializer},
        examples=[FAQ_EXAMPLE],
    )
    def post(self, request: Request) -> Response:
        data = validated(FaqInputSerializer, request.data)
        entry = services.knowledge_entry_create(tenant=api_tenant(request), **data)
        return Response(FaqOutputSerializer(entry).data, status=status.HTTP_201_CREATED)


class FaqDetailApi(ApiView):
    """One FAQ entry: read, change (only the fields sent), delete. Changes are searchable by the
    next question."""

    required_scope = {
        "GET": Scope.KNOWLEDGE_READ,
        "PATCH": Scope.KNOWLEDGE_WRITE,
        "DELETE": Scope.KNOWLEDGE_WRITE,
    }
    parser_classes = [JSONParser]

    def _entry(self, request: Request, faq_id: int) -> KnowledgeEntry:
        entries = selectors.knowledge_entry_list(tenant=api_tenant(request))
        return found(entries.filter(pk=faq_id).first(), _("No such FAQ entry."))

    @extend_schema(operation_id="knowledge_faqs_retrieve", tags=TAGS, responses=FaqOutputSerializer)
    def get(self, request: Request, faq_id: int) -> Response:
        return Response(FaqOutputSerializer(self._entry(request, faq_id)).data)

    @extend_schema(
        operation_id="knowledge_faqs_update",
        tags=TAGS,
        request=FaqInputSerializer(partial=True),
        responses=FaqOutputSerializer,
        examples=[
            OpenApiExample("Disable an entry", value={"enabled": False}, request_only=True),
        ],
    )
    def patch(self, request: Request, faq_id: int) -> Response:
        entry = self._entry(request, faq_id)
        data = validated(FaqInputSerializer, request.data, partial=True)
        entry = services.knowledge_entry_update(entry=entry, changes=data)
        return Response(FaqOutputSerializer(entry).data)

    @extend_schema(operation_id="knowledge_faqs_destroy", tags=TAGS, responses={204: None})
    def delete(self, request: Request, faq_id: int) -> Response:
        services.knowledge_entry_delete(entry=self._entry(request, faq_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class FaqUpsertItemSerializer(_FaqFieldsSerializer):
    external_key = serializers.CharField(max_length=EXTERNAL_KEY_MAX_CHARS)

    class Meta:
        ref_name = "KnowledgeFaqUpsertItem"


class FaqBulkUpsertInputSerializer(serializers.Serializer):
    items = serializers.ListField(
        child=FaqUpsertItemSerializer(), min_length=1, max_length=BULK_UPSERT_MAX_ITEMS
    )

    class Meta:
        ref_name = "KnowledgeFaqBulkUpsertInput"

    def validate_items(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: set[str] = set()
        errors: list[dict[str, list[str]]] = []
        for item in items:
            key = item["external_key"]
            errors.append(
                {"external_key": [_("This external key is already in the batch.")]}
                if key in seen
                else {}
            )
            seen.add(key)
        if any(errors):
            raise serializers.ValidationError(errors)
        return items


class FaqUpsertedSerializer(serializers.Serializer):
    external_key = serializers.CharField()
    id = serializers.IntegerField()
    result = serializers.ChoiceField(choices=[r.value for r in services.UpsertResult])

    class Meta:
        ref_name = "KnowledgeFaqUpserted"


class FaqBulkUpsertOutputSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    items = FaqUpsertedSerializer(many=True)

    class Meta:
        ref_name = "KnowledgeFaqBulkUpsertOutput"


class FaqBulkUpsertApi(ApiView):
    """Creates or updates up to 1000 FAQ entries by ``external_key``, all or nothing: one
    invalid item refuses the batch (``error.fields`` names ``items.<n>.<field>``) and nothing
    is written. An item's missing optional fields keep the stored entry's values."""

    required_scope = Scope.KNOWLEDGE_WRITE
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="knowledge_faqs_bulk_upsert",
        tags=TAGS,
        parameters=[IDEMPOTENCY_PARAMETER],
        request=FaqBulkUpsertInputSerializer,
        responses=FaqBulkUpsertOutputSerializer,
        examples=[
            OpenApiExample(
                "Two entries",
                value={
                    "items": [
                        {
                            "external_key": "crm-faq-1042",
                            "question": "How do I get an invoice?",
                            "answer": "Open the order and click “Request invoice”.",
                        },
                        {
                            "external_key": "crm-faq-1043",
                            "question": "How long is delivery?",
                            "answer": "Three working days.",
                            "tags": ["shipping"],
                        },
                    ]
                },
                request_only=True,
            ),
            OpenApiExample(
                "Result",
                value={
                    "created": 1,
                    "updated": 1,
                    "unchanged": 0,
                    "items": [
                        {"external_key": "crm-faq-1042", "id": 17, "result": "updated"},
                        {"external_key": "crm-faq-1043", "id": 18, "result": "created"},
                    ],
                },
                response_only=True,
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        data = validated(FaqBulkUpsertInputSerializer, request.data)
        upserted = services.knowledge_entries_upsert(
            tenant=api_tenant(request),
            rows=[services.EntryUpsert(**item) for item in data["items"]],
        )
        counts = {result.value: 0 for result in services.UpsertResult}
        for row in upserted:
            counts[row.result.value] += 1
        body = {**counts, "items": upserted}
        return Response(FaqBulkUpsertOutputSerializer(body).data)


# Documents ---------------------------------------------------------------------------------------


class DocumentOutputSerializer(serializers.ModelSerializer):
    file_name = serializers.SerializerMethodField(
        help_text="The uploaded file's name; null for a document from text."
    )
    chunk_count = serializers.IntegerField(source="chunk_total", read_only=True)

    class Meta:
        model = Document
        ref_name = "KnowledgeDocument"
        fields = [
            "id",
            "title",
            "format",
            "status",
            "progress",
            "error",
            "enabled",
            "file_name",
            "chunk_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_file_name(self, document: Document) -> str | None:
        name = document.source_file.name
        return PurePosixPath(name).name if name else None


class DocumentFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Document.Status.choices, required=False)

    class Meta:
        ref_name = "KnowledgeDocumentFilter"


class DocumentTextInputSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200)
    format = serializers.ChoiceField(
        choices=DOCUMENT_TEXT_FORMATS, default=Document.Format.MARKDOWN
    )
    content = serializers.CharField(help_text="The document's text, at most 20 MB.")

    class Meta:
        ref_name = "KnowledgeDocumentTextInput"


class DocumentUploadInputSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="A .pdf, .md, .markdown, .txt, .html or .htm file, at most 20 MB."
    )
    title = serializers.CharField(
        max_length=200, required=False, help_text="Defaults to the file name."
    )

    class Meta:
        ref_name = "KnowledgeDocumentUploadInput"

    def validate_file(self, file: UploadedFile) -> UploadedFile:
        if (file.size or 0) > services.MAX_DOCUMENT_BYTES:
            raise serializers.ValidationError(_("The file is larger than 20 MB."))
        format = ingest.format_for_filename(file.name or "")
        if format is None:
            raise serializers.ValidationError(
                _("Upload a PDF, Markdown (.md), text (.txt) or HTML (.html) file.")
            )
        if format == Document.Format.PDF:
            head = file.read(5)
            file.seek(0)
            if head != b"%PDF-":
                raise serializers.ValidationError(_("This file is not a PDF."))
        return file


class DocumentUpdateInputSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200, required=False)
    enabled = serializers.BooleanField(required=False)

    class Meta:
        ref_name = "KnowledgeDocumentUpdateInput"


def _document(request: Request, document_id: int) -> Document:
    documents = selectors.document_list(tenant=api_tenant(request))
    return found(documents.filter(pk=document_id).first(), _("No such document."))


class DocumentListApi(ApiView):
    """Documents: list and add. A document is added from text (JSON) or a file (multipart) and
    processed in the background: it is answered 202 while pending; poll it until ``status`` is
    ``ready`` (``progress`` in percent) or ``failed`` (``error`` says why)."""

    required_scope = {"GET": Scope.KNOWLEDGE_READ, "POST": Scope.KNOWLEDGE_WRITE}
    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(
        operation_id="knowledge_documents_list",
        tags=TAGS,
        parameters=[DocumentFilterSerializer],
        responses=DocumentOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = query_filters(DocumentFilterSerializer, request)
        documents = selectors.document_list(tenant=api_tenant(request), **filters)
        return paginated_response(
            request=request,
            view=self,
            queryset=documents,
            serializer_class=DocumentOutputSerializer,
        )

    @extend_schema(
        operation_id="knowledge_documents_create",
        tags=TAGS,
        parameters=[IDEMPOTENCY_PARAMETER],
        request={
            "application/json": DocumentTextInputSerializer,
            "multipart/form-data": DocumentUploadInputSerializer,
        },
        responses={202: DocumentOutputSerializer},
        examples=[
            OpenApiExample(
                "From text",
                value={
                    "title": "Returns policy",
                    "format": "markdown",
                    "content": "# Returns\n\nReturn any item within 30 days.",
                },
                request_only=True,
                media_type="application/json",
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        tenant = api_tenant(request)
        if request.content_type.startswith("multipart/"):
            upload = validated(DocumentUploadInputSerializer, request.data)
            file = upload["file"]
            document = services.document_create(
                tenant=tenant,
                title=upload.get("title") or PurePosixPath(file.name).stem[:200],
                format=ingest.format_for_filename(file.name) or "",
                uploaded_file=file,
            )
        else:
            text = validated(DocumentTextInputSerializer, request.data)
            document = services.document_create(tenant=tenant, **text)
        # Small documents may be processed already (Celery eager): show where it stands now.
        document = _document(request, document.pk)
        return Response(DocumentOutputSerializer(document).data, status=status.HTTP_202_ACCEPTED)


class DocumentDetailApi(ApiView):
    """One document: read, rename or enable/disable, delete (with its chunks, out of search at
    the next question)."""

    required_scope = {
        "GET": Scope.KNOWLEDGE_READ,
        "PATCH": Scope.KNOWLEDGE_WRITE,
        "DELETE": Scope.KNOWLEDGE_WRITE,
    }
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="knowledge_documents_retrieve", tags=TAGS, responses=DocumentOutputSerializer
    )
    def get(self, request: Request, document_id: int) -> Response:
        return Response(DocumentOutputSerializer(_document(request, document_id)).data)

    @extend_schema(
        operation_id="knowledge_documents_update",
        tags=TAGS,
        request=DocumentUpdateInputSerializer,
        responses=DocumentOutputSerializer,
    )
    def patch(self, request: Request, document_id: int) -> Response:
        document = _document(request, document_id)
        data = validated(DocumentUpdateInputSerializer, request.data)
        services.document_update(
            document=document,
            title=data.get("title", document.title),
            format=document.format,
            content=document.content,
            enabled=data.get("enabled", document.enabled),
        )
        return Response(DocumentOutputSerializer(_document(request, document_id)).data)

    @extend_schema(operation_id="knowledge_documents_destroy", tags=TAGS, responses={204: None})
    def delete(self, request: Request, document_id: int) -> Response:
        services.document_delete(document=_document(request, document_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# Chunks ------------------------------------------------------------------------------------------


class ChunkOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Chunk
        ref_name = "KnowledgeChunk"
        fields = ["id", "document_id", "ordinal", "heading", "content", "created_at", "updated_at"]
        read_only_fields = fields


class ChunkUpdateInputSerializer(serializers.Serializer):
    heading = serializers.CharField(max_length=300, required=False, allow_blank=True)
    content = serializers.CharField(
        max_length=services.CHUNK_CONTENT_MAX_CHARS, required=False, trim_whitespace=True
    )

    class Meta:
        ref_name = "KnowledgeChunkUpdateInput"


class ChunkListApi(ApiView):
    """A document's chunks (the passages retrieval works on), in document order by default."""

    required_scope = Scope.KNOWLEDGE_READ
    default_order = "asc"  # chunks written together get ids in their document order

    @extend_schema(
        operation_id="knowledge_chunks_list",
        tags=TAGS,
        responses=ChunkOutputSerializer(many=True),
    )
    def get(self, request: Request, document_id: int) -> Response:
        chunks = selectors.chunk_list(document=_document(request, document_id))
        return paginated_response(
            request=request, view=self, queryset=chunks, serializer_class=ChunkOutputSerializer
        )


class ChunkDetailApi(ApiView):
    """One chunk: read, or edit its heading and text (searchable by the next question; processing
    the document again replaces its chunks, edits included)."""

    required_scope = {"GET": Scope.KNOWLEDGE_READ, "PATCH": Scope.KNOWLEDGE_WRITE}
    parser_classes = [JSONParser]

    def _chunk(self, request: Request, document_id: int, chunk_id: int) -> Chunk:
        chunks = selectors.chunk_list(document=_document(request, document_id))
        return found(chunks.filter(pk=chunk_id).first(), _("No such chunk."))

    @extend_schema(
        operation_id="knowledge_chunks_retrieve", tags=TAGS, responses=ChunkOutputSerializer
    )
    def get(self, request: Request, document_id: int, chunk_id: int) -> Response:
        return Response(ChunkOutputSerializer(self._chunk(request, document_id, chunk_id)).data)

    @extend_schema(
        operation_id="knowledge_chunks_update",
        tags=TAGS,
        request=ChunkUpdateInputSerializer,
        responses=ChunkOutputSerializer,
    )
    def patch(self, request: Request, document_id: int, chunk_id: int) -> Response:
        chunk = self._chunk(request, document_id, chunk_id)
        data = validated(ChunkUpdateInputSerializer, request.data)
        chunk = services.chunk_update(
            chunk=chunk,
            heading=data.get("heading", chunk.heading),
            content=data.get("content", chunk.content),
        )
        return Response(ChunkOutputSerializer(chunk).data)


# Hit testing -------------------------------------------------------------------------------------


class RetrieveInputSerializer(serializers.Serializer):
    query = serializers.CharField(max_length=RETRIEVE_QUERY_MAX_CHARS)
    k = serializers.IntegerField(
        min_value=1, max_value=20, default=5, help_text="How many hits to return."
    )

    class Meta:
        ref_name = "KnowledgeRetrieveInput"


class FaqDecisionSerializer(serializers.Serializer):
    entry_id = serializers.IntegerField(
        allow_null=True, help_text="The best-matching FAQ entry; null when none shares a word."
    )
    question = serializers.CharField(allow_null=True)
    matched_phrasing = serializers.CharField(allow_null=True)
    confidence = serializers.FloatField(help_text="That the entry is the right one, 0–1.")
    answers_directly = serializers.BooleanField(
        help_text="The confidence reaches the threshold: the entry is answered without the LLM."
    )
    threshold = serializers.FloatField(help_text="The tenant's FAQ threshold.")

    class Meta:
        ref_name = "KnowledgeFaqDecision"


class FaqCandidateSerializer(serializers.Serializer):
    entry_id = serializers.IntegerField()
    question = serializers.CharField()
    matched_phrasing = serializers.CharField()
    confidence = serializers.FloatField()
    score = serializers.FloatField()

    class Meta:
        ref_name = "KnowledgeFaqCandidate"


class RetrieveHitSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The FAQ entry's or the chunk's id.")
    kind = serializers.ChoiceField(choices=["faq", "chunk"])
    score = serializers.FloatField(help_text="Fused rank score; comparable within one answer.")
    relevance = serializers.FloatField(help_text="Share of the question the hit speaks to, 0–1.")
    title = serializers.CharField(help_text="The FAQ question, or the document title and heading.")
    excerpt = serializers.CharField()
    document_id = serializers.IntegerField(allow_null=True)

    class Meta:
        ref_name = "KnowledgeRetrieveHit"


class RetrieveOutputSerializer(serializers.Serializer):
    faq = FaqDecisionSerializer()
    faq_candidates = FaqCandidateSerializer(many=True)
    hits = RetrieveHitSerializer(many=True)

    class Meta:
        ref_name = "KnowledgeRetrieveOutput"


class RetrieveApi(ApiView):
    """Hit testing, as on the console's page: what the knowledge engine does with a question
    (the FAQ decision) and the entries and passages an LLM answer would draw on. Nothing is
    recorded."""

    required_scope = Scope.KNOWLEDGE_READ
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="knowledge_retrieve",
        tags=TAGS,
        parameters=[IDEMPOTENCY_PARAMETER],
        request=RetrieveInputSerializer,
        responses=RetrieveOutputSerializer,
        examples=[
            OpenApiExample(
                "A question", value={"query": "Can I get a VAT invoice?", "k": 5}, request_only=True
            )
        ],
    )
    def post(self, request: Request) -> Response:
        data = validated(RetrieveInputSerializer, request.data)
        tenant = api_tenant(request)
        tested = knowledge_hit_test(tenant=tenant, query=data["query"], k=data["k"])
        best = tested.best
        body = {
            "faq": {
                "entry_id": best.entry_id if best else None,
                "question": best.question if best else None,
                "matched_phrasing": best.matched_phrasing if best else None,
                "confidence": best.confidence if best else 0.0,
                "answers_directly": tested.direct is not None,
                "threshold": tenant.faq_threshold,
            },
            "faq_candidates": [
                {
                    "entry_id": match.entry_id,
                    "question": match.question,
                    "matched_phrasing": match.matched_phrasing,
                    "confidence": match.confidence,
                    "score": match.score,
                }
                for match in tested.candidates
            ],
            "hits": [
                {
                    "id": hit.id,
                    "kind": str(hit.kind),
                    "score": hit.score,
                    "relevance": hit.relevance,
                    "title": hit.title,
                    "excerpt": Truncator(hit.text).chars(EXCERPT_CHARS),
                    "document_id": hit.document_id,
                }
                for hit in tested.hits
            ],
        }
        return Response(RetrieveOutputSerializer(body).data)
