"""The proxy's /healthcheck, which names the proxy.

The controller asks a proxy's liveness socket first; its HTTP check (for
a proxy it cannot ask there) must not take the answer of another program
on the channel's port (another controller's proxy, a port taken while
the proxy was down) for the proxy's: the answer carries ``IDENTITY_HEADER``
with the proxy's ``[proxy] liveness_socket`` name, which the controller
compares with the channel's.
"""

from calipso_agent.wsgi import middleware, paste_app

IDENTITY_HEADER = 'X-Calipso-Proxy'


def filter_factory(global_conf, **local_conf):
    """paste-deploy ``filter_factory``: /healthcheck with the header."""
    conf = paste_app.required_conf(global_conf, 'the proxy\'s healthcheck')
    name = conf.proxy.liveness_socket
    headers = {IDENTITY_HEADER: name} if name else {}
    return lambda application: middleware.Healthcheck(application, headers)
