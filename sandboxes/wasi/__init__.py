"""What the guest sees of the host: Warden's WASI functions and the run's files."""
