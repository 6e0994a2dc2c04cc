"""The queue backend: the sans-IO queue engine (`engine.py`) and its asyncio shell
(`service.py`, `BackendService`, which implements `qnode.frontend.api.QueueApi`).
See docs/design/engine.md."""
