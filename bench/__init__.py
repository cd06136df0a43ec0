"""Benchmarks of calipso-telemetry (``python -m bench.notification_agent``)."""
