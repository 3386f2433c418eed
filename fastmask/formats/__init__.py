"""Readers and writers of mask files, label maps and dataset layouts (no metrics, no engine)."""
