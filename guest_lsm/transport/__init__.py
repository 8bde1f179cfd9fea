"""Getting frames to the host: the bounded outbox and the host connection."""
