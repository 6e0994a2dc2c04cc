"""Write-ahead log: CRC32C-checked segmented log, group commit, recovery, checkpoints.

Import from the modules (kept import-light so the simulator can use the synchronous core without
pulling in asyncio): `qnode.wal.writer` (`Wal`, `WalConfig`: the asyncio API the engine uses),
`qnode.wal.log` (`SegmentedLog`: the synchronous core), `qnode.wal.fs` (`RealFs`, `MemFs`),
`qnode.wal.record` (`Record`, `encode_partition_header`, `decode_partition_header`),
`qnode.wal.errors` (`WalCorruption`, `WalBackpressure`, `WalFailed`), `qnode.wal.cli` (`wal_cli`).
Design: docs/design/wal.md.
"""
