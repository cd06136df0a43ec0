"""Counting the answers of a channel's proxy (``calipso_proxy_requests_total``,
see calipso_agent.metrics)."""

from calipso_agent import metrics
from calipso_agent.wsgi import paste_app


class RequestCounter:
    """WSGI filter counting the answers of a channel's proxy by status.

    First in the proxy's pipeline, so refused tokens count too;
    /healthcheck (the controller's probe) and /metrics do not.
    """

    SKIPPED = ('/healthcheck', metrics.PATH)

    def __init__(self, application, channel_id):
        self.application = application
        self.channel_id = channel_id

    def __call__(self, environ, start_response):
        if environ.get('PATH_INFO', '').rstrip('/') in self.SKIPPED:
            return self.application(environ, start_response)

        def counting_start_response(status, headers, exc_info=None):
            metrics.PROXY_REQUESTS.labels(
                self.channel_id, status.split(' ', 1)[0]).inc()
            return start_response(status, headers, exc_info)
        return self.application(environ, counting_start_response)


def filter_factory(global_conf, **local_conf):
    """paste-deploy ``filter_factory`` of the counter."""
    conf = paste_app.required_conf(global_conf, 'the proxy\'s request '
                                                'counter')

    def make(application):
        return RequestCounter(application, conf.proxy.channel_id)
    return make
