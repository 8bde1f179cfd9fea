"""The guest half of csm-receiver: BPF LSM, loader and agent."""
