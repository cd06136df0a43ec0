"""calipso-replay: publish notification files on the bus.

    calipso-replay [--url URL] [--rate N] [--count N] [--loop]
                   [--exchange NAME] [--topic NAME] [--keep-timestamps]
                   FILE_OR_DIR ...

Sends each envelope (a directory: its ``*.json`` files, sorted) with
oslo.messaging's Notifier on its service's exchange and prints one line
per notification sent. ``--count`` stops after that many sends,
``--loop`` goes over the files again until then (or until Ctrl-C).
Exit status: 0 when everything was sent, 2 when a file is not an
envelope (nothing is sent then), 1 when the broker refused a send.
"""

import argparse
import itertools
import sys

from calipso_agent import replay

DEFAULT_URL = 'rabbit://guest:guest@127.0.0.1:5672/'


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='calipso-replay',
        description='Publish notification envelopes (JSON files) on the '
                    'notification bus, as the OpenStack services do.')
    parser.add_argument('paths', nargs='+', metavar='FILE_OR_DIR')
    parser.add_argument('--url', default=DEFAULT_URL,
                        help='oslo.messaging transport URL (default: '
                             '%(default)s)')
    parser.add_argument('--topic', action='append', dest='topics',
                        help='notification topic (repeatable; default: '
                             'notifications)')
    parser.add_argument('--exchange',
                        help='send every notification to this exchange '
                             '(default: the exchange of the service that '
                             'sends its event type: nova, neutron ...)')
    parser.add_argument('--rate', type=float, default=0.0,
                        help='notifications per second (default: as fast '
                             'as the broker takes them)')
    parser.add_argument('--count', type=int,
                        help='stop after this many notifications')
    parser.add_argument('--loop', action='store_true',
                        help='go over the files again until --count')
    parser.add_argument('--keep-timestamps', action='store_true',
                        help='send with the envelope\'s timestamp instead '
                             'of now')
    parser.add_argument('--quiet', action='store_true',
                        help='print only the total')
    args = parser.parse_args(argv)
    if args.rate < 0:
        parser.error('--rate must not be negative')
    if args.count is not None and args.count < 0:
        parser.error('--count must not be negative')
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        envelopes = [(path, replay.read_envelope(path))
                     for path in replay.envelope_files(args.paths)]
    except replay.EnvelopeError as exc:
        print(f'calipso-replay: {exc}', file=sys.stderr)
        return 2
    if not envelopes:
        print('calipso-replay: no notification files found',
              file=sys.stderr)
        return 2
    sequence = itertools.cycle(envelopes) if args.loop else envelopes
    if args.count is not None:
        sequence = itertools.islice(sequence, args.count)
    replayer = replay.Replayer(args.url,
                               topics=args.topics or ['notifications'],
                               exchange=args.exchange,
                               keep_timestamps=args.keep_timestamps)
    pacer = replay.Pacer(args.rate)
    sent = 0
    try:
        for path, envelope in sequence:
            pacer.wait()
            exchange = replay_one(replayer, envelope, path)
            if exchange is None:
                return 1
            sent += 1
            if not args.quiet:
                print(f'sent {envelope["event_type"]} to exchange '
                      f'{exchange} ({path})', flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        replayer.close()
        print(f'calipso-replay: {sent} notifications sent', flush=True)
    return 0


def replay_one(replayer, envelope, path):
    """The exchange ``envelope`` went to; None (said on stderr) when the
    broker did not take it."""
    if (replayer.keep_timestamps and envelope.get('timestamp')
            and replay.kept_time(envelope) is None):
        print(f'calipso-replay: {path}: timestamp '
              f'{envelope["timestamp"]!r} is not ISO 8601; sent with the '
              'current time', file=sys.stderr)
    try:
        return replayer.send(envelope)
    except Exception as exc:
        print(f'calipso-replay: cannot send {path}: {type(exc).__name__}: '
              f'{exc}', file=sys.stderr)
        return None


if __name__ == '__main__':
    sys.exit(main())
