import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge.evaluation import EvaluationError, evaluate, read_kb, read_queries
from tenants.scoping import scope_entry


class Command(BaseCommand):
    help = (
        "Measure FAQ matching: load KB.csv (key,question,answer; rows sharing a key are one "
        "entry's phrasings) into a throwaway tenant and score QUERIES.csv (question,expected_key)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kb", required=True, type=Path, help="KB.csv")
        parser.add_argument("--queries", required=True, type=Path, help="QUERIES.csv")
        parser.add_argument(
            "--threshold",
            type=float,
            help="Direct-answer threshold (default: a new tenant's default); a sweep is shown too.",
        )
        parser.add_argument(
            "--embeddings",
            choices=["off", "local"],
            default="off",
            help="off: BM25 only (default); local: fuse dense retrieval with the local model.",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        threshold = options["threshold"]
        if threshold is not None and not 0 <= threshold <= 1:
            raise CommandError("--threshold must be between 0 and 1.")
        try:
            kb = read_kb(self._read(options["kb"]))
            queries = read_queries(self._read(options["queries"]))
            with scope_entry():  # evaluate() scopes to the throwaway tenant it makes
                result = evaluate(
                    kb=kb, queries=queries, threshold=threshold, embeddings=options["embeddings"]
                )
        except EvaluationError as exc:
            raise CommandError(str(exc)) from exc

        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), ensure_ascii=False))
            return
        entries = len({row.key for row in kb})
        self.stdout.write(f"Knowledge base: {entries} entries, {len(kb)} phrasings")
        self.stdout.write(f"Queries:        {result.queries}")
        self.stdout.write(f"Top-1 accuracy: {result.top1:.4f}")
        self.stdout.write(f"Top-3 accuracy: {result.top3:.4f}")
        self.stdout.write(f"Mean time:      {result.mean_query_ms:.3f} ms per query")
        self.stdout.write("Direct answers (confidence >= threshold):")
        self.stdout.write("  threshold  precision  coverage")
        for point in result.sweep if options["threshold"] is None else []:
            self._row(point.threshold, point.precision, point.coverage, "")
        self._row(
            result.direct.threshold, result.direct.precision, result.direct.coverage, "  <- used"
        )

    def _row(self, threshold: float, precision: float | None, coverage: float, mark: str) -> None:
        shown = "    —    " if precision is None else f"{precision:9.4f}"
        self.stdout.write(f"  {threshold:9.2f}  {shown}  {coverage:8.4f}{mark}")

    def _read(self, path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise CommandError(f"{path} is not UTF-8 text.") from exc
