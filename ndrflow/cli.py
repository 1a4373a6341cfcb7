"""The `ndrflow` command.

    ndrflow up --home DIR --port API_PORT --temporal-port PORT --ui-port PORT   everything, locally
    ndrflow worker | ndrflow api        one part, against an external Temporal cluster (production)
    ndrflow migrate                     apply database migrations
    ndrflow keys create|list|revoke     API keys
    ndrflow temporal setup              register the search attributes on an external namespace
    ndrflow demo --home DIR --api URL   the whole NDR story against a running `make run` stack

Settings come from the environment (NDRFLOW_*, see ndrflow/config.py); flags override them.
Machine-readable output (a new key) goes to stdout, everything else to stderr.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.panel import Panel
from rich.table import Table

from ndrflow.config import Settings

app = typer.Typer(
    name="ndrflow",
    help="Shipment notifications and NDR resolution on durable Temporal workflows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
temporal_app = typer.Typer(help="Prepare an external Temporal namespace.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(temporal_app, name="temporal")

err = Console(stderr=True)
out = Console()

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="Data home (SQLite DB, Temporal DB, secrets). Env: NDRFLOW_HOME."),
]
LogLevelOpt = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]


def load_settings(**overrides: Any) -> Settings:
    """Settings from env, with the flags the user gave (None = not given) on top.

    The flags are also written back to this process's environment so every settings object
    built later (`get_settings()`, an area's own BaseSettings) agrees with them."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings(**given).with_home_secrets()
    except Exception as exc:  # pydantic ValidationError or an unwritable home: say which
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    export_settings(settings, given)
    return settings


def export_settings(settings: Settings, names: Any) -> None:
    from ndrflow.config import get_settings

    for name in names:
        value = getattr(settings, name)
        os.environ[f"NDRFLOW_{name.upper()}"] = str(value.resolve() if isinstance(value, Path) else value)
    get_settings.cache_clear()


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=err, show_path=False, rich_tracebacks=False)],
        force=True,
    )
    # Migrations log every step at INFO; only problems matter on the console.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))


def run_until_signalled(main: Any) -> int:
    """Run `main(stop_event)` with SIGINT/SIGTERM setting the event; a second signal aborts."""

    async def runner() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        signals_seen = 0

        def on_signal(sig: signal.Signals) -> None:
            nonlocal signals_seen
            signals_seen += 1
            if signals_seen == 1:
                err.print(f"\n[yellow]{sig.name} received: stopping (again to force)…[/yellow]")
                stop.set()
            else:
                err.print("[red]forced exit[/red]")
                os._exit(130)  # the dev server child follows us (PDEATHSIG)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        return await main(stop)

    return asyncio.run(runner())


async def _until_stopped_or_failed(stack: Any, stop: asyncio.Event) -> None:
    waiter = asyncio.create_task(stack.wait())
    stopper = asyncio.create_task(stop.wait())
    done, pending = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    if waiter in done:
        waiter.result()  # raises StackError naming the part that stopped


# ---- up -------------------------------------------------------------------------------------
@app.command()
def up(
    home: HomeOpt = None,
    port: Annotated[int | None, typer.Option("--port", help="API port. Env: NDRFLOW_API_PORT.")] = None,
    temporal_port: Annotated[
        int, typer.Option("--temporal-port", help="Embedded Temporal gRPC port.")
    ] = 7233,
    ui_port: Annotated[int, typer.Option("--ui-port", help="Embedded Temporal Web UI port.")] = 8233,
    log_level: LogLevelOpt = "info",
) -> None:
    """Run everything locally: Temporal dev server (unless NDRFLOW_TEMPORAL_ADDRESS is set),
    migrations, worker and API. Ctrl-C stops it; running it again resumes every open workflow."""
    from ndrflow.stack import Stack

    setup_logging(log_level)
    settings = load_settings(home=home, api_port=port)
    derived = []
    if "public_base_url" not in settings.model_fields_set:
        settings.public_base_url = f"http://127.0.0.1:{settings.api_port}"
        derived.append("public_base_url")
    if settings.embedded_temporal and "temporal_ui_url" not in settings.model_fields_set:
        settings.temporal_ui_url = f"http://127.0.0.1:{ui_port}"
        derived.append("temporal_ui_url")
    export_settings(settings, derived)

    async def main(stop: asyncio.Event) -> int:
        stack = Stack(
            settings,
            temporal_port=temporal_port,
            ui_port=ui_port,
            api_log_level=log_level.lower(),
            # ---- HOOK (lead): local-mode extras, e.g. the fake carrier's activities:
            # extra_activities=local_extra_activities(settings),
        )
        with err.status("starting Temporal, worker and API…"):
            try:
                await stack.start()
            except Exception as exc:  # noqa: BLE001 - every start failure is reported the same way
                err.print(f"[red]could not start:[/red] {exc}")
                return 1
        code = 0
        try:
            keys = None
            if settings.embedded_temporal:
                from ndrflow.devkeys import ensure_dev_keys

                assert stack.engine is not None
                keys = ensure_dev_keys(settings.home, stack.engine)
            out.print(_ready_panel(settings, stack, keys))
            if keys is not None:
                out.print(
                    f"Send requests with [bold]Authorization: Bearer <key>[/bold], e.g.\n"
                    f"  curl -H 'Authorization: Bearer {keys.merchant}' {stack.api_url}/v1/shipments/<id>",
                    soft_wrap=True,
                    highlight=False,
                )
            else:
                out.print(
                    "Create API keys with `ndrflow keys create --scope merchant --merchant <id>`.",
                    highlight=False,
                )
            await _until_stopped_or_failed(stack, stop)
        except Exception as exc:  # noqa: BLE001 - a StackError names the part; anything else too
            err.print(f"[red]{exc}[/red]")
            code = 1
        finally:
            with err.status("stopping…"):
                await stack.stop()
        err.print("stopped.")
        return code

    raise typer.Exit(run_until_signalled(main))


def _ready_panel(settings: Settings, stack: Any, keys: Any) -> Panel:
    api = stack.api_url
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("API", api)
    grid.add_row("OpenAPI docs", f"{api}/docs")
    grid.add_row("Health", f"{api}/healthz")
    if settings.embedded_temporal:  # local mode only, like the page itself
        grid.add_row("Outbox (messages)", f"{api}/dev/outbox")
        grid.add_row("Agent dashboard", f"{api}/agent")
        if stack.fake_carrier is not None:
            grid.add_row("Fake carrier", f"{stack.fake_carrier.url}/_received  (every carrier API points here)")
        if settings.twilio_auth_token:
            grid.add_row("Twilio auth token", f"{settings.twilio_auth_token}  (signs inbound webhooks in local mode)")
        grid.add_row("Demo", f"make demo ARGS='--api {api} --home {settings.home}'  (another terminal: the NDR story)")
    grid.add_row("Temporal UI", stack.temporal_ui_url)
    if stack.devserver is not None:
        grid.add_row("Temporal gRPC", f"{stack.devserver.address}  (namespace {settings.temporal_namespace})")
    else:
        grid.add_row("Temporal", f"{settings.temporal_address}  (namespace {settings.temporal_namespace})")
    grid.add_row("Database", settings.effective_database_url.split("@")[-1])
    grid.add_row("Home", str(settings.home.resolve()))
    if keys is not None:
        grid.add_row("", "")
        grid.add_row(f"Merchant key ({keys.merchant_id})", keys.merchant)
        grid.add_row(f"Carrier key ({keys.carrier_code})", keys.carrier)
        grid.add_row("Agent key", keys.agent)
        grid.add_row("", "")
        grid.add_row("Try", f'curl -H "Authorization: Bearer {keys.merchant}" {api}/healthz')
    return Panel(
        grid, title="ndrflow is running", subtitle="Ctrl-C to stop", border_style="green", expand=False
    )


# ---- worker / api (production: external Temporal) --------------------------------------------
def _require_cluster(settings: Settings, what: str) -> None:
    if settings.embedded_temporal:
        err.print(
            f"[yellow]NDRFLOW_TEMPORAL_ADDRESS is empty: `ndrflow {what}` connects to 127.0.0.1:7233. "
            "Use `ndrflow up` to run everything locally with the embedded server.[/yellow]"
        )


def _migrate_locked(url: str) -> None:
    from ndrflow.migrate import migrate_locked

    migrate_locked(url)


MigrateOpt = Annotated[bool, typer.Option("--migrate/--no-migrate", help="Apply migrations before starting.")]


@app.command()
def worker(migrate: MigrateOpt = True, log_level: LogLevelOpt = "info") -> None:
    """Run the Temporal worker alone (address, namespace, TLS or API key from NDRFLOW_TEMPORAL_*)."""
    from ndrflow.stack import Stack, StackError

    setup_logging(log_level)
    settings = load_settings()
    _require_cluster(settings, "worker")
    settings.temporal_address = settings.temporal_address or "127.0.0.1:7233"

    async def main(stop: asyncio.Event) -> int:
        stack = Stack(settings, run_api=False, migrate=migrate)
        try:
            await stack.start()
        except Exception as exc:  # noqa: BLE001
            err.print(f"[red]could not start the worker:[/red] {exc}")
            return 1
        err.print(
            f"worker polling task queue [bold]{settings.temporal_task_queue}[/bold] on "
            f"{settings.temporal_address} (namespace {settings.temporal_namespace})"
        )
        try:
            await _until_stopped_or_failed(stack, stop)
        except StackError as exc:
            err.print(f"[red]{exc}[/red]")
            return 1
        finally:
            await stack.stop()
        return 0

    raise typer.Exit(run_until_signalled(main))


@app.command()
def api(
    host: Annotated[str | None, typer.Option("--host", help="Bind address. Env: NDRFLOW_API_HOST.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port. Env: NDRFLOW_API_PORT.")] = None,
    migrate: MigrateOpt = True,
    log_level: LogLevelOpt = "info",
) -> None:
    """Run the HTTP API alone against an external Temporal cluster."""
    from ndrflow.stack import Stack, StackError

    setup_logging(log_level)
    settings = load_settings(api_host=host, api_port=port)
    _require_cluster(settings, "api")
    settings.temporal_address = settings.temporal_address or "127.0.0.1:7233"

    async def main(stop: asyncio.Event) -> int:
        stack = Stack(settings, run_worker=False, migrate=migrate, api_log_level=log_level.lower())
        try:
            await stack.start()
        except Exception as exc:  # noqa: BLE001
            err.print(f"[red]could not start the API:[/red] {exc}")
            return 1
        err.print(f"API listening on {stack.api_url}")
        try:
            await _until_stopped_or_failed(stack, stop)
        except StackError as exc:
            err.print(f"[red]{exc}[/red]")
            return 1
        finally:
            await stack.stop()
        return 0

    raise typer.Exit(run_until_signalled(main))


@app.command("migrate")
def migrate_cmd(home: HomeOpt = None) -> None:
    """Apply every database migration (idempotent)."""
    settings = load_settings(home=home)
    _migrate_locked(settings.effective_database_url)
    err.print(f"database at {settings.effective_database_url.split('@')[-1]} is up to date")


# ---- keys ------------------------------------------------------------------------------------
def _keys_engine(home: Path | None):  # type: ignore[no-untyped-def]
    from store.db import engine_for

    settings = load_settings(home=home)
    url = settings.effective_database_url
    try:
        _migrate_locked(url)  # a fresh home has no tables yet
    except Exception as exc:  # noqa: BLE001
        raise fail(f"cannot open the database {url.split('@')[-1]}: {exc}") from None
    return engine_for(url)


@keys_app.command("create")
def keys_create(
    scope: Annotated[str, typer.Option("--scope", help="merchant, carrier or agent.")],
    merchant: Annotated[str | None, typer.Option("--merchant", help="Merchant id (merchant keys).")] = None,
    carrier: Annotated[str | None, typer.Option("--carrier", help="Carrier code (carrier keys).")] = None,
    name: Annotated[str, typer.Option("--name", help="What the key is for.")] = "",
    home: HomeOpt = None,
) -> None:
    """Create an API key and print it (only the key, on stdout). It is shown once: store it."""
    from sqlmodel import Session

    from store.keys import InvalidKeyRequest, create_key, validate_binding

    try:  # validate before touching the home or the database
        validate_binding(scope, merchant, carrier)
    except InvalidKeyRequest as exc:
        raise fail(str(exc), code=2) from None
    engine = _keys_engine(home)
    with Session(engine) as session:
        try:
            raw = create_key(session, scope=scope, merchant_id=merchant, carrier=carrier, name=name)
        except InvalidKeyRequest as exc:
            raise fail(str(exc), code=2) from None
    sys.stdout.write(raw + "\n")


@keys_app.command("list")
def keys_list(
    home: HomeOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
) -> None:
    """List keys (prefix, scope, binding; never the key itself)."""
    from sqlmodel import Session

    from store.keys import list_keys

    engine = _keys_engine(home)
    with Session(engine) as session:
        rows = list_keys(session, include_revoked=all_)
    table = Table("id", "prefix", "scope", "bound to", "name", "created", "revoked")
    for r in rows:
        bound = r.merchant_id or r.carrier or ""
        revoked = r.revoked_at.strftime("%Y-%m-%d %H:%M") if r.revoked_at else ""
        table.add_row(
            str(r.id),
            r.prefix + "…",
            r.scope,
            bound,
            r.name,
            r.created_at.strftime("%Y-%m-%d %H:%M"),
            revoked,
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="Key id or prefix, as `ndrflow keys list` shows them.")],
    home: HomeOpt = None,
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    from sqlmodel import Session

    from store.keys import InvalidKeyRequest, revoke_key

    engine = _keys_engine(home)
    with Session(engine) as session:
        try:
            ident: dict[str, Any] = {"key_id": int(key)} if key.isdigit() else {"prefix": key.rstrip("…")}
            rows = revoke_key(session, **ident)
        except InvalidKeyRequest as exc:
            raise fail(str(exc), code=2) from None
    if not rows:
        raise fail(f"no live key matches {key!r}")
    err.print(f"revoked key {rows[0].id} ({rows[0].prefix}…, {rows[0].scope})")


# ---- temporal setup --------------------------------------------------------------------------
@temporal_app.command("setup")
def temporal_setup() -> None:
    """Register ndrflow's search attributes on the namespace NDRFLOW_TEMPORAL_* points at."""
    from ndrflow.temporal import connect
    from ndrflow.temporal_setup import SearchAttributeError, ensure_search_attributes

    settings = load_settings()
    _require_cluster(settings, "temporal setup")

    async def main() -> list[str]:
        client = await connect(settings)
        return await ensure_search_attributes(client)

    try:
        added = asyncio.run(main())
    except SearchAttributeError as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - connection errors: name the address
        raise fail(
            f"cannot reach Temporal at {settings.temporal_address or '127.0.0.1:7233'}: {exc}"
        ) from None
    ns = settings.temporal_namespace
    err.print(
        f"search attributes added on {ns!r}: {', '.join(added)}"
        if added
        else f"search attributes already present on {ns!r}"
    )


# ---- other areas' commands ---------------------------------------------------------------------
@app.command("fake-carrier")
def fake_carrier(
    port: int = typer.Option(8089, "--port", help="port on 127.0.0.1"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (loopback unless you mean it)"),
) -> None:
    """Serve the fake carrier: every adapter's NDR and tracking endpoints, GET /_received,
    POST /_faults, POST /_emit (tests, demo and benchmarks use it)."""
    from carriers.fake.server import serve

    serve(host=host, port=port)


@app.command("demo")
def demo(
    home: HomeOpt = None,
    api_url: Annotated[str, typer.Option("--api", help="The running stack's API (`make run`).")] = "http://127.0.0.1:8000",
    public_url: Annotated[
        str | None,
        typer.Option("--public-url", help="NDRFLOW_PUBLIC_BASE_URL of the stack when it is not the API URL (Twilio signatures)."),
    ] = None,
    temporal_ui: Annotated[str, typer.Option("--temporal-ui", help="Temporal Web UI of the stack.")] = "http://127.0.0.1:8233",
) -> None:
    """Drive 12 scripted shipments through a running `make run` stack: three failed deliveries,
    answered by SMS, on the self-service page, and not at all. Prints where to look."""
    from ndrflow.demo import DemoConfig, DemoError, run_demo

    cfg = DemoConfig(home=home or Path(os.environ.get("NDRFLOW_HOME", ".ndrflow")), api=api_url, public_url=public_url,
                     temporal_ui=temporal_ui)
    try:
        result = asyncio.run(run_demo(cfg, console=out))
    except DemoError as exc:
        raise fail(str(exc)) from None
    if result.problems():
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
