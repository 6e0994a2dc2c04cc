"""Every bound in qnode, in one place, each with its unit and the reason for its value.

Components read these as defaults for their config sections (qnode/config.py); the relations
between them are asserted at import so that an edit that breaks one fails at once.
Units are last in names: `_size` is bytes, `_count` is a 1-based count, `_ms`/`_ns` are times.
"""

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# --- SQS semantics (documented SQS limits) -------------------------------------------------
message_size_max = 256 * KIB * 4          # 1 MiB: SQS's MaximumMessageSize ceiling (2025)
message_size_min = 1                      # SQS rejects empty bodies
message_attributes_count_max = 10         # SQS: up to 10 message attributes
batch_entries_count_max = 10              # SQS: SendMessageBatch etc. take at most 10 entries
batch_size_max = message_size_max         # SQS: a whole batch is at most the message size max
receive_count_max = 10                    # SQS: MaxNumberOfMessages 1..10
wait_ms_max = 20_000                      # SQS: long poll up to 20 s; more is InvalidParameterValue
delay_ms_max = 900_000                    # SQS: DelaySeconds 0..900
visibility_timeout_ms_max = 12 * 3600_000 # SQS: visibility timeout up to 12 h
visibility_timeout_ms_default = 30_000    # SQS default
retention_ms_min = 60_000                 # SQS: MessageRetentionPeriod 60 s ..
retention_ms_max = 14 * 86400_000         # .. 14 days
retention_ms_default = 4 * 86400_000      # SQS default: 4 days
queue_name_length_max = 80                # SQS queue names are 1..80 characters
inflight_per_queue_max = 120_000          # SQS standard-queue in-flight cap (OverLimit)
inflight_per_fifo_queue_max = 120_000     # SQS raised the FIFO cap to 120k as well
dedup_window_ms = 5 * 60_000              # SQS FIFO deduplication window: 5 minutes
receive_attempt_window_ms = 5 * 60_000    # ReceiveRequestAttemptId retries are honoured 5 min
purge_interval_ms = 60_000                # SQS: one PurgeQueue per 60 s per queue

# --- queue engine memory ---------------------------------------------------------------------
queue_backlog_count_max = 10_000_000      # messages stored in one queue before QueueFull
queue_backlog_size_max = 4 * GIB          # body bytes stored in one queue before QueueFull
node_memory_budget_size = 8 * GIB         # bodies + overheads of all stored messages before QueueFull
message_overhead_size = 600               # RAM of a stored message beyond its body (measured ~555
                                          # in flight; tests/unit/backend/test_memory_budget.py)
waiters_per_queue_max = 10_000            # parked long polls per queue before TooManyWaiters
queue_full_retry_after_ms = 100           # hint sent with QueueFull

# --- wire protocol ---------------------------------------------------------------------------
frame_header_size = 4                     # u32 big-endian length prefix
frame_size_max = 16 * MIB                 # a receive of 10 messages of 1 MiB, plus overhead
msgpack_str_len_max = message_size_max    # no string field may exceed a message
msgpack_bin_len_max = message_size_max
msgpack_array_len_max = 1_000             # more than any batch or list reply carries
msgpack_map_len_max = 1_000               # attribute maps are small
inflight_requests_per_connection_max = 256   # pause reading above this
inflight_requests_per_connection_low = 128   # resume reading below this
outbound_pending_size_high = 8 * MIB      # pause producers of replies above this
outbound_pending_size_max = 64 * MIB      # beyond this the connection is a slow consumer: closed
connections_max = 10_000                  # accepted connections per listener
request_id_cache_count_max = 100_000      # remembered request ids (retried sends are not enqueued twice)
request_id_ttl_ms = 5 * 60_000            # how long a request id is remembered
request_id_cache_size_max = 8 * MIB       # .. and the bytes they may weigh (oldest evicted first)

# --- write-ahead log -------------------------------------------------------------------------
wal_segment_size_max = 64 * MIB           # roll to a new segment beyond this
wal_batch_size_max = 8 * MIB              # one write()+fdatasync covers at most this many bytes
wal_pending_size_max = 256 * MIB          # appended but not yet durable before appends are refused
wal_record_size_max = 2 * MIB             # one record: a 1 MiB message plus attributes and header
wal_disk_reserve_size = 256 * MIB         # refuse writes with DiskFull below this much free space
wal_preallocate_size = 1 * MIB            # zeros kept written ahead of the WAL tail (fdatasync without a journal commit)
wal_checkpoint_log_size_min = 256 * MIB   # checkpoint when the log exceeds this ..
wal_checkpoint_live_ratio = 2             # .. and is more than this many times the live data
checkpoint_child_time_max_s = 600.0       # a snapshot child still running after this is killed
checkpoint_retry_delay_max_ms = 300_000   # failed checkpoints are retried after 1 s, doubling up to this

# --- relations -------------------------------------------------------------------------------
assert frame_size_max >= receive_count_max * (message_size_max + 64 * KIB) + frame_header_size
assert frame_size_max >= batch_size_max + 64 * KIB + frame_header_size
assert wal_record_size_max >= message_size_max + 64 * KIB
assert wal_batch_size_max >= wal_record_size_max
assert wal_segment_size_max >= wal_batch_size_max
assert wal_preallocate_size <= wal_disk_reserve_size
assert wal_pending_size_max >= wal_batch_size_max
assert inflight_requests_per_connection_low < inflight_requests_per_connection_max
assert outbound_pending_size_high < outbound_pending_size_max
assert retention_ms_min <= retention_ms_default <= retention_ms_max
assert msgpack_bin_len_max <= frame_size_max

# --- binary protocol server and client (owner: protocol/frontend/client engineer) -------------
subscriptions_per_connection_max = 64     # push subscriptions on one connection before OverLimit
push_prefetch_max = 1_000                 # credits one push subscription may hold
request_id_length_max = 128               # a client request id is a short token (uuid4 hex)
client_connect_timeout_ms = 5_000         # one TCP connect + HELLO attempt of the client
client_request_timeout_ms = 30_000        # default deadline of one client call (long polls add wait)
client_long_poll_margin_ms = 5_000        # the client times a long poll out only after wait + this
client_attempts_max = 5                   # tries of one call across reconnects before giving up
client_backoff_base_ms = 50               # first reconnect backoff; doubles per attempt, jittered
client_backoff_max_ms = 2_000             # cap of one backoff sleep
client_push_idle_ping_ms = 15_000         # a push consumer that got nothing for this long pings
client_auto_extend_max_ms = visibility_timeout_ms_max   # auto_extend never holds a message longer
hello_timeout_ms = 10_000                 # a connection that sends no HELLO within this is closed
frame_timeout_ms = 60_000                 # a frame begun must be complete within this, or closed
assert push_prefetch_max >= 1
assert client_backoff_base_ms <= client_backoff_max_ms

# --- Raft metadata (owner: metadata engineer; defaults of qnode/metadata/raft/core.py RaftConfig) --
raft_election_ticks = 10                  # minimum election timeout in ticks (randomized up to 2x, §5.2)
raft_heartbeat_ticks = 1                  # leader heartbeat every tick (100 ms ticks in the driver)
raft_append_entries_count_max = 64        # entries in one AppendEntries
raft_append_size_max = 1 * MIB            # entry bytes in one AppendEntries (at least one entry)
raft_inflight_appends_max = 16            # unacknowledged appends per follower
raft_entry_size_max = 1 * MIB             # one metadata command; larger proposals: InvalidParameter
raft_uncommitted_size_max = 16 * MIB      # proposed-but-uncommitted bytes before proposals get Busy
raft_inbox_count_max = 10_000             # inputs queued for one Raft node; beyond: drop/Busy
raft_compact_every_count = 10_000         # snapshot the metadata state every N applied entries
assert raft_election_ticks > raft_heartbeat_ticks
assert raft_uncommitted_size_max >= raft_entry_size_max
assert raft_entry_size_max <= wal_record_size_max

# --- SWIM membership (owner: membership engineer; defaults of qnode/membership/config.py) -------
swim_packet_size_max = 1_400              # probe/gossip datagram: below a 1500-byte MTU (memberlist)
swim_sync_packet_size_max = 60_000        # push-pull datagram: under the 65,507-byte UDP limit
swim_broadcast_queue_count_max = 1_024    # pending piggyback updates; overflow drops the most-sent
swim_members_count_max = 4_096            # member table; more new members are ignored (counted)
swim_relays_count_max = 256               # pending ping-req relays run for others; more are dropped
swim_outbox_count_max = 4_096             # datagrams the shell has not taken yet; more are dropped
swim_events_count_max = 10_000            # events the shell has not taken yet; oldest dropped
assert swim_packet_size_max < swim_sync_packet_size_max < 65_507

# --- Cluster wiring (owner: cluster engineer; qnode/cluster/, docs/design/cluster.md) ----------
cluster_raft_tick_interval_ms = 50        # metadata Raft tick on real nodes
cluster_raft_heartbeat_ticks = 2          # leader heartbeat every 100 ms
cluster_raft_election_ticks = 12          # election timeout 0.6..1.2 s (randomized up to 2x)
cluster_peer_queue_count_max = 1_024      # Raft messages queued per peer; beyond: dropped (Raft retransmits)
cluster_peer_batch_count_max = 128        # Raft messages in one `raft` peer request
cluster_peers_count_max = 64              # peers one node keeps links to
cluster_propose_timeout_ms = 5_000        # a queue-definition change waits this long for a leader/commit
assert cluster_raft_election_ticks > cluster_raft_heartbeat_ticks
assert cluster_peer_batch_count_max <= msgpack_array_len_max
