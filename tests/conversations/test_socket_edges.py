"""What the sockets do at their edges: a failure of the server's own is not blamed on the
client's frame, and the consumers reach the database only through async twins."""

import ast
import logging
from pathlib import Path

import pytest
from channels.db import database_sync_to_async

from conversations import agent_consumer, agents, consumers, pipeline
from tests.support.console import Console, member

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_failing_service_is_an_internal_error_not_a_bad_frame(
    shop,
    monkeypatch,
    caplog,
) -> None:
    async def broken(**kwargs: object) -> None:
        raise KeyError("a bug in the service")

    monkeypatch.setattr(agents, "aconversation_resolve", broken)
    li = await database_sync_to_async(member)(shop, "li")
    console = Console(li)
    try:
        await console.open()
        with caplog.at_level(logging.ERROR, logger="conversations.agent_consumer"):
            await console.send({"type": "resolve", "conversation_id": 1})
            error = await console.receive("error")
        assert (error["code"], error["text"]) == ("internal", "Something went wrong on our side.")
        assert any(record.exc_info for record in caplog.records)  # logged with its traceback
        await console.send({"type": "ping"})  # the socket lives on
        assert (await console.receive("pong"))["type"] == "pong"
    finally:
        await console.close()


@pytest.mark.parametrize("module", [consumers, agent_consumer], ids=lambda m: m.__name__)
def test_consumers_reach_the_database_only_through_async_twins(module) -> None:
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    runtime_imports = [
        node
        for node in tree.body  # imports under `if TYPE_CHECKING:` are not at the top level
        if isinstance(node, ast.ImportFrom)
    ]
    assert not [node.module for node in runtime_imports if node.module.endswith(".models")]
    assert not [node.module for node in runtime_imports if node.module == "channels.db"]
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not attributes & {"objects", "aexists", "aget", "afirst", "acount", "asave"}


def test_the_answer_pipeline_reaches_the_database_only_through_async_twins() -> None:
    tree = ast.parse(Path(pipeline.__file__).read_text(encoding="utf-8"))
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    # (``registry.aget`` is the knowledge index registry's, not the ORM's.)
    assert not attributes & {"objects", "aexists", "afirst", "acount", "asave", "acreate"}
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "channels.db" not in imported
