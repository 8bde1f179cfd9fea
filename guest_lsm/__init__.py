"""The guest half of CSM: an observe-only BPF LSM, its loader and the agent."""
