"""`manage.py kb_eval`: accuracy and direct-answer quality on a labelled set."""

import csv
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from knowledge.models import KnowledgeEntry
from tenants.models import Tenant

pytestmark = pytest.mark.django_db


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "kb.csv",
        ["key", "question", "answer"],
        [
            ["refund", "When will I get my refund?", "In 5–7 days."],
            ["refund", "how long does a refund take", ""],
            ["password", "How do I reset my password?", "Use “Forgot password”."],
            ["password", "I forgot my password", ""],
            ["invoice", "发票怎么开？", "在订单详情页申请。"],
            ["invoice", "可以开增值税发票吗", ""],
        ],
    )


@pytest.fixture
def queries(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "queries.csv",
        ["question", "expected_key"],
        [
            ["how long does a refund take", "refund"],  # exact phrasing
            ["I forgot my password", "password"],  # exact phrasing
            ["发票怎么开", "invoice"],  # exact after normalisation
            ["password for my refund account forgot", "refund"],  # lands on password: a miss
        ],
    )


def test_json_output(kb: Path, queries: Path, capsys) -> None:
    call_command("kb_eval", "--kb", str(kb), "--queries", str(queries), "--json")
    result = json.loads(capsys.readouterr().out)
    assert result["queries"] == 4
    assert result["top1"] == 0.75
    assert result["top3"] == 1.0
    assert result["threshold"] == 0.8
    # The three exact phrasings are answered directly (confidence 1.0) and right; the vague
    # fourth question is not answered directly.
    assert result["direct_coverage"] == 0.75
    assert result["direct_precision"] == 1.0
    assert {"threshold", "direct_precision", "direct_coverage"} <= set(result["sweep"][0])
    # The throwaway tenant leaves nothing behind.
    assert not Tenant.objects.filter(slug__startswith="kb-eval").exists()
    assert not KnowledgeEntry.objects.exists()


def test_table_output_with_a_threshold(kb: Path, queries: Path, capsys) -> None:
    call_command("kb_eval", "--kb", str(kb), "--queries", str(queries), "--threshold", "0.99")
    out = capsys.readouterr().out
    assert "Top-1 accuracy: 0.7500" in out
    assert "Top-3 accuracy: 1.0000" in out
    assert "0.99" in out and "<- used" in out


def test_clear_errors(kb: Path, tmp_path: Path) -> None:
    bad_columns = _write(tmp_path / "q1.csv", ["text", "label"], [["a", "b"]])
    with pytest.raises(CommandError, match="missing columns question, expected_key"):
        call_command("kb_eval", "--kb", str(kb), "--queries", str(bad_columns))
    unknown = _write(tmp_path / "q2.csv", ["question", "expected_key"], [["hi", "nope"]])
    with pytest.raises(CommandError, match="lacks: nope"):
        call_command("kb_eval", "--kb", str(kb), "--queries", str(unknown))
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("kb_eval", "--kb", str(tmp_path / "missing.csv"), "--queries", str(unknown))
    with pytest.raises(CommandError, match="between 0 and 1"):
        call_command("kb_eval", "--kb", str(kb), "--queries", str(unknown), "--threshold", "2")
