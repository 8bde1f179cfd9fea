"""Benchmarks and the guest-fleet simulator."""
