"""The mailcast command line: serve, migrate, and the operator's account tools."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.accounts import repository as accounts_repo
from mailcast.accounts import service as accounts
from mailcast.accounts import users
from mailcast.accounts.schemas import AccountUpdate
from mailcast.clock import system_clock
from mailcast.config import PLANS, Settings, get_settings
from mailcast.db.engine import WORKER_PING_AFTER_IDLE, create_engine, session_factory
from mailcast.db.migrate import upgrade
from mailcast.db.models import Account, ApiKey
from mailcast.delivery.transports import build_transport
from mailcast.domains import service as domains
from mailcast.domains.keys import KeyUnreadable
from mailcast.errors import MailcastError
from mailcast.scopes import Scope

app = typer.Typer(no_args_is_help=True, help="mailcast: self-hosted email broadcast campaigns.")
accounts_app = typer.Typer(no_args_is_help=True, help="Tenants and their plans.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys.")
domains_app = typer.Typer(no_args_is_help=True, help="Sender domains.")
contacts_app = typer.Typer(no_args_is_help=True, help="Contacts.")
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="api-keys")
app.add_typer(domains_app, name="domains")
app.add_typer(contacts_app, name="contacts")
users_app = typer.Typer(no_args_is_help=True, help="Dashboard users.")
app.add_typer(users_app, name="users")
FIRST_OWNER = "owner@example.com"  # a sign-in name; the owner can add users with their own

err = Console(stderr=True)
T = TypeVar("T")


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _in_session(work: Callable[[AsyncSession, Settings], Awaitable[T]]) -> T:
    """Run `work` in one transaction on a migrated database; domain errors exit with status 1."""
    settings = get_settings()

    async def main() -> T:
        engine = create_engine(settings.resolved_database_url())
        try:
            await upgrade(engine)
            async with session_factory(engine)() as session:
                result = await work(session, settings)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except MailcastError as exc:
        err.print(
            f"[red]error:[/red] {exc.message}"
            + (f" {json.dumps(exc.details, default=str)}" if exc.details else "")
        )
        raise typer.Exit(1) from exc


def _key_json(key: ApiKey, raw: str) -> dict[str, Any]:
    return {"id": key.id, "scope": key.scope, "key": raw, "key_prefix": key.prefix}


@app.command()
def migrate() -> None:
    """Apply database migrations (and seal any DKIM private key stored in clear)."""
    sealed = _in_session(domains.seal_stored_keys)
    err.print(
        "database is up to date" + (f"; sealed {sealed} DKIM private key(s)" if sealed else "")
    )


@app.command()
def recount() -> None:
    """Count every campaign's deliveries again and replace the counts its figures are read from."""
    from mailcast.campaigns.counts import count_store

    counted = _in_session(lambda session, settings: count_store(session).recount(session))
    err.print(f"counted the deliveries of {counted} campaign(s)")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="HTTP processes (more than one: run `mailcast worker` for sending)"
        ),
    ] = 1,
    access_log: Annotated[
        bool, typer.Option(help="Log every request (off behind a proxy that logs)")
    ] = True,
) -> None:
    """Migrate, create a first account on the very first start, then serve the API."""
    import uvicorn

    from mailcast.app import create_app

    settings = get_settings()

    async def first_start(
        session: AsyncSession, _settings: Settings
    ) -> tuple[Account, str, str, str] | None:
        await domains.seal_stored_keys(session, settings)
        if await accounts_repo.count_accounts(session):
            return None
        account, key, raw = await accounts.create_account(
            session, "Default", "business", system_clock()
        )
        password = users.new_password()
        owner = await users.create_user(
            session, account.id, FIRST_OWNER, users.Role.OWNER, password, system_clock()
        )
        return account, raw, owner.email, password

    host = host or settings.host
    port = port or settings.port
    created = _in_session(first_start)
    if created:
        account, raw, email, password = created
        err.print(
            "[bold green]First start:[/bold green] created account "
            f"[bold]{account.id}[/bold] (plan business), a full_access API key and a dashboard "
            "owner. "
            "They are shown only this once; keep them:"
        )
        typer.echo(
            f"\n    API key:    {raw}\n    Dashboard:  {settings.public_url('/dashboard/')}\n"
            f"    Email:      {email}\n    Password:   {password}\n"
        )
    _, where = build_transport(settings)
    err.print(
        f"API on http://{host}:{port} (docs at http://{host}:{port}/docs); "
        f"dashboard at http://{host}:{port}/dashboard/"
    )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "proxy_headers": True,
        "access_log": access_log,
    }
    if workers > 1:
        settings.secret()  # made (if it is the first start) before the processes read it
        # Each process builds its app from the environment; the sender runs in `mailcast worker`.
        err.print(
            f"{workers} HTTP processes; the sender is not embedded: run `mailcast worker` beside "
            "them"
        )
        uvicorn.run(
            "mailcast.app:create_app_from_environment", factory=True, workers=workers, **options
        )
        return
    if settings.embedded_worker:
        err.print(f"[bold]Sending:[/bold] {where}")
    uvicorn.run(create_app(settings, run_worker=settings.embedded_worker), **options)


def run_event_loop(coroutine: Coroutine[Any, Any, None]) -> None:
    """uvloop where it is installed (a faster event loop: the worker is CPU-bound), else
    asyncio's."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


def _serve_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    run_event_loop(runner())


@app.command()
def worker() -> None:
    """Run only the scheduler and sender loops (any number of these can share one PostgreSQL)."""
    from mailcast.worker.runner import Worker

    settings = get_settings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def main(stop: asyncio.Event) -> None:
        engine = create_engine(
            settings.resolved_database_url(), ping_after_idle=WORKER_PING_AFTER_IDLE
        )
        await upgrade(engine)
        transport, where = build_transport(settings)
        err.print(f"[bold]Sending:[/bold] {where}")
        try:
            await Worker(session_factory(engine), settings, transport, system_clock).run(stop)
        finally:
            await transport.close()
            await engine.dispose()

    _serve_until_signal(main)


@app.command()
def bounces(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
) -> None:
    """Listen for bounces, feedback-loop reports and mailto unsubscribes on the VERP addresses."""
    from aiosmtpd.smtp import SMTP as SMTPServer

    from mailcast.delivery.tokens import TokenCodec
    from mailcast.tracking.bounces import BounceHandler

    settings = get_settings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def main(stop: asyncio.Event) -> None:
        engine = create_engine(settings.resolved_database_url())
        await upgrade(engine)
        handler = BounceHandler(
            session_factory(engine), TokenCodec(settings.secret()), system_clock
        )
        server = await asyncio.get_running_loop().create_server(
            lambda: SMTPServer(handler, hostname="mailcast-bounces"),
            host or settings.bounce_host,
            port or settings.bounce_port,
        )
        err.print(
            f"bounce listener on {host or settings.bounce_host}:{port or settings.bounce_port}"
        )
        try:
            await stop.wait()
        finally:
            server.close()
            await server.wait_closed()
            await engine.dispose()

    _serve_until_signal(main)


_POSTAL_HELP = (
    "Postal address for the footer of campaigns without an unsubscribe link (\\n between lines)"
)


def _postal(value: str | None) -> str | None:
    """The address as the API stores it; a literal \\n (what a shell passes) separates lines."""
    if value is None:
        return None
    try:
        return AccountUpdate(postal_address=value.replace("\\n", "\n")).postal_address
    except ValidationError as exc:
        err.print(f"[red]error:[/red] --postal-address: {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from exc


@accounts_app.command("create")
def accounts_create(
    name: Annotated[str, typer.Option(help="Account name")],
    plan: Annotated[str, typer.Option(help="|".join(PLANS))] = "free",
    postal_address: Annotated[str | None, typer.Option(help=_POSTAL_HELP)] = None,
) -> None:
    """Create an account; prints its id and a new full_access key as JSON."""
    address = _postal(postal_address)

    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        account, key, raw = await accounts.create_account(
            session, name, plan, system_clock(), address
        )
        return {
            "account_id": account.id,
            "name": account.name,
            "plan": account.plan,
            "postal_address": account.postal_address,
            "api_key": _key_json(key, raw),
        }

    _print_json(_in_session(work))


@accounts_app.command("update")
def accounts_update(
    account: Annotated[str, typer.Argument(help="Account id")],
    name: Annotated[str | None, typer.Option(help="A new name")] = None,
    postal_address: Annotated[
        str | None, typer.Option(help=_POSTAL_HELP + "; an empty string removes it")
    ] = None,
) -> None:
    """Change an account's name or postal address; prints the account as JSON."""
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if postal_address is not None:
        changes["postal_address"] = _postal(postal_address)

    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        found = await accounts.update_account(session, account, changes)
        return {
            "account_id": found.id,
            "name": found.name,
            "plan": found.plan,
            "postal_address": found.postal_address,
        }

    _print_json(_in_session(work))


@keys_app.command("create")
def api_keys_create(
    account: Annotated[str, typer.Option(help="Account id")],
    scope: Annotated[
        Scope, typer.Option(help="read_only|sending_access|full_access")
    ] = Scope.FULL_ACCESS,
    name: Annotated[str, typer.Option(help="A name to recognise the key by")] = "CLI key",
) -> None:
    """Create an API key for an account; prints it as JSON (shown only this once)."""

    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        key, raw = await accounts.create_api_key(session, account, name, scope, system_clock())
        return _key_json(key, raw)

    _print_json(_in_session(work))


@domains_app.command("add")
def domains_add(
    name: Annotated[str, typer.Argument(help="The sender domain, e.g. mail.example.com")],
    account: Annotated[str, typer.Option(help="Account id")],
    trusted: Annotated[
        bool, typer.Option(help="The operator vouches for the domain: verified without DNS")
    ] = False,
    dkim_algorithm: Annotated[
        str, typer.Option(help="rsa (RSA-2048) or ed25519 (RFC 8463)")
    ] = "rsa",
) -> None:
    """Add a sender domain; prints it with the DNS records to publish."""
    if dkim_algorithm not in ("rsa", "ed25519"):
        raise typer.BadParameter("rsa or ed25519", param_hint="--dkim-algorithm")

    async def work(session: AsyncSession, settings: Settings) -> dict[str, Any]:
        if await accounts_repo.get_account(session, account) is None:
            raise MailcastError(f"No such account: {account}")
        domain = await domains.create_domain(
            session,
            account,
            name,
            system_clock(),
            settings,
            trusted=trusted,
            dkim_algorithm=dkim_algorithm,
        )
        return {
            "id": domain.id,
            "name": domain.name,
            "status": domain.status,
            "dns_records": domains.dns_records(domain, settings),
        }

    _print_json(_in_session(work))


@domains_app.command("reseal-keys")
def domains_reseal_keys(
    previous_secret_key: Annotated[
        str,
        typer.Option(
            envvar="MAILCAST_PREVIOUS_SECRET_KEY",
            prompt=True,
            hide_input=True,
            help=(
                "The secret key the DKIM private keys were sealed under "
                "(read from the environment or asked)"
            ),
        ),
    ],
) -> None:
    """After MAILCAST_SECRET_KEY changed: seal every DKIM private key under the new secret key."""

    async def work(session: AsyncSession, settings: Settings) -> int:
        try:
            return await domains.seal_stored_keys(session, settings, [previous_secret_key.encode()])
        except KeyUnreadable as exc:
            raise MailcastError(str(exc)) from None

    err.print(f"sealed {_in_session(work)} DKIM private key(s) under the current secret key")


def _password_given(password: str | None) -> str:
    if password is not None:
        return password
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@users_app.command("create")
def users_create(
    account: Annotated[str, typer.Option(help="Account id")],
    email: Annotated[str, typer.Option(help="The address the user signs in with")],
    role: Annotated[users.Role, typer.Option(help="owner|editor|viewer")] = users.Role.OWNER,
    password: Annotated[str | None, typer.Option(help="Asked for when not given")] = None,
) -> None:
    """Create a dashboard user; prints it as JSON."""
    secret = _password_given(password)

    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        user = await users.create_user(session, account, email, role, secret, system_clock())
        return {
            "id": user.id,
            "account_id": user.account_id,
            "email": user.email,
            "role": user.role,
        }

    _print_json(_in_session(work))


@users_app.command("set-password")
def users_set_password(
    email: Annotated[str, typer.Option(help="The user's address")],
    password: Annotated[str | None, typer.Option(help="Asked for when not given")] = None,
) -> None:
    """Give a user a new password; their sessions end."""
    secret = _password_given(password)

    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        user = await users.set_password(session, email, secret, system_clock())
        return {"id": user.id, "email": user.email}

    _print_json(_in_session(work))


_ERRORS_SHOWN = 1_000  # rejected rows listed by the command; all of them are kept with the import


@contacts_app.command("import")
def contacts_import(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV with an email column"),
    ],
    account: Annotated[str, typer.Option(help="Account id")],
    audience: Annotated[
        str | None, typer.Option(help="Audience id to add every imported contact to")
    ] = None,
) -> None:
    """Import contacts from CSV of any size (email, first_name, last_name, unsubscribed, with the
    usual aliases; other columns become metadata), as an import job run here with a progress bar.
    Bad rows are reported with their line numbers; good rows are kept."""
    import os
    import socket

    from mailcast.contacts import imports
    from mailcast.contacts.store import contact_store

    settings = get_settings()
    path = file.resolve()

    async def main() -> tuple[dict[str, Any], list[tuple[int, str, str]], int]:
        engine = create_engine(settings.resolved_database_url())
        try:
            await upgrade(engine)
            sessions = session_factory(engine)
            async with sessions() as session:
                if await accounts_repo.get_account(session, account) is None:
                    raise MailcastError(f"No such account: {account}")
                job = await imports.create_import(
                    session, account, audience, path, path.name, False, system_clock()
                )
                await session.commit()
            importer = imports.Importer(
                engine,
                contact_store(engine),
                settings,
                system_clock,
                f"cli:{socket.gethostname()}:{os.getpid()}",
            )
            columns = (
                TextColumn("importing"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )
            with Progress(*columns, console=err) as progress:
                task = progress.add_task("import", total=job.file_bytes)
                while True:
                    if await importer.take(job.id):
                        await importer.run(
                            job.id, lambda p: progress.update(task, completed=p.offset)
                        )
                    async with sessions() as session:  # run here, or by a worker that took it first
                        current = await imports.get_import(session, account, job.id)
                    progress.update(task, completed=min(current.offset, current.file_bytes))
                    if current.status in (imports.DONE, imports.FAILED):
                        progress.update(task, completed=current.file_bytes)
                        break
                    await asyncio.sleep(0.5)
            errors: list[tuple[int, str, str]] = []
            async with sessions() as session:
                async for chunk in imports.rejected_rows(session, current.id):
                    errors.extend(chunk[: _ERRORS_SHOWN - len(errors)])
                    if len(errors) >= _ERRORS_SHOWN:
                        break
            summary = {
                "import_id": current.id,
                "status": current.status,
                "created": current.created,
                "updated": current.updated,
                "invalid": current.rejected,
                "total": current.rows_read,
                "error": current.error,
            }
            return summary, errors, current.rejected
        finally:
            await engine.dispose()

    try:
        summary, errors, rejected = asyncio.run(main())
    except MailcastError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    for line, email, reason in errors:
        err.print(f"line {line}: {email!r}: {reason}")
    if rejected > len(errors):
        err.print(
            f"... and {rejected - len(errors)} more: GET "
            f"/v1/contacts/imports/{summary['import_id']}/errors"
        )
    _print_json(
        {
            **summary,
            "errors": [
                {"line": line, "email": email, "message": reason} for line, email, reason in errors
            ],
        }
    )
    if summary["status"] == imports.FAILED:
        err.print(f"[red]error:[/red] {summary['error']}")
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    app()
