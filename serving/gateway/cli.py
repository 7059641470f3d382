"""``python -m serving gateway``: the HTTP gateway in front of a model server.

python -m serving gateway --target HOST:PORT [--target HOST:PORT …] [--port PORT]
# then open the address it prints, or its /docs for the API

The flags' defaults are ``GatewaySettings``' own; importing this module (and ``--help``)
loads neither FastAPI nor TensorFlow.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from client import contract
from serving.gateway.settings import LOG_LEVELS, MIB, GatewaySettings

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

DEFAULTS = GatewaySettings()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving gateway", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--target",
        action="append",
        help="model server HOST:PORT, TF Serving or embedded (repeat for several; "
        f"default {', '.join(DEFAULTS.targets)})",
    )
    setting = _settings_flag(parser)
    setting("--host", "interface to listen on")
    setting("--port", "port to listen on", type=int)
    setting("--log-level", "uvicorn's log level", choices=LOG_LEVELS)
    setting("--model", "model name")
    parser.add_argument("--version", help="model version number or label (default: latest)")
    setting("--timeout", "model server deadline, seconds", type=float)
    setting(
        "--connect-timeout",
        "seconds to wait for a model server that does not answer: then 503",
        type=float,
    )
    setting(
        "--ca-cert",
        "PEM root certificate: reach the model servers over TLS (their --ssl-cert)",
        type=Path,
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULTS.max_upload_bytes / MIB,
        help="request body limit (default %(default)s)",
    )
    setting("--max-pixels", "decoded image size limit", type=int)
    setting("--max-connections", "open connections; more are closed on accept", type=int)
    setting("--header-timeout", "seconds for a request line and headers to arrive", type=float)
    setting("--body-timeout", "longest pause within a request body, seconds", type=float)
    return parser


def _settings_flag(parser: argparse.ArgumentParser):
    """``setting(flag, text, **kwargs)``: a flag for the GatewaySettings field of the same
    name, its default read from there and shown in its help."""

    def setting(flag: str, text: str, **kwargs) -> None:
        default = getattr(DEFAULTS, flag.removeprefix("--").replace("-", "_"))
        shown = "" if default is None else " (default %(default)s)"
        parser.add_argument(flag, default=default, help=text + shown, **kwargs)

    return setting


def settings_from(args: argparse.Namespace) -> GatewaySettings:
    """The settings the parsed flags ask for; ValueError if they do not fit together."""
    version = args.version
    if version is not None and contract.is_version_name(version):
        version = int(version)  # a number pins a version; anything else is a label
    # Flags named as a settings field set it; the others are converted here.
    given = {
        f.name: getattr(args, f.name) for f in fields(GatewaySettings) if hasattr(args, f.name)
    }
    converted = {
        "targets": tuple(args.target or DEFAULTS.targets),
        "version": version,
        "max_upload_bytes": int(args.max_upload_mb * MIB),
    }
    return GatewaySettings(**{**given, **converted})


def uvicorn_config(settings: GatewaySettings, app: FastAPI | None = None) -> uvicorn.Config:
    """uvicorn's configuration for ``settings`` (the app built from them unless given): what
    ``main`` serves, and what the tests serve to check the connection bounds."""
    import uvicorn

    from serving.gateway.app import create_app
    from serving.gateway.connections import ConnectionLimits, guarded_protocol

    limits = ConnectionLimits(
        settings.max_connections, settings.header_timeout, settings.body_timeout
    )
    return uvicorn.Config(
        app or create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        http=guarded_protocol(limits),
        ws="none",  # no WebSocket routes; an upgrade would take the socket past the timers
        # uvicorn counts the asking connection too: +1 so it never refuses one the cap let in,
        # only requests past the cap still running for clients that left.
        limit_concurrency=settings.max_connections + 1,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
        settings.credentials()  # an unreadable --ca-cert is named now, not at the first request
    except ValueError as error:
        print(f"error: {error}")
        return 2
    import uvicorn

    print(
        f"gateway for {settings.model} on {', '.join(settings.targets)}: "
        f"http://{settings.host}:{settings.port}/ (API docs at /docs)",
        flush=True,
    )
    server = uvicorn.Server(uvicorn_config(settings))
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it handled
        server.run()
    return 0 if server.started else 1  # uvicorn logged why it did not start
