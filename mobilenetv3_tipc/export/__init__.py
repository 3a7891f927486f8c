"""Exported model folders: their file layout (``layout``), the exporter and the legacy program."""
