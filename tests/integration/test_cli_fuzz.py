"""Fuzzing runctl's input handling and the command decoder, without a Redis.

runctl must answer every input with one of its documented exit statuses (0 done,
1 rejected, 2 bad input, 3 no such run, 4 Redis unreachable, 5 timed out, 6 the run did not
succeed, 7 Redis refused the command, 8 no worker), never with a traceback; bad input is
refused (2) before Redis is contacted. Whatever REDIS_URL holds, its password is never
printed. The decoder turns any
bytes into a valid command or a BadCommand, nothing else.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from runctl import main as runctl_main
from runctl.errors import BAD_INPUT, CliError
from runstream.contracts import commands as cmd
from runstream.embedded import free_port
from runstream.ids import COMMAND_ID_PATTERN, RUN_ID_PATTERN, new_id
from runstream.settings import Settings

EXIT_CODES = {0, 1, 2, 3, 4, 5, 6, 7, 8}
UNREACHABLE = 4
# Nothing listens here: a runctl that contacts Redis exits 4.
CLOSED_URL = f"redis://127.0.0.1:{free_port()}/0"
RUN_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


def fuzz(max_examples: int = 100) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _cli_env(redis_url: str = CLOSED_URL) -> dict[str, str | None]:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("RUNSTREAM_")}
    env.update(REDIS_URL=redis_url, RUNSTREAM_PREFIX="fuzz", RUNSTREAM_SHARDS="2")
    return env


# =========================================================================== _parse_args
def _model_args(pairs: list[str]) -> dict[str, str] | None:
    """What --arg KEY=VALUE pairs mean: the last value of each (stripped) key; None when
    some pair is not KEY=VALUE."""
    out: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            return None
        key, value = pair.split("=", 1)
        if not key.strip():
            return None
        out[key.strip()] = value
    return out


@fuzz()
@given(
    st.lists(st.one_of(st.text(max_size=12), st.from_regex(r"\A[^=]{0,6}=.{0,6}\Z")), max_size=8)
)
def test_parse_args_gives_a_dict_or_a_bad_input_error(pairs: list[str]) -> None:
    expected = _model_args(pairs)
    try:
        got = runctl_main._parse_args(pairs, None)
    except CliError as exc:
        assert exc.code == BAD_INPUT
        assert expected is None, f"refused good pairs {pairs!r}: {exc}"
        return
    assert isinstance(got, dict)
    assert got == expected


@contextmanager
def _file_with(content: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "args.json"
        path.write_bytes(content)
        yield path


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@fuzz()
@given(
    st.one_of(
        st.binary(max_size=64),
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4).map(
            lambda v: json.dumps(v).encode()
        ),
    )
)
@example(b"")
@example(b"\xff\xfe")
@example(b"[1, 2]")
@example(b'{"items": 3}')
def test_parse_args_file_gives_a_dict_or_a_bad_input_error(content: bytes) -> None:
    with _file_with(content) as path:
        try:
            got = runctl_main._parse_args([], path)
        except CliError as exc:
            assert exc.code == BAD_INPUT
            return
    assert isinstance(got, dict)
    assert got == json.loads(content)


@pytest.mark.parametrize("content", [b"[" * 100_000, b'{"a":' * 100_000], ids=["array", "object"])
def test_parse_args_file_nested_too_deep_is_bad_input(content: bytes) -> None:
    """JSON nested deeper than the json module recurses is bad input, not a traceback."""
    with _file_with(content) as path:
        try:
            runctl_main._parse_args([], path)
        except CliError as exc:
            assert exc.code == BAD_INPUT
        except BaseException as exc:
            pytest.fail(f"_parse_args raised {type(exc).__name__}: {str(exc)[:200]}")
        else:
            pytest.fail("a 100,000-deep document was accepted")


def test_parse_args_file_that_cannot_be_read_is_bad_input(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.json", tmp_path):
        with pytest.raises(CliError) as raised:
            runctl_main._parse_args([], path)
        assert raised.value.code == BAD_INPUT


# =========================================================================== runctl start
# Mostly plausible input (so that both sides of "valid" are explored), sometimes anything.
KNOWN_KEYS = st.sampled_from(
    ["items", "delay_ms", "edges_per_item", "notify_every", "seed", "fail_at", "count"]
)
ODD_KEYS = st.sampled_from(["namespace", "message", "dataset", "bogus", " items ", "", "a=b"])
KEYS = st.one_of(KNOWN_KEYS, KNOWN_KEYS, ODD_KEYS)
VALUES = st.one_of(
    st.integers(0, 50).map(str),
    st.integers(0, 50).map(str),
    st.integers(-10, 10**7).map(str),
    st.sampled_from(["", "1.5", "nan", "inf", "-0", "true", "1e400", "9" * 25, "karate", "a|b"]),
    st.text(max_size=10),
)
PAIRS = st.lists(
    st.one_of(
        st.builds(lambda k, v: f"{k}={v}", KEYS, VALUES),
        st.builds(lambda k, v: f"{k}={v}", KEYS, VALUES),
        st.text(max_size=8),
    ),
    max_size=3,
)
SCENARIOS = st.one_of(
    st.just("synthetic"),
    st.just("synthetic"),
    st.sampled_from(["notify", "graph-import"]),
    st.text(max_size=12),
)
TEXTS = st.one_of(
    st.just(""),
    st.just(""),
    st.text(max_size=8),
    st.integers(1995, 2005).map(lambda n: "d" * n),
)
ACTORS = st.one_of(
    st.none(),
    st.none(),
    st.text(min_size=1, max_size=8),
    st.just(""),
    st.integers(195, 205).map(lambda n: "a" * n),
)


def _start_is_valid(
    scenario: str, pairs: list[str], name: str, description: str, actor: str | None
) -> bool:
    """Is this start one runctl sends on? The command is one a worker decodes (not
    dead-lettered). Whether the scenario and its arguments are good is the workers' to
    say (they publish their scenarios and validate arguments), so runctl needs Redis for
    that: with none reachable, such a start exits 4 too."""
    args = _model_args(pairs)
    if args is None:
        return False
    try:
        command = cmd.StartRun(
            run_id=new_id(),
            actor="runctl" if actor is None else actor,
            scenario=scenario,
            args=args,
            name=name,
            description=description,
        )
        cmd.decode_command(cmd.encode_command(command), Settings().max_command_bytes)
    except (cmd.BadCommand, UnicodeError):
        return False
    return True


def _start_argv(
    scenario: str, pairs: list[str], name: str, description: str, actor: str | None
) -> list[str]:
    argv = ["start", *(f"--arg={p}" for p in pairs), f"--name={name}"]
    argv.append(f"--description={description}")
    if actor is not None:
        argv.append(f"--actor={actor}")
    return [*argv, "--timeout=2", "--", scenario]


# Inputs the service would refuse: runctl must say so itself (2), not publish them.
BAD_STARTS = [
    ("synthetic", [], "", "d" * 2001, None),  # description over 2000 characters
    ("synthetic", [], "n" * 2001, "", None),  # name over 2000 characters
    ("synthetic", [], "", "", ""),  # empty actor
    ("synthetic", [], "", "", "a" * 201),  # actor over 200 characters
    ("notify", ["message=\udcff"], "", "", None),  # not UTF-8 (a raw byte in argv)
    ("synthetic", [], "\udcff", "", None),
]


def _check_start(code: int, exception: BaseException | None, valid: bool, output: str) -> None:
    assert exception is None or isinstance(exception, SystemExit), (
        f"runctl raised {exception!r} (a traceback, not an exit status); output: {output!r}"
    )
    assert code in EXIT_CODES, output
    if valid:
        # Good input reaches for Redis, which is not there.
        assert code == UNREACHABLE, output
    else:
        assert code == BAD_INPUT, f"bad input answered with {code}, not 2: {output!r}"


@fuzz(60)
@given(SCENARIOS, PAIRS, TEXTS, TEXTS, ACTORS)
@example("synthetic", ["items=3"], "", "", None)
@example("no-such-scenario", [], "", "", None)
@example("synthetic", ["items"], "", "", None)
def test_start_through_the_typer_app_exits_with_a_documented_status(
    scenario: str, pairs: list[str], name: str, description: str, actor: str | None
) -> None:
    """The Typer app itself (what CliRunner and any embedding call) maps every outcome to
    the documented exit statuses."""
    valid = _start_is_valid(scenario, pairs, name, description, actor)
    result = CliRunner().invoke(
        runctl_main.app, _start_argv(scenario, pairs, name, description, actor), env=_cli_env()
    )
    _check_start(result.exit_code, result.exception, valid, result.output)


def _invoke_entry_point(
    argv: list[str], redis_url: str = CLOSED_URL
) -> tuple[int, BaseException | None, str]:
    """``runctl ARGV`` through its console-script entry point (runctl.main:main), in
    CliRunner's isolation (environment, stdout, stderr)."""
    runner = CliRunner()
    with runner.isolation(env=_cli_env(redis_url)) as (_, _, output):
        saved = sys.argv
        sys.argv = ["runctl", *argv]
        code, exception = 0, None
        try:
            runctl_main.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException as exc:
            code, exception = 1, exc
        finally:
            sys.argv = saved
            sys.stdout.flush()
            sys.stderr.flush()
        return code, exception, output.getvalue().decode(errors="replace")


@fuzz(150)
@given(SCENARIOS, PAIRS, TEXTS, TEXTS, ACTORS)
@example("synthetic", ["items=3"], "", "", None)
@example("synthetic", ["items=abc"], "", "", None)
@example("no-such-scenario", [], "", "", None)
@example("synthetic", [" = 3"], "", "", None)
def test_start_through_the_entry_point_exits_with_a_documented_status(
    scenario: str, pairs: list[str], name: str, description: str, actor: str | None
) -> None:
    valid = _start_is_valid(scenario, pairs, name, description, actor)
    code, exception, output = _invoke_entry_point(
        _start_argv(scenario, pairs, name, description, actor)
    )
    _check_start(code, exception, valid, output)


@pytest.mark.parametrize(
    ("scenario", "pairs", "name", "description", "actor"),
    BAD_STARTS,
    ids=[
        "long-description",
        "long-name",
        "empty-actor",
        "long-actor",
        "raw-byte-arg",
        "raw-byte-name",
    ],
)
def test_a_start_the_service_would_refuse_is_bad_input(
    scenario: str, pairs: list[str], name: str, description: str, actor: str | None
) -> None:
    assert not _start_is_valid(scenario, pairs, name, description, actor)
    code, exception, output = _invoke_entry_point(
        _start_argv(scenario, pairs, name, description, actor)
    )
    _check_start(code, exception, False, output)


def test_other_commands_refuse_malformed_run_ids_before_contacting_redis() -> None:
    for argv in (
        ["stop", "not-an-id"],
        ["continue", "01arz3ndektsv4rrffq69g5fav"],
        ["cancel", ""],
        ["revert", "x" * 26, "--dry-run"],
        ["delete", RUN_ID, "--revert", "--keep-effects"],
        ["show", "I" * 26],
        ["history", "--", "-1"],
        ["list", "--state", "sleeping"],
        ["outbox", "--count", "0"],
        ["no-such-command"],
    ):
        code, exception, output = _invoke_entry_point(argv)
        assert exception is None, (argv, exception)
        assert code == BAD_INPUT, (argv, code, output)


# =========================================================================== every subcommand
ANY_ID = st.one_of(st.just(RUN_ID), st.builds(new_id), st.text(max_size=30))
ANY_ARG = st.one_of(
    ANY_ID,
    st.sampled_from(["--json", "--wait", "--force", "--dry-run", "--revert", "--keep-effects"]),
    st.sampled_from(["--timeout", "--count", "--reason", "--state", "--actor", "--scenario"]),
    st.sampled_from(["-1", "0", "0.05", "1e9", "nan", "running", "1-0", "nope", "--"]),
    st.text(max_size=12),
)
# Every subcommand but 'dev' (which starts servers).
SUBCOMMANDS = [
    ["scenarios"],
    ["start"],
    ["list"],
    ["show"],
    ["stop"],
    ["continue"],
    ["cancel"],
    ["revert"],
    ["delete"],
    ["pin"],
    ["unpin"],
    ["history"],
    ["network", "export"],
    ["network", "stats"],
    ["network"],
    ["outbox"],
    ["dlq", "list"],
    ["dlq", "retry"],
    ["dlq", "drop"],
    ["dlq"],
    ["rebuild-index"],
    [],
]


@fuzz(300)
@given(st.sampled_from(SUBCOMMANDS), st.lists(ANY_ARG, max_size=5))
@example(["dlq", "retry"], ["nope"])
@example(["dlq", "drop"], ["1-2-3"])
@example(["show"], [RUN_ID, "--json"])
def test_every_subcommand_exits_with_a_documented_status(
    command: list[str], args: list[str]
) -> None:
    code, exception, output = _invoke_entry_point([*command, *args])
    assert exception is None, f"runctl {command + args} raised {exception!r}: {output}"
    assert code in EXIT_CODES, (command + args, code, output)
    assert "Traceback" not in output, output


SECRET = "pw-Zq9-fuzz"
URL_PARTS = st.tuples(
    st.sampled_from(["redis", "rediss", "unix", "http", "", "redis:", "REDIS"]),
    st.sampled_from(["://", ":/", "", "///"]),
    st.sampled_from(["", f":{SECRET}@", f"user:{SECRET}@", f"u:{SECRET}@@", "user@"]),
    st.sampled_from(["127.0.0.1", "", "[::1]", "[::1", "127.0.0.1:"]),
    st.one_of(
        st.just(f":{CLOSED_URL.rsplit(':', 1)[1].split('/')[0]}"),
        # Never no port: the default, 6379, may be someone's real Redis.
        st.sampled_from([":0", ":-1", ":99999", ":x", ":6390:1"]),
    ),
    st.sampled_from(["/0", "", "/", "/x", "/1/2", f"?password={SECRET}", "?db=x", "/0?db=1"]),
)


@fuzz(200)
@given(
    st.one_of(
        URL_PARTS.map("".join),
        st.text(max_size=30).filter(lambda u: "\x00" not in u),
    ),
    st.sampled_from([["list"], ["stop", RUN_ID], ["dlq", "list"], ["scenarios"]]),
)
@example("notaurl", ["list"])
@example(f"redis://:{SECRET}@127.0.0.1:notaport/0", ["list"])
def test_any_redis_url_gives_a_documented_status_and_hides_its_password(
    url: str, argv: list[str]
) -> None:
    """Nothing listens at any host:port these URLs can name, or they are malformed: 2 or 4,
    one line, never the password."""
    code, exception, output = _invoke_entry_point(argv, redis_url=url)
    assert exception is None, f"REDIS_URL={url!r} raised {exception!r}: {output}"
    assert code in {BAD_INPUT, UNREACHABLE}, (
        url,
        code,
        output,
    )
    assert SECRET not in output, output
    assert "Traceback" not in output, output


# =========================================================================== decode_command
def _anything() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=12),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
    )


def _field(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's value: usually a plausible one, sometimes any JSON of any type."""
    return st.one_of(good, good, _anything())


COMMAND_SHAPES = st.fixed_dictionaries(
    {
        "type": _field(
            st.sampled_from([t.__name__ for t in cmd.COMMAND_TYPES] + ["Explode", "startrun"])
        ),
    },
    optional={
        "run_id": _field(
            st.one_of(st.just(RUN_ID), st.builds(new_id), st.from_regex(RUN_ID_PATTERN))
        ),
        "command_id": _field(st.from_regex(COMMAND_ID_PATTERN)),
        "actor": _field(st.text(min_size=0, max_size=210)),
        "issued_at": _field(st.floats(allow_nan=False, allow_infinity=False)),
        "scenario": _field(st.text(max_size=210)),
        "args": _field(st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3)),
        "name": _field(st.text(max_size=10)),
        "description": _field(st.text(max_size=10)),
        "reason": _field(st.text(max_size=10)),
        "force": _field(st.booleans()),
        "mode": _field(st.sampled_from(["plain", "revert", "keep_effects", "other"])),
        "pinned": _field(st.booleans()),
        "bogus": _anything(),
    },
)


def _check_decoded(data: bytes, max_bytes: int | None) -> None:
    try:
        command = cmd.decode_command(data, max_bytes)
    except cmd.BadCommand as exc:
        assert str(exc)
        return
    assert isinstance(command, cmd.COMMAND_TYPES)
    assert max_bytes is None or len(data) <= max_bytes
    # A decoded command is a valid one: it survives a round trip unchanged.
    encoded = cmd.encode_command(command)
    assert cmd.decode_command(encoded) == command
    assert msgspec.json.decode(encoded)["type"] == type(command).__name__


@fuzz(300)
@given(COMMAND_SHAPES, st.one_of(st.none(), st.integers(0, 400)))
def test_decode_command_gives_a_command_or_bad_command(
    shape: dict[str, Any], max_bytes: int | None
) -> None:
    _check_decoded(json.dumps(shape).encode(), max_bytes)


@fuzz()
@given(st.binary(max_size=200))
@example(b"")
@example(b"null")
@example(b"\xff")
@example(b'{"type": "StopRun", "run_id": "' + RUN_ID.encode() + b'"}')
def test_decode_command_of_any_bytes_gives_a_command_or_bad_command(data: bytes) -> None:
    _check_decoded(data, None)


def test_decode_command_of_deeply_nested_arguments_is_bad_command() -> None:
    deep = b"[" * 50_000 + b"]" * 50_000
    data = b'{"type": "StartRun", "run_id": "%s", "scenario": "s", "args": {"a": %s}}' % (
        RUN_ID.encode(),
        deep,
    )
    with pytest.raises(cmd.BadCommand):
        cmd.decode_command(data)
