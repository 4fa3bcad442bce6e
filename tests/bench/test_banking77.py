"""The BANKING77 data the benchmark and its smoke test read ships inside the repository."""

from pathlib import Path

from bench.banking77 import DEFAULT_CSV, banking77_split

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_data_is_the_licensed_subset_in_the_repository() -> None:
    assert DEFAULT_CSV.resolve().is_relative_to(ROOT)
    assert DEFAULT_CSV.is_file()
    assert "Creative Commons Attribution 4.0" in (DEFAULT_CSV.parent / "LICENSE").read_text()


def test_the_subset_splits_into_ten_shots_and_ten_queries_per_intent() -> None:
    knowledge_base, queries = banking77_split(DEFAULT_CSV)

    assert len({intent for _text, intent in knowledge_base}) == 77
    assert len(knowledge_base) == len(queries) == 770
    assert {intent for _text, intent in queries} == {intent for _text, intent in knowledge_base}
