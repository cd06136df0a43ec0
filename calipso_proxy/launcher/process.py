"""ProcessLauncher: every proxy a local process in a session of its own.

The command is ``sys.executable -m calipso_proxy.cmd.proxy --config-file
PATH`` (no console script needed on PATH); its output is appended to
``proxy.log`` (mode 0600, like the config: it may name tokens' projects
and the service user) and its pid file ``proxy.pid`` (JSON) written in the
channel's directory. The pid file holds the channel id, the config path
and the process's start time read from /proc/<pid>/stat: a pid counts as
the proxy only while its start time is that one and its command line
names the config path or the channel id (gunicorn retitles the proxy
``gunicorn: master [calipso-proxy-<channel id>]``), so a pid reused by
another program is never taken for a proxy. Linux only (/proc).
"""

import contextlib
import datetime
import json
import logging
import os
import signal
import subprocess
import sys
import time

from calipso_proxy.launcher import base

LOG = logging.getLogger(__name__)

PID_FILE = 'proxy.pid'
LOG_FILE = 'proxy.log'
PROXY_COMMAND = (sys.executable, '-m', 'calipso_proxy.cmd.proxy')
KILL_WAIT = 5.0
POLL_INTERVAL = 0.05


def _stat(pid):
    """(state, process group, start time) of a process, None when there
    is no such process."""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as handle:
            data = handle.read()
    except OSError:
        return None
    # Fields after "(comm)": state is field 3, pgrp 5, starttime 22.
    fields = data[data.rindex(b')') + 2:].split()
    return fields[0].decode(), int(fields[2]), int(fields[19])


def _cmdline(pid):
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as handle:
            return handle.read().replace(b'\0', b' ').decode(
                'utf-8', 'replace')
    except OSError:
        return ''


def _marked(pid, info):
    """Whether the command line of ``pid`` names this proxy."""
    cmdline = _cmdline(pid)
    return info['config_path'] in cmdline or info['channel_id'] in cmdline


def _live(stat):
    return stat is not None and stat[0] not in 'ZX'


def _wait_marked(pid, info, timeout=2.0):
    """Wait until the command line of the process just started names
    its proxy: for a moment after exec it is empty (the kernel sets it up
    after the exec is reported), and a process not marked would not be
    taken for the channel's proxy."""
    deadline = time.monotonic() + timeout
    while not _marked(pid, info) and _live(_stat(pid)) and (
            time.monotonic() < deadline):
        time.sleep(0.001)


def _group_members(pgid):
    """Pids of the live (not zombie) processes of group ``pgid``."""
    members = []
    for name in os.listdir('/proc'):
        if name.isdigit():
            stat = _stat(name)
            if _live(stat) and stat[1] == pgid:
                members.append(int(name))
    return members


class ProcessLauncher(base.Launcher):
    """``command`` replaces the proxy command (tests only)."""

    def __init__(self, conf, command=None):
        super().__init__(conf)
        self.command = list(command or PROXY_COMMAND)
        self.stop_timeout = conf.controller.proxy_stop_timeout
        # Proxies started by this process, to reap them when they exit.
        self._children = {}

    def _pid_path(self, channel_id):
        return os.path.join(base.channel_dir(self.conf, channel_id),
                            PID_FILE)

    def _read(self, channel_id):
        try:
            with open(self._pid_path(channel_id)) as handle:
                info = json.load(handle)
        except (OSError, ValueError):
            return None
        if not isinstance(info, dict) or not isinstance(info.get('pid'),
                                                        int):
            return None
        if info.get('channel_id') != channel_id:
            return None
        return info

    def _is_proxy(self, info):
        stat = _stat(info['pid'])
        return (_live(stat) and stat[2] == info.get('starttime')
                and _marked(info['pid'], info))

    def _reap(self):
        for pid, process in list(self._children.items()):
            if process.poll() is not None:
                del self._children[pid]

    def _info(self, channel_id):
        self._reap()
        info = self._read(channel_id)
        if info is not None and self._is_proxy(info):
            return info
        return None

    def start(self, channel, config_path, port):
        channel_id = channel['id']
        info = self._info(channel_id)
        if info is not None:
            return info
        # What is left of a dead proxy (its workers) holds its port.
        self.stop(channel_id)
        directory = base.channel_dir(self.conf, channel_id)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        fd = os.open(os.path.join(directory, LOG_FILE),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, 'ab') as log:
            log.write(f'--- {now.isoformat()} calipso-proxy-controller: '
                      f'starting the proxy of channel {channel_id} on port '
                      f'{port}\n'.encode())
            log.flush()
            # Popen returns once the command is exec'd.
            process = subprocess.Popen(
                self.command + ['--config-file', config_path],
                stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=directory,
                start_new_session=True)
        self._children[process.pid] = process
        info = {'pid': process.pid, 'channel_id': channel_id,
                'config_path': config_path, 'port': port,
                'started_at': now.isoformat()}
        _wait_marked(process.pid, info)
        stat = _stat(process.pid)
        info['starttime'] = stat[2] if stat else None
        path = self._pid_path(channel_id)
        with open(path + '.tmp', 'w') as handle:
            json.dump(info, handle)
        os.replace(path + '.tmp', path)
        return info

    def _signal_group(self, pgid, signum):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)

    def _wait_gone(self, pgid, timeout):
        deadline = time.monotonic() + timeout
        while True:
            self._reap()
            if not _group_members(pgid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_INTERVAL)

    def stop(self, channel_id):
        self._reap()
        info = self._read(channel_id)
        if info is None:
            return False
        pgid = info['pid']
        alive = self._is_proxy(info)
        # The leader may be dead and its workers not: the group is still
        # the proxy's while one of them is (a pid in use as a process
        # group id is never given to another process).
        ours = alive or any(_marked(pid, info)
                            for pid in _group_members(pgid))
        if ours:
            self._signal_group(pgid, signal.SIGTERM)
            if not self._wait_gone(pgid, self.stop_timeout):
                LOG.warning('Proxy of channel %s (pid %s) still running '
                            '%ss after SIGTERM: killing it', channel_id,
                            pgid, self.stop_timeout)
                self._signal_group(pgid, signal.SIGKILL)
                self._wait_gone(pgid, KILL_WAIT)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._pid_path(channel_id))
        return alive

    def running(self):
        self._reap()
        try:
            names = os.listdir(base.state_dir(self.conf))
        except FileNotFoundError:
            return {}
        found = {}
        for channel_id in sorted(names):
            info = self._read(channel_id)
            if info is not None and self._is_proxy(info):
                found[channel_id] = info
        return found

    def alive(self, channel_id):
        return self._info(channel_id) is not None
