import json
import logging
import logging.handlers
import os
import threading
import urllib.parse

import pytest

from calipso_agent import sample as sample_mod
from calipso_agent.publisher import base
from calipso_agent.publisher import file as file_pub
from tests.helpers import basics
from tests.helpers.basics import make_sample


@pytest.fixture
def conf():
    return basics.make_conf()


def make(conf, url):
    return file_pub.FilePublisher(conf, urllib.parse.urlparse(url))


def read_lines(path):
    with open(path, 'rb') as f:
        return f.read().splitlines()


def test_entry_point(conf, tmp_path):
    pub = basics.load_publisher(conf, f'file://{tmp_path}/out.json')
    assert isinstance(pub, file_pub.FilePublisher)
    pub.close()


def test_one_json_object_per_line(conf, tmp_path):
    path = tmp_path / 'out.json'
    pub = make(conf, f'file://{path}')
    samples = [make_sample(i) for i in range(3)]
    pub.publish_samples(samples)
    # Readable before close: the batch was flushed.
    lines = read_lines(path)
    assert [sample_mod.Sample.from_dict(json.loads(line))
            for line in lines] == samples
    pub.publish_samples([make_sample(3)])
    assert len(read_lines(path)) == 4
    pub.close()


def test_existing_file_is_appended(conf, tmp_path):
    path = tmp_path / 'out.json'
    path.write_bytes(b'{"old": 1}\n')
    pub = make(conf, f'file://{path}')
    pub.publish_samples([make_sample()])
    pub.close()
    assert read_lines(path)[0] == b'{"old": 1}'
    assert len(read_lines(path)) == 2


def test_a_torn_last_line_is_ended_before_the_next_sample(conf, tmp_path,
                                                           caplog):
    path = tmp_path / 'out.json'
    whole = make_sample(0).to_json()
    torn = make_sample(1).to_json()[:40]
    path.write_bytes(whole + b'\n' + torn)
    with caplog.at_level(logging.WARNING):
        pub = make(conf, f'file://{path}')
    pub.publish_samples([make_sample(2)])
    pub.close()
    assert read_lines(path) == [whole, torn, make_sample(2).to_json()]
    assert 'last line was torn' in caplog.text


def test_non_json_metadata_is_stringified(conf, tmp_path):
    path = tmp_path / 'out.json'
    pub = make(conf, f'file://{path}')
    pub.publish_samples([make_sample(resource_metadata={'x': {1, 2}})])
    pub.close()
    assert isinstance(json.loads(read_lines(path)[0])['resource_metadata']
                      ['x'], str)


def test_batch_is_one_write(conf, tmp_path):
    pub = make(conf, f'file://{tmp_path}/out.json')
    writes = []
    real = pub._file.write

    def spy(data):
        writes.append(data)
        return real(data)

    pub._file.write = spy
    pub.publish_samples([make_sample(i) for i in range(10)])
    pub.close()
    assert len(writes) == 1
    assert writes[0].count(b'\n') == 10


def test_empty_batch_writes_nothing(conf, tmp_path):
    path = tmp_path / 'out.json'
    pub = make(conf, f'file://{path}')
    pub.publish_samples([])
    pub.close()
    assert path.read_bytes() == b''


def reference_rotation(path, max_bytes, backup_count, batches):
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=backup_count)
    handler.setFormatter(logging.Formatter('%(message)s'))
    logger = logging.Logger('reference')
    logger.addHandler(handler)
    for batch in batches:
        for smp in batch:
            logger.info(smp.to_json().decode())
    handler.close()


# Lines are about 310 bytes; 250 makes every line larger than max_bytes.
@pytest.mark.parametrize('max_bytes,backup_count', [
    (700, 3), (1000, 2), (2000, 1), (1500, 4), (250, 3)])
def test_rotation_matches_rotating_file_handler(conf, tmp_path, max_bytes,
                                                backup_count):
    # Short metadata: the line lengths the max_bytes above were chosen for.
    metadata = {'host': 'compute-1'}
    batches = [[make_sample(i * 10 + j, resource_metadata=metadata)
                for j in range(1 + i % 4)]
               for i in range(12)]
    line_length = len(batches[0][0].to_json()) + 1
    ours = tmp_path / 'ours'
    ref = tmp_path / 'ref'
    ours.mkdir()
    ref.mkdir()
    pub = make(conf, f'file://{ours}/s.json?max_bytes={max_bytes}'
                     f'&backup_count={backup_count}')
    for batch in batches:
        pub.publish_samples(batch)
    pub.close()
    reference_rotation(str(ref / 's.json'), max_bytes, backup_count,
                       batches)
    assert sorted(os.listdir(ours)) == sorted(os.listdir(ref))
    for name in os.listdir(ref):
        assert (ours / name).read_bytes() == (ref / name).read_bytes()
        if line_length < max_bytes:
            assert (ours / name).stat().st_size < max_bytes
    assert len(os.listdir(ours)) == 1 + backup_count


@pytest.mark.parametrize('query', ['max_bytes=0&backup_count=3',
                                   'max_bytes=100&backup_count=0', ''])
def test_no_rotation(conf, tmp_path, query):
    path = tmp_path / 'out.json'
    pub = make(conf, f'file://{path}?{query}')
    for i in range(20):
        pub.publish_samples([make_sample(i)])
    pub.close()
    assert os.listdir(tmp_path) == ['out.json']
    assert len(read_lines(path)) == 20


def test_file_moved_away_is_reopened(conf, tmp_path):
    path = tmp_path / 'out.json'
    pub = make(conf, f'file://{path}')
    pub.publish_samples([make_sample(0)])
    os.rename(path, tmp_path / 'moved.json')
    pub.publish_samples([make_sample(1)])
    pub.close()
    assert len(read_lines(path)) == 1
    assert len(read_lines(tmp_path / 'moved.json')) == 1


def test_fsync(conf, tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, 'fsync',
                        lambda fd: synced.append(fd) or real_fsync(fd))
    pub = make(conf, f'file://{tmp_path}/out.json?fsync=true')
    pub.publish_samples([make_sample()])
    assert len(synced) == 1
    pub.close()
    pub = make(conf, f'file://{tmp_path}/out.json')
    pub.publish_samples([make_sample()])
    pub.close()
    assert len(synced) == 1


def test_concurrent_batches_do_not_interleave(conf, tmp_path):
    path = tmp_path / 'out.json'
    pub = make(conf, f'file://{path}?max_bytes=20000&backup_count=50')

    def worker(n):
        for i in range(25):
            pub.publish_samples([make_sample(n * 1000 + i * 10 + j)
                                 for j in range(4)])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pub.close()
    lines = []
    for name in os.listdir(tmp_path):
        lines.extend(read_lines(tmp_path / name))
    ids = {json.loads(line)['id'] for line in lines}
    assert len(lines) == len(ids) == 8 * 25 * 4


@pytest.mark.skipif(not os.path.exists('/dev/full'), reason='no /dev/full')
def test_io_error_is_publisher_error(conf):
    pub = make(conf, 'file:///dev/full')
    with pytest.raises(base.PublisherError, match='/dev/full'):
        pub.publish_samples([make_sample()])
    pub.close()


def test_recovers_after_io_error(conf, tmp_path, monkeypatch):
    path = tmp_path / 'out.json'
    pub = make(conf, f'file://{path}')

    def broken(handle, chunk):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(pub, '_flush', broken)
    with pytest.raises(base.PublisherError, match='No space left'):
        pub.publish_samples([make_sample()])
    monkeypatch.undo()
    pub.publish_samples([make_sample()])
    pub.close()
    assert len(read_lines(path)) == 1


@pytest.mark.parametrize('url,message', [
    ('file:relative/out.json', 'not absolute'),
    ('file://', 'not absolute'),
    ('file:', 'not absolute'),
    ('file://somehost/tmp/out.json', 'not a host'),
    ('file://{tmp}', 'is a directory'),
    ('file://{tmp}/missing-dir/out.json', 'cannot open'),
    ('file://{tmp}/o?max_bytes=ten', "max_bytes='ten' is not a valid int"),
    ('file://{tmp}/o?backup_count=1.5', "backup_count='1.5'"),
    ('file://{tmp}/o?max_bytes=-1', 'must not be negative'),
    ('file://{tmp}/o?fsync=maybe', "fsync='maybe' is not a valid bool"),
    ('file://{tmp}/o?max_bytes=10&colour=red', 'unknown .*colour'),
])
def test_bad_url(conf, tmp_path, url, message):
    with pytest.raises(base.PublisherConfigError, match=message):
        make(conf, url.format(tmp=tmp_path))
