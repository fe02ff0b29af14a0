"""Every Redis key and stream name runstream uses, in one place.

All keys of one shard share the hash tag ``{<prefix>:s<n>}``: a run's events, its shard's
command stream, feed and indexes live in one Redis Cluster slot, so one Lua script can
write them atomically. The network has its own tags: one partition (the default on one
Redis) is ``{<prefix>:net}``; P partitions are ``{<prefix>:net:<p>}``, an element's partition
coming from its namespace (``partition_of``). A run and the network elements it changes
live in different slots, which is why effects are written in two phases (see
``runstream.store.network``).
"""

from __future__ import annotations

import zlib

from runstream.settings import Settings, network_partitions


class Fields:
    """The field names of runstream's stream entries and hashes, next to the keys they live
    in, as redis-py returns them (bytes; writing with them works the same). The Lua scripts
    in ``runstream/lua`` write the same names; keep them in step."""

    # Keys.commands: one command, as JSON (runstream.contracts.commands).
    COMMAND = b"c"
    # Keys.events and Keys.feed: one event, as JSON (runstream.contracts.events).
    EVENT = b"e"
    # Keys.feed: the run the event belongs to, and the run's version after it.
    RUN = b"r"
    VERSION = b"v"
    # Keys.meta (a hash): the run's version (VERSION), and the events-stream id the
    # snapshot covers.
    SNAPSHOT_ID = b"snap_id"
    # Keys.dlq: a dead letter. The command's payload (a prefix of it) is under COMMAND.
    SOURCE_ID = b"source_id"
    REASON = b"reason"
    AT = b"at"
    SIZE = b"size"
    SHA256 = b"sha256"
    TRUNCATED = b"truncated"
    # Keys.audit: a deleted run's id and tombstone JSON; Keys.outbox: a notification.
    RUN_ID = b"run_id"
    TOMBSTONE = b"tombstone"
    MESSAGE = b"message"


class Keys:
    def __init__(self, prefix: str, shards: int, partitions: int = 1) -> None:
        self.prefix = prefix
        self.shards = shards
        # Network partitions: 1 keeps the single-slot names every deployment started with.
        self.partitions = partitions
        if partitions == 1:
            self._nets = [f"{prefix}:{{{prefix}:net}}"]
        else:
            self._nets = [f"{prefix}:{{{prefix}:net:{p}}}" for p in range(partitions)]

    @classmethod
    def of(cls, settings: Settings) -> Keys:
        return cls(settings.prefix, settings.shards, network_partitions(settings))

    # --- the deployment -------------------------------------------------------------
    def config_shards(self) -> str:
        """The shard count the deployment started with (runstream.shards)."""
        return f"{self.prefix}:config:shards"

    def config_partitions(self) -> str:
        """The network partition count the deployment started with (runstream.shards)."""
        return f"{self.prefix}:config:net_partitions"

    # --- shards -------------------------------------------------------------------
    def shard_of(self, run_id: str) -> int:
        return zlib.crc32(run_id.encode()) % self.shards

    def _shard(self, shard: int) -> str:
        return f"{self.prefix}:{{{self.prefix}:s{shard}}}"

    def commands(self, shard: int) -> str:
        return f"{self._shard(shard)}:commands"

    def feed(self, shard: int) -> str:
        return f"{self._shard(shard)}:feed"

    def dlq(self, shard: int) -> str:
        return f"{self._shard(shard)}:dlq"

    def audit(self, shard: int) -> str:
        """Tombstones of deleted runs, oldest first."""
        return f"{self._shard(shard)}:audit"

    def tombs(self, shard: int) -> str:
        """Hash run_id -> tombstone JSON: a deleted run's id is never reused or lost."""
        return f"{self._shard(shard)}:tombs"

    def rejected(self, run_id: str, command_id: str) -> str:
        """Marks a command rejected for a run without history, so it is reported once."""
        return f"{self._shard(self.shard_of(run_id))}:rejected:{run_id}:{command_id}"

    def index(self, shard: int) -> str:
        """Read model: hash run_id -> run summary JSON."""
        return f"{self._shard(shard)}:runs"

    def query_index(self, shard: int) -> str:
        """Base of a shard's query index (lua/index_update.lua): ``<base>:z:<field>``
        sorted sets, ``<base>:s:<field>=<value>`` sets, ``<base>:l:<field>`` lexical
        indexes, ``<base>:p`` postings per run."""
        return f"{self._shard(shard)}:ix"

    def query_sorted_set(self, shard: int, field: str) -> str:
        """The sorted set of a shard's runs by ``field`` (e.g. updated_at, in seconds)."""
        return f"{self.query_index(shard)}:z:{field}"

    def query_value_set(self, shard: int, field: str, value: str) -> str:
        """The set of a shard's runs whose ``field`` is ``value`` (e.g. state=running)."""
        return f"{self.query_index(shard)}:s:{field}={value}"

    def query_index_pattern(self, shard: int) -> str:
        """SCAN pattern of every key of a shard's query index (dropped by a rebuild)."""
        return f"{self._shard(shard)}:ix:*"

    def runnable(self, shard: int) -> str:
        """Sorted set of runs that need an executor (queued, running, reverting)."""
        return f"{self._shard(shard)}:runnable"

    def leases(self, shard: int) -> str:
        """Sorted set run_id -> when its execution lease ends (Redis ms; 0: given back while
        the run still needs an executor), kept with the lease keys by the lease scripts, so
        the scanner reads the runs it may take instead of trying every lease in turn."""
        return f"{self._shard(shard)}:leases"

    # --- one run ------------------------------------------------------------------
    def _run(self, run_id: str) -> str:
        return f"{self._shard(self.shard_of(run_id))}:run:{run_id}"

    def events(self, run_id: str) -> str:
        return f"{self._run(run_id)}:events"

    def meta(self, run_id: str) -> str:
        """Hash: v (version), snap_id (stream id the snapshot covers)."""
        return f"{self._run(run_id)}:meta"

    def snapshot(self, run_id: str) -> str:
        return f"{self._run(run_id)}:snapshot"

    def seen(self, run_id: str) -> str:
        """Set of command_ids already applied to the run (idempotency)."""
        return f"{self._run(run_id)}:seen"

    def lease(self, run_id: str) -> str:
        return f"{self._run(run_id)}:lease"

    def logs(self, run_id: str) -> str:
        """Stream of the run's log lines (fields t: time, l: line), bounded; a read model."""
        return f"{self._run(run_id)}:logs"

    def results(self, run_id: str) -> str:
        """Hash name -> content of the run's result files; a read model."""
        return f"{self._run(run_id)}:results"

    def result_meta(self, run_id: str) -> str:
        """Hash name -> JSON {size, media_type, at} of the run's result files."""
        return f"{self._run(run_id)}:result_meta"

    def run_keys_base(self, shard: int) -> str:
        """What every key of one of a shard's runs starts with (then the run id)."""
        return f"{self._shard(shard)}:run:"

    def is_run_key(self, shard: int, key: str) -> bool:
        return key.startswith(self.run_keys_base(shard))

    def is_query_index_key(self, shard: int, key: str) -> bool:
        """A key query_index_pattern(shard) matches."""
        return key.startswith(self.query_index(shard) + ":")

    def shard_keys_pattern(self) -> str:
        """SCAN pattern of the keys of every shard (their hash tags ``{<prefix>:s<n>}``)."""
        return f"{self.prefix}:{{{self.prefix}:s*"

    def shard_of_key(self, key: str) -> int | None:
        """The shard whose hash tag the key has; None for a key of no shard of ours."""
        head = f"{self.prefix}:{{{self.prefix}:s"
        end = key.find("}", len(head))
        if not key.startswith(head) or end < 0:
            return None
        digits = key[len(head) : end]
        if not digits.isdigit() or int(digits) >= self.shards:
            return None
        shard = int(digits)
        return shard if self._shard(shard) == key[: end + 1] else None

    def metas(self, shard: int) -> str:
        """SCAN pattern matching the meta key of every run of a shard."""
        return f"{self._shard(shard)}:run:*:meta"

    @staticmethod
    def run_id_of_meta(key: str) -> str:
        return key.rsplit(":run:", 1)[1].removesuffix(":meta")

    def run_keys(self, run_id: str) -> list[str]:
        """Everything a run owns; removed on delete."""
        return [
            self.events(run_id),
            self.meta(run_id),
            self.snapshot(run_id),
            self.seen(run_id),
            self.lease(run_id),
            self.logs(run_id),
            self.results(run_id),
            self.result_meta(run_id),
        ]

    # --- the network -------------------------------------------------------------
    def partition_of(self, element: str) -> int:
        """An element's network partition: by its namespace, the node id up to its last
        ':' (``n:<ns>:<id>``; an edge goes with its source node; an id without ':' is its
        own namespace), so a run working in one namespace writes one partition."""
        if self.partitions == 1:
            return 0
        head = element[2:].split("|", 1)[0]
        namespace = head.rpartition(":")[0] or head
        return zlib.crc32(namespace.encode()) % self.partitions

    def net_values(self, partition: int) -> str:
        """Hash element -> attributes JSON; elements are ``n:<node>`` and ``e:<src>|<dst>``."""
        return f"{self._nets[partition]}:values"

    def net_stamps(self, partition: int) -> str:
        """Hash element -> stamp of the effect that last wrote it (``<run_id>/<n>``)."""
        return f"{self._nets[partition]}:stamps"

    def net_pending(self, partition: int) -> str:
        """Hash element -> token of the chunk reserving it (prepared on several partitions,
        not yet committed or voided); only with more than one partition."""
        return f"{self._nets[partition]}:pending"

    def net_chunk(self, partition: int, token: str) -> str:
        """Outcome marker of one prepared chunk on a partition: 'a' applied, 'v' voided,
        'p' prepared (reserved, not yet committed)."""
        return f"{self._nets[partition]}:chunk:{token}"

    def net_revert_step(self, partition: int, step: str) -> str:
        """Outcome of one revert step on a partition (letters per effect), so a redone step
        repeats it."""
        return f"{self._nets[partition]}:revert:{step}"

    @property
    def outbox(self) -> str:
        """Irreversible notifications, as sent (partition 0's)."""
        return self.net_outbox(0)

    def net_outbox(self, partition: int) -> str:
        """A partition's outbox key: only partition 0's is written (``outbox``); the others
        name a key of their slot for a script that has no notification to send."""
        return f"{self._nets[partition]}:outbox"

    # --- deployment-wide ---------------------------------------------------------
    @property
    def scenarios(self) -> str:
        """Hash scenario name -> what the workers published of it (see runstream.catalog)."""
        return f"{self.prefix}:scenarios"

    def worker_alive(self, name: str) -> str:
        """A worker's heartbeat: consumers whose worker has none may be removed."""
        return f"{self.prefix}:workers:{name}"

    group = "workers"

    # --- the HTTP API --------------------------------------------------------------
    def api_command(self, command_id: str) -> str:
        """A command the API sent (JSON: the command, a fingerprint of the request it came
        from), kept a while so a retry with its Idempotency-Key and a poll find it."""
        return f"{self.prefix}:api:command:{command_id}"

    def api_rate(self, caller: str, second: int) -> str:
        """How many requests ``caller`` (a hashed token or an address) sent to the API in
        the clock second ``second``, counted by every replica; expires at once after."""
        return f"{self.prefix}:api:rate:{caller}:{second}"

    @property
    def api_tokens(self) -> str:
        """Hash token id -> its record (runstream.tokens.TokenRecord JSON: the sha256 of
        the token, never the token)."""
        return f"{self.prefix}:api:tokens"

    @property
    def api_tokens_changed(self) -> str:
        """Pub/sub channel: the id of a token just revoked or replaced, so that every API
        process forgets its cached record at once (runstream_api.token_cache). Classic
        pub/sub: a Redis Cluster passes it to every node."""
        return f"{self.prefix}:api:tokens:changed"
