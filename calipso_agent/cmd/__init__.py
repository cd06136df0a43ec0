"""Console entry points: parse the configuration, start a service."""

import warnings

# oslo.messaging's listener imports oslo.service, which imports eventlet
# only to warn that eventlet is deprecated; the daemons do not use it.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
