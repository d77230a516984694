"""Running jobs on remote machines over SSH: host-key pinning, the client key,
fan-out command execution, staging files in and following output back."""
