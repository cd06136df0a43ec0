"""The tables of the SQL store.

Text columns use the "C" collation on PostgreSQL so string order is code
point order, as in Python and SQLite. Metadata is JSON (JSONB on
PostgreSQL).

Besides ``sample``, ``resource`` keeps each resource's first/last
timestamps and latest sample, and ``meter`` each distinct (name, type,
unit, resource, project, user, source): both are maintained by
``record_samples`` in the same transaction and answer unfiltered (or
resource-only) listings without scanning samples.
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

SCHEMA_VERSION = 2
#: Tables an upgrade from a version recreates (they held nothing worth
#: keeping): version 2 gave inventory and link their lookup columns.
RECREATED_FROM = {1: ('link', 'inventory')}

_TEXT = sa.Text().with_variant(sa.Text(collation='C'), 'postgresql')
_JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')

METADATA = sa.MetaData()

SAMPLE = sa.Table(
    'sample', METADATA,
    sa.Column('id', _TEXT, primary_key=True),
    sa.Column('name', _TEXT, nullable=False),
    sa.Column('type', _TEXT, nullable=False),
    sa.Column('unit', _TEXT),
    sa.Column('volume', sa.Double(), nullable=False),
    sa.Column('user_id', _TEXT),
    sa.Column('project_id', _TEXT),
    sa.Column('resource_id', _TEXT, nullable=False),
    sa.Column('source', _TEXT),
    sa.Column('message_id', _TEXT),
    sa.Column('ts', sa.BigInteger(), nullable=False),
    sa.Column('recorded_ts', sa.BigInteger(), nullable=False),
    sa.Column('resource_metadata', _JSON, nullable=False),
    sa.Index('ix_sample_name_ts', 'name', 'ts'),
    sa.Index('ix_sample_project_name_ts', 'project_id', 'name', 'ts'),
    sa.Index('ix_sample_resource_ts', 'resource_id', 'ts'),
    sa.Index('ix_sample_ts', 'ts'),
)

# The latest sample is the one with the greatest (ts, id). Every stored
# batch updates its resources: free space in each page (fillfactor) and
# no index on the updated columns let PostgreSQL update in place (HOT).
RESOURCE = sa.Table(
    'resource', METADATA,
    sa.Column('resource_id', _TEXT, primary_key=True),
    sa.Column('project_id', _TEXT),
    sa.Column('user_id', _TEXT),
    sa.Column('source', _TEXT),
    sa.Column('first_ts', sa.BigInteger(), nullable=False),
    sa.Column('last_ts', sa.BigInteger(), nullable=False),
    sa.Column('latest_id', _TEXT, nullable=False),
    sa.Column('metadata', _JSON, nullable=False),
    postgresql_with={'fillfactor': 70},
)

METER_FIELDS = ('name', 'type', 'unit', 'resource_id', 'project_id',
                'user_id', 'source')

# ``key`` hashes the seven fields: a unique constraint over nullable
# columns would let NULLs repeat.
METER = sa.Table(
    'meter', METADATA,
    sa.Column('key', _TEXT, primary_key=True),
    sa.Column('name', _TEXT, nullable=False),
    sa.Column('type', _TEXT, nullable=False),
    sa.Column('unit', _TEXT),
    sa.Column('resource_id', _TEXT, nullable=False),
    sa.Column('project_id', _TEXT),
    sa.Column('user_id', _TEXT),
    sa.Column('source', _TEXT),
    sa.Index('ix_meter_name', 'name'),
    sa.Index('ix_meter_resource', 'resource_id'),
    sa.Index('ix_meter_project', 'project_id'),
)

# Objects and links keep the dict as JSON; the columns are what they are
# looked up by. ``last_event_ts``: microseconds of ``last_event_at``, the
# guard of every write (see calipso_agent.inventory).
INVENTORY = sa.Table(
    'inventory', METADATA,
    sa.Column('id', _TEXT, primary_key=True),
    sa.Column('type', _TEXT, nullable=False),
    sa.Column('project_id', _TEXT),
    sa.Column('parent_id', _TEXT),
    sa.Column('host', _TEXT),
    sa.Column('name', _TEXT),
    sa.Column('state', _TEXT),
    sa.Column('last_event_ts', sa.BigInteger(), nullable=False),
    sa.Column('data', _JSON, nullable=False),
    sa.Index('ix_inventory_type', 'type'),
    sa.Index('ix_inventory_project', 'project_id'),
    sa.Index('ix_inventory_parent', 'parent_id'),
    sa.Index('ix_inventory_host', 'host'),
)

LINK = sa.Table(
    'link', METADATA,
    sa.Column('source_id', _TEXT, primary_key=True),
    sa.Column('target_id', _TEXT, primary_key=True),
    sa.Column('link_type', _TEXT, primary_key=True),
    sa.Column('project_id', _TEXT),
    sa.Column('state', _TEXT),
    sa.Column('last_event_ts', sa.BigInteger()),
    sa.Column('data', _JSON, nullable=False),
    sa.Index('ix_link_target', 'target_id'),
    sa.Index('ix_link_project', 'project_id'),
)

CHANNEL = sa.Table(
    'channel', METADATA,
    sa.Column('id', _TEXT, primary_key=True),
    sa.Column('data', _JSON, nullable=False),
)

SUBSCRIPTION = sa.Table(
    'subscription', METADATA,
    sa.Column('id', _TEXT, primary_key=True),
    sa.Column('channel_id', _TEXT),
    sa.Column('data', _JSON, nullable=False),
    sa.Index('ix_subscription_channel', 'channel_id'),
)

# The run-time overrides of polling.yaml's sources (the API's PUT
# /v2/polling/sources/{name}): one row per source, its overridden fields.
POLLING_OVERRIDE = sa.Table(
    'polling_override', METADATA,
    sa.Column('name', _TEXT, primary_key=True),
    sa.Column('data', _JSON, nullable=False),
)

# Delivery counters of subscriptions, added to by the agents.
SUBSCRIPTION_COUNTER = sa.Table(
    'subscription_counter', METADATA,
    sa.Column('subscription_id', _TEXT, primary_key=True),
    sa.Column('delivered', sa.BigInteger(), nullable=False),
    sa.Column('dropped', sa.BigInteger(), nullable=False),
    sa.Column('last_error', _TEXT),
)

# One row: bumped by every change of the subscriptions, so agents know
# when to read them again.
SUBSCRIPTION_VERSION = sa.Table(
    'subscription_version', METADATA,
    sa.Column('id', sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
)

# Staging of record_samples: one per database session.
INCOMING = sa.Table(
    'sample_incoming', sa.MetaData(),
    *(sa.Column(c.name, c.type) for c in SAMPLE.c),
    sa.Column('meter_key', _TEXT),
    prefixes=['TEMPORARY'], postgresql_on_commit='DELETE ROWS',
)

SCHEMA = sa.Table(
    'calipso_schema', METADATA,
    sa.Column('version', sa.Integer(), nullable=False),
)
