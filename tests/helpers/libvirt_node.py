"""A node of libvirt's test driver holding nova instances: the XML file
``test:///<path>`` opens, written by a test (no hypervisor needed)."""

import dataclasses
import uuid
from xml.sax.saxutils import quoteattr

NOVA_NS = 'http://openstack.org/xmlns/libvirt/nova/1.1'
TEST_NS = 'http://libvirt.org/schemas/domain/test/1.0'
# The test driver's run states (virDomainState).
RUNNING = 1
SHUTOFF = 5


@dataclasses.dataclass
class Instance:
    """A domain as nova would define it (``nova=False``: another tool's
    domain, without nova's metadata)."""

    number: int
    display_name: str = 'server'
    project_id: str = 'project-a'
    user_id: str = 'user-a'
    flavor: str = 'm1.small'
    vcpus: int = 1
    ram_mb: int = 512
    disks: tuple = ('vda',)
    taps: tuple = ()
    state: int = RUNNING
    nova: bool = True
    id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def name(self):
        return f'instance-{self.number:08x}'

    def xml(self, directory):
        disks = ''.join(
            f'<disk type="file" device="disk"><source file='
            f'{quoteattr(str(directory / f"{self.name}-{dev}.img"))}/>'
            f'<target dev="{dev}" bus="virtio"/></disk>'
            for dev in self.disks)
        interfaces = ''.join(
            f'<interface type="ethernet"><mac address="fa:16:3e:00:'
            f'{self.number % 256:02x}:{index:02x}"/><target dev="{tap}"/>'
            f'</interface>' for index, tap in enumerate(self.taps))
        metadata = f'''<metadata><nova:instance xmlns:nova="{NOVA_NS}">
          <nova:package version="29.0.0"/>
          <nova:name>{self.display_name}</nova:name>
          <nova:flavor name="{self.flavor}"><nova:memory>{self.ram_mb}
          </nova:memory><nova:disk>1</nova:disk><nova:swap>0</nova:swap>
          <nova:ephemeral>0</nova:ephemeral><nova:vcpus>{self.vcpus}
          </nova:vcpus></nova:flavor>
          <nova:owner><nova:user uuid="{self.user_id}">u</nova:user>
          <nova:project uuid="{self.project_id}">p</nova:project>
          </nova:owner><nova:root type="image" uuid="image-1"/>
        </nova:instance></metadata>''' if self.nova else ''
        return f'''<domain type="test" xmlns:test="{TEST_NS}">
          <name>{self.name}</name><uuid>{self.id}</uuid>
          <memory unit="MiB">{self.ram_mb}</memory>
          <vcpu>{self.vcpus}</vcpu>{metadata}
          <os><type>hvm</type></os>
          <devices>{disks}{interfaces}</devices>
          <test:runstate>{self.state}</test:runstate>
        </domain>'''


def write_node(directory, instances):
    """Write the node XML of ``instances`` in ``directory``; returns the
    test driver's URI of it."""
    path = directory / 'libvirt-node.xml'
    path.write_text('<node>' + ''.join(i.xml(directory) for i in instances)
                    + '</node>')
    return f'test://{path}'
