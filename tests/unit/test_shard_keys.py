"""Which shard a key belongs to, as the rebuild's one SCAN of every shard sorts them."""

from __future__ import annotations

from runstream.keys import Keys


def test_a_shard_key_is_told_apart_from_other_shards_and_deployments() -> None:
    keys = Keys("rs", shards=4)
    run_id = "01HZZZZZZZZZZZZZZZZZZZZZZZ"
    shard = keys.shard_of(run_id)
    for key in (keys.meta(run_id), keys.events(run_id), keys.logs(run_id)):
        assert keys.shard_of_key(key) == shard
        assert keys.is_run_key(shard, key)
        assert key.startswith(keys.run_keys_base(shard) + run_id + ":")
    assert keys.run_id_of_meta(keys.meta(run_id)) == run_id
    sorted_set = keys.query_sorted_set(2, "name")
    assert keys.shard_of_key(sorted_set) == 2
    assert keys.is_query_index_key(2, sorted_set)
    assert not keys.is_query_index_key(2, keys.index(2))
    assert not keys.is_run_key(2, sorted_set)
    # Keys of no shard of this deployment: another prefix, a shard past the count, the
    # network, a malformed tag.
    for key in (
        Keys("rs2", shards=4).meta(run_id),
        Keys("rs", shards=8).index(6),
        "rs:{rs:s01}:runs",
        "rs:{rs:net}:elements",
        "rs:{rs:s2",
    ):
        assert keys.shard_of_key(key) is None, key


def test_the_shard_keys_pattern_matches_every_shard_key_and_no_network_key() -> None:
    keys = Keys("rs", shards=4)
    pattern = keys.shard_keys_pattern()
    assert pattern.endswith("*")
    head = pattern[:-1]
    assert keys.index(3).startswith(head) and keys.meta("X").startswith(head)
    assert not keys.config_shards().startswith(head)
    assert not "rs:{rs:net}:elements".startswith(head)
