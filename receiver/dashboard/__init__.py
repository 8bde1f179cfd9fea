"""The operator dashboard: static pages served by the receiver at ``/``."""

from receiver.dashboard.serve import STATIC_DIR, add_dashboard

__all__ = ["STATIC_DIR", "add_dashboard"]
