"""Phase F: in-process micro-benchmarks of the answer path's CPU work, no server, no database.

- Moderation: ``WordFilter.scan`` of 200-character messages (Chinese and English) against a
  10,000-word list; ``moderate_with`` (scan plus personal-data masking) for reference.
- Retrieval: a ``TenantIndex`` built straight from records (BANKING77 phrasings) at several
  sizes; per query ``TenantIndex.faq_scores``, the FAQ decision that ``afaq_match`` makes and
  the passage ranking that ``aknowledge_search`` makes, once the index is in hand.

Prints one JSON object.
``python bench/load_micro.py [--sizes 1000,10000,100000] [--queries N] [--csv BANKING77.csv]``
"""

import argparse
import gc
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk_site.settings.base")

import django  # noqa: E402

django.setup()

from hdrh.histogram import HdrHistogram  # noqa: E402

from bench.banking77 import CSV_HELP, DEFAULT_CSV, banking77_split  # noqa: E402
from conversations.moderation import WordEntry, WordFilter, moderate_with  # noqa: E402
from knowledge.index import EntryRecord, TenantIndex  # noqa: E402
from knowledge.search import _candidates, _search  # noqa: E402
from llm.text import HAN  # noqa: E402
from tenants.models import Tenant  # noqa: E402

DEMO_DATA = ROOT / "devtools" / "demo_data.json"
MESSAGE_CHARS = 200
WORDS = 10_000
PASSAGES = 4  # as conversations.pipeline asks for


def timed(call: Callable[[Any], object], inputs: Sequence[Any], repeat: int) -> dict[str, float]:
    """Per-call times in microseconds (p50/p99 from an HdrHistogram of nanoseconds), and the
    mean of a tight loop, which carries no per-call timer overhead."""
    histogram = HdrHistogram(1, 10_000_000_000, 3)
    for item in inputs[: max(1, len(inputs) // 10)]:  # warm caches
        call(item)
    gc.collect()
    gc.disable()
    try:
        clock = time.perf_counter_ns
        for _ in range(repeat):
            for item in inputs:
                started = clock()
                call(item)
                histogram.record_value(max(1, clock() - started))
        started = clock()
        for _ in range(repeat):
            for item in inputs:
                call(item)
        mean_ns = (clock() - started) / (repeat * len(inputs))
    finally:
        gc.enable()
    return {
        "calls": int(histogram.get_total_count()),
        "mean_us": round(mean_ns / 1000, 3),
        "p50_us": histogram.get_value_at_percentile(50) / 1000,
        "p99_us": histogram.get_value_at_percentile(99) / 1000,
        "p999_us": histogram.get_value_at_percentile(99.9) / 1000,
        "max_us": histogram.get_max_value() / 1000,
    }


# --- Moderation -----------------------------------------------------------------------------


def word_list(rng: random.Random, chinese: str, english: list[str]) -> list[WordEntry]:
    """10,000 words like a real list: the demo's own, then half Chinese (2-4 characters drawn
    from the shop's own text, so the automaton walks many shared prefixes), half English (word
    pairs from BANKING77's vocabulary). Ordinary messages hit few of them, as in real chat."""
    demo = json.loads(DEMO_DATA.read_text(encoding="utf-8"))["sensitive_words"]
    entries = [WordEntry(word, action, "demo") for action, words in demo.items() for word in words]
    seen = {entry.word for entry in entries}
    characters = sorted(set(re.findall(f"[{HAN}]", chinese)))
    actions = ["review"] * 6 + ["mask"] * 3 + ["block"]
    while len(entries) < WORDS:
        if len(entries) % 2:
            word = "".join(rng.choices(characters, k=rng.choice((2, 3, 3, 4))))
        else:
            word = f"{rng.choice(english)} {rng.choice(english)}"
        if word in seen:
            continue
        seen.add(word)
        entries.append(WordEntry(word, rng.choice(actions), "bench"))
    return entries


def messages(text: str, rng: random.Random, count: int) -> list[str]:
    return [
        text[start : start + MESSAGE_CHARS]
        for start in (rng.randrange(len(text) - MESSAGE_CHARS) for _ in range(count))
    ]


def moderation_phase(rng: random.Random, repeat: int, csv: Path) -> dict[str, Any]:
    demo = json.loads(DEMO_DATA.read_text(encoding="utf-8"))
    chinese = "".join(
        f"{item['question']}{''.join(item.get('alternate_questions', []))}{item['answer']}"
        for item in demo["faq"]
    )
    _knowledge_base, queries = banking77_split(csv)
    english_text = " ".join(text for text, _intent in queries)
    vocabulary = sorted({w for w in english_text.lower().split() if w.isalpha() and len(w) > 3})
    started = time.perf_counter()
    word_filter = WordFilter(word_list(rng, chinese, vocabulary))
    build_ms = (time.perf_counter() - started) * 1000
    chinese_messages = messages(chinese * 2, rng, 500)
    english_messages = messages(english_text, rng, 500)
    matches = sum(len(word_filter.find(m)) for m in chinese_messages + english_messages) / 1000
    return {
        "words": len(word_filter),
        "message_chars": MESSAGE_CHARS,
        "build_ms": round(build_ms, 1),
        "matches_per_message": round(matches, 2),
        "scan_zh": timed(word_filter.scan, chinese_messages, repeat),
        "scan_en": timed(word_filter.scan, english_messages, repeat),
        "moderate_with_zh": timed(
            lambda m: moderate_with(word_filter, m), chinese_messages, repeat
        ),
    }


# --- Retrieval ------------------------------------------------------------------------------


def index_timings(index: TenantIndex, tenant: Tenant, sample: list[str]) -> dict[str, Any]:
    return {
        "faq_scores": timed(index.faq_scores, sample, 1),
        # afaq_match once ``registry.aget`` returned the index (no embeddings).
        "faq_match": timed(lambda q: _candidates(index, tenant, q, None, 1), sample, 1),
        # aknowledge_search once it has the index, with the pipeline's k.
        "knowledge_search": timed(lambda q: _search(index, q, None, PASSAGES), sample, 1),
    }


def retrieval_phase(
    rng: random.Random, sizes: list[int], query_count: int, csv: Path
) -> dict[str, Any]:
    knowledge_base, queries = banking77_split(csv)
    texts = [text for text, _intent in knowledge_base + queries]
    sample = [text for text, _intent in rng.sample(queries, min(query_count, len(queries)))]
    tenant = Tenant(pk=1, slug="bench", faq_threshold=0.8)  # unsaved: only its threshold is read
    results: dict[str, Any] = {}
    for size in sizes:
        # As bench/knowledge_latency.py: three phrasings and an answer per entry.
        entries = []
        for position in range(size):
            question = rng.choice(texts)
            entries.append(
                EntryRecord(
                    id=position + 1,
                    question=question,
                    answer=f"{rng.choice(texts)} {rng.choice(texts)}",
                    phrasings=(question, *rng.sample(texts, 2)),
                )
            )
        started = time.perf_counter()
        index = TenantIndex.build(tenant_id=1, version=1, entries=entries, chunks=[])
        results[str(size)] = {
            "entries": size,
            "build_seconds": round(time.perf_counter() - started, 2),
            **index_timings(index, tenant, sample),
        }
        del index, entries
        gc.collect()
    return {"queries": len(sample), "sizes": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=20, help="Passes over 1,000 messages.")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help=CSV_HELP)
    args = parser.parse_args()
    rng = random.Random(77)  # noqa: S311 - reproducible synthetic data
    result = {
        "moderation": moderation_phase(rng, args.repeat, args.csv),
        "retrieval": retrieval_phase(
            rng, [int(size) for size in args.sizes.split(",")], args.queries, args.csv
        ),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
