"""Turn enriched kernel events into CSM protobuf events."""
