"""calipso-meter-test: what samples do my meter definitions make?

For each notification file (the oslo.messaging envelope: event_type,
publisher_id, priority, timestamp, message_id, payload, ctxt) prints one
JSON line ``{"file": ..., "samples": [...], "reason": ...}``: the samples
the definitions build and, when there are none, why. ``--meters FILE``
(once per file) replaces the configured definitions; without it and
without configured definitions, the package's shipped ones are used (said
on stderr).

Exit status: 0 when every definition loaded and every file was read, 1 when
a definition could not be loaded, 2 when a notification file could not be
read.
"""

import json
import sys

from oslo_config import cfg

from calipso_agent import service, shipped
from calipso_agent.notification import base, meters

CLI_OPTS = [
    cfg.MultiStrOpt('meters',
                    default=[],
                    help='Meter definition file to use instead of the '
                         'configured ones; give it once per file: '
                         '--meters a.yaml --meters b.yaml.'),
    cfg.MultiStrOpt('notifications',
                    positional=True,
                    default=[],
                    help='Notification envelope files (JSON).'),
]

EXIT_DEFINITION_ERROR = 1
EXIT_INPUT_ERROR = 2


def explain(definitions, envelope):
    """(samples as dicts, reason or None) for one notification envelope."""
    try:
        priority, notification = base.from_envelope(envelope)
    except ValueError as exc:
        return [], f'not a notification: {exc}'
    if priority not in base.SAMPLE_PRIORITIES:
        return [], (f'priority {priority.upper() or "(none)"!r} not '
                    'handled: only INFO and SAMPLE notifications carry '
                    'measurements')
    event_type = notification['event_type']
    if not definitions.for_event_type(event_type):
        return [], f'no definition matches event type {event_type!r}'
    samples, failures = definitions.build_samples(notification)
    reason = None
    if failures:
        reason = '; '.join(f'meter {d.name} ({d.origin}) failed: {why}'
                           if d is not None else why
                           for d, why in failures)
    return [s.as_dict() for s in samples], reason


def _from_files(conf, files):
    return meters.MeterDefinitions.from_files(
        files, meters.ReservedMetadata.from_conf(conf), conf.sample_source)


def _load_definitions(conf):
    if conf.meters:
        return _from_files(conf, conf.meters)
    definitions = meters.MeterDefinitions.from_conf(conf)
    if definitions.definitions or definitions.report.errors:
        return definitions
    shipped_dir = shipped.meter_definitions_dir()
    sys.stderr.write(f'calipso-meter-test: no configured meter definition; '
                     f'using the shipped ones in {shipped_dir}\n')
    return _from_files(conf, meters.definition_files([shipped_dir], []))


def misplaced_definitions(paths):
    """The notification arguments that are meter definition files (a
    second file after one --meters)."""
    return [p for p in paths if p.endswith(('.yaml', '.yml'))]


def main(argv=None):
    conf = cfg.ConfigOpts()
    conf.register_cli_opts(CLI_OPTS)
    conf = service.prepare_service(argv, conf=conf, log_to_stderr=True)
    misplaced = misplaced_definitions(conf.notifications)
    if misplaced:
        sys.stderr.write(f'calipso-meter-test: {", ".join(misplaced)}: a '
                         f'meter definition file given as a notification; '
                         f'give --meters once per definition file\n')
        return EXIT_INPUT_ERROR
    definitions = _load_definitions(conf)
    status = 0
    if definitions.report.errors:
        status = EXIT_DEFINITION_ERROR
    for path in conf.notifications:
        line = {'file': path}
        try:
            with open(path) as handle:
                envelope = json.load(handle)
        except (OSError, ValueError) as exc:
            line.update(samples=[], reason=f'cannot read notification: '
                                           f'{exc}')
            status = status or EXIT_INPUT_ERROR
        else:
            samples, reason = explain(definitions, envelope)
            line.update(samples=samples, reason=reason)
        sys.stdout.write(json.dumps(line, default=str) + '\n')
    return status


if __name__ == '__main__':
    sys.exit(main())
