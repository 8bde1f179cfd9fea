"""Enrichment: identities, process table, containers, and what /proc can add."""
