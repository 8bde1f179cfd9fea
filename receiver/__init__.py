"""csm-receiver: the host side of the Container Security Monitor."""
