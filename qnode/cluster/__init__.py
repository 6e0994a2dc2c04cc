"""Cluster wiring: peer transport, metadata bootstrap, queue definitions through Raft, status."""
