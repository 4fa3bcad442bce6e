"""What the tests share: factories, fixtures served as pytest plugins (the mock LLM, the live
ASGI server, the browser, the services), socket clients and data builders.

Test modules import from here and never from one another.
"""
