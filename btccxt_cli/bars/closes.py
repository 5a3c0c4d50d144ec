"""When a bar close is complete: all the live bars closing together have been read.

Bars of one timeframe close together, and reach a process as a burst of socket messages
(one per series). Whoever passes them on (the hub's publisher, a runner's event loop handing
the GIL to the strategy's thread) does best to act once, right after the last bar of the
burst, and not guess when the burst is over. ``CloseCounter`` tells it: a close is complete
when as many series have a live bar of it as had one of the close before. A series that
joined or dropped makes one close incomplete (the caller falls back on its own timeout);
the close after it counts again.
"""

from __future__ import annotations

__all__ = ["CloseCounter"]


class CloseCounter:
    """Counts the live bars of the latest close of one timeframe (one per timeframe)."""

    __slots__ = ("ts", "got", "expect")

    def __init__(self) -> None:
        self.ts = -1  # the latest close's bar open time seen
        self.got = 0  # live bars of it so far
        self.expect = 0  # live bars of the close before (0: not known yet)

    def count(self, ts: int) -> bool:
        """One series' live bar opening at ``ts``; True when that completes its close. A bar
        of an older close counts for nothing."""
        if ts > self.ts:
            if self.got:
                self.expect = self.got
            self.ts, self.got = ts, 0
        elif ts < self.ts:
            return False
        self.got += 1
        return self.got == self.expect

    def recent_size(self) -> int:
        """How many live bars the latest closes had (the latest, or the one before if it
        had more); 0 before the first."""
        return max(self.got, self.expect)

    def incomplete(self) -> bool:
        """The latest close is of known size and still misses bars (more are coming)."""
        return self.got < self.expect
