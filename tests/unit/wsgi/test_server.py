"""The gunicorn server module (the real server runs in
tests/functional/api/test_server.py)."""

from calipso_agent.wsgi import server


def application(environ, start_response):
    start_response('200 OK', [])
    return [b'']


def test_server_settings():
    wsgi = server.WSGIServer(lambda: application, {
        'bind': '127.0.0.1:9999', 'workers': 3, 'threads': 5,
        'worker_class': 'gthread', 'proc_name': 'calipso-test',
        'timeout': None, 'not_a_gunicorn_setting': 1})
    assert wsgi.cfg.bind == ['127.0.0.1:9999']
    assert (wsgi.cfg.workers, wsgi.cfg.threads) == (3, 5)
    assert wsgi.cfg.worker_class_str == 'gthread'
    assert wsgi.cfg.proc_name == 'calipso-test'
    assert wsgi.load() is application


def test_bind_address():
    assert server.bind_address('0.0.0.0', 8777) == '0.0.0.0:8777'
    assert server.bind_address('::1', 8777) == '[::1]:8777'
    assert server.bind_address('[::]', 80) == '[::]:80'


def test_serve_runs_gthread_workers(monkeypatch):
    ran = {}

    def run(self):
        ran['cfg'] = self.cfg
        ran['app'] = self.load()

    monkeypatch.setattr(server.WSGIServer, 'run', run)
    server.serve(lambda: application, '127.0.0.1', 8080, workers=2,
                 threads=7, proc_name='calipso-api')
    assert ran['cfg'].bind == ['127.0.0.1:8080']
    assert (ran['cfg'].workers, ran['cfg'].threads) == (2, 7)
    assert ran['cfg'].worker_class_str == 'gthread'
    assert ran['app'] is application
    if 'control_socket_disable' in ran['cfg'].settings:
        assert ran['cfg'].control_socket_disable
