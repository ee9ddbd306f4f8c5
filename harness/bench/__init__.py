"""Benchmarks: the timed fast path (:mod:`.fastpath`), peak memory (:mod:`.memory`), machine facts (:mod:`.machine`)."""
