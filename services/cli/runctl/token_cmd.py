"""runctl token create|list|revoke: the HTTP API's tokens (stored hashed; shown once)."""

from __future__ import annotations

from typing import Annotated

import msgspec
import typer
from rich.table import Table

from runctl import errors
from runctl.common import JsonOpt, _print_json, _run, _when, out
from runctl.errors import CliError
from runstream.client import Client
from runstream.tokens import (
    ALL_PROJECTS,
    ROLES,
    TOKEN_CACHE_S,
    BadToken,
    Role,
    TokenRecord,
    TokenStore,
)


def _store(client: Client) -> TokenStore:
    return TokenStore(client.redis, client.keys)


def create(
    subject: Annotated[str, typer.Option(help="Who uses it: the actor of its commands.")],
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")],
    project: Annotated[str, typer.Option(help="The project it is for; '*': all.")] = ALL_PROJECTS,
    as_json: JsonOpt = False,
) -> None:
    """Create a token; it is printed once (only its hash is kept)."""
    if role not in ROLES:
        raise CliError(f"bad --role {role!r}: one of {', '.join(ROLES)}", errors.BAD_INPUT)
    checked: Role = "viewer" if role == "viewer" else "operator" if role == "operator" else "admin"

    async def body(client: Client) -> tuple[str, TokenRecord]:
        try:
            return await _store(client).create(subject, checked, project)
        except BadToken as exc:
            raise CliError(str(exc), errors.BAD_INPUT) from None

    text, record = _run(body)
    if as_json:
        _print_json(
            {
                "token": text,
                "id": record.id,
                "subject": record.subject,
                "role": record.role,
                "project": record.project,
            }
        )
        return
    out.print(text)
    scope = "all projects" if record.project == ALL_PROJECTS else f"project {record.project}"
    out.print(f"token {record.id}: {record.role} of {scope} for {record.subject}; not shown again")


def list_(as_json: JsonOpt = False) -> None:
    """The tokens (never their text)."""
    records = _run(lambda c: _store(c).list())
    if as_json:
        _print_json([{k: v for k, v in msgspec_dict(r).items() if k != "sha256"} for r in records])
        return
    table = Table("id", "subject", "role", "project", "created")
    for r in records:
        table.add_row(r.id, r.subject, r.role, r.project, _when(r.created_at))
    out.print(table)


def msgspec_dict(record: TokenRecord) -> dict[str, object]:
    return msgspec.structs.asdict(record)


def revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see 'token list').")],
) -> None:
    """Revoke a token: every API process refuses it at once (told by pub/sub; one that
    missed the message, within TOKEN_CACHE_S)."""
    if not _run(lambda c: _store(c).revoke(token_id)):
        raise CliError(f"no token {token_id!r} (see runctl token list)", errors.BAD_INPUT)
    out.print(
        f"token {token_id} revoked: the API refuses it at once (an API process that "
        f"missed the message: within {TOKEN_CACHE_S:g} s)"
    )


def register(app: typer.Typer) -> None:
    # runctl's own Typer class: its commands report a CliError as one line and a status.
    token_app = type(app)(
        help="API tokens: a role (viewer, operator, admin) per project or for all.",
        no_args_is_help=True,
    )
    token_app.command("create")(create)
    token_app.command("list")(list_)
    token_app.command("revoke")(revoke)
    app.add_typer(token_app, name="token")
