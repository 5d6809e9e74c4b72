"""botwatch-exporter [run] | check-config FILE | once | --version."""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import sys
import threading
from pathlib import Path

import structlog

from exporter import __version__
from exporter.app import App
from exporter.config import load_config
from exporter.fields import split_listen_address
from exporter.render import TEXT, assemble
from exporter.web import Exposition, make_app
from exporter.yamlsource import ConfigError

EXIT_RUNTIME = 1
EXIT_CONFIG = 2
# SIGTERM must end the process within 2 s even if a collector ignores cancellation.
SHUTDOWN_DEADLINE = 1.8
COMMANDS = ("run", "check-config", "once")

log = structlog.get_logger("exporter.cli")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log.level", dest="log_level", choices=["debug", "info", "warning", "error"]
    )
    common.add_argument(
        "--log.format",
        dest="log_format",
        choices=["json", "logfmt"],
        help="default: json unless stderr is a terminal",
    )
    parser = argparse.ArgumentParser(
        prog="botwatch-exporter",
        description="Prometheus exporter for the Trader Bot and AlphaEngine stacks.",
    )
    parser.add_argument("--version", action="version", version=f"botwatch-exporter {__version__}")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", parents=[common], help="serve /metrics (the default)")
    run.add_argument(
        "--config.file",
        dest="config_file",
        type=Path,
        help="YAML config (default: the embedded default preset)",
    )
    run.add_argument(
        "--web.listen-address",
        dest="listen_address",
        help="host:port to serve on (default :9877, or web.listen_address)",
    )
    check = sub.add_parser("check-config", parents=[common], help="validate a config file")
    check.add_argument("file", type=Path)
    once = sub.add_parser(
        "once", parents=[common], help="run every enabled collector once and print the exposition"
    )
    once.add_argument("--config.file", dest="config_file", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (
        args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "run")
    args = _parser().parse_args(args_list)
    path = getattr(args, "config_file", None) or getattr(args, "file", None)
    try:
        loaded = load_config(path)
        if args.command == "run" and args.listen_address:
            split_listen_address(args.listen_address)
    except ConfigError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    except ValueError as exc:
        print(f"--web.listen-address: {exc} (got {args.listen_address!r})", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        # The collectors that would run: enabled, and with something to do.
        enabled = [n for n, c in loaded.config.collector_configs().items() if c.wanted()]
        print(f"{loaded.origin}: OK (collectors: {', '.join(enabled) or 'none'})")
        return 0
    app = App(loaded, path, {"level": args.log_level, "format": args.log_format})
    app.configure_logging()
    if args.command == "once":
        return asyncio.run(_once(app))
    listen = args.listen_address or loaded.config.web.listen_address
    return asyncio.run(_serve(app, listen))


async def _once(app: App) -> int:
    ok = await app.collect_once()
    sys.stdout.buffer.write(assemble(TEXT, app.store.chunks(), app.store.own_families()))
    sys.stdout.flush()
    return 0 if ok else EXIT_RUNTIME


def _force_exit_later() -> None:
    def force() -> None:
        os._exit(0)

    timer = threading.Timer(SHUTDOWN_DEADLINE, force)
    timer.daemon = True
    timer.start()


async def _serve(app: App, listen: str) -> int:
    from aiohttp import web

    loaded = app.loaded
    exposition = Exposition(app.store, loaded.config.web.render_interval)
    runner = web.AppRunner(
        make_app(app.store, exposition), access_log=None, handle_signals=False, shutdown_timeout=0.5
    )
    await runner.setup()
    host, port = split_listen_address(listen)
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        print(f"listen {listen}: {reason}", file=sys.stderr)
        await runner.cleanup()
        return EXIT_RUNTIME
    addresses = [f"{a[0]}:{a[1]}" if isinstance(a, tuple) else str(a) for a in runner.addresses]
    log.info("listening", address=",".join(addresses), version=__version__, config=loaded.origin)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    reloads: set[asyncio.Task[bool]] = set()

    def on_hup() -> None:
        task = loop.create_task(app.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await app.apply(loaded.config)
    await stop.wait()
    _force_exit_later()
    log.info("shutting down")
    await runner.cleanup()
    await app.stop()
    return 0
