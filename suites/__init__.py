"""The conformance suite, shipped as ``netharness_suites``: run with ``netharness run`` or pytest."""
