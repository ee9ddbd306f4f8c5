"""The ``netharness`` commands: the only harness modules that import ``reports`` or ``backends``."""
