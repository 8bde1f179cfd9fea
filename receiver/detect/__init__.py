"""Detection: built-in detections and operator rules evaluated as events are
stored, turned into deduplicated findings and sent to the store, the live
feed, the log and a webhook."""
