# The shop of the agent console and handoff tests, for the modules that do not set up their own.
from tests.support.console import shop  # noqa: F401 - fixture
