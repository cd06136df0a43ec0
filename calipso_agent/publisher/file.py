"""file:///abs/path?max_bytes=N&backup_count=N&fsync=bool

One JSON sample per line. Rotation follows RotatingFileHandler: before a
line that would bring the file to ``max_bytes`` the file becomes ``.1``,
``.1`` becomes ``.2`` and so on up to ``backup_count``; ``max_bytes=0``
or ``backup_count=0`` never rotates. A line a killed writer left torn is
ended when the file is opened again: readers skip one unreadable line.
"""

import logging
import os
import threading
import urllib.parse

from calipso_agent.publisher import base

LOG = logging.getLogger(__name__)

_OPTIONS = frozenset({'max_bytes', 'backup_count', 'fsync', 'json'})


class FilePublisher(base.Publisher):

    def __init__(self, conf, parsed_url):
        super().__init__(conf, parsed_url)
        if parsed_url.netloc not in ('', 'localhost'):
            raise base.PublisherConfigError(
                f'file publisher needs file:///absolute/path, '
                f'not a host ({parsed_url.netloc!r})')
        path = urllib.parse.unquote(parsed_url.path)
        if not path or not os.path.isabs(path):
            raise base.PublisherConfigError(
                f'file publisher path {path!r} is not absolute; use '
                f'file:///absolute/path')
        if os.path.isdir(path):
            raise base.PublisherConfigError(
                f'file publisher path {path} is a directory')
        unknown = sorted(set(self.options) - _OPTIONS)
        if unknown:
            raise base.PublisherConfigError(
                f'unknown file publisher option(s): {", ".join(unknown)}')
        self.path = path
        self.max_bytes = self.option('max_bytes', 0, int)
        self.backup_count = self.option('backup_count', 0, int)
        if self.max_bytes < 0 or self.backup_count < 0:
            raise base.PublisherConfigError(
                'max_bytes and backup_count must not be negative')
        if self.max_bytes and not self.backup_count:
            LOG.warning('%s: max_bytes without backup_count, the file '
                        'will not be rotated', path)
        self.fsync = self.option('fsync', False, bool)
        self._lock = threading.Lock()
        self._file = None
        try:
            self._open()
        except OSError as exc:
            raise base.PublisherConfigError(
                f'cannot open {path} for appending: {exc}')

    def _open(self):
        self._file = open(self.path, 'ab')
        self._end_torn_line(self._file)
        return self._file

    def _end_torn_line(self, handle):
        """End the file's last line when a writer killed mid-write left it
        without its newline (SIGKILL can cut a write at a page): the torn
        line stays one unreadable line instead of swallowing the next
        sample. Its samples were not acknowledged: they come again. (Not
        cut off: another process appending to the path may be writing
        it.)"""
        size = os.fstat(handle.fileno()).st_size
        if not size:
            return
        with open(self.path, 'rb') as tail:
            tail.seek(size - 1)
            last = tail.read(1)
        if last and last != b'\n':
            handle.write(b'\n')
            handle.flush()
            LOG.warning('%s: its last line was torn (a writer killed '
                        'mid-line); ended, samples follow on a line of '
                        'their own', self.path)

    def _close_file(self):
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    def _current_file(self):
        """The open file, reopened if the path now names another file.

        Another process sharing the path, or logrotate, may have moved it.
        """
        if self._file is None:
            return self._open()
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            on_disk = None
        opened = os.fstat(self._file.fileno())
        if (on_disk is None or (on_disk.st_dev, on_disk.st_ino)
                != (opened.st_dev, opened.st_ino)):
            self._close_file()
            return self._open()
        return self._file

    def _needs_rollover(self, size, length):
        return (self.max_bytes > 0 and self.backup_count > 0 and size > 0
                and size + length >= self.max_bytes)

    def _rollover(self):
        self._close_file()
        for index in range(self.backup_count - 1, 0, -1):
            older = f'{self.path}.{index}'
            if os.path.exists(older):
                os.replace(older, f'{self.path}.{index + 1}')
        if os.path.exists(self.path):
            os.replace(self.path, f'{self.path}.1')
        if self.fsync:
            self._fsync_dir()
        return self._open()

    def _fsync_dir(self):
        fd = os.open(os.path.dirname(self.path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _flush(self, handle, chunk):
        handle.write(b''.join(chunk))
        handle.flush()
        if self.fsync:
            os.fsync(handle.fileno())

    def _write(self, lines):
        handle = self._current_file()
        size = os.fstat(handle.fileno()).st_size
        chunk = []
        for line in lines:
            if self._needs_rollover(size, len(line)):
                if chunk:
                    self._flush(handle, chunk)
                    chunk = []
                handle = self._rollover()
                size = os.fstat(handle.fileno()).st_size
            chunk.append(line)
            size += len(line)
        if chunk:
            self._flush(handle, chunk)

    def publish_samples(self, samples):
        if not samples:
            return
        lines = [sample.to_json() + b'\n' for sample in samples]
        with self._lock:
            try:
                self._write(lines)
            except OSError as exc:
                self._close_file()
                raise base.PublisherError(
                    f'cannot write {len(lines)} samples to {self.path}: '
                    f'{exc}')

    def close(self):
        with self._lock:
            self._close_file()
