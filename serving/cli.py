"""``python -m serving``: the embedded TF-Serving-compatible model server.

    python -m serving --model-config models/models.config
    python -m serving --model-name deeplabv3 --model-base-path models/deeplabv3

SIGTERM or SIGINT: stop accepting, let requests in flight finish (``--grace``), exit 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from client import contract
from serving.options import MIB, Limits, ServerOptions


def build_parser() -> argparse.ArgumentParser:
    defaults = ServerOptions()  # every default is the options' own
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-config", type=Path, help="TF Serving ModelServerConfig file")
    source.add_argument("--model-name", help="serve one model (with --model-base-path)")
    parser.add_argument("--model-base-path", type=Path, help="folder of integer versions")
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port, help="gRPC port (0: any free)")
    parser.add_argument(
        "--metrics-port", type=int, help="Prometheus metrics HTTP port (0: any free port)"
    )
    parser.add_argument(
        "--rest-port",
        type=int,
        help=f"TF Serving's REST API and the metrics page on this HTTP port (0: any free port; "
        f"TF Serving's is {contract.REST_PORT}); off unless given",
    )
    parser.add_argument(
        "--poll-seconds", type=float, default=defaults.poll_seconds, help="version scan interval"
    )
    parser.add_argument(
        "--model-config-poll-seconds",
        type=float,
        default=defaults.model_config_poll_seconds,
        help="re-read --model-config this often and apply changes, 0: never (TF Serving's "
        "--model_config_file_poll_wait_seconds)",
    )
    parser.add_argument(
        "--max-message-mb",
        type=int,
        default=defaults.max_message_bytes // MIB,
        help="gRPC message limit",
    )
    parser.add_argument(
        "--workers", type=int, default=defaults.workers, help="gRPC request threads"
    )
    parser.add_argument(
        "--max-batch", type=int, default=defaults.limits.max_batch, help="frames per request"
    )
    parser.add_argument(
        "--max-pixels", type=int, default=defaults.limits.max_pixels, help="pixels per request"
    )
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=defaults.max_concurrent,
        help="requests running the model at once",
    )
    parser.add_argument("--ssl-cert", type=Path, help="PEM certificate: serve gRPC over TLS")
    parser.add_argument("--ssl-key", type=Path, help="PEM private key of --ssl-cert")
    parser.add_argument(
        "--grace", type=float, default=defaults.grace, help="shutdown grace (seconds)"
    )
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        default=defaults.intra_op_threads,
        help="TensorFlow op threads",
    )
    parser.add_argument(
        "--inter-op-threads",
        type=int,
        default=defaults.inter_op_threads,
        help="TensorFlow ops run side by side",
    )
    return parser


def _set_tensorflow_threads(intra_op: int, inter_op: int) -> None:
    """Must precede TensorFlow's first op (in a process where TensorFlow already ran, the
    settings stay as they were); why these defaults: :class:`serving.options.ServerOptions`."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        logging.getLogger(__name__).warning(
            "TensorFlow is already initialized: thread settings left as they are"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.model_name and not args.model_base_path:
        print("error: --model-name needs --model-base-path", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from serving.model_config import ModelConfigError, read_model_config, single_model

    try:
        sources = (
            read_model_config(args.model_config)
            if args.model_config
            else [single_model(args.model_name, args.model_base_path)]
        )
    except ModelConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        options = ServerOptions(
            host=args.host,
            port=args.port,
            metrics_port=args.metrics_port,
            rest_port=args.rest_port,
            poll_seconds=args.poll_seconds,
            model_config_poll_seconds=args.model_config_poll_seconds,
            max_message_bytes=args.max_message_mb * MIB,
            workers=args.workers,
            limits=Limits(max_batch=args.max_batch, max_pixels=args.max_pixels),
            max_concurrent=args.max_concurrent,
            tls_cert=args.ssl_cert,
            tls_key=args.ssl_key,
            grace=args.grace,
            intra_op_threads=args.intra_op_threads,
            inter_op_threads=args.inter_op_threads,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    _set_tensorflow_threads(options.intra_op_threads, options.inter_op_threads)

    from serving.server import EmbeddedServer

    # The handler only records the signal; the main thread stops the server (a handler that
    # blocked for the grace period could not be interrupted by a second signal).
    stop_requested = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_requested.set())
    server = EmbeddedServer(sources, options, config_path=args.model_config)
    try:
        server.start()
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for source in sources:
        model = server.manager.models[source.name]
        versions = sorted(model.serving)
        failed = sorted(status.version for status in model.status.values() if status.error)
        if failed:
            print(f"warning: {source.name} versions {failed} failed to load (GetModelStatus "
                  "and the log say why)", flush=True)  # fmt: skip
        if versions:
            print(f"serving {source.name} versions {versions} from {source.base_path}")
        else:
            print(
                f"warning: no version of {source.name} loaded from {source.base_path}; health "
                "says NOT_SERVING until one does (GetModelStatus says why each failed)",
                flush=True,
            )
    # The REST port serves the metrics page too (TF Serving's), over TLS with --ssl-cert.
    scheme = "https" if options.tls_cert else "http"
    rest_url = f"{scheme}://{args.host}:{server.rest.port}" if server.rest else None
    metrics_url = (
        f"http://{args.host}:{server.metrics_http.server_port}" if server.metrics_http else rest_url
    )
    metrics = f", metrics {metrics_url}/monitoring/prometheus/metrics" if metrics_url else ""
    rest = f", REST {rest_url}/v1/models" if rest_url else ""
    print(f"listening on {args.host}:{server.port} (gRPC){metrics}{rest}", flush=True)
    stop_requested.wait()
    server.stop()
    print("stopped", flush=True)
    # Past the grace period gRPC has cancelled what still ran, but TensorFlow work may go on
    # in its threads; do not let interpreter shutdown wait for it.
    os._exit(0)
