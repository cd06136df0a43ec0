"""The web layer the v2 API, a channel's proxy and the channel controller
share: JSON errors, the router, paste-deploy loading, gunicorn serving and
the generic filters. It imports neither the API nor a storage driver,
except ``store_app`` (the base of the applications over the store), which
a proxy never loads."""
