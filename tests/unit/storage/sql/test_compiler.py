"""What each dialect's compiler makes of the terms where the dialects
differ (their results are checked against the reference by the
store tests)."""

from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from calipso_agent.storage.sql import compiler


def sql(condition, dialect):
    return str(condition.compile(dialect=dialect,
                                 compile_kwargs={'literal_binds': True}))


def test_like_is_glob_on_sqlite_and_escaped_like_on_postgresql():
    expression = {'like': {'name': 'cpu_*\\'}}
    on_sqlite = compiler.SqliteCompiler().where(expression)
    on_pg = compiler.PostgresqlCompiler().where(expression)
    assert sql(on_sqlite, sqlite_dialect.dialect()) == (
        "sample.name GLOB 'cpu?[*]\\'")
    assert sql(on_pg, pg_dialect.dialect()) == (
        "sample.name LIKE 'cpu_*\\\\'")


def test_a_nul_value_matches_nothing_only_on_postgresql():
    expression = {'=': {'name': 'a\x00b'}}
    on_pg = compiler.PostgresqlCompiler().where(expression)
    on_sqlite = compiler.SqliteCompiler().where(expression)
    assert sql(on_pg, pg_dialect.dialect()) == 'false'
    assert 'sample.name =' in sql(on_sqlite, sqlite_dialect.dialect())


def test_metadata_values_by_dialect():
    expression = {'=': {'resource_metadata.a.1': 2}}
    on_pg = sql(compiler.PostgresqlCompiler().where(expression),
                pg_dialect.dialect())
    on_sqlite = sql(compiler.SqliteCompiler().where(expression),
                    sqlite_dialect.dialect())
    assert "jsonb_typeof" in on_pg and "'object'" in on_pg
    assert "json_type(sample.resource_metadata, '$.\"a\".\"1\"')" in (
        on_sqlite)


def test_group_values_carry_the_kind_only_on_sqlite():
    assert len(compiler.SqliteCompiler().group_values(
        'resource_metadata.a')) == 2
    assert len(compiler.PostgresqlCompiler().group_values(
        'resource_metadata.a')) == 1


def test_fields_and_meter_terms():
    expression = {'and': [{'=': {'project_id': 'p'}},
                          {'not': {'>': {'volume': 1}}}]}
    assert compiler.fields(expression) == {'project_id', 'volume'}
    assert compiler.meter_terms(expression) == {'=': {'project_id': 'p'}}
    assert compiler.SqliteCompiler().where(None) is None
