"""How long socket tests wait for what must come.

Channels' test communicator gives up after one second by default, which a busy machine (CI on
two burned cores) can exceed for a connect that does a few queries. A wait ends as soon as its
frame arrives, so a generous deadline costs nothing when all is well; only a test that checks
that nothing arrives uses a short one (``receive_nothing``).
"""

SOCKET_WAIT = 30.0
