"""Authentication filters of the paste pipelines of the API and the
channel controller:

* ``NoAuth``: development only, no authentication (see api/rbac.py).
* ``auth_token_factory``: keystonemiddleware's auth_token reading
  ``[keystone_authtoken]`` from calipso's own configuration.
"""

from keystonemiddleware import auth_token
from oslo_config import cfg

from calipso_agent import project_scope
from calipso_agent.wsgi import middleware, paste_app

SCOPE_ENVIRON_KEY = 'HTTP_' + project_scope.HEADER.upper().replace('-', '_')


class NoAuth(middleware.Filter):
    """Development only: trusts the identity headers as sent. A request
    without ``X-Roles`` is an admin's, unless it declares a channel's
    project scope (a channel's proxy without service credentials, as
    ``calipso run`` starts them): it then has the proxies' reader role
    (``[api] multi_project_role``), limited to that scope and checked
    against its signature as with Keystone, so a proxy reads the same
    on a development API as on a real one."""

    def __init__(self, application, reader_role=None):
        super().__init__(application)
        self.reader_role = reader_role

    @classmethod
    def factory(cls, global_conf, **local_conf):
        conf = paste_app.conf_of(global_conf)
        reader_role = None
        try:
            reader_role = conf.api.multi_project_role
        except (AttributeError, cfg.NoSuchOptError):
            # The controller's pipeline: no API options, no reader.
            pass

        def filter_(application):
            return cls(application, reader_role)
        return filter_

    def __call__(self, environ, start_response):
        if not environ.get('HTTP_X_ROLES'):
            declares_scope = bool(environ.get(SCOPE_ENVIRON_KEY))
            environ['HTTP_X_ROLES'] = (
                self.reader_role if declares_scope and self.reader_role
                else 'admin')
        return self.application(environ, start_response)


def auth_token_factory(global_conf, **local_conf):
    """keystonemiddleware's auth_token filter on calipso's options.

    A ``[keystone_authtoken]`` without an auth plugin would answer every
    request 500 (the middleware cannot validate tokens): loading fails
    instead, so the daemon refuses to start and says why.
    """
    options = {k: v for k, v in global_conf.items() if k != paste_app.CONF_KEY}
    options.update(local_conf)
    conf = paste_app.conf_of(global_conf)
    if conf is not None:
        options['oslo_config_config'] = conf
    make_filter = auth_token.filter_factory(options)

    def filter_(application):
        middleware = make_filter(application)
        if conf is not None and not conf.keystone_authtoken.auth_type:
            raise ValueError(
                '[keystone_authtoken] has no auth_type: configure the '
                'Keystone service user that validates tokens (auth_type = '
                'password, auth_url, username, password, project_name, '
                'user_domain_name, project_domain_name, '
                'www_authenticate_uri), or use auth_strategy = noauth for '
                'development (doc/auth.md)')
        return middleware
    return filter_
