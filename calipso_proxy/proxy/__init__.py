"""calipso-proxy: one monitoring channel's tenant-facing proxy (app,
project scope, tenant authentication, token gate, liveness socket and
the client of the backend API)."""
