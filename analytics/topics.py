"""Hot topics: what customers ask about, and how each subject fares (docs/analytics.md).

``topics_refresh`` clusters the questions (analytics/questions.py) of a period and of the
period of the same length before it together (analytics/clustering.py), so that both are
counted by the same clusters; it recognises earlier runs' topics in the new clusters, and
stores each topic's figures for the period (``TopicPeriod``) with its questions
(``TopicMember``). Admins rename, merge and hide topics; a later run keeps all three:

- a cluster is the topic whose ``signature`` (its most asked questions, kept from the run that
  last saw it) mostly falls into the cluster, or whose signature's centroid, placed in the new
  run's vector space, lies within ``MATCH_SIMILARITY`` of the cluster's centroid;
- a renamed topic keeps its ``custom_name``, a hidden one its ``hidden`` flag;
- a cluster recognised as a merged topic counts for the topic it was merged into.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from asgiref.sync import async_to_sync
from django.db import transaction
from django.utils.translation import gettext as _

from analytics.clustering import Clustering, Embed, QuestionSpace, questions_cluster
from analytics.models import Topic, TopicMember, TopicPeriod
from analytics.questions import Question, period_bounds, questions
from analytics.rollups import local_today
from conversations.models import Conversation
from knowledge.text import normalize
from llm.embeddings import tenant_embedder
from llm.gateway import ChatMessage, GatewayError, StreamDone, TextDelta, chat_stream
from llm.selectors import llm_providers_for_tenant
from tenants.models import Tenant
from tenants.scoping import tenant_scope

logger = logging.getLogger(__name__)

DEFAULT_DAYS = 7
SIGNATURE_SIZE = 30
SAMPLE_CONVERSATIONS = 5
# A stored topic is this run's cluster when this share of its signature lies in the cluster,
# or when the centroids are this similar.
MATCH_OVERLAP = 0.3
MATCH_SIMILARITY = 0.8
# LLM-written labels: for this many new topics a run (the largest), each within this time.
LABEL_TOPICS = 20
LABEL_TIMEOUT_SECONDS = 15.0
LABEL_MAX_CHARS = 60
# Dense vectors for at most this many distinct questions (an embedding request per batch);
# beyond, TF-IDF.
DENSE_MAX_QUESTIONS = 20_000


class TopicError(ValueError):
    """An admin's change that cannot be made (merging a topic into itself)."""


def default_period(tenant: Tenant) -> tuple[date, date]:
    """The tenant's last ``DEFAULT_DAYS`` local days, today included."""
    today = local_today(tenant)
    return today - timedelta(days=DEFAULT_DAYS - 1), today


def previous_period(since: date, until: date) -> tuple[date, date]:
    length = (until - since).days + 1
    return since - timedelta(days=length), since - timedelta(days=1)


# Vectors and matching ---------------------------------------------------------------------------


def question_embedder(tenant: Tenant, distinct: int) -> Embed | None:
    """The tenant's embedding model as a function of texts, when it has one that reads both
    languages and the run is small enough; None: TF-IDF."""
    if distinct > DENSE_MAX_QUESTIONS:
        return None
    embedder = tenant_embedder(tenant_id=tenant.pk)
    if embedder is None or not getattr(embedder, "multilingual", False):
        return None
    return embedder.embed


def cluster_questions(
    *, tenant: Tenant, texts: Sequence[str], background: Sequence[str] = ()
) -> Clustering:
    """Clusters ``texts`` with the tenant's embeddings, or TF-IDF (weighted with
    ``background`` too) when it has none or they fail."""
    embed = question_embedder(tenant, len(set(texts)))
    if embed is not None:
        try:
            return questions_cluster(texts, embed=embed)
        except GatewayError:
            logger.warning("embeddings failed for tenant %s; clustering with TF-IDF", tenant.pk)
    return questions_cluster(texts, background=background)


@dataclass(frozen=True)
class Group:
    """Questions found together in a run (a cluster, or one question alone): their normalised
    texts and their centroid in the run's vector space."""

    texts: frozenset[str]
    centroid: np.ndarray


def cluster_groups(clustering: Clustering) -> list[Group]:
    return [
        Group(frozenset(clustering.texts[m] for m in c.members), c.centroid)
        for c in clustering.clusters
    ]


def groups_match(
    groups: Sequence[Group], space: QuestionSpace, signatures: Sequence[Sequence[str]]
) -> list[int | None]:
    """For each group, the index in ``signatures`` of the stored topic or gap it is (or None):
    ``MATCH_OVERLAP`` of the signature among the group's questions, or the signature's
    centroid in this run's space within ``MATCH_SIMILARITY`` of the group's. Greedy on the
    best score first: a signature claims at most one group and a group one signature."""
    owner = {text: index for index, group in enumerate(groups) for text in group.texts}
    candidates: list[tuple[float, int, int]] = []
    centroids = np.array([g.centroid for g in groups])
    for stored, signature in enumerate(signatures):
        if not signature:
            continue
        shares: dict[int, int] = defaultdict(int)
        for text in signature:
            if (found := owner.get(text)) is not None:
                shares[found] += 1
        for index, shared in shares.items():
            if shared / len(signature) >= MATCH_OVERLAP:
                candidates.append((1.0 + shared / len(signature), stored, index))
        if len(centroids):
            centroid = space.centroid(list(signature))
            if centroid is not None and centroid.shape[0] == centroids.shape[1]:
                similarity = centroids @ centroid
                for close in np.flatnonzero(similarity >= MATCH_SIMILARITY).tolist():
                    candidates.append((float(similarity[close]), stored, close))
    matched: list[int | None] = [None] * len(groups)
    taken: set[int] = set()
    for _score, stored, index in sorted(candidates, reverse=True):
        if matched[index] is None and stored not in taken:
            matched[index] = stored
            taken.add(stored)
    return matched


def cluster_signature(clustering: Clustering, index: int) -> list[str]:
    """The cluster's most asked questions, nearest its centroid first among equals."""
    cluster = clustering.clusters[index]
    members = np.array(cluster.members)
    closeness = clustering.vectors[members] @ cluster.centroid
    order = np.lexsort((-closeness, -clustering.weights[members]))
    return [clustering.texts[members[i]] for i in order[:SIGNATURE_SIZE]]


# LLM labels -------------------------------------------------------------------------------------


async def _label_one(tenant_id: int, providers: Sequence, questions: Sequence[str]) -> str:
    prompt = _(
        "Name in at most six words the subject these customer questions share. Answer with "
        "the name only, in the language of the questions."
    )
    messages = [
        ChatMessage("system", prompt),
        ChatMessage("user", "\n".join(f"- {q}" for q in questions[:10])),
    ]
    text = ""
    async with contextlib.aclosing(
        chat_stream(tenant_id=tenant_id, providers=providers, messages=messages, max_tokens=30)
    ) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                text += event.text
            elif isinstance(event, StreamDone):
                break
    return " ".join(text.strip().strip("\"'“”「」").split())[:LABEL_MAX_CHARS]


async def _labels(tenant_id: int, providers: Sequence, groups: Sequence[Sequence[str]]) -> list:
    async def one(questions: Sequence[str]) -> str:
        try:
            return await asyncio.wait_for(
                _label_one(tenant_id, providers, questions), LABEL_TIMEOUT_SECONDS
            )
        except (GatewayError, TimeoutError):
            return ""

    return list(await asyncio.gather(*(one(g) for g in groups)))


def topic_labels(*, tenant: Tenant, groups: Sequence[Sequence[str]]) -> list[str]:
    """A short LLM-written name for each group of questions, through the gateway when the
    tenant has a provider; "" where there is none or it failed (the caller keeps the
    representative question)."""
    providers = llm_providers_for_tenant(tenant_id=tenant.pk)
    if not providers or not groups:
        return [""] * len(groups)
    return async_to_sync(_labels)(tenant.pk, providers, groups)


# The figures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    conversations: int
    ai_resolved: int
    handoffs: int
    csat_count: int
    csat_total: int


def conversation_figures(
    *, tenant: Tenant, conversation_ids: Iterable[int]
) -> dict[int, tuple[str, str, int | None]]:
    """(resolution kind, handoff reason, rating) of each of the tenant's ``conversation_ids``."""
    ids = sorted(set(conversation_ids))
    found: dict[int, tuple[str, str, int | None]] = {}
    for start in range(0, len(ids), 5000):
        rows = Conversation.objects.filter(tenant=tenant, pk__in=ids[start : start + 5000])
        for pk, resolution, handoff, rating in rows.values_list(
            "pk", "resolution_kind", "handoff_reason", "csat_rating"
        ):
            found[pk] = (resolution, handoff, rating)
    return found


def figures_of(
    conversation_ids: Iterable[int], known: dict[int, tuple[str, str, int | None]]
) -> Figures:
    rows = [known[c] for c in set(conversation_ids) if c in known]
    ratings = [r for _res, _h, r in rows if r is not None]
    return Figures(
        conversations=len(rows),
        ai_resolved=sum(1 for res, _h, _r in rows if res == Conversation.ResolutionKind.AI),
        handoffs=sum(1 for _res, h, _r in rows if h),
        csat_count=len(ratings),
        csat_total=sum(ratings),
    )


def _period_figures_set(
    period: TopicPeriod, members: Sequence[tuple[int, int]], known: dict
) -> None:
    """Fills ``period``'s figures from its (message id, conversation id) members."""
    figures = figures_of((c for _m, c in members), known)
    period.volume = len(members)
    period.conversations = figures.conversations
    period.ai_resolved = figures.ai_resolved
    period.handoffs = figures.handoffs
    period.csat_count = figures.csat_count
    period.csat_total = figures.csat_total
    newest_first = sorted({c for _m, c in members}, reverse=True)
    period.sample_conversation_ids = newest_first[:SAMPLE_CONVERSATIONS]


# The job ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicsRun:
    questions: int  # of the period (those of the period before are counted too, not here)
    clustered: int  # of the period's questions, those in a topic
    topics: int  # with a period row
    new_topics: int
    seconds: float


def _final(topic: Topic, by_id: dict[int, Topic]) -> Topic:
    seen = {topic.pk}
    while topic.merged_into_id is not None and topic.merged_into_id not in seen:
        seen.add(topic.merged_into_id)
        topic = by_id[topic.merged_into_id]
    return topic


def topics_refresh(
    *, tenant: Tenant, since: date, until: date, llm_labels: bool = True
) -> TopicsRun:
    """Clusters the questions of ``since``–``until`` (the tenant's local days, both included)
    and stores the period's topics; a run for the same period replaces the last one's
    figures. Idempotent."""
    started = time.perf_counter()
    before_since, before_until = previous_period(since, until)
    with tenant_scope(tenant.pk):
        start, end = period_bounds(tenant=tenant, since=since, until=until)
        before_start, _end = period_bounds(tenant=tenant, since=before_since, until=before_until)
        asked = questions(tenant=tenant, start=before_start, end=end)
        clustering = cluster_questions(tenant=tenant, texts=[q.text for q in asked])
        cluster_of = clustering.cluster_of()
        stored = list(Topic.objects.filter(tenant=tenant).order_by("pk"))
        matched = groups_match(
            cluster_groups(clustering), clustering.space, [t.signature for t in stored]
        )

        original: dict[str, str] = {}
        for question in asked:
            original.setdefault(normalize(question.text), question.text.strip())
        current: dict[int, list[Question]] = defaultdict(list)
        before: dict[int, int] = defaultdict(int)
        for question in asked:
            index = cluster_of.get(normalize(question.text))
            if index is None:
                continue
            if question.asked_at >= start:
                current[index].append(question)
            else:
                before[index] += 1

        new_indices = [i for i, m in enumerate(matched) if m is None and current[i]]
        labels = dict.fromkeys(new_indices, "")
        if llm_labels:
            top = new_indices[:LABEL_TOPICS]
            written = topic_labels(
                tenant=tenant,
                groups=[[original[t] for t in cluster_signature(clustering, i)] for i in top],
            )
            labels.update(zip(top, written, strict=True))
        known = conversation_figures(
            tenant=tenant,
            conversation_ids=(q.conversation_id for qs in current.values() for q in qs),
        )

        with transaction.atomic():
            by_id = {t.pk: t for t in stored}
            targets: dict[int, Topic] = {}  # cluster index -> the topic it counts for
            for index, group in enumerate(matched):
                if group is not None:
                    topic = stored[group]
                    topic.signature = cluster_signature(clustering, index)
                    topic.last_seen_until = until
                    topic.save(update_fields=["signature", "last_seen_until", "updated_at"])
                    targets[index] = _final(topic, by_id)
                elif current[index]:
                    representative = original[
                        clustering.texts[clustering.clusters[index].representative]
                    ]
                    targets[index] = Topic.objects.create(
                        tenant=tenant,
                        label=(labels.get(index) or representative)[:200],
                        signature=cluster_signature(clustering, index),
                        last_seen_until=until,
                    )
            TopicPeriod.objects.filter(tenant=tenant, since=since, until=until).delete()
            members: dict[int, list[tuple[int, int]]] = defaultdict(list)
            previous: dict[int, int] = defaultdict(int)
            for index, topic in targets.items():
                members[topic.pk].extend((q.message_id, q.conversation_id) for q in current[index])
                previous[topic.pk] += before[index]
            periods = []
            for topic_id, rows in members.items():
                if not rows:
                    continue
                period = TopicPeriod(
                    tenant=tenant,
                    topic_id=topic_id,
                    since=since,
                    until=until,
                    previous_volume=previous[topic_id],
                )
                _period_figures_set(period, rows, known)
                periods.append(period)
            TopicPeriod.objects.bulk_create(periods)
            TopicMember.objects.bulk_create(
                (
                    TopicMember(tenant=tenant, period=period, message_id=m, conversation_id=c)
                    for period in periods
                    for m, c in members[period.topic_id]
                ),
                batch_size=5000,
            )
    in_period = sum(1 for q in asked if q.asked_at >= start)
    return TopicsRun(
        questions=in_period,
        clustered=sum(len(v) for v in current.values()),
        topics=len(periods),
        new_topics=sum(1 for i in new_indices if i in targets),
        seconds=round(time.perf_counter() - started, 3),
    )


# Admins' changes --------------------------------------------------------------------------------


def topic_rename(*, topic: Topic, name: str) -> Topic:
    """Names the topic (an empty name gives it back the job's label)."""
    topic.custom_name = " ".join(name.split())[:200]
    topic.save(update_fields=["custom_name", "updated_at"])
    return topic


def topic_set_hidden(*, topic: Topic, hidden: bool) -> Topic:
    topic.hidden = hidden
    topic.save(update_fields=["hidden", "updated_at"])
    return topic


def topic_merge(*, topic: Topic, into: Topic) -> Topic:
    """Merges ``topic`` into ``into`` (of the same tenant): its questions, in every stored
    period, count for ``into`` from now on, and so do those of later runs. Returns ``into``."""
    if topic.tenant_id != into.tenant_id:
        raise TopicError(_("That topic belongs to another tenant."))
    with tenant_scope(topic.tenant_id), transaction.atomic():
        by_id = {t.pk: t for t in Topic.objects.select_for_update().filter(tenant=topic.tenant)}
        topic, into = by_id[topic.pk], _final(by_id[into.pk], by_id)
        if into.pk == topic.pk:
            raise TopicError(_("A topic cannot be merged into itself."))
        Topic.objects.filter(tenant=topic.tenant, merged_into=topic).update(merged_into=into)
        topic.merged_into = into
        topic.save(update_fields=["merged_into", "updated_at"])
        for period in TopicPeriod.objects.filter(topic=topic):
            target, _created = TopicPeriod.objects.get_or_create(
                tenant=topic.tenant, topic=into, since=period.since, until=period.until
            )
            TopicMember.objects.filter(period=period).update(period=target)
            target.previous_volume += period.previous_volume
            period.delete()
            rows = list(
                TopicMember.objects.filter(period=target).values_list(
                    "message_id", "conversation_id"
                )
            )
            known = conversation_figures(
                tenant=topic.tenant, conversation_ids=(c for _m, c in rows)
            )
            _period_figures_set(target, rows, known)
            target.save()
    return into


# The benchmark ----------------------------------------------------------------------------------

_BENCH_SUBJECTS = [
    ["how do i get a refund", "refund please", "refund not received", "refund status"],
    ["where is my package", "track my package", "package is late", "lost package"],
    ["忘记密码怎么办", "怎么重置密码", "密码找回", "登录密码忘记了"],
    ["怎么开发票", "发票怎么申请", "电子发票下载", "如何开具发票"],
    ["change my delivery address", "update shipping address", "wrong address on order"],
    ["优惠券怎么用", "优惠券无法使用", "领取优惠券"],
]
_BENCH_WORDS = ["iphone", "kettle", "sofa", "jacket", "耳机", "手机", "沙发", "外套", "today"]


def benchmark_questions(n: int, seed: int = 0) -> list[str]:
    """``n`` synthetic questions: paraphrases of a few subjects, most with a product and an
    order number added (so that most are distinct), and some noise."""
    rng = random.Random(seed)  # noqa: S311 (synthetic data, not a secret)
    phrasings = [p for subject in _BENCH_SUBJECTS for p in subject]
    out = []
    for _i in range(n):
        roll = rng.random()
        if roll < 0.05:
            out.append(f"question {rng.randrange(10**6)} about {rng.choice(_BENCH_WORDS)}")
        elif roll < 0.75:
            out.append(
                f"{rng.choice(phrasings)} {rng.choice(_BENCH_WORDS)} #{rng.randrange(10**5)}"
            )
        else:
            out.append(rng.choice(phrasings))
    return out


def topics_benchmark(n: int) -> dict[str, float | int]:
    """Times the clustering of ``n`` synthetic questions (TF-IDF, as a tenant without an
    embedding model): the part of ``topics_refresh`` that grows fastest with the data."""
    texts = benchmark_questions(n)
    started = time.perf_counter()
    clustering = questions_cluster(texts)
    seconds = time.perf_counter() - started
    return {
        "questions": n,
        "distinct": len(clustering.texts),
        "clusters": len(clustering.clusters),
        "clustered": int(sum(c.weight for c in clustering.clusters)),
        "seconds": round(seconds, 2),
    }
