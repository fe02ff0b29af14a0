"""Settings: read from the environment, and written back to it for a child process."""

from __future__ import annotations

import string
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runstream.settings import MAX_PARTITIONS, Settings, env_name, load_settings

# Values the environment can carry unchanged: non-empty (an empty variable means "unset")
# and, for module lists, names without the comma that separates them.
_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]),
    min_size=1,
)
_MODULE = st.text(alphabet=string.ascii_letters + "._:", min_size=1).filter(
    lambda s: s.strip() == s
)


def _strategy(field: msgspec.structs.FieldInfo) -> st.SearchStrategy[Any]:
    # Counts and durations from 1 and 0 up: the ranges load_settings accepts.
    if field.name == "redis_url":  # load_settings refuses what is not a Redis URL
        return st.builds(
            "{}://{}127.0.0.1:{}/{}".format,
            st.sampled_from(["redis", "rediss"]),
            st.sampled_from(["", ":pw@", "app:p%40ss@"]),
            st.integers(1, 65535),
            st.integers(0, 15),
        )
    if field.name == "metrics_port":  # a TCP port, or 0 for none
        return st.integers(min_value=0, max_value=65535)
    if field.name == "network_partitions":  # 0 (automatic) up to MAX_PARTITIONS
        return st.integers(min_value=0, max_value=MAX_PARTITIONS)
    if field.type is int:
        return st.integers(min_value=1, max_value=2**62)
    if field.type is float:
        return st.floats(min_value=0, allow_nan=False, allow_infinity=False)
    if field.type is str:
        return _TEXT
    if field.name == "scenario_modules":
        return st.lists(_MODULE, max_size=4).map(tuple)
    raise AssertionError(f"no strategy for Settings.{field.name}: {field.type!r}")


SETTINGS = st.fixed_dictionaries(
    {f.name: _strategy(f) for f in msgspec.structs.fields(Settings)}
).map(lambda values: Settings(**values))


@given(SETTINGS)
def test_to_env_is_the_inverse_of_loading(settings: Settings) -> None:
    assert load_settings(settings.to_env()) == settings


def test_to_env_names_every_setting() -> None:
    env = Settings().to_env()
    assert set(env) == {env_name(f.name) for f in msgspec.structs.fields(Settings)}
    assert env["REDIS_URL"] == Settings().redis_url
    assert load_settings(env) == Settings()


def test_a_bad_value_names_its_variable() -> None:
    with pytest.raises(ValueError, match="RUNSTREAM_LEASE_MS"):
        load_settings({"RUNSTREAM_LEASE_MS": "soon"})


def test_the_metrics_port_is_off_by_default_and_checked() -> None:
    assert load_settings({}).metrics_port == 0
    assert load_settings({"RUNSTREAM_METRICS_PORT": "9464"}).metrics_port == 9464
    for bad in ("-1", "65536", "http"):
        with pytest.raises(ValueError, match="RUNSTREAM_METRICS_PORT"):
            load_settings({"RUNSTREAM_METRICS_PORT": bad})
