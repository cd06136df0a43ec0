"""SQL storage drivers (SQLAlchemy Core): SQLite embedded, PostgreSQL.

One module per job: ``schema`` (the tables), ``values`` (timestamps and
JSON as stored), ``compiler`` (complex queries to SQL), ``writes``,
``reads``, ``statistics`` and ``crud`` (the parts of a connection),
``connection`` (what the dialects share), and one connection class per
dialect, ``sqlite.Connection`` and ``postgresql.Connection``, which the
``calipso.storage`` namespace maps to their URL schemes.
"""
