# The demo shop on a live server, fresh browser pages, and state cleared around each test.
from tests.support.widget_page import _fresh_state, new_page, server, shop  # noqa: F401 - fixtures
