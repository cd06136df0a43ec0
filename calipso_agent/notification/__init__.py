"""The notification agent: bus notifications become samples."""
