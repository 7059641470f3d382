"""``python -m serving gateway``: the HTTP gateway in front of a model server.

python -m serving gateway --target localhost:8500 --port 8000
# then open http://localhost:8000/ , or http://localhost:8000/docs for the API
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from serving.gateway.settings import MIB, GatewaySettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving gateway", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--target",
        action="append",
        help="model server HOST:PORT, TF Serving or embedded (repeat for several; "
        "default localhost:8500)",
    )
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )
    parser.add_argument("--model", default="deeplabv3")
    parser.add_argument("--version", help="model version number or label (default: latest)")
    parser.add_argument("--timeout", type=float, default=30.0, help="model server deadline (s)")
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="request body limit")
    parser.add_argument(
        "--max-pixels", type=int, default=8_000_000, help="decoded image size limit"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import uvicorn

    from serving.gateway.app import create_app

    version = int(args.version) if args.version and args.version.isdigit() else args.version
    try:
        settings = GatewaySettings(
            targets=tuple(args.target or ["localhost:8500"]),
            model=args.model,
            version=version,
            timeout=args.timeout,
            max_upload_bytes=int(args.max_upload_mb * MIB),
            max_pixels=args.max_pixels,
        )
    except ValueError as error:
        print(f"error: {error}")
        return 2
    print(
        f"gateway for {settings.model} on {', '.join(settings.targets)}: "
        f"http://{args.host}:{args.port}/ (API docs at /docs)",
        flush=True,
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0
