"""calipso-telemetry agent: notifications and polls become samples."""
