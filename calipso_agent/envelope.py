"""What a notification carries besides its payload: message id, timestamp,
request context.

A notification has two shapes. On the bus it is an oslo.messaging
envelope: ``message_id`` and ``timestamp`` beside ``event_type`` and
``payload``, the request context spread over ``_context_*`` keys. The
dispatcher hands an endpoint a dict with the context in ``ctxt`` and the
id and timestamp under ``metadata``. These are the only readers of those
keys: the agent's endpoints, the collector, the batched consumer and the
dead letters all go through them, so a malformed ``metadata`` reads as
missing everywhere alike.
"""

CONTEXT_PREFIX = '_context_'
#: Keys of oslo.messaging's RPC context that a notification never needs.
PRIVATE_CONTEXT_KEYS = ('_unique_id', '_msg_id', '_reply_q', '_timeout')


def _metadata(notification, key):
    metadata = notification.get('metadata')
    return metadata.get(key) if isinstance(metadata, dict) else None


def message_id(notification):
    """The message id of a notification dict, or None."""
    return _metadata(notification, 'message_id')


def timestamp(notification):
    """When the notification was sent (as its sender wrote it), or None."""
    return _metadata(notification, 'timestamp')


def split_context(envelope):
    """(context, message) of an envelope: the ``_context_*`` keys without
    their prefix, and the other keys but oslo's private ones."""
    ctxt = {}
    message = {}
    for key, value in envelope.items():
        if key.startswith(CONTEXT_PREFIX):
            ctxt[key[len(CONTEXT_PREFIX):]] = value
        elif key not in PRIVATE_CONTEXT_KEYS:
            message[key] = value
    return ctxt, message


def add_context(message, ctxt):
    """Spread ``ctxt`` over ``_context_*`` keys of ``message`` (the
    envelope oslo.messaging sends)."""
    for key, value in (ctxt or {}).items():
        message[f'{CONTEXT_PREFIX}{key}'] = value
    return message
