"""Ids are validated as whole strings: whitespace or control characters anywhere, a
trailing newline included (Python's ``$`` matches before one), make an id invalid, in the
contracts, the client and runctl alike."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from runctl.main import app
from runstream.client import Client, checked_run_id
from runstream.contracts.commands import BadCommand, decode_command
from runstream.ids import is_command_id, is_run_id
from runstream.settings import Settings

RUN_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
COMMAND_ID = "cmd-1.a:b_C"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TOKEN = "ABCXYZabcxyz0189._:-"
# Whitespace and control characters, Unicode line breaks included.
_JUNK = st.sampled_from(
    [
        "\n",
        "\r",
        "\r\n",
        "\t",
        " ",
        "\x00",
        "\x0b",
        "\x0c",
        "\x1b",
        "\x7f",
        "\x85",
        "\u2028",
        "\u00a0",
        "\ufeff",
    ]
)


@st.composite
def spoiled(draw: st.DrawFn, alphabet: str, min_size: int, max_size: int) -> str:
    """An id-like string of valid characters with junk put at the start, inside or the end."""
    body = draw(st.text(alphabet, min_size=min_size, max_size=max_size))
    junk = draw(st.lists(_JUNK, min_size=1, max_size=3))
    text = body
    for piece in junk:
        where = draw(st.sampled_from(["start", "end", "inside"]))
        if where == "start":
            text = piece + text
        elif where == "end":
            text = text + piece
        else:
            cut = draw(st.integers(0, len(text)))
            text = text[:cut] + piece + text[cut:]
    return text


def _stop(run_id: str, command_id: str = COMMAND_ID) -> bytes:
    return msgspec.json.encode({"type": "StopRun", "run_id": run_id, "command_id": command_id})


def test_valid_ids_pass() -> None:
    assert is_run_id(RUN_ID)
    assert is_command_id(COMMAND_ID)
    assert decode_command(_stop(RUN_ID)).run_id == RUN_ID


@settings(max_examples=400)
@given(spoiled(_CROCKFORD, 26, 26))
@example(RUN_ID + "\n")
@example("\n" + RUN_ID)
@example(RUN_ID + "\r\n")
def test_a_run_id_with_whitespace_or_control_characters_is_refused_everywhere(
    text: str,
) -> None:
    assert not is_run_id(text)
    with pytest.raises(BadCommand, match=r"\$\.run_id"):
        decode_command(_stop(text))
    with pytest.raises(BadCommand, match="malformed run id"):
        checked_run_id(text)


@settings(max_examples=400)
@given(spoiled(_TOKEN, 1, 64))
@example(COMMAND_ID + "\n")
@example("x\n")
def test_a_command_id_with_whitespace_or_control_characters_is_refused(text: str) -> None:
    assert not is_command_id(text)
    with pytest.raises(BadCommand, match=r"\$\.command_id"):
        decode_command(_stop(RUN_ID, text))


@settings(max_examples=200)
@given(st.text(_CROCKFORD, min_size=26, max_size=26), st.text(_TOKEN, min_size=1, max_size=64))
def test_clean_ids_of_the_right_shape_are_accepted(run_id: str, command_id: str) -> None:
    assert is_run_id(run_id) and is_command_id(command_id)
    assert decode_command(_stop(run_id, command_id)).command_id == command_id


@pytest.mark.parametrize("text", [RUN_ID + "\n", RUN_ID + " ", "\t" + RUN_ID])
def test_runctl_refuses_such_a_run_id_before_any_io(text: str) -> None:
    # The Redis URL points nowhere: a refusal must come before any connection attempt.
    result = CliRunner().invoke(app, ["show", text], env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.exit_code == 2, result.output
    assert "malformed run id" in result.output


def test_the_client_refuses_such_a_run_id_before_any_io() -> None:
    async def body() -> None:
        settings = Settings(redis_url="redis://127.0.0.1:1/0")
        async with Client.connect(settings=settings) as client:
            for call in (
                lambda: client.find(RUN_ID + "\n"),
                lambda: client.wait(RUN_ID + "\n", timeout=0.1),
                lambda: client.start("synthetic", {}, run_id=RUN_ID + "\n"),
                lambda: client.get(" " + RUN_ID),
            ):
                with pytest.raises(BadCommand, match="malformed run id"):
                    await call()

    asyncio.run(body())
