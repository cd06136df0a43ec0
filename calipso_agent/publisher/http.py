"""http(s)://[user:password@]host[:port]/path?options: JSON POST of samples.

Options, removed from the query string before posting (the rest of the
query is kept), with Ceilometer's names: ``timeout`` (seconds, 5),
``max_retries`` (2), ``verify_ssl`` (bool or CA bundle path), ``batch``
(true: one POST per publish call, false: one per sample), ``clientcert``
and ``clientkey``.
"""

import os
import urllib.parse

import orjson
import requests
from requests import adapters
from urllib3.util import retry as urllib3_retry

from calipso_agent.publisher import base

_OPTIONS = frozenset({'timeout', 'max_retries', 'verify_ssl', 'batch',
                      'clientcert', 'clientkey'})

# Answers worth another try: the receiver is overloaded or restarting.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_FACTOR = 0.2


class HttpPublisher(base.Publisher):

    HEADERS = {'Content-Type': 'application/json'}

    def __init__(self, conf, parsed_url):
        super().__init__(conf, parsed_url)
        # Never put the user:password part of the URL in a message.
        netloc = parsed_url.netloc.rpartition('@')[2]
        if not parsed_url.hostname:
            raise base.PublisherConfigError(
                f'{parsed_url.scheme} publisher URL has no host')
        try:
            valid_port = parsed_url.port != 0
        except ValueError:
            valid_port = False
        if not valid_port:
            raise base.PublisherConfigError(
                f'{parsed_url.scheme} publisher: {netloc!r} has an invalid '
                f'port')
        self.timeout = self.option('timeout', 5.0, float)
        if not self.timeout > 0:
            raise base.PublisherConfigError(
                f'timeout must be positive, got {self.timeout}')
        self.max_retries = self.option('max_retries', 2, int)
        if self.max_retries < 0:
            raise base.PublisherConfigError(
                f'max_retries must not be negative, got {self.max_retries}')
        self.batch = self.option('batch', True, bool)
        self.verify_ssl = self._verify_option()
        self.client_cert = self._cert_option()
        if parsed_url.username:
            self.auth = (urllib.parse.unquote(parsed_url.username),
                         urllib.parse.unquote(parsed_url.password or ''))
        else:
            self.auth = None
        query = [(key, value) for key, value in urllib.parse.parse_qsl(
            parsed_url.query, keep_blank_values=True)
            if key not in _OPTIONS]
        self.target = urllib.parse.urlunsplit((
            parsed_url.scheme, netloc,
            parsed_url.path, urllib.parse.urlencode(query),
            parsed_url.fragment))
        # POST is retried too: sample ids make a resent batch harmless.
        retries = urllib3_retry.Retry(
            total=self.max_retries, allowed_methods=None,
            status_forcelist=RETRY_STATUSES, backoff_factor=BACKOFF_FACTOR,
            raise_on_status=False)
        adapter = adapters.HTTPAdapter(max_retries=retries)
        self.session = requests.Session()
        self.session.mount('http://', adapter)
        self.session.mount('https://', adapter)

    def _verify_option(self):
        raw = self.options.get('verify_ssl')
        if raw is None:
            return True
        try:
            return self.option('verify_ssl', True, bool)
        except base.PublisherConfigError:
            if not os.path.exists(raw):
                raise base.PublisherConfigError(
                    f'verify_ssl={raw!r} is neither a boolean nor an '
                    f'existing CA bundle path')
            return raw

    def _cert_option(self):
        cert = self.options.get('clientcert')
        key = self.options.get('clientkey')
        if key and not cert:
            raise base.PublisherConfigError('clientkey needs clientcert')
        for path in (cert, key):
            if path and not os.path.isfile(path):
                raise base.PublisherConfigError(
                    f'client certificate file {path!r} does not exist')
        if cert and key:
            return cert, key
        return cert

    def _post(self, data):
        body = orjson.dumps(data, default=str,
                            option=orjson.OPT_NON_STR_KEYS)
        try:
            response = self.session.post(
                self.target, data=body, headers=self.HEADERS,
                timeout=self.timeout, auth=self.auth, cert=self.client_cert,
                verify=self.verify_ssl, allow_redirects=False)
        except requests.RequestException as exc:
            raise base.PublisherError(f'POST {self.target} failed: {exc}')
        response.close()
        if not 200 <= response.status_code < 300:
            raise base.PublisherError(
                f'POST {self.target} answered {response.status_code} '
                f'{response.reason}')

    def publish_samples(self, samples):
        if not samples:
            return
        data = [sample.as_dict() for sample in samples]
        if self.batch:
            self._post(data)
        else:
            for item in data:
                self._post(item)

    def close(self):
        self.session.close()
