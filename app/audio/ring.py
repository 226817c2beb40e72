"""A preallocated single-producer / single-consumer float32 ring buffer.

It sits between the PortAudio callback and the inference worker, so its rules come from the
callback: the producer side (`write`) and the allocation-free consumer side (`read_into`) never
allocate an array, never take a lock and never block. Python threads share the GIL, but numpy
releases it while it copies a large block, so the two sides really can run at the same time;
correctness does not lean on the GIL for anything but atomic stores of Python ints.

How the two threads agree without a lock: both sides count samples since the start
(`_written`, `_read`, `_reserved`), each counter is stored by one side only, and data is
published by storing the counter after the copy. Overflow drops the *oldest* samples (a live
call wants the newest audio, never a growing backlog): the producer simply keeps writing over
them, and the consumer notices on its next read that the producer lapped it, skips what was
lost and counts it in `dropped`. A read that raced with such an overwrite (the producer had
reserved, but not yet published, the span being copied) is detected with the `_reserved`
counter, seqlock style, and retried.

Shape legend: n - samples (frames of audio), c - channels (columns written together, e.g.
mic and played reference, which therefore can never drift apart).
"""

from __future__ import annotations

import numpy as np


class FloatRing:
    """Single-producer / single-consumer ring of float32 samples, `channels` columns wide.

    Producer thread: `write`. Consumer thread: `read`, `read_into`, `clear`. `available`,
    `dropped` and `capacity` may be read from anywhere.
    """

    def __init__(self, capacity: int, channels: int = 1) -> None:
        assert capacity > 0, "a ring needs room for at least one sample"
        assert channels > 0, "a ring needs at least one channel"
        self.capacity = capacity
        self.channels = channels
        self._buf = np.zeros((capacity, channels), dtype=np.float32)  # (n, c)
        self._written = 0  # producer-owned: samples published so far
        self._reserved = 0  # producer-owned: samples being written (>= _written during a copy)
        self._read = 0  # consumer-owned: samples consumed or dropped so far
        self.dropped = 0  # consumer-owned: samples lost to overflow (oldest first)

    # -- producer --------------------------------------------------------------------------------
    def write(self, block: np.ndarray) -> None:
        """Append samples, overwriting the oldest ones when the ring is full.

        `block` is (n,) for a one-channel ring or (n, c). Never allocates, never blocks.
        """
        if block.ndim == 1:
            assert self.channels == 1, f"a 1-D block fits a 1-channel ring, this one has {self.channels}"
            block = block.reshape(-1, 1)  # a view, not a copy
        assert block.shape[1] == self.channels, (
            f"block has {block.shape[1]} channels, the ring holds {self.channels}"
        )
        n = block.shape[0]
        if n == 0:
            return
        skipped = max(0, n - self.capacity)  # only the newest `capacity` samples can survive
        block = block[skipped:]
        n -= skipped
        start = self._written + skipped
        self._reserved = start + n  # announce the span before touching it (see module docstring)
        first = min(n, self.capacity - start % self.capacity)
        self._buf[start % self.capacity : start % self.capacity + first] = block[:first]
        if first < n:
            self._buf[: n - first] = block[first:]
        self._written = start + n  # publish

    # -- consumer --------------------------------------------------------------------------------
    def available(self) -> int:
        """Samples ready to read (never more than the capacity: older ones are lost)."""
        return min(self._written - self._read, self.capacity)

    def read_into(self, out: np.ndarray) -> int:
        """Copy up to len(out) of the oldest samples into `out`; return how many. Never allocates."""
        if out.ndim == 1:
            assert self.channels == 1, f"a 1-D buffer fits a 1-channel ring, this one has {self.channels}"
            out = out.reshape(-1, 1)
        while True:
            written = self._written
            if written - self._read > self.capacity:  # the producer lapped us: skip what was lost
                lost = written - self._read - self.capacity
                self.dropped += lost
                self._read += lost
            start = self._read
            n = min(out.shape[0], written - start)
            if n <= 0:
                return 0
            first = min(n, self.capacity - start % self.capacity)
            out[:first] = self._buf[start % self.capacity : start % self.capacity + first]
            if first < n:
                out[first:n] = self._buf[: n - first]
            if self._reserved - start <= self.capacity:  # nothing we copied was being overwritten
                self._read = start + n
                return n
            # The producer reserved part of the span we were copying: retry from the newer data.

    def read(self, n: int) -> np.ndarray | None:
        """The oldest `n` samples as a new (n,) or (n, c) array, or None until `n` are ready."""
        assert 0 < n <= self.capacity, f"cannot read {n} samples from a ring of {self.capacity}"
        if self.available() < n:
            return None
        out = np.empty((n, self.channels), dtype=np.float32)
        got = self.read_into(out)
        if got < n:  # lost to a concurrent overflow between the check and the copy
            return None
        return out[:, 0] if self.channels == 1 else out

    def clear(self) -> None:
        """Drop everything written so far (consumer side; not counted as overflow)."""
        self._read = self._written

    def discard_until(self, position: int) -> None:
        """Drop samples up to absolute `position` (a `written` value the producer noted).

        This is how the producer asks for a flush without touching the consumer's counter: it
        notes `written` and the consumer discards up to there on its next turn, so audio
        written after the request survives.
        """
        self._read = max(self._read, min(position, self._written))

    @property
    def written(self) -> int:
        """Samples written since creation (the producer's clock)."""
        return self._written
