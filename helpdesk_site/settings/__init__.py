"""Settings package: ``base`` (development and the demo), ``production`` and ``test``."""
