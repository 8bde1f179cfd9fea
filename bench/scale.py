"""``csm-bench scale``: many connected VMs, and queries on a big store."""

import argparse
from collections.abc import Sequence


def run_scale_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``csm-bench scale``."""
    raise NotImplementedError
