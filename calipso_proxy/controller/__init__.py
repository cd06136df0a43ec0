"""calipso-proxy-controller: the monitoring channel API and the
reconciler keeping one proxy process running per channel."""
