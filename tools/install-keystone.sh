#!/usr/bin/env bash
# Installs the OpenStack Keystone the functional tests run (tests/identity.py)
# into a virtualenv of its own: its pins would clash with the project's.
#
# The venv is $CALIPSO_TEST_KEYSTONE_VENV, by default
# ~/.cache/calipso-test/keystone-venv. Idempotent: a venv whose
# keystone-manage answers and whose stamp matches the pins below is left
# alone. Keystone is served by gunicorn (keystone.wsgi.api:application).
set -euo pipefail

VENV="${CALIPSO_TEST_KEYSTONE_VENV:-$HOME/.cache/calipso-test/keystone-venv}"
PYTHON="${PYTHON:-python3}"

# Keystone 30.0.0 (the newest release; it needs Python >= 3.11) and the
# versions it was tested with here, so a new release of a dependency
# cannot break the tests overnight.
CONSTRAINTS='
alembic==1.20.1
amqp==5.4.2
aniso8601==10.0.1
attrs==26.1.0
bcrypt==5.0.0
blinker==1.9.0
cachetools==8.0.1
certifi==2026.10.18
cffi==2.1.1
charset-normalizer==3.5.2
click==8.5.1
cryptography==50.0.2
debtcollector==3.1.0
decorator==5.3.1
defusedxml==0.7.1
dnspython==2.9.2
dogpile.cache==1.5.0
elementpath==4.8.0
eventlet==0.41.3
fasteners==0.20
Flask==3.1.3
Flask-RESTful==0.3.10
futurist==3.5.0
greenlet==3.5.6
gunicorn==27.0.1
idna==3.20
iso8601==2.1.0
itsdangerous==2.2.0
Jinja2==3.1.6
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
keystone==30.0.0
keystoneauth1==5.18.1
keystonemiddleware==13.0.1
kombu==5.7.0
Mako==1.4.3
MarkupSafe==3.0.4
msgpack==1.2.4
netaddr==1.3.0
oauthlib==4.0.1
os-service-types==1.9.0
oslo.cache==4.3.0
oslo.concurrency==7.6.1
oslo.config==10.7.0
oslo.context==6.5.0
oslo.db==18.1.1
oslo.i18n==6.9.0
oslo.log==8.3.2
oslo.messaging==18.3.1
oslo.metrics==0.17.0
oslo.middleware==8.2.0
oslo.policy==6.0.1
oslo.serialization==5.11.0
oslo.service==4.8.0
oslo.upgradecheck==2.8.0
oslo.utils==10.2.0
osprofiler==4.4.0
packaging==26.3
Paste==3.10.1
PasteDeploy==3.1.0
pbr==7.1.3
prettytable==3.18.0
prometheus_client==0.26.0
psutil==7.2.2
pycadf==4.1.0
pycparser==3.12
PyJWT==2.15.1
pyOpenSSL==26.4.0
pyparsing==3.3.3
pysaml2==7.5.5
python-dateutil==4.0.0
python-keystoneclient==6.0.0
pytz==2026.6
PyYAML==6.0.3
referencing==0.37.0
repoze-lru==0.8
requests==2.34.2
rfc3986==2.0.0
Routes==2.5.1
rpds-py==2026.9.1
six==1.17.0
SQLAlchemy==2.1.9
statsd==4.0.1
stevedore==5.10.0
testresources==2.1.2
testscenarios==0.7.0
typing_extensions==4.16.0
tzdata==2026.6
urllib3==2.8.0
vine==5.1.0
wcwidth==0.9.4
WebOb==1.8.11
Werkzeug==3.1.9
wrapt==2.5.2
xmlschema==2.5.1
yappi==1.7.6
'
STAMP_WANTED="$(printf '%s' "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)"
STAMP="$VENV/.calipso-keystone-stamp"

healthy() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_WANTED" ] &&
        [ -x "$VENV/bin/gunicorn" ] &&
        PYTHONWARNINGS=ignore "$VENV/bin/keystone-manage" --version \
            >/dev/null 2>&1
}

mkdir -p "$(dirname "$VENV")"
# Two test runs starting at once must not build the same venv together.
exec 9>"$VENV.lock"
flock 9

if healthy; then
    echo "keystone venv $VENV is up to date" \
        "(keystone $("$VENV/bin/keystone-manage" --version 2>/dev/null))"
    exit 0
fi

echo "building keystone venv $VENV"
rm -rf "$VENV"
trap 'rm -rf "$VENV"' ERR
"$PYTHON" -m venv "$VENV"
constraints_file="$VENV/constraints.txt"
printf '%s\n' "$CONSTRAINTS" >"$constraints_file"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
    -c "$constraints_file" keystone gunicorn 2> >(
        grep -v "^WARNING: Location 'file://" >&2)
PYTHONWARNINGS=ignore "$VENV/bin/keystone-manage" --version >/dev/null
printf '%s' "$STAMP_WANTED" >"$STAMP"
trap - ERR
echo "installed keystone $("$VENV/bin/keystone-manage" --version \
    2>/dev/null) and gunicorn $("$VENV/bin/gunicorn" --version \
    2>/dev/null | awk '{print $NF}' | tr -d '()') into $VENV"
