"""The relevance floor: off-topic questions get no passage, answerable ones keep theirs."""

import numpy as np
from django.conf import settings

from bench.relevance_floor import DEFAULT_CSV, measure
from knowledge.index import ChunkRecord, EntryRecord, TenantIndex


def test_relevance_is_the_share_of_the_question_a_passage_speaks_to() -> None:
    index = TenantIndex.build(
        tenant_id=1,
        version=1,
        entries=[
            EntryRecord(1, "How do I change my address?", "Under My Account.", ("change address",))
        ],
        chunks=[ChunkRecord(1, 1, "Warranty", "Exclusions", "Water damage and drops.")],
    )
    assert index.content_relevance("water damage", "Water damage and drops.") == 1.0
    weather = index.content_relevance("What's the weather like in Paris?", "Water damage.")
    assert weather == 0.0
    partly = index.content_relevance("water damage in Paris", "Water damage and drops.")
    assert 0.3 < partly < 0.9
    assert index.content_relevance("the and of", "anything") == 0.0  # only stopwords


def test_the_default_floor_separates_clinc150_questions() -> None:
    """On the CLINC150 subset in the repository (bench/relevance_floor.py explains the set-up),
    the shipped floor keeps most answerable questions and declines most out-of-scope ones."""
    answerable, _off_topic, out_of_scope = (np.array(v) for v in measure(DEFAULT_CSV, seeds=1))
    floor = settings.KNOWLEDGE_RELEVANCE_FLOOR
    assert (answerable >= floor).mean() >= 0.85
    assert (out_of_scope >= floor).mean() <= 0.15
