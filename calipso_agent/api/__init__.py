"""calipso-api: the Ceilometer v2-compatible query API (a webob WSGI
application composed with paste-deploy, served by gunicorn)."""
