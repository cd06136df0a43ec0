"""Fixtures shared by every test suite."""

import pytest

from tests.helpers import identity


@pytest.fixture(scope='session')
def keystone():
    """A real Keystone on a loopback port, shared by the whole session.

    See tests/helpers/identity.py for the projects, users and helpers it has.
    """
    with identity.Keystone() as server:
        yield server
