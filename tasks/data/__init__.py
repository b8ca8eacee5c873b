"""Data stages: download, prepare (genres), the data gate (validate)."""
