"""Every configuration option of calipso-telemetry, registered in one place.

``list_opts`` is the ``oslo.config.opts`` entry point read by
oslo-config-generator; ``register_opts`` is what the daemons and tools call.
"""

import socket

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg, types

DEFAULT_OPTS = [
    cfg.StrOpt('host',
               default=socket.gethostname(),
               sample_default='<server-hostname.example.com>',
               help='Name of this node, used as the publisher id of what '
                    'this node sends.'),
    cfg.StrOpt('state_path',
               default='/var/lib/calipso',
               help='Directory where calipso keeps its state (the embedded '
                    'database, rotated files).'),
    cfg.StrOpt('sample_source',
               default='openstack',
               help='Source written into every sample built on this node.'),
    cfg.ListOpt('reserved_metadata_namespace',
                default=['metering.'],
                help='Prefixes of user metadata keys (instance metadata) '
                     'copied into resource_metadata.user_metadata.'),
    cfg.IntOpt('reserved_metadata_length',
               default=256,
               min=1,
               help='Longest user metadata value kept; longer ones are '
                    'truncated.'),
    cfg.ListOpt('reserved_metadata_keys',
                default=[],
                help='Further user metadata keys copied into '
                     'resource_metadata.user_metadata.'),
]

def metrics_opts(daemon):
    """Where ``daemon`` answers /metrics (doc/metrics.md)."""
    return [
        cfg.HostAddressOpt('metrics_host',
                           default='127.0.0.1',
                           help=f'Address {daemon} answers /metrics on '
                                '(Prometheus format, the sum over its '
                                'workers).'),
        cfg.PortOpt('metrics_port',
                    default=0,
                    help=f'Port {daemon} answers /metrics on; 0 serves '
                         'no metrics (each agent of a host needs a port '
                         'of its own).'),
    ]


NOTIFICATION_OPTS = [
    cfg.ListOpt('exchanges',
                default=['nova', 'neutron', 'cinder', 'glance', 'heat',
                         'keystone', 'vcpeservice'],
                help='Exchanges the notification agent listens on.'),
    cfg.ListOpt('topics',
                default=['notifications'],
                help='Notification topics listened on in every exchange.'),
    cfg.StrOpt('pool',
               help='Listener pool name. Agents with the same pool share '
                    'one queue named after the pool (competing consumers); '
                    'agents of different pools each get every '
                    'notification. Unset: the services\' own '
                    '<topic>.<priority> queues are consumed.'),
    cfg.IntOpt('batch_size',
               default=100,
               min=1,
               help='Notifications handed to the endpoints at once.'),
    cfg.IntOpt('batch_timeout',
               default=5,
               min=1,
               help='Seconds to wait for a batch to fill before handling a '
                    'partial one.'),
    cfg.IntOpt('workers',
               default=1,
               min=1,
               help='Listener processes started by the notification '
                    'agent.'),
    *metrics_opts('the notification agent'),
    cfg.ListOpt('endpoints',
                default=['meter', 'vsg', 'inventory'],
                help='Notification endpoints to load from the '
                     'calipso.notification namespace.'),
    cfg.FloatOpt('requeue_backoff_initial',
                 default=0.5,
                 min=0,
                 help='Seconds to wait before requeueing a batch whose '
                      'samples could not be published; doubled on each '
                      'consecutive failure.'),
    cfg.FloatOpt('requeue_backoff_max',
                 default=30.0,
                 min=0,
                 help='Longest wait before requeueing a failed batch.'),
    cfg.BoolOpt('batched_amqp_consumer',
                default=True,
                help='Consume rabbit:// transports with calipso\'s batched '
                     'AMQP consumer (one decode per message, one ack frame '
                     'per run of acknowledged messages) under '
                     'oslo.messaging\'s batch listener, instead of '
                     'oslo.messaging\'s rabbit driver. Other transports '
                     'always use oslo.messaging\'s own driver.'),
    cfg.IntOpt('prefetch',
               default=1000,
               min=1,
               help='Notifications the batched AMQP consumer receives ahead '
                    'of processing (AMQP prefetch count); at least '
                    'batch_size.'),
    cfg.StrOpt('pipeline_cfg_file',
               default='pipeline.yaml',
               help='Pipeline definition file (sources, sinks and '
                    'publishers); a relative path is looked up in the '
                    'configuration directories.'),
    cfg.StrOpt('dead_letter_queue',
               default='notifications.dead',
               help='Queue (bound to [delivery] dead_letter_exchange) '
                    'keeping the notifications the agent can never '
                    'process; see calipso-dead-letters.'),
]

METER_OPTS = [
    cfg.MultiStrOpt('meter_definitions_dirs',
                    default=['/etc/calipso/meters.d'],
                    help='Directories whose *.yaml files define meters, '
                         'read in order, files sorted by name.'),
    cfg.MultiStrOpt('meter_definitions_paths',
                    default=[],
                    help='Further meter definition files, read after the '
                         'directories. A later definition of a meter name '
                         'replaces an earlier one.'),
    cfg.BoolOpt('allow_no_definitions',
                default=False,
                help='Start the notification agent with the meter '
                     'endpoint although no meter definition loaded (it '
                     'then makes no sample from notifications). Off: such '
                     'a start fails, naming the places looked at.'),
]

PUBLISHER_OPTS = [
    cfg.StrOpt('telemetry_secret',
               default='change this for valid signing',
               secret=True,
               help='Secret signing the samples that leave on the bus or '
                    'over UDP (message_signature), as Ceilometer does.'),
]

PUBLISHER_NOTIFIER_OPTS = [
    cfg.StrOpt('metering_topic',
               default='metering',
               help='Topic samples are published on by notifier://.'),
    cfg.StrOpt('telemetry_driver',
               default='messagingv2',
               help='oslo.messaging notification driver of notifier://.'),
]


POLLING_OPTS = [
    cfg.StrOpt('cfg_file',
               default='polling.yaml',
               help='Polling definition file (sources: meters, interval, '
                    'resources, discovery; Ceilometer\'s format); a '
                    'relative path is looked up in the configuration '
                    'directories. Samples go through [notification] '
                    'pipeline_cfg_file, as the notification agent\'s.'),
    cfg.FloatOpt('cfg_check_interval',
                 default=5.0,
                 min=0.1,
                 help='Seconds between checks of whether the polling file '
                      'changed (it is also reloaded on SIGHUP).'),
    cfg.FloatOpt('pollster_timeout',
                 default=60.0,
                 min=0.01,
                 help='Seconds a pollster may take in one cycle; one that '
                      'takes longer is logged and skipped for that cycle. '
                      'Pollsters of one step group (the host pollsters) '
                      'share one such timeout.'),
    cfg.IntOpt('batch_size',
               default=1000,
               min=1,
               help='Most samples handed to the publishers at once.'),
    cfg.IntOpt('max_pending_samples',
               default=100000,
               min=1,
               help='Most polled samples kept for a retry while the '
                    'publishers fail; beyond it the agent skips polling '
                    '(logged) until they are handed over, so no sample '
                    'already polled is dropped.'),
    cfg.FloatOpt('retry_backoff_initial',
                 default=0.5,
                 min=0.01,
                 help='Seconds before the first retry of a batch whose '
                      'publish failed; doubled at each failure.'),
    cfg.FloatOpt('retry_backoff_max',
                 default=30.0,
                 min=0.01,
                 help='Longest wait between retries of a failing batch.'),
    cfg.StrOpt('coordination_url',
               secret=True,
               help='tooz coordination URL (e.g. redis://127.0.0.1:6379) '
                    'through which polling agents split the resources of '
                    'each source (a hash ring per source). Unset: this '
                    'agent polls every resource.'),
    cfg.FloatOpt('member_timeout',
                 default=10.0,
                 min=0.5,
                 help='Seconds without heartbeat (sent every half of it) '
                      'after which the other agents take an agent for '
                      'gone and poll its share from their next cycle; '
                      'keep it below the shortest source interval.'),
] + metrics_opts('the polling agent')

COMPUTE_OPTS = [
    cfg.StrOpt('libvirt_uri',
               default='qemu:///system',
               help='libvirt connection URI of the compute pollsters and '
                    'the local_instances discovery (e.g. qemu:///system; '
                    'test:///path/to/node.xml is libvirt\'s test driver). '
                    'Opened read-only.'),
]

HOST_POLLSTER_OPTS = [
    cfg.StrOpt('disk_exclude',
               default=r'^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$',
               help='Regular expression of the block devices whose '
                    'disk.read.bytes and disk.write.bytes the host '
                    'pollsters leave out (searched in the device name). '
                    'The default, node_exporter\'s, leaves out RAM, loop '
                    'and floppy devices and partitions (their I/O is '
                    'counted in their disk\'s). Empty: every device.'),
    cfg.StrOpt('interface_exclude',
               default='',
               help='Regular expression of the network interfaces the '
                    'host pollsters leave out (searched in the interface '
                    'name), e.g. ^(lo|veth.*)$. Empty: every interface.'),
]

VSG_OPTS = [
    cfg.ListOpt('instances',
                default=[],
                help='CORD vSG service instances the vsg pollsters poll, '
                     'as <vcpe id>=<URL of its stats document> entries.'),
    cfg.URIOpt('instances_url',
               schemes=['http', 'https'],
               help='An XOS-like endpoint listing the vSG service '
                    'instances (a JSON list, or {"items": [...]}, of '
                    '{"id", "stats_url", "tenant_id", "user_id"}); added '
                    'to [vsg] instances. Unset: the option\'s list only.'),
    cfg.FloatOpt('http_timeout',
                 default=10.0,
                 min=0.1,
                 help='Seconds the vsg pollsters and discovery wait for an '
                      'answer.'),
]
INVENTORY_OPTS = [
    cfg.StrOpt('connection',
               secret=True,
               help='Database URL of the inventory (objects and links the '
                    'inventory endpoint makes of notifications): '
                    'sqlite:///PATH, postgresql://..., mongodb://... '
                    'Unset: the sample store ([database] connection).'),
]


DATABASE_OPTS = [
    cfg.StrOpt('connection',
               secret=True,
               help='Database URL of the sample store: sqlite:///PATH '
                    '(embedded), postgresql://..., mongodb://... Unset: '
                    'an SQLite file in state_path.'),
    cfg.IntOpt('metering_time_to_live',
               default=-1,
               help='Seconds samples are kept; -1 keeps them forever. '
                    'MongoDB expires them with a TTL index, the SQL stores '
                    'with calipso-expirer.'),
    cfg.IntOpt('max_retries',
               default=-1,
               help='Attempts to reach the database at start-up; -1 '
                    'retries forever.'),
    cfg.FloatOpt('retry_interval',
                 default=2.0,
                 min=0,
                 help='Seconds between attempts to reach the database.'),
]

COLLECTOR_OPTS = [
    cfg.IntOpt('batch_size',
               default=500,
               min=1,
               help='Notifications (each a list of samples) taken from the '
                    'bus at once; their samples are written together.'),
    cfg.IntOpt('batch_timeout',
               default=2,
               min=1,
               help='Seconds to wait for a batch to fill.'),
    cfg.IntOpt('workers',
               default=1,
               min=1,
               help='Collector processes.'),
    *metrics_opts('the collector'),
    cfg.FloatOpt('requeue_backoff_initial',
                 default=0.5,
                 min=0,
                 help='Seconds to wait before requeueing a batch the '
                      'database did not take; doubled on each consecutive '
                      'failure.'),
    cfg.FloatOpt('requeue_backoff_max',
                 default=30.0,
                 min=0,
                 help='Longest wait before requeueing a failed batch.'),
    cfg.StrOpt('dead_letter_queue',
               default='samples.dead',
               help='Queue (bound to [delivery] dead_letter_exchange) '
                    'keeping the notifications of samples the collector '
                    'can never store; see calipso-dead-letters.'),
]

DELIVERY_OPTS = [
    cfg.StrOpt('dead_letter_exchange',
               default='calipso.dead',
               help='Direct exchange (durable) where the notification agent '
                    'and the collector publish, with the reason in a '
                    'header, what they can never process; each binds its '
                    'own dead_letter_queue to it.'),
    cfg.IntOpt('max_delivery_attempts',
               default=5,
               min=1,
               help='Times a notification that fails alone for an '
                    'unexplained reason (neither the store being away nor '
                    'a refusal of its data) is retried before it is '
                    'dead-lettered. Counted per worker process.'),
    cfg.IntOpt('max_notification_bytes',
               default=1048576,
               min=1024,
               help='Largest notification body the batched AMQP consumer '
                    'accepts; a larger one is dead-lettered unread.'),
    cfg.FloatOpt('outage_probe_interval',
                 default=1.0,
                 min=0.05,
                 help='While the store (or a publisher) is unavailable, '
                      'seconds between probes of it during a backoff '
                      'wait: the wait ends as soon as it answers.'),
]

SAMPLE_LIMITS_OPTS = [
    cfg.IntOpt('max_id_length',
               default=255,
               min=1,
               help='Longest resource_id, project_id, user_id and meter '
                    'name (characters), as wide as Ceilometer\'s columns. '
                    'A sample with a longer one is refused and its '
                    'notification dead-lettered.'),
    cfg.IntOpt('max_metadata_bytes',
               default=65536,
               min=256,
               help='Largest resource_metadata of a sample, as JSON '
                    'bytes; the largest top-level fields are dropped '
                    '(logged with the message id) until it fits.'),
    cfg.IntOpt('max_metadata_depth',
               default=64,
               min=1,
               help='Deepest nesting of resource_metadata; a top-level '
                    'field nested deeper is dropped (logged with the '
                    'message id).'),
]

API_OPTS = [
    cfg.HostAddressOpt('host',
                       default='0.0.0.0',
                       help='Address calipso-api listens on.'),
    cfg.PortOpt('port',
                default=8777,
                help='Port calipso-api listens on.'),
    cfg.IntOpt('workers',
               default=1,
               min=1,
               help='calipso-api worker processes.'),
    cfg.IntOpt('threads',
               default=4,
               min=1,
               help='Threads of each calipso-api worker (requests served '
                    'at once by one worker).'),
    cfg.StrOpt('paste_config',
               default='api-paste.ini',
               help='paste-deploy file of the API\'s pipelines; a relative '
                    'path is looked up in the configuration directories, '
                    'then in the source tree\'s etc/calipso and in '
                    '/etc/calipso.'),
    cfg.StrOpt('auth_strategy',
               default='keystone',
               choices=[('keystone', 'Keystone tokens (keystonemiddleware '
                                     'auth_token, [keystone_authtoken])'),
                        ('noauth', 'No authentication, for development '
                                   'only: identity headers are trusted as '
                                   'sent, and a request without X-Roles is '
                                   'an admin\'s')],
               help='Authentication: chooses the pipeline of paste_config '
                    '(main or noauth).'),
    cfg.IntOpt('default_api_return_limit',
               default=100,
               min=1,
               help='Items returned by a list request that gives no '
                    'limit.'),
    cfg.StrOpt('multi_project_role',
               default='calipso_reader',
               help='Read-only role of the channel proxies\' service user: '
                    'it never posts samples, and reads only inside the '
                    'projects each request names in the '
                    'X-Calipso-Project-Scope header (a query must limit '
                    'project_id to them; ids are read in them only). Give '
                    'the proxies a user with this role (and Keystone\'s '
                    '"service" role, to validate tenant tokens), never '
                    'admin. Do not use a role Keystone implies for members '
                    '(such as "reader"). The admin role always sees every '
                    'project.'),
    cfg.StrOpt('scope_signing_key',
               secret=True,
               help='Key signing the channels\' project scopes: the '
                    'controller (same option, same value) signs each '
                    'channel\'s projects into its proxy\'s configuration; '
                    'calipso-api then believes a reader\'s '
                    'X-Calipso-Project-Scope only with its signature, so '
                    'a proxy (or a stolen proxy.conf) cannot read beyond '
                    'its channel\'s projects. Unset: the declared scope is '
                    'taken as sent (proxy bugs still cannot widen it, a '
                    'forged declaration can). Proxies never hold the key. '
                    'Changing it makes the controller restart every proxy '
                    'with new signatures.'),
    cfg.URIOpt('public_url',
               schemes=['http', 'https'],
               help='URL at which clients reach calipso-api (scheme, host, '
                    'port and any path prefix, e.g. '
                    'https://telemetry.example.com:8777). The links of '
                    'answers (resources, versions) start with it. Unset: '
                    'the URL of each request, which a client chooses with '
                    'its Host header.'),
    cfg.StrOpt('clique_types',
               default='clique_types.yaml',
               help='File of the inventory graph\'s clique types (focal '
                    'point type and its ordered link types) and of the '
                    'dependency direction of each link type, read by the '
                    'clique, impact and path routes (doc/inventory-api.md); '
                    'a relative path is looked up in the configuration '
                    'directories, then in the shipped etc/calipso.'),
    cfg.StrOpt('opaque_id_key',
               secret=True,
               help='Key of the opaque tokens that stand for '
                    'infrastructure objects (hosts, agents, availability '
                    'zones) in a tenant\'s clique, impact, path and '
                    'topology: the same object gets the same token for '
                    'the same projects. Give every calipso-api the same '
                    'value. Unset: a random key per process, so the '
                    'tokens change on restart and between workers.'),
]


SERVICE_CREDENTIALS = 'service_credentials'

SERVICE_CREDENTIALS_OPTS = [
    cfg.StrOpt('region_name',
               help='Region of the catalog whose endpoints calipso calls '
                    '(the cloud the inventory scan lists); also the name of '
                    'the region object of the inventory. Unset: any region '
                    'of the catalog, and a region named "default".'),
    cfg.StrOpt('interface',
               default='public',
               choices=[('public', 'the public endpoints'),
                        ('internal', 'the internal endpoints'),
                        ('admin', 'the admin endpoints')],
               help='Interface of the catalog endpoints calipso calls.'),
]


def keystoneauth_opts():
    """keystoneauth1's options of [service_credentials]: the auth plugin
    choice, the password plugin's options (other plugins register their
    own when loaded) and the session's (TLS, timeout)."""
    common = ks_loading.get_auth_common_conf_options()
    names = {option.name for option in common}
    return (common + [option for option in
                      ks_loading.get_auth_plugin_conf_options('password')
                      if option.name not in names]
            + ks_loading.get_session_conf_options())


SCANNED_SERVICES = ('identity', 'compute', 'network', 'volume')

INVENTORY_SCAN_OPTS = [
    cfg.ListOpt('services',
                default=list(SCANNED_SERVICES),
                item_type=types.String(choices=SCANNED_SERVICES),
                help='Services calipso-inventory-scan lists: identity '
                     '(projects), compute (availability zones, hosts, '
                     'instances and their vNICs), network (networks, '
                     'subnets, ports, routers, floating IPs, agents\' '
                     'vservices and vedges), volume (volumes). Objects of '
                     'a service not listed are never marked deleted.'),
    cfg.DictOpt('service_types',
                default={},
                help='Catalog type of a scanned service where it is not '
                     'the usual one (identity, compute, network, '
                     'volumev3), e.g. volume:block-storage.'),
    cfg.IntOpt('page_size',
               default=500,
               min=1,
               help='Items asked for per request (limit) of the lists that '
                    'are paged; the scan follows the next links until the '
                    'end of each list.'),
]

SUBSCRIPTION_OPTS = [
    cfg.ListOpt('allowed_target_cidrs',
                default=[],
                help='Networks (CIDRs) the udp://, http:// and https:// '
                     'targets of tenant subscriptions may point to: a '
                     'target whose host resolves outside them is refused '
                     'at subscribe time and never sent to. Empty: any '
                     'address. Set it so that tenants cannot turn the '
                     'service against internal hosts.'),
    cfg.FloatOpt('refresh_interval',
                 default=1.0,
                 min=0.1,
                 help='Seconds between two looks of the subscription '
                      'publisher at the store\'s subscription version; a '
                      'change is read and in effect within this time.'),
    cfg.FloatOpt('counter_interval',
                 default=2.0,
                 min=0.1,
                 help='Seconds between two writes of the delivered and '
                      'dropped counts into the store (GET /v2/subscribe '
                      'shows them).'),
    cfg.IntOpt('queue_size',
               default=10000,
               min=1,
               help='Samples waiting for one target; past that, new '
                    'samples for it are dropped and counted, so a slow or '
                    'dead target never holds the pipeline.'),
    cfg.IntOpt('http_batch_size',
               default=100,
               min=1,
               help='Samples at most in one POST to an http(s) target.'),
    cfg.FloatOpt('http_timeout',
                 default=2.0,
                 min=0.1,
                 help='Seconds an http(s) target has to answer a POST.'),
    cfg.IntOpt('http_max_retries',
               default=3,
               min=0,
               help='Retries of a POST that failed, with a backoff '
                    'doubling from http_retry_backoff; then its samples '
                    'are dropped and counted.'),
    cfg.FloatOpt('http_retry_backoff',
                 default=0.2,
                 min=0,
                 help='Seconds before the first retry of a failed POST.'),
    cfg.IntOpt('delivery_niceness',
               default=10,
               min=0,
               max=19,
               help='Niceness added to the subscription publisher\'s '
                    'delivery process (it signs, encodes and sends the '
                    'samples of subscriptions): where CPU is short, the '
                    'pipeline (storing samples, acknowledging batches) '
                    'goes first and deliveries wait, then drop (counted).'),
    cfg.StrOpt('amqp_url',
               secret=True,
               help='Broker of the amqp:// targets (a kombu URL such as '
                    'amqp://user:password@127.0.0.1:5672//): each such '
                    'subscription gets a durable queue of its own there. '
                    'Unset: the transport_url of the agent.'),
]


def list_opts():
    """Options per group, for oslo-config-generator and register_opts."""
    return [
        ('DEFAULT', DEFAULT_OPTS),
        ('notification', NOTIFICATION_OPTS),
        ('meter', METER_OPTS),
        ('polling', POLLING_OPTS),
        ('compute', COMPUTE_OPTS),
        ('host_pollsters', HOST_POLLSTER_OPTS),
        ('vsg', VSG_OPTS),
        ('publisher', PUBLISHER_OPTS),
        ('publisher_notifier', PUBLISHER_NOTIFIER_OPTS),
        ('database', DATABASE_OPTS),
        ('inventory', INVENTORY_OPTS),
        ('collector', COLLECTOR_OPTS),
        ('delivery', DELIVERY_OPTS),
        ('sample_limits', SAMPLE_LIMITS_OPTS),
        ('api', API_OPTS),
        (SERVICE_CREDENTIALS, SERVICE_CREDENTIALS_OPTS + keystoneauth_opts()),
        ('inventory_scan', INVENTORY_SCAN_OPTS),
        ('subscription', SUBSCRIPTION_OPTS),
    ]


def register_opts(conf):
    """Register every option; of [service_credentials] only keystoneauth1's
    plugin choice and session options besides ours: the plugin's own
    (some required) are registered when it is loaded."""
    for group, options in list_opts():
        if group == SERVICE_CREDENTIALS:
            conf.register_opts(SERVICE_CREDENTIALS_OPTS, group=group)
            ks_loading.register_auth_conf_options(conf, group)
            ks_loading.register_session_conf_options(conf, group)
            continue
        conf.register_opts(options,
                           group=None if group == 'DEFAULT' else group)
