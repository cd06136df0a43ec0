"""The interface of a launcher: what starts and stops channel proxies.

A launcher keeps what it needs to find its proxies again in the
channel's state directory (``channel_dir``), so that a restarted
controller, or another process of it, finds (adopts) the proxies started
before.
"""

import abc
import os

CONFIG_FILE = 'proxy.conf'


def state_dir(conf):
    return os.path.abspath(conf.controller.proxy_state_dir)


def channel_dir(conf, channel_id):
    """Where the config, log and pid file of a channel's proxy are."""
    return os.path.join(state_dir(conf), channel_id)


def config_path(conf, channel_id):
    return os.path.join(channel_dir(conf, channel_id), CONFIG_FILE)


class Launcher(abc.ABC):
    def __init__(self, conf):
        self.conf = conf

    @abc.abstractmethod
    def start(self, channel, config_path, port):
        """Start the proxy of ``channel`` (a dict with ``id``) reading
        ``config_path`` and listening on ``port``; return its info (as
        ``running()`` gives it). A proxy already running is left alone."""

    @abc.abstractmethod
    def stop(self, channel_id):
        """Stop the proxy of a channel and wait until it is gone; True if
        one was running."""

    @abc.abstractmethod
    def running(self):
        """{channel_id: info (a dict with at least ``pid``)} of the
        proxies running now, started by this process or not."""

    def alive(self, channel_id):
        """Whether the proxy of ``channel_id`` runs."""
        return channel_id in self.running()
