"""The pipe from the subscription publisher to its delivery process."""

import fcntl
import os
import threading
import time

import pytest

from calipso_agent.publisher import subscription


@pytest.fixture
def delivery():
    process = subscription.DeliveryProcess({
        'options': {'queue_size': 10, 'counter_interval': 1,
                    'delivery_niceness': 0},
        'secret': 'secret', 'networks': [], 'broker_urls': []},
        capacity=100)
    yield process
    process.close()


def read_slowly(fd, chunk, pause, into):
    """Read ``fd`` to its end, ``chunk`` bytes then a pause each time."""
    while True:
        data = os.read(fd, chunk)
        if not data:
            return
        into.append(data)
        time.sleep(pause)


def test_a_full_pipe_is_refilled_in_few_writes(delivery, monkeypatch):
    """The writer waits a little once the pipe has room again, so a slow
    reader taking a page at a time does not wake it (and take the GIL from
    the pipeline) for every page."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    received = []
    reader = threading.Thread(target=read_slowly,
                              args=(read_end, 4096, 0.0002, received))
    writes = []
    real_write = os.write

    def counted_write(fd, data):
        writes.append(fd)
        return real_write(fd, data)

    monkeypatch.setattr(subscription.os, 'write', counted_write)
    data = os.urandom(2 << 20)
    reader.start()
    try:
        delivery._write_all(write_end, data)
    finally:
        os.close(write_end)
        reader.join(30)
        os.close(read_end)
    assert b''.join(received) == data
    pages = len(data) // 4096
    # One write per page freed would be ``pages`` (512) writes.
    assert len(writes) < pages / 4, (len(writes), pages)


def test_the_pipe_to_the_delivery_process_is_widened(delivery):
    delivery.set_subscriptions([])
    assert delivery._wake.is_set()
    with delivery._write_lock:
        delivery._running_process()
    with open('/proc/sys/fs/pipe-max-size') as handle:
        allowed = int(handle.read())
    size = fcntl.fcntl(delivery._fd, fcntl.F_GETPIPE_SZ)
    assert size == min(subscription.PIPE_BYTES, allowed)
    assert size > 65536
