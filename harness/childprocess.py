"""What the supervisor and the pytest children it runs agree on.

The supervisor (:mod:`harness.running.supervisor`, the parent process) and the pytest plugin
(:mod:`harness.pytest_plugin`, in each child) import this module and not each other: the
environment variable that marks a supervised child, the options that name the tests a
resumed child skips, the crash budget's incidents so far and where the child lists the
tests it collected, and how both turn SIGINT and SIGTERM into one clean stop.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

SUPERVISED_ENV = "NETHARNESS_SUPERVISED"
"""Set by :mod:`harness.running.supervisor` in the pytest processes it runs and resumes."""
SKIP_FROM_OPTION = "--netharness-skip-from"
"""The pytest option naming a file of test ids a resumed child deselects (they already finished)."""
INCIDENTS_OPTION = "--netharness-incidents"
"""The pytest option naming a file of the run's crashes and timeouts so far (:mod:`harness.budget`)."""
COLLECTED_OPTION = "--netharness-collected"
"""The pytest option naming a file the child lists its backends' collected tests in, one JSON line each."""
RECORD_KEY_FD_ENV = "NETHARNESS_RECORD_KEY_FD"
"""The number of an inherited pipe the child reads the run's record key from, once, before any
backend is imported (:func:`take_record_key`); the supervisor keeps the key and rejects every
record in the results file that is not sealed with it."""


def take_record_key() -> bytes | None:
    """Read the key the supervisor handed this process, and close the pipe it came through.

    None when no key was handed over (not a supervised child, or an xdist worker, which
    inherits the variable but not the pipe). Called before the plugin manager imports any
    backend: a backend imported later finds neither the variable nor an open pipe.
    """
    fd_text = os.environ.pop(RECORD_KEY_FD_ENV, "")
    if not fd_text.isdigit():
        return None
    try:
        with os.fdopen(int(fd_text), "rb") as pipe:
            key = pipe.read(RECORD_KEY_BYTES + 1)
    except OSError:
        return None
    return key if len(key) == RECORD_KEY_BYTES else None


RECORD_KEY_BYTES = 32


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached the supervisor (a KeyboardInterrupt, so it ends what Ctrl-C ends)."""


class RaiseOnce:
    """A signal handler that raises :class:`Interrupted` for the first signal and ignores the ones after it.

    One stop request often arrives more than once: ``timeout``, and many CI runners, signal
    the process and then its whole process group, and an impatient user presses Ctrl-C
    twice. The first starts the stop (the child is stopped, what finished is written, the
    report says PARTIAL); a second must not break off that very work.
    """

    def __init__(self) -> None:
        self.received = ""
        """The first signal's name, once one came."""

    def __call__(self, signum: int, frame: Any) -> None:
        if self.received:
            return
        self.received = signal.Signals(signum).name
        # Ignored from here on, by the OS: also while Python shuts down, which would reset
        # a Python handler to the default (and a late SIGTERM would end the process).
        for other in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(other) is self:
                signal.signal(other, signal.SIG_IGN)
        raise Interrupted(self.received)


def honour_stop_requests() -> None:
    """In a supervised child, let SIGINT and SIGTERM stop pytest as Ctrl-C does, once.

    The supervisor stops a child with SIGINT (:func:`_stop`), so that it writes what finished.
    A shell without job control starts a background job (``netharness run ... &`` in a
    script, many CI runners) with SIGINT ignored, and Python leaves an ignored SIGINT
    ignored: the child would run on until the grace period ran out and it was killed, and
    its end record would be lost. A SIGTERM sent to the whole process group (``timeout``)
    reaches the child too, and would end it at once, without that record. So both raise
    :class:`Interrupted` (a KeyboardInterrupt, which pytest ends cleanly on) for the first
    signal, and the supervisor's own SIGINT that follows is ignored (:class:`RaiseOnce`).
    Called by the pytest plugin at configure time.
    """
    if os.environ.get(SUPERVISED_ENV) != "1" or threading.current_thread() is not threading.main_thread():
        return
    handler = RaiseOnce()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def ignore_stop_requests() -> None:
    """In a supervised child whose session has ended (its end record is written): ignore SIGINT and SIGTERM.

    Nothing is left to save, and a stop request raised now would land wherever the
    interpreter is tearing down (a library's garbage-collection callback, say) as a
    traceback. The supervisor still marks the run interrupted, and kills a child that does
    not exit.
    """
    if os.environ.get(SUPERVISED_ENV) != "1" or threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
