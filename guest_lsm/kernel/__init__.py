"""The kernel side: the BPF object's build and loader, and the proc connector."""
