"""Every option of the proxy and its controller, registered in one place.

A channel's proxy reads only ``[proxy]`` and ``[service_credentials]``
(the controller writes that file); the controller reads ``[controller]``,
``[service_credentials]`` (copied into each proxy's file), calipso's
``[database]`` (where channels are stored) and keystonemiddleware's
``[keystone_authtoken]``. ``list_opts`` is the ``oslo.config.opts`` entry
point ``calipso_proxy`` read by oslo-config-generator.
"""

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

from calipso_agent import opts as agent_opts

SERVICE_CREDENTIALS = 'service_credentials'

PROXY_OPTS = [
    cfg.StrOpt('channel_id',
               help='Id of the monitoring channel this proxy serves.'),
    cfg.ListOpt('authorized_projects',
                default=[],
                help='OpenStack project IDs the channel may see; every '
                     'forwarded query is limited to them.'),
    cfg.URIOpt('backend_url',
               default='http://127.0.0.1:8777',
               help='Root URL of the calipso query API the proxy forwards '
                    'to.'),
    cfg.StrOpt('token_hash',
               secret=True,
               help='SHA-256 (hex) of the channel token tenants present '
                    'in X-Auth-Token. The token itself is never stored.'),
    cfg.StrOpt('scope_signature',
               secret=True,
               help='Signature of authorized_projects by the controller '
                    '([api] scope_signing_key), sent to the API with the '
                    'project scope of every request. Written by the '
                    'controller; empty when the API has no key.'),
    cfg.BoolOpt('accept_keystone_tokens',
                default=True,
                help='Also accept Keystone tokens scoped to one of the '
                     'authorized projects (validated against Keystone '
                     'with the service credentials).'),
    cfg.IntOpt('keystone_token_cache_time',
               default=60,
               min=0,
               help='Seconds a validated Keystone token is trusted before '
                    'it is validated again (never beyond its expiry). A '
                    'token revoked in Keystone keeps working on this proxy '
                    'for up to this time: lower it (0: validate every '
                    'request) where revocation must act at once.'),
    cfg.IntOpt('negative_cache_time',
               default=10,
               min=0,
               help='Seconds a token Keystone refused is refused again '
                    'without asking Keystone (0: no negative cache).'),
    cfg.IntOpt('negative_cache_size',
               default=10000,
               min=0,
               help='Refused tokens remembered (least recently refused '
                    'forgotten first).'),
    cfg.IntOpt('max_identity_lookups',
               default=4,
               min=1,
               help='Keystone token validations one proxy worker process '
                    'runs at once; a request needing one more is answered '
                    '503 with Retry-After. Keep it well below [proxy] '
                    'threads so that unknown tokens never hold every '
                    'thread.'),
    cfg.IntOpt('failed_auth_burst',
               default=20,
               min=0,
               help='Failed authentications a client address may make in '
                    'a row before it is answered 429 with Retry-After '
                    '(0: no limit). Valid tokens are never limited. '
                    'Behind a reverse proxy every client has its '
                    'address: raise it there.'),
    cfg.FloatOpt('failed_auth_rate',
                 default=1.0,
                 min=0.001,
                 help='Failed authentications a second a client address '
                      'earns back once it reached failed_auth_burst.'),
    cfg.StrOpt('liveness_socket',
               help='Name of an abstract Unix socket (Linux) on which the '
                    'proxy\'s master process answers liveness checks, '
                    'even while every worker thread is busy (the '
                    'controller sets it: calipso-proxy-<channel id>). '
                    'Unset: only /healthcheck on the proxy\'s port.'),
    cfg.URIOpt('public_url',
               help='URL tenants reach this proxy at (the channel\'s '
                    'ceilometer_url, written by the controller): resource '
                    'links point there. Default: http://<host>:<port>. '
                    'The request\'s Host header is never used.'),
    cfg.FloatOpt('backend_timeout',
                 default=60.0,
                 min=0.1,
                 help='Seconds to wait for the backend API.'),
    cfg.HostAddressOpt('host',
                       default='127.0.0.1',
                       help='Address the proxy listens on.'),
    cfg.PortOpt('port',
                default=8780,
                help='Port the proxy listens on.'),
    cfg.IntOpt('workers',
               default=1,
               min=1,
               help='Proxy worker processes.'),
    cfg.IntOpt('threads',
               default=16,
               min=1,
               help='Threads per proxy worker process.'),
    cfg.StrOpt('paste_config',
               default='proxy-paste.ini',
               help='paste-deploy file of the proxy (looked up like a '
                    'config file, then in etc/calipso of the source).'),
]

CONTROLLER_OPTS = [
    cfg.HostAddressOpt('host',
                       default='127.0.0.1',
                       help='Address the channel controller API listens '
                            'on.'),
    cfg.PortOpt('port',
                default=8779,
                help='Port of the channel controller API.'),
    cfg.IntOpt('workers',
               default=1,
               min=1,
               help='Controller API worker processes.'),
    cfg.IntOpt('threads',
               default=8,
               min=1,
               help='Threads per controller worker process.'),
    cfg.StrOpt('paste_config',
               default='proxy-controller-paste.ini',
               help='paste-deploy file of the controller API.'),
    cfg.StrOpt('auth_strategy',
               default='keystone',
               choices=[('keystone', 'Keystone tokens with the admin role'),
                        ('noauth', 'No authentication: development only')],
               help='How controller API requests are authenticated.'),
    cfg.StrOpt('admin_role',
               default='admin',
               help='Role a Keystone token needs to use the controller '
                    'API.'),
    cfg.URIOpt('backend_url',
               default='http://127.0.0.1:8777',
               help='Query API URL written into every proxy\'s config.'),
    cfg.HostAddressOpt('proxy_host',
                       default='127.0.0.1',
                       help='Address proxies listen on.'),
    cfg.StrOpt('proxy_public_host',
               help='Host name put into ceilometer_url (default: '
                    'proxy_host).'),
    cfg.PortOpt('proxy_port_min',
                default=9100,
                help='First port of the range given to proxies.'),
    cfg.PortOpt('proxy_port_max',
                default=9199,
                help='Last port of the range given to proxies.'),
    cfg.StrOpt('proxy_state_dir',
               default='$state_path/proxies',
               help='Where each proxy\'s generated config, log and pid '
                    'file are kept.'),
    cfg.StrOpt('launcher',
               default='process',
               help='calipso_proxy.launcher plugin starting the proxies.'),
    cfg.FloatOpt('reconcile_interval',
                 default=2.0,
                 min=0.1,
                 help='Seconds between two reconciliations of stored '
                      'channels with running proxies.'),
    cfg.FloatOpt('proxy_start_timeout',
                 default=30.0,
                 min=1,
                 help='Seconds a new proxy has to answer its healthcheck '
                      'before it is restarted.'),
    cfg.FloatOpt('proxy_restart_backoff_initial',
                 default=1.0,
                 min=0,
                 help='Seconds to wait before starting again a proxy that '
                      'exited, or was restarted, without ever answering its '
                      'healthcheck; doubled on each such start in a row.'),
    cfg.FloatOpt('proxy_restart_backoff_max',
                 default=60.0,
                 min=0,
                 help='Longest wait between two starts of a proxy that '
                      'does not answer.'),
    cfg.FloatOpt('proxy_stop_timeout',
                 default=10.0,
                 min=0.1,
                 help='Seconds a proxy has to exit after SIGTERM before it '
                      'is killed (SIGKILL).'),
    cfg.FloatOpt('proxy_healthcheck_timeout',
                 default=1.0,
                 min=0.1,
                 help='Seconds the controller waits for a proxy\'s '
                      '/healthcheck answer.'),
]


def list_opts():
    """Options per group, for oslo-config-generator and register_opts."""
    auth_opts = ks_loading.get_auth_common_conf_options() + [
        o for o in ks_loading.get_auth_plugin_conf_options('password')
        if o.name not in {c.name for c in
                          ks_loading.get_auth_common_conf_options()}]
    return [
        ('proxy', PROXY_OPTS),
        ('controller', CONTROLLER_OPTS),
        (SERVICE_CREDENTIALS,
         auth_opts + ks_loading.get_session_conf_options()),
    ]


def register_opts(conf):
    """Register [proxy], [controller] and the keystoneauth1 options of
    [service_credentials] (the plugin's own options are registered when
    it is loaded)."""
    register_proxy_opts(conf)
    conf.register_opts(CONTROLLER_OPTS, group='controller')


def register_proxy_opts(conf):
    """What a channel's proxy process registers: [proxy] and the
    keystoneauth1 options of [service_credentials]. No [database]: a
    proxy never holds database credentials."""
    conf.register_opts(PROXY_OPTS, group='proxy')
    ks_loading.register_auth_conf_options(conf, SERVICE_CREDENTIALS)
    ks_loading.register_session_conf_options(conf, SERVICE_CREDENTIALS)


def _agent_opts(options, names):
    return [option for option in options if option.name in names]


def register_controller_opts(conf):
    """What the controller process registers: its own options, the ones
    it renders into its proxies' configuration (register_opts), and of
    the agent's only the store it keeps channels in ([database], and
    ``state_path`` for the default SQLite path) and ``[api]
    scope_signing_key``, which signs each channel's projects."""
    register_opts(conf)
    conf.register_opts(agent_opts.DATABASE_OPTS, group='database')
    conf.register_opts(_agent_opts(agent_opts.DEFAULT_OPTS, {'state_path'}))
    conf.register_opts(_agent_opts(agent_opts.API_OPTS,
                                   {'scope_signing_key'}), group='api')
