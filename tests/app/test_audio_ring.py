"""FloatRing: the lock-free hand-off between the audio callback and the worker."""

from __future__ import annotations

import sys
import threading
import tracemalloc

import numpy as np

from app.audio.ring import FloatRing


def ramp(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.float32)


def test_samples_come_out_in_order_across_the_wrap():
    ring = FloatRing(8)
    out = []
    for start in range(0, 40, 5):  # 5-sample blocks against an 8-sample ring: every read wraps eventually
        ring.write(ramp(start, 5))
        out.append(ring.read(5))
    assert np.array_equal(np.concatenate(out), ramp(0, 40)), "order lost at the wrap-around"
    assert ring.dropped == 0


def test_two_columns_stay_paired():
    ring = FloatRing(6, channels=2)
    ring.write(np.stack([ramp(0, 4), -ramp(0, 4)], axis=1))
    ring.write(np.stack([ramp(4, 4), -ramp(4, 4)], axis=1))  # overflows by 2: rows drop whole
    pairs = np.concatenate([ring.read(4), ring.read(2)])
    assert np.array_equal(pairs[:, 0], ramp(2, 6)), "the oldest rows should have been dropped"
    assert np.array_equal(pairs[:, 1], -pairs[:, 0]), "mic and reference columns drifted apart"


def test_overflow_drops_the_oldest_and_counts_it():
    ring = FloatRing(10)
    ring.write(ramp(0, 8))
    ring.write(ramp(8, 7))  # 15 written into 10: the 5 oldest are gone
    assert ring.available() == 10
    assert np.array_equal(ring.read(10), ramp(5, 10)), "a live call wants the newest audio, not the oldest"
    assert ring.dropped == 5


def test_a_block_larger_than_the_ring_keeps_its_newest_part():
    ring = FloatRing(4)
    ring.write(ramp(0, 11))
    assert np.array_equal(ring.read(4), ramp(7, 4))
    assert ring.dropped == 7


def test_read_waits_for_enough_samples():
    ring = FloatRing(16)
    ring.write(ramp(0, 3))
    assert ring.read(4) is None, "a partial frame must not be handed out"
    ring.write(ramp(3, 1))
    assert np.array_equal(ring.read(4), ramp(0, 4))


def test_a_flush_keeps_what_was_written_after_the_request():
    ring = FloatRing(32)
    ring.write(ramp(0, 10))
    flush_at = ring.written  # the producer asks to drop everything so far ...
    ring.write(ramp(100, 3))  # ... and keeps writing before the consumer gets to it
    ring.discard_until(flush_at)
    assert np.array_equal(ring.read(3), ramp(100, 3))
    ring.write(ramp(0, 5))
    ring.clear()
    assert ring.available() == 0 and ring.dropped == 0, "flushing is not overflow"


def test_write_and_read_into_allocate_no_array():
    ring = FloatRing(4800, channels=2)
    block = np.ones((480, 2), dtype=np.float32)
    out = np.zeros((480, 2), dtype=np.float32)
    for _ in range(20):  # warm up: first-call caches are not the steady state
        ring.write(block)
        ring.read_into(out)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(200):
            ring.write(block)
            ring.read_into(out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - before < 1024, (
        f"{peak - before} bytes allocated around 200 write/read_into calls (a block is 3840)"
    )


def test_concurrent_producer_and_consumer_never_tear_or_lose_count():
    """A producer writing a counting sequence, a consumer reading it: every chunk the consumer
    gets must be consecutive numbers, and read + dropped must add up to what was written."""
    ring = FloatRing(1000)
    total = 3_000_000
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 700, size=20_000)
    failures: list[str] = []
    received = 0
    done = threading.Event()

    def produce():
        written = 0
        for size in sizes:
            size = int(min(size, total - written))
            if size <= 0:
                break
            ring.write(ramp(written, size))
            written += size
        done.set()

    def consume():
        nonlocal received
        out = np.zeros(300, dtype=np.float32)
        last = -1.0
        while not (done.is_set() and ring.available() == 0):
            got = ring.read_into(out)
            if got == 0:
                continue
            chunk = out[:got]
            if not np.array_equal(np.diff(chunk), np.ones(got - 1, dtype=np.float32)) or chunk[0] <= last:
                failures.append(f"torn chunk after {last}: {chunk[:5]}...")
                return
            last = float(chunk[-1])
            received += got

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: interleave mid-copy
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert not failures, failures[0]
    assert ring.dropped > 0, "the test must exercise overflow: make the ring smaller"
    assert received + ring.dropped == total, (
        f"read {received} + dropped {ring.dropped} != {total} written: overflow accounting is off"
    )


class _LapsOnce(np.ndarray):
    """The ring's storage, rigged so that the producer runs in the middle of a consumer copy."""

    producer = None

    def __getitem__(self, key):
        view = super().__getitem__(key)
        producer, type(self).producer = type(self).producer, None
        if producer is not None:
            producer()  # overwrites the span the consumer is about to copy from
        return view


def test_a_read_racing_with_an_overwrite_is_retried_not_torn():
    """The exact interleaving the seqlock guards against, made deterministic: the consumer has
    chosen its span, then the producer laps it before the copy happens."""
    ring = FloatRing(10)
    ring.write(ramp(0, 10))  # full
    ring._buf = ring._buf.view(_LapsOnce)
    _LapsOnce.producer = lambda: ring.write(ramp(10, 6))  # overwrites samples 0..5 in place
    out = np.zeros(4, dtype=np.float32)
    got = ring.read_into(out)
    assert np.array_equal(out[:got], ramp(6, got)), (
        f"read {out[:got]} while the producer overwrote the span: a torn read reached the consumer"
    )
    assert ring.dropped == 6
