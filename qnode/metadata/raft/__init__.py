"""Raft consensus for the metadata store: a sans-IO core (core.py), its storage (storage.py) and
an asyncio driver (driver.py). See docs/design/raft.md."""
