"""FAQ spreadsheets in and out of the console, and bulk enable/disable."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knowledge.models import KnowledgeEntry
from knowledge.selectors import knowledge_entries_csv
from knowledge.services import knowledge_entries_import_csv
from tests.support import factories

IMPORT_URL = reverse("admin:knowledge_knowledgeentry_import_csv")
EXPORT_URL = reverse("admin:knowledge_knowledgeentry_export_csv")
CHANGELIST = reverse("admin:knowledge_knowledgeentry_changelist")


def _csv(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(
        [["id", "question", "alternate_questions", "answer", "tags", "enabled"], *rows]
    )
    return buffer.getvalue().encode("utf-8")


def test_import_creates_and_updates_entries(admin_client_a, tenant_a) -> None:
    existing = factories.KnowledgeEntryFactory(tenant=tenant_a, question="Old", answer="Old answer")
    data = _csv(
        [
            [
                "",
                "怎么退货？",
                "如何退货\n退货流程",
                "在“我的订单”中申请退货。",
                "returns, 退货",
                "yes",
            ],
            [
                "",
                "How do I pay?",
                "payment methods|pay by card",
                "Alipay, WeChat Pay or card.",
                "payment",
                "false",
            ],
            [str(existing.pk), "Old, reworded", "", "New answer", "", ""],
        ]
    )
    response = admin_client_a.post(IMPORT_URL, {"file": SimpleUploadedFile("faq.csv", data)})
    assert response.status_code == 302
    entries = {e.question: e for e in KnowledgeEntry.objects.filter(tenant=tenant_a)}
    assert set(entries) == {"怎么退货？", "How do I pay?", "Old, reworded"}
    assert entries["怎么退货？"].alternate_questions == ["如何退货", "退货流程"]
    assert entries["怎么退货？"].tags == ["returns", "退货"]
    assert entries["How do I pay?"].alternate_questions == ["payment methods", "pay by card"]
    assert entries["How do I pay?"].enabled is False
    assert entries["Old, reworded"].pk == existing.pk
    assert entries["Old, reworded"].answer == "New answer"


def test_a_bad_row_imports_nothing_and_says_which_row(admin_client_a, tenant_a) -> None:
    data = _csv(
        [["", "Fine question", "", "Fine answer", "", ""], ["", "No answer", "", "", "", ""]]
    )
    response = admin_client_a.post(IMPORT_URL, {"file": SimpleUploadedFile("faq.csv", data)})
    assert response.status_code == 200
    assert response.context["import_errors"] == ["Row 3: question and answer are required."]
    assert not KnowledgeEntry.objects.filter(tenant=tenant_a).exists()


def test_import_cannot_overwrite_another_tenants_entry(tenant_a, tenant_b) -> None:
    other = factories.KnowledgeEntryFactory(tenant=tenant_b, answer="Theirs")
    result = knowledge_entries_import_csv(
        tenant=tenant_a, data=_csv([[str(other.pk), "Mine now", "", "Hijacked", "", ""]])
    )
    assert result.errors == [f"Row 2: entry {other.pk} does not exist."]
    other.refresh_from_db()
    assert other.answer == "Theirs"


def test_import_reads_gb18030_and_reports_missing_columns(tenant_a) -> None:
    gbk = "question,answer\n发票怎么开？,下单时选择开具发票。\n".encode("gb18030")
    assert knowledge_entries_import_csv(tenant=tenant_a, data=gbk).created == 1
    assert KnowledgeEntry.objects.get(tenant=tenant_a).question == "发票怎么开？"
    result = knowledge_entries_import_csv(tenant=tenant_a, data=b"title,body\nx,y\n")
    assert result.errors == ["Missing columns: answer, question"]


def test_export_round_trips_and_defuses_formulas(admin_client_a, tenant_a, tenant_b) -> None:
    factories.KnowledgeEntryFactory(
        tenant=tenant_a,
        question='=HYPERLINK("http://evil")',
        alternate_questions=["a", "b"],
        answer="-1 is fine",
        tags=["x"],
    )
    factories.KnowledgeEntryFactory(tenant=tenant_b, question="Not exported")
    response = admin_client_a.get(EXPORT_URL)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = response.content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["question"] for row in rows] == ['\'=HYPERLINK("http://evil")']
    assert rows[0]["answer"] == "'-1 is fine"

    result = knowledge_entries_import_csv(tenant=tenant_a, data=response.content)
    assert (result.created, result.updated, result.errors) == (0, 1, [])
    entry = KnowledgeEntry.objects.get(tenant=tenant_a)
    assert entry.question == '=HYPERLINK("http://evil")'
    assert entry.answer == "-1 is fine"
    assert entry.alternate_questions == ["a", "b"]


def test_export_keeps_what_the_old_format_lost(tenant_a) -> None:
    entry = factories.KnowledgeEntryFactory(
        tenant=tenant_a,
        question="'=literal",
        alternate_questions=["A | B", " padded ", "C:\\new\\path"],
        answer="  indented answer",
        tags=["=SUM(A1)", "a,b", "c，d"],
    )
    exported = knowledge_entries_csv(entries=KnowledgeEntry.objects.filter(pk=entry.pk)).encode()
    KnowledgeEntry.objects.filter(pk=entry.pk).update(question="x", answer="y", tags=[])
    assert knowledge_entries_import_csv(tenant=tenant_a, data=exported).errors == []
    entry.refresh_from_db()
    assert entry.question == "'=literal"
    assert entry.alternate_questions == ["A | B", " padded ", "C:\\new\\path"]
    assert entry.answer == "  indented answer"
    assert entry.tags == ["=SUM(A1)", "a,b", "c，d"]
    row = next(csv.DictReader(io.StringIO(exported.decode("utf-8-sig"))))
    assert row["tags"].startswith("'=")  # still defused for spreadsheets


# What the database stores: no NUL (PostgreSQL refuses it), no lone surrogates.
_TEXT = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=30
)
_ENTRY = st.fixed_dictionaries(
    {
        "question": _TEXT,
        "alternate_questions": st.lists(_TEXT, max_size=4, unique=True),
        "answer": _TEXT,
        "tags": st.lists(_TEXT, max_size=4, unique=True),
        "enabled": st.booleans(),
    }
)
_FIELDS = ["question", "alternate_questions", "answer", "tags", "enabled"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entries=st.lists(_ENTRY, min_size=1, max_size=3))
def test_export_then_import_gives_identical_rows(tenant_a, entries: list[dict]) -> None:
    with transaction.atomic():
        for values in entries:
            factories.KnowledgeEntryFactory(tenant=tenant_a, **values)
        stored = KnowledgeEntry.objects.filter(tenant=tenant_a).order_by("id")
        before = list(stored.values_list("id", *_FIELDS))
        exported = knowledge_entries_csv(entries=stored).encode()
        stored.update(question="-", answer="-", alternate_questions=[], tags=[], enabled=False)

        result = knowledge_entries_import_csv(tenant=tenant_a, data=exported)

        assert result.errors == []
        assert (result.created, result.updated) == (0, len(entries))
        assert list(stored.values_list("id", *_FIELDS)) == before
        transaction.set_rollback(True)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            b"question,answer\n" + b"x" * (129 * 1024) + b",answer\n",
            "Line 2: a cell is longer than 128 KB.",
        ),
        (
            b'question,answer\n"unclosed,answer\nnext,row\n',
            "Line 2: the file is not valid CSV here; check that every quote is closed.",
        ),
        (
            b"question,answer\nnul\x00here,answer\n",
            "The file contains a NUL character; it is not a CSV text file.",
        ),
    ],
    ids=["field-over-128kb", "unbalanced-quote", "nul"],
)
def test_broken_csv_is_a_form_error(admin_client_a, tenant_a, data: bytes, error: str) -> None:
    response = admin_client_a.post(IMPORT_URL, {"file": SimpleUploadedFile("faq.csv", data)})
    assert response.status_code == 200
    assert response.context["import_errors"] == [error]
    assert not KnowledgeEntry.objects.filter(tenant=tenant_a).exists()


def test_bulk_disable_and_enable(admin_client_a, tenant_a, tenant_b) -> None:
    mine = factories.KnowledgeEntryFactory.create_batch(3, tenant=tenant_a)
    theirs = factories.KnowledgeEntryFactory(tenant=tenant_b)
    selected = [str(e.pk) for e in mine[:2]] + [str(theirs.pk)]
    admin_client_a.post(CHANGELIST, {"action": "disable_entries", "_selected_action": selected})
    assert list(
        KnowledgeEntry.objects.filter(tenant=tenant_a)
        .order_by("pk")
        .values_list("enabled", flat=True)
    ) == [False, False, True]
    theirs.refresh_from_db()
    assert theirs.enabled is True
    admin_client_a.post(CHANGELIST, {"action": "enable_entries", "_selected_action": selected})
    assert KnowledgeEntry.objects.filter(tenant=tenant_a, enabled=True).count() == 3


def test_search_and_filters(admin_client_a, tenant_a) -> None:
    factories.KnowledgeEntryFactory(tenant=tenant_a, question="运费多少", tags=["shipping"])
    factories.KnowledgeEntryFactory(
        tenant=tenant_a, question="How to pay", tags=["payment"], enabled=False
    )

    def listed(params):
        return [
            e.question for e in admin_client_a.get(CHANGELIST, params).context["cl"].result_list
        ]

    assert listed({"q": "运费"}) == ["运费多少"]
    assert listed({"tag": "payment"}) == ["How to pay"]
    assert listed({"enabled__exact": "1"}) == ["运费多少"]


def test_agents_cannot_import(agent_client_a) -> None:
    assert agent_client_a.get(IMPORT_URL).status_code == 403
