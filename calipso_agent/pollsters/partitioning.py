"""Resources split between polling agents with tooz.

Agents sharing a coordination URL join one tooz group per source
(``calipso.polling.<source>``). At each cycle an agent reads the group's
live members and keeps the resources a consistent hash ring of them maps
to itself: every resource is polled by exactly one agent while membership
is stable, and when one joins or leaves only its share moves.

tooz's heart thread beats every half ``member_timeout``; an agent that
stops beating (killed, frozen, cut off) drops out of the members
``member_timeout`` seconds after its last beat, and the others poll its
share from their next cycle on. Without a coordination URL,
``NoPartitioner`` keeps every resource.
"""

import logging
import os
import socket
import urllib.parse
import uuid

from tooz import coordination, hashring

from calipso_agent.pollsters import base

LOG = logging.getLogger(__name__)

GROUP_PREFIX = 'calipso.polling.'


class NoPartitioner:
    """One agent polls everything."""

    def join(self, source_name):
        pass

    def leave(self, source_name):
        pass

    def my_share(self, source_name, resources):
        return list(resources)

    def stop(self):
        pass


def with_member_timeout(url, member_timeout):
    """``url`` with tooz's ``membership_timeout`` (and, for the lock and
    socket waits, ``timeout``) set, unless the URL sets them."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    names = {name for name, _ in query}
    if 'membership_timeout' not in names:
        query.append(('membership_timeout', f'{member_timeout:g}'))
    if 'timeout' not in names:
        query.append(('timeout', str(max(1, int(member_timeout)))))
    return parts._replace(query=urllib.parse.urlencode(query)).geturl()


class Partitioner:
    """This agent's share of each source's resources, through tooz."""

    def __init__(self, url, member_timeout, member_id=None):
        self.member_id = (member_id or
                          f'{socket.gethostname()}.{os.getpid()}.'
                          f'{uuid.uuid4().hex[:8]}').encode()
        self.coordinator = coordination.get_coordinator(
            with_member_timeout(url, member_timeout), self.member_id)
        self.coordinator.start(start_heart=True)
        self.groups = set()

    @staticmethod
    def group_id(source_name):
        return (GROUP_PREFIX + source_name).encode()

    def join(self, source_name):
        """Join the source's group (made when missing). When the backend
        fails it is logged, and tried again at the source's next cycle."""
        group = self.group_id(source_name)
        self.groups.add(source_name)
        try:
            self.coordinator.join_group_create(group)
        except coordination.MemberAlreadyExist:
            pass
        except coordination.ToozError as exc:
            LOG.error('Polling source %s: cannot join group %s yet: %s',
                      source_name, group.decode(), exc)
            return
        LOG.info('Polling source %s: joined group %s as %s', source_name,
                 group.decode(), self.member_id.decode())

    def leave(self, source_name):
        if source_name not in self.groups:
            return
        self.groups.discard(source_name)
        try:
            self.coordinator.leave_group(self.group_id(source_name)).get()
        except (coordination.GroupNotCreated, coordination.MemberNotJoined):
            pass

    def members(self, source_name):
        """The live members of the source's group (joining again when the
        backend forgot this agent: it restarted, or the agent was cut off
        longer than the member timeout)."""
        group = self.group_id(source_name)
        try:
            members = self.coordinator.get_members(group).get()
        except coordination.GroupNotCreated:
            members = set()
        if self.member_id not in members:
            self.coordinator.join_group_create(group)
            members = set(members) | {self.member_id}
        return members

    def my_share(self, source_name, resources):
        """The resources the ring maps to this agent. Raises tooz's
        errors when the backend cannot be reached (the cycle is skipped:
        polling everything would duplicate the others' share)."""
        ring = hashring.HashRing(sorted(self.members(source_name)))
        return [resource for resource in resources
                if self.member_id in ring.get_nodes(
                    base.resource_key(resource).encode())]

    def stop(self):
        for source_name in list(self.groups):
            try:
                self.leave(source_name)
            except coordination.ToozError as exc:
                LOG.warning('Polling source %s: could not leave its group: '
                            '%s', source_name, exc)
        try:
            self.coordinator.stop()
        except coordination.ToozError as exc:
            LOG.warning('Coordination backend: stop failed: %s', exc)


def from_conf(conf):
    url = conf.polling.coordination_url
    if not url:
        return NoPartitioner()
    return Partitioner(url, conf.polling.member_timeout)
