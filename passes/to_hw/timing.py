"""
The stream timing analysis that sizes the residual FIFOs (pure: no IR is built here).

For every stream: the top-level input pixel after which each of its items can exist (a conv
needs its trigger pixel V, see conv.py) and the bounds of its extra latency in cycles.
A residual add has a FIFO on BOTH operands (push on each operand's valid, pop when both are
non-empty), robust whichever branch is late; the FIFO of operand a must hold every a item
that can be pushed before b's item of the same index, at one pixel per cycle at most
(`fifo_depth`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Images simulated ahead when counting how many items one operand can be early by.
FRAMES = 4


@dataclass
class StreamTiming:
    """
    When the items of a stream can exist: item k of an image needs the top-level input
    pixel `need[k]` (index over back-to-back images: image i's pixels are i*frame_pixels
    onwards) to have been accepted, then between `lat_lo` and `lat_hi` more enabled cycles
    pass before its valid.
    """

    need: np.ndarray  # per item of image 0
    frame_pixels: int
    lat_lo: int
    lat_hi: int
    #: the cycle of each item's valid at full rate (input beat k accepted in cycle k), when
    #: it is not need + lat_hi (behind a row buffer, whose wait lat_hi only bounds)
    ready: np.ndarray | None = None

    @classmethod
    def of(cls, need, frame_pixels: int, lat_lo: int, lat_hi: int,
           ready=None) -> StreamTiming:
        return cls(np.asarray(need, dtype=np.int64), frame_pixels, lat_lo, lat_hi,
                   None if ready is None else np.asarray(ready, dtype=np.int64))

    @classmethod
    def input(cls, frame_pixels: int) -> StreamTiming:
        """The chip's input stream: pixel k of image 0 is input pixel k, no latency."""
        return cls.of(np.arange(frame_pixels), frame_pixels, 0, 0)

    @property
    def per_frame(self) -> int:
        return len(self.need)

    def needed(self, index: np.ndarray) -> np.ndarray:
        """`need` of global item indices (images are periodic)."""
        frames, k = np.divmod(np.asarray(index, dtype=np.int64), self.per_frame)
        return self.need[k] + frames * self.frame_pixels

    def ready_of(self, index: np.ndarray) -> np.ndarray:
        """The full-rate valid cycle of global item indices."""
        index = np.asarray(index, dtype=np.int64)
        if self.ready is None:
            return self.needed(index) + self.lat_hi
        frames, k = np.divmod(index, self.per_frame)
        return self.ready[k] + frames * self.frame_pixels

    def after(self, latency: int, need=None) -> StreamTiming:
        """This stream through a layer of `latency` cycles (items needing `need` if given)."""
        ready = None if self.ready is None or need is not None else self.ready + latency
        return StreamTiming.of(self.need if need is None else need, self.frame_pixels,
                               self.lat_lo + latency, self.lat_hi + latency, ready)

    def fired_by(self, latency: int, index: np.ndarray) -> StreamTiming:
        """The stream of a layer whose item j fires on this stream's item `index[j]`."""
        ready = None if self.ready is None else self.ready_of(index) + latency
        return StreamTiming.of(self.needed(index), self.frame_pixels, self.lat_lo + latency,
                               self.lat_hi + latency, ready)


def fifo_depth(early: StreamTiming, late: StreamTiming) -> int:
    """
    Depth for the FIFO of operand `early` (pushed by its valid, popped with `late`'s items):
    when `late` pushes item k, every early item j with need[j] <= need_late[k] + slack may
    have been pushed (slack: how many more pixels can arrive, one per cycle at most, during
    late's extra latency), and at most k - 1 have been popped. Plus one for the pop that is
    registered a cycle after the push, plus one of margin.
    """
    slack = max(0, late.lat_hi - early.lat_lo)
    ks = np.arange(2 * early.per_frame)
    late_need = late.needed(ks)
    # enough images ahead that every early item pushed in time is counted (few beats per
    # image, e.g. whole rows per beat, and a long late latency reach past FRAMES images)
    frames = max(FRAMES, (int(late_need.max()) + slack) // early.frame_pixels + 2)
    early_need = early.needed(np.arange(frames * early.per_frame))
    pushed = np.searchsorted(early_need, late_need + slack, side="right")
    return int(max(1, (pushed - ks).max())) + 2


def join_ready(ta: StreamTiming, tb: StreamTiming, latency: int):
    """Full-rate valid cycles of a two-operand join (residual add, concat) when an operand is
    behind a row buffer: the pop follows the later operand."""
    if ta.ready is None and tb.ready is None:
        return None
    index = np.arange(ta.per_frame)
    return np.maximum(ta.ready_of(index), tb.ready_of(index)) + latency
