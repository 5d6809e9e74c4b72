"""botwatch-exporter [run] | check-config FILE | once | render | lint-runbooks | --version."""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import structlog

from exporter import __version__
from exporter.app import App
from exporter.config import load_config
from exporter.fields import split_listen_address
from exporter.kuberule import prometheus_rule
from exporter.render import TEXT, assemble
from exporter.runbooks.catalog import GROUPS, PLACEHOLDER_GRAFANA, load_catalog, render_rules
from exporter.runbooks.dashboards import render_dashboards
from exporter.runbooks.info import check_base, check_url, resolve_bases
from exporter.runbooks.lint import lint
from exporter.web import Exposition, make_app
from exporter.websecurity import WebSecurity
from exporter.websecurity import load as load_web
from exporter.yamlsource import ConfigError

EXIT_RUNTIME = 1
EXIT_CONFIG = 2
# SIGTERM must end the process within 2 s even if a collector ignores cancellation.
SHUTDOWN_DEADLINE = 1.8
# Where `render` writes, under --out (the repository root when run from there).
RULES_DIR = "alerts"
DASHBOARDS_DIR = "grafana/dashboards"
COMMANDS = ("run", "check-config", "check-web-config", "once", "render", "lint-runbooks")

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
    run.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        help="TLS, basic auth and response headers, in Prometheus' exporter-toolkit format "
        "(default: web.config_file, else plain HTTP with no auth); re-read when it changes",
    )
    check = sub.add_parser("check-config", parents=[common], help="validate a config file")
    check.add_argument("file", type=Path)
    check_web = sub.add_parser(
        "check-web-config",
        help="validate a web config file (--web.config.file), certificates included",
    )
    check_web.add_argument("file", type=Path)
    once = sub.add_parser(
        "once", parents=[common], help="run every enabled collector once and print the exposition"
    )
    once.add_argument("--config.file", dest="config_file", type=Path)
    render = sub.add_parser(
        "render",
        help="write alerts/*.rules.yml and grafana/dashboards/*.json from the runbook catalog",
        description="Write the Prometheus rule files and Grafana dashboards from the runbook "
        "catalog. Without flags it reproduces the committed files (placeholder links).",
    )
    render.add_argument(
        "--runbook-base",
        dest="bases",
        action="append",
        default=[],
        metavar="DOC=URL",
        help=f"where a runbook document is published ({', '.join(GROUPS)}); repeatable",
    )
    render.add_argument(
        "--grafana-url",
        default=PLACEHOLDER_GRAFANA,
        metavar="URL",
        help="Grafana's address, for each rule's dashboard_url (default: a placeholder)",
    )
    render.add_argument(
        "--out", type=Path, default=Path(), metavar="DIR", help="default: the current directory"
    )
    render.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a file under DIR differs from a fresh render or is stale",
    )
    lint = sub.add_parser(
        "lint-runbooks",
        help="check every alert's runbook section against the runbook documents",
        description="Fail when an alert points at a heading its runbook does not have; warn "
        "about runbook sections no alert covers and in-document links to missing headings.",
    )
    lint.add_argument(
        "--runbook",
        dest="runbooks",
        action="append",
        default=[],
        metavar="DOC=PATH",
        help=f"a runbook's Markdown ({', '.join(GROUPS)}); repeatable; others are skipped",
    )
    lint.add_argument(
        "--strict",
        action="store_true",
        help="uncovered sections and broken in-document links fail too",
    )
    return parser


def _pairs(
    values: list[str], flag: str, check: Callable[[str], str] | None = None
) -> dict[str, str]:
    """Repeated DOC=VALUE flags; raises ValueError naming the flag and the value."""
    pairs: dict[str, str] = {}
    for value in values:
        doc, sep, rest = value.partition("=")
        if not sep or not rest:
            raise ValueError(f"{flag} {value}: expected DOC=VALUE")
        if doc not in GROUPS:
            known = ", ".join(GROUPS)
            raise ValueError(f"{flag} {value}: unknown runbook {doc!r} (known: {known})")
        if doc in pairs:
            raise ValueError(f"{flag} {value}: {doc} is given twice")
        try:
            pairs[doc] = check(rest) if check is not None else rest
        except ValueError as exc:
            raise ValueError(f"{flag} {value}: {exc}") from None
    return pairs


def rendered_files(bases: dict[str, str], grafana: str) -> dict[str, str]:
    """What `render` writes: {path under the output directory: text}."""
    catalog = load_catalog()
    files = {f"{RULES_DIR}/{n}": t for n, t in render_rules(catalog, bases, grafana).items()}
    files["deploy/kubernetes/prometheusrule.yaml"] = prometheus_rule(files)
    for name, text in render_dashboards(catalog, bases).items():
        files[f"{DASHBOARDS_DIR}/{name}"] = text
    return files


def _stale(out: Path, files: dict[str, str]) -> list[str]:
    """Files under `out` that look generated but that a fresh render does not write."""
    present = [*out.glob(f"{RULES_DIR}/*.rules.yml"), *out.glob(f"{DASHBOARDS_DIR}/*.json")]
    names = (p.relative_to(out).as_posix() for p in present)
    return sorted(name for name in names if name not in files)


def render_differences(out: Path, files: dict[str, str]) -> list[str]:
    """One line per file under `out` that is not what a fresh render writes."""
    lines = []
    for name, text in files.items():
        path = out / name
        if not path.exists():
            lines.append(f"{name}: missing (a fresh render writes it)")
        elif path.read_text(encoding="utf-8") != text:
            lines.append(f"{name}: differs from a fresh render")
    lines += [f"{name}: stale (a fresh render does not write it)" for name in _stale(out, files)]
    return lines


def _render(args: argparse.Namespace) -> int:
    try:
        bases = resolve_bases(_pairs(args.bases, "--runbook-base", check_base))
        try:
            grafana = check_url(args.grafana_url)
        except ValueError as exc:
            raise ValueError(f"--grafana-url {args.grafana_url}: {exc}") from None
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    files = rendered_files(bases, grafana)
    out: Path = args.out
    if args.check:
        differences = render_differences(out, files)
        for line in differences:
            print(line)
        if differences:
            print("render --check: run `botwatch-exporter render` and commit the result")
            return EXIT_RUNTIME
        print(f"render --check: {len(files)} files up to date")
        return 0
    try:
        for name, text in files.items():
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    except OSError as exc:
        print(f"render: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_RUNTIME
    for name in _stale(out, files):
        print(f"stale: {out / name} is not written by this render (remove it if it is obsolete)")
    return 0


def _lint_runbooks(args: argparse.Namespace) -> int:
    documents = {}
    try:
        for doc, path in _pairs(args.runbooks, "--runbook").items():
            try:
                documents[doc] = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"--runbook {doc}={path}: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise ValueError(f"--runbook {doc}={path}: not UTF-8 text") from None
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    report = lint(documents, load_catalog(), strict=args.strict)
    for line in report.lines():
        print(line)
    return EXIT_RUNTIME if report.failures else 0


def _config_error(exc: ConfigError) -> int:
    """A bad file at start-up: its lines on stderr, and the config exit code."""
    for line in exc.lines:
        print(line, file=sys.stderr)
    return EXIT_CONFIG


def _check_web_config(args: argparse.Namespace) -> int:
    try:
        loaded = load_web(args.file)
    except ConfigError as exc:
        return _config_error(exc)
    config = loaded.config
    users = len(config.basic_auth_users)
    tls = config.tls_server_config
    mode = f"TLS, client certificates: {tls.client_auth_type}" if tls else "plain HTTP"
    print(f"{args.file}: OK ({mode}; basic auth users: {users})")
    return 0


# Commands that neither load a config nor start collectors.
OFFLINE: dict[str, Callable[[argparse.Namespace], int]] = {
    "render": _render,
    "lint-runbooks": _lint_runbooks,
    "check-web-config": _check_web_config,
}


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (
        args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "run")
    args = _parser().parse_args(args_list)
    if args.command in OFFLINE:
        return OFFLINE[args.command](args)
    path = getattr(args, "config_file", None) or getattr(args, "file", None)
    try:
        loaded = load_config(path)
        if args.command == "run" and args.listen_address:
            split_listen_address(args.listen_address)
    except ConfigError as exc:
        return _config_error(exc)
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
    web_config = args.web_config_file or loaded.config.web.config_file
    return asyncio.run(_serve(app, listen, web_config))


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


async def _serve(app: App, listen: str, web_config: Path | None) -> int:
    from aiohttp import web

    loaded = app.loaded
    security = None
    if web_config is not None:
        try:
            security = WebSecurity(web_config, on_change=app.store.touch)
        except ConfigError as exc:
            return _config_error(exc)
        app.store.extra_own.append(security.families)
    exposition = Exposition(app.store, loaded.config.web.render_interval)
    middlewares = [security.middleware] if security is not None else []
    runner = web.AppRunner(
        make_app(app.store, exposition, middlewares),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=0.5,
    )
    await runner.setup()
    host, port = split_listen_address(listen)
    ssl_context = security.ssl_context() if security is not None else None
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        print(f"listen {listen}: {reason}", file=sys.stderr)
        await runner.cleanup()
        return EXIT_RUNTIME
    addresses = [f"{a[0]}:{a[1]}" if isinstance(a, tuple) else str(a) for a in runner.addresses]
    log.info(
        "listening",
        address=",".join(addresses),
        scheme="https" if ssl_context is not None else "http",
        version=__version__,
        config=loaded.origin,
    )

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
