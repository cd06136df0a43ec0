"""calipso-dead-letters: inspect dead letters and put them back on the bus.

::

    calipso-dead-letters --config-file calipso.conf list [--queue Q]
    calipso-dead-letters --config-file calipso.conf show --id MESSAGE_ID
    calipso-dead-letters --config-file calipso.conf requeue --id ID [--id ..]
    calipso-dead-letters --config-file calipso.conf requeue --all

The queue is ``[notification] dead_letter_queue`` unless ``--queue``
names another (the collector's is ``[collector] dead_letter_queue``).
``list`` prints one line per dead letter: message id, when and why it was
dead-lettered, where it came from. ``show`` prints the dead letters of
the given message ids as JSON (headers and body). ``requeue`` publishes
them, body and headers as they came, to the exchange and routing key
they were consumed from (with publisher confirms), then removes them from
the dead-letter queue; the consumer processes them again as new (sample
ids are deterministic: what was stored already is not stored twice).

Dead letters are read without being consumed: those not requeued stay in
the queue, in their order. Exit status 1 when an ``--id`` is not found.
"""

import json
import sys

import kombu
from oslo_config import cfg

from calipso_agent import dead_letter, service

CLI_OPTS = [
    cfg.StrOpt('queue',
               help='Dead-letter queue to read (default: [notification] '
                    'dead_letter_queue).'),
    cfg.IntOpt('limit', default=10000, min=1,
               help='Most dead letters read.'),
]

class DeadLetterBrowser:
    """The dead letters of a queue, held (not acknowledged) while the
    connection lives: on close those not taken go back, in order."""

    def __init__(self, urls, queue, limit):
        self.queue = queue
        self.connection = kombu.Connection(
            ';'.join(urls), connect_timeout=10,
            transport_options={'confirm_publish': True})
        self.channel = self.connection.channel()
        self.letters = []
        while len(self.letters) < limit:
            message = self.channel.basic_get(queue, no_ack=False)
            if message is None:
                break
            self.letters.append(message)

    def find(self, ids):
        """The letters of message ids ``ids`` and the ids not found."""
        wanted = set(ids)
        found = [m for m in self.letters
                 if (m.headers or {}).get(dead_letter.MESSAGE_ID) in wanted]
        seen = {(m.headers or {}).get(dead_letter.MESSAGE_ID) for m in found}
        return found, sorted(wanted - seen)

    def requeue(self, letter):
        """Publish ``letter`` where it came from, confirmed, then take it
        off the dead-letter queue."""
        headers = dict(letter.headers or {})
        exchange = headers.get(dead_letter.ORIGINAL_EXCHANGE)
        routing_key = headers.get(dead_letter.ORIGINAL_ROUTING_KEY)
        if not routing_key:
            raise ValueError('it names no original routing key')
        kept = {k: v for k, v in headers.items()
                if k not in dead_letter.HEADERS}
        kept[dead_letter.REQUEUED] = int(
            headers.get(dead_letter.REQUEUED) or 0) + 1
        publisher = self.connection.channel()
        try:
            kombu.Producer(publisher).publish(
                letter.body, exchange=exchange or '',
                routing_key=routing_key, headers=kept,
                content_type=letter.content_type or 'application/json',
                content_encoding=letter.content_encoding or 'utf-8',
                serializer=None, delivery_mode=2, retry=False)
        finally:
            publisher.close()
        self.channel.basic_ack(letter.delivery_tag)

    def close(self):
        self.connection.release()


def describe(letter):
    headers = letter.headers or {}
    return '\t'.join(str(headers.get(h) or '-') for h in (
        dead_letter.MESSAGE_ID, dead_letter.DEAD_LETTERED_AT,
        dead_letter.EVENT_TYPE)) + (
        f'\t{headers.get(dead_letter.ORIGINAL_EXCHANGE) or "-"}/'
        f'{headers.get(dead_letter.ORIGINAL_ROUTING_KEY) or "-"}\t'
        f'{headers.get(dead_letter.REASON) or "-"}')


def as_json(letter):
    body = letter.body
    if isinstance(body, bytes):
        body = body.decode('utf-8', 'replace')
    return {'headers': letter.headers or {}, 'content_type':
            letter.content_type, 'body': body}


def run(conf, out=sys.stdout):
    """The chosen action on the dead-letter queue; the exit status."""
    urls = dead_letter.broker_urls(conf)
    if urls is None:
        sys.exit('calipso-dead-letters: dead letters need a rabbit:// '
                 'transport_url')
    queue = conf.queue or conf.notification.dead_letter_queue
    action = conf.action
    try:
        browser = DeadLetterBrowser(urls, queue, conf.limit)
    except Exception as exc:
        sys.exit(f'calipso-dead-letters: cannot read {queue}: '
                 f'{type(exc).__name__}: {exc}')
    status = 0
    try:
        if action.name == 'list':
            for letter in browser.letters:
                out.write(describe(letter) + '\n')
            out.write(f'{len(browser.letters)} dead letters in {queue}\n')
            return 0
        if action.name == 'requeue' and action.all:
            letters, missing = list(browser.letters), []
        else:
            if not action.id:
                sys.exit(f'calipso-dead-letters: {action.name} needs --id'
                         + (' or --all' if action.name == 'requeue' else ''))
            letters, missing = browser.find(action.id)
        for message_id in missing:
            sys.stderr.write(f'calipso-dead-letters: no dead letter of '
                             f'message {message_id} in {queue}\n')
            status = 1
        if action.name == 'show':
            for letter in letters:
                out.write(json.dumps(as_json(letter), default=str) + '\n')
            return status
        requeued = 0
        for letter in letters:
            message_id = (letter.headers or {}).get(dead_letter.MESSAGE_ID)
            try:
                browser.requeue(letter)
            except Exception as exc:
                sys.stderr.write(f'calipso-dead-letters: message '
                                 f'{message_id} not requeued: '
                                 f'{type(exc).__name__}: {exc}\n')
                status = 1
                continue
            requeued += 1
            out.write(f'requeued {message_id}\n')
        out.write(f'{requeued} dead letters requeued from {queue}\n')
        return status
    finally:
        browser.close()


def add_actions(subparsers):
    subparsers.add_parser('list', help='One line per dead letter.')
    for name, text in (('show', 'Headers and body of dead letters.'),
                       ('requeue', 'Put dead letters back on the bus.')):
        parser = subparsers.add_parser(name, help=text)
        parser.add_argument('--id', action='append', default=[],
                            help='message id of a dead letter')
        if name == 'requeue':
            parser.add_argument('--all', action='store_true',
                                help='every dead letter of the queue')


def main(argv=None):
    conf = cfg.ConfigOpts()
    conf.register_cli_opts(CLI_OPTS)
    conf.register_cli_opt(cfg.SubCommandOpt(
        'action', handler=add_actions, title='actions'))
    conf = service.prepare_service(argv, conf=conf, log_to_stderr=True)
    return run(conf)


if __name__ == '__main__':
    sys.exit(main())
