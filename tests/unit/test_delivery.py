"""Delivery of a batch: transient failures requeue, refusals are bisected
to the notifications at fault, unexplained failures retried then
dead-lettered; outage logs, per-thread backoff, waits cut short."""

import logging
import threading
import time

import pytest

from calipso_agent import delivery, messaging
from calipso_agent.publisher import base as publisher_base
from calipso_agent.storage import base as storage_base
from tests.helpers.basics import make_sample


class Receiver:
    """Takes samples unless one is poisoned (refused, or an unexplained
    error) or it is down (transient); counts the calls."""

    def __init__(self, poisoned=(), refusal=storage_base.StorageDataError,
                 down=0, name_refused=False):
        self.poisoned = set(poisoned)
        self.refusal = refusal
        self.down = down
        self.name_refused = name_refused
        self.calls = 0
        self.taken = []

    def __call__(self, samples):
        self.calls += 1
        if self.down:
            self.down -= 1
            raise storage_base.StorageUnavailableError('connection refused')
        bad = [s for s in samples if s.resource_id in self.poisoned]
        if bad and self.name_refused:
            self.taken.extend(s for s in samples if s not in bad)
            raise publisher_base.PublisherDataError(
                'refused', refused=[(s, 'too odd') for s in bad])
        if bad:
            raise self.refusal('index row size 3024 exceeds maximum 2704')
        known = len([s for s in samples if s in self.taken])
        self.taken.extend(s for s in samples if s not in self.taken)
        return known


def items(count, poisoned=(), letters=None):
    letters = letters if letters is not None else []
    made = []
    for index in range(count):
        resource = f'r{index}'

        def dead_letter(reason, attempts, message_id=f'm{index}'):
            letters.append((message_id, reason, attempts))

        made.append(delivery.Item(
            f'm{index}', 'compute.instance.exists',
            [make_sample(index, resource_id=resource),
             make_sample(index + 1000, resource_id=resource)], dead_letter))
    return made


def make(receiver, max_attempts=3, probe=None, interval=1.0):
    waits = []
    outage = delivery.Outage('Store', 'storing', probe, interval)
    outage_wait = outage.wait
    outage.wait = waits.append
    batch = delivery.BatchDelivery(receiver, outage,
                                   lambda: messaging.Backoff(0.5, 4),
                                   max_attempts)
    return batch, waits, outage_wait


@pytest.mark.parametrize('poison', [0, 37, 99])
def test_a_refusal_is_bisected_to_the_notification_at_fault(poison):
    receiver = Receiver(poisoned={f'r{poison}'})
    letters = []
    batch, waits, _ = make(receiver)
    assert batch.deliver(items(100, letters=letters)) == delivery.HANDLED
    assert len(receiver.taken) == 198
    assert {s.resource_id for s in receiver.taken} == {
        f'r{i}' for i in range(100) if i != poison}
    assert letters == [(f'm{poison}', 'StorageDataError: index row size '
                                      '3024 exceeds maximum 2704', None)]
    assert waits == []
    # log2(100) levels of halves, two calls each, and the first.
    assert receiver.calls <= 2 * 7 + 1


def test_refused_samples_named_by_the_receiver_need_no_bisecting():
    receiver = Receiver(poisoned={'r3', 'r8'}, name_refused=True)
    letters = []
    batch, _, _ = make(receiver)
    assert batch.deliver(items(10, letters=letters)) == delivery.HANDLED
    assert receiver.calls == 2
    assert sorted(m for m, _, _ in letters) == ['m3', 'm8']
    assert {s.resource_id for s in receiver.taken} == {
        f'r{i}' for i in range(10) if i not in (3, 8)}


def test_a_transient_failure_requeues_the_whole_batch_with_backoff(caplog):
    receiver = Receiver(down=3)
    batch, waits, _ = make(receiver)
    caplog.set_level(logging.INFO)
    results = [batch.deliver(items(5)) for _ in range(4)]
    assert results == [delivery.REQUEUE] * 3 + [delivery.HANDLED]
    assert waits == [0.5, 1.0, 2.0]
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if 'unavailable since' in m]) == 1
    assert messages[-1].startswith('storing resumed after ')
    assert messages[-1].endswith(' s, 3 batches retried')
    assert all('\n' not in m for m in messages)


def test_a_transient_failure_while_bisecting_requeues_everything():
    receiver = Receiver(poisoned={'r2'})
    calls = []

    def flaky(samples):
        calls.append(len(samples))
        if len(calls) == 2:
            raise publisher_base.PublisherError('timeout')
        receiver(samples)

    letters = []
    batch, _, _ = make(flaky)
    assert batch.deliver(items(8, letters=letters)) == delivery.REQUEUE
    assert letters == []


def test_unexplained_failures_are_retried_then_dead_lettered(caplog):
    receiver = Receiver(poisoned={'r1'}, refusal=KeyError)
    letters = []
    batch, waits, _ = make(receiver, max_attempts=3)
    caplog.set_level(logging.WARNING)
    results = [batch.deliver(items(4, letters=letters)) for _ in range(3)]
    assert results == [delivery.REQUEUE, delivery.REQUEUE, delivery.HANDLED]
    assert waits == [0.5, 1.0]
    assert [(m, a) for m, _, a in letters] == [('m1', 3)]
    assert letters[0][1].startswith('failed 3 times: KeyError: ')
    assert 'Traceback' not in caplog.text


def test_refused_ones_wait_for_the_last_attempt_of_the_unexplained():
    """While the batch is requeued for an unexplained failure, what is
    refused is not dead-lettered yet (it comes back with the batch): once
    only, with the final round."""
    receiver = Receiver(poisoned={'r1'}, refusal=KeyError)
    letters = []
    batch, _, _ = make(receiver, max_attempts=2)
    first = items(4, letters=letters)
    first[3].refused = 'too long'
    assert batch.deliver(first) == delivery.REQUEUE
    assert letters == []
    again = items(4, letters=letters)
    again[3].refused = 'too long'
    assert batch.deliver(again) == delivery.HANDLED
    assert sorted((m, r.split(':')[0]) for m, r, _ in letters) == [
        ('m1', 'failed 2 times'), ('m3', 'too long')]


def test_refused_items_are_dead_lettered_without_being_sent():
    receiver = Receiver()
    letters = []
    batch_items = items(3, letters=letters)
    batch_items[1].refused = 'meter memory: resource_id too long'
    batch, _, _ = make(receiver)
    assert batch.deliver(batch_items) == delivery.HANDLED
    assert letters == [('m1', 'meter memory: resource_id too long', None)]
    assert {s.resource_id for s in receiver.taken} == {'r0', 'r2'}


def test_a_dead_letter_that_cannot_be_published_requeues_the_batch():
    def failing(reason, attempts):
        raise OSError('broker gone')

    batch_items = items(2)
    batch_items[0].refused = 'too long'
    batch_items[0].dead_letter = failing
    batch, waits, _ = make(Receiver())
    assert batch.deliver(batch_items) == delivery.REQUEUE
    assert len(waits) == 1


def test_each_thread_has_its_own_backoff():
    receiver = Receiver(down=100)
    batch, waits, _ = make(receiver)
    for _ in range(3):
        batch.deliver(items(1))
    other = []
    thread = threading.Thread(target=lambda: other.append(
        (batch.deliver(items(1)), waits[-1])))
    thread.start()
    thread.join()
    assert waits[:3] == [0.5, 1.0, 2.0]
    assert other == [(delivery.REQUEUE, 0.5)]


def test_the_wait_ends_when_a_probe_says_the_receiver_answers():
    answers = iter([False, False, True])
    outage = delivery.Outage('Store', 'storing', lambda: next(answers),
                             probe_interval=0.05)
    started = time.monotonic()
    outage.wait(30)
    assert time.monotonic() - started < 2


def test_the_wait_ends_when_another_thread_succeeds():
    outage = delivery.Outage('Store', 'storing', None, probe_interval=10)
    outage.failed(storage_base.StorageUnavailableError('down'))
    timer = threading.Timer(0.2, outage.succeeded)
    started = time.monotonic()
    timer.start()
    outage.wait(30)
    assert time.monotonic() - started < 5


def test_stop_ends_the_wait():
    stopping = threading.Event()
    outage = delivery.Outage('Store', 'storing', None, 10, stopping)
    threading.Timer(0.1, stopping.set).start()
    started = time.monotonic()
    outage.wait(30)
    assert time.monotonic() - started < 5


def test_classification():
    assert delivery.is_transient(storage_base.StorageUnavailableError('x'))
    assert delivery.is_transient(storage_base.StorageError('x'))
    assert delivery.is_transient(publisher_base.PublisherError('x'))
    assert not delivery.is_transient(storage_base.StorageDataError('x'))
    assert not delivery.is_transient(publisher_base.PublisherDataError('x'))
    assert not delivery.is_transient(RecursionError('x'))
    assert delivery.is_refusal(storage_base.StorageDataError('x'))
    assert not delivery.is_refusal(KeyError('x'))


def test_one_line_cuts_and_joins():
    assert delivery.one_line(ValueError('a\n  b')) == 'ValueError: a b'
    assert len(delivery.one_line('x' * 2000)) == delivery.REASON_LENGTH


def test_redelivered_samples_are_counted_once_per_batch(caplog):
    receiver = Receiver(poisoned={'r3'})
    batch, _, _ = make(receiver)
    caplog.set_level(logging.INFO)
    assert batch.deliver(items(4)) == delivery.HANDLED
    # The bisection sent some twice: not a redelivery, nothing said.
    assert 'already stored' not in caplog.text
    assert batch.deliver(items(3)) == delivery.HANDLED
    assert batch.redelivered == 6
    assert ('6 of 6 samples already stored (redelivery) [6 so far]'
            in caplog.text)


def test_describe_rejected_names_a_few():
    rejected = [(make_sample(i), f'reason {i}') for i in range(7)]
    text = delivery.describe_rejected(rejected)
    assert text.startswith(f'{make_sample(0).id}: reason 0; ')
    assert text.endswith('reason 4; and 2 more')
    assert delivery.describe_rejected(['x is bad']) == 'x is bad'


def test_texts_of_a_broken_notification_can_be_logged():
    broken = 'id-\ud800-end'
    for text in (delivery.text_of(broken),
                 delivery.one_line(ValueError(f'bad value {broken!s}'))):
        assert '\\ud800' in text
        text.encode('utf-8')
    assert delivery.text_of('plain') == 'plain'
    assert delivery.text_of(None) is None


def test_non_ascii_text_that_utf8_encodes_is_kept():
    assert delivery.text_of('événement.créé') == 'événement.créé'
    assert delivery.one_line('résumé  \n ok') == 'résumé ok'
