"""Fixtures shared by every test suite."""

import pytest

from tests.helpers import identity, openstack_cloud


@pytest.fixture(scope='session')
def keystone():
    """A real Keystone on a loopback port, shared by the whole session.

    See tests/helpers/identity.py for the projects, users and helpers it has.
    """
    with identity.Keystone() as server:
        yield server


@pytest.fixture
def openstack_deployment(keystone):
    """A factory of fake OpenStack clouds in the real Keystone's catalog:
    ``openstack_deployment(**kwargs)`` builds ``openstack_cloud.Cloud.build
    (**kwargs)`` (projects default to project-a and project-b), serves it,
    registers it in a region of its own and returns the
    ``openstack_cloud.Deployment``; all are removed after the test."""
    made = []

    def make(**kwargs):
        kwargs.setdefault('projects', (keystone.user_a.project_id,
                                       keystone.user_b.project_id))
        kwargs.setdefault('admin_project', keystone.projects['admin'])
        deployment = openstack_cloud.Deployment(
            keystone, openstack_cloud.Cloud.build(**kwargs))
        made.append(deployment)
        return deployment

    yield make
    for deployment in made:
        deployment.close()
