"""Fair turns: a first-come, first-served line for a few slots, shared by the threads of one server process.

The dashboard uses two lines (dashboard/session.py):
- compute: while several runs train, each call of a run's training loop needs a compute slot, held until
  the call has finished. A run that wants its next call joins the back of the line, so runs take turns
  call by call (round robin): every run advances, none can keep the device to itself, however many play.
- admission: at most `MAX_TRAINERS` runs of the server train at once; a run that presses Play past that
  waits in line (its page says so) and starts when one ahead of it pauses, instead of being refused.

A waiting thread leaves when `stop()` turns true (its run paused or closed), checked every `poll`
seconds, so leaving the line never waits for a turn. No JAX here; threads only.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable


class Turns:
    """Up to `slots()` holders at a time, granted in the order they asked (`slots`: a number, or a function
    read at each grant, so that a limit changed at run time applies to the next grant)."""

    def __init__(self, slots: int | Callable[[], int]):
        self._slots = slots if callable(slots) else (lambda: slots)
        self._changed = threading.Condition()
        self._line: deque = deque()  # owners waiting, first come first
        self._holders: set = set()

    def acquire(self, owner, stop: Callable[[], bool] | None = None, poll: float = 0.05) -> bool:
        """Wait in line for a slot; True once `owner` holds one (at once if it already does), False when
        `stop()` turned true first (then `owner` has left the line)."""
        with self._changed:
            if owner in self._holders:
                return True
            self._line.append(owner)
            try:
                while not (self._line[0] is owner and len(self._holders) < self._slots()):
                    if stop is not None and stop():
                        return False
                    self._changed.wait(poll)
                self._line.popleft()
                self._holders.add(owner)
                return True
            finally:
                if owner in self._line:
                    self._line.remove(owner)
                self._changed.notify_all()  # the next in line may go now

    def release(self, owner) -> None:
        """`owner` gives its slot back (nothing happens when it holds none)."""
        with self._changed:
            if owner in self._holders:
                self._holders.discard(owner)
                self._changed.notify_all()

    def holding(self) -> int:
        """How many hold a slot now."""
        with self._changed:
            return len(self._holders)

    def waiting(self) -> int:
        """How many wait in line now."""
        with self._changed:
            return len(self._line)

    def position(self, owner) -> int | None:
        """1 for the first in line, ...; None when `owner` is not waiting."""
        with self._changed:
            for i, o in enumerate(self._line):
                if o is owner:
                    return i + 1
            return None
