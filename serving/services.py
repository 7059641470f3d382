"""The gRPC servicers: TF Serving's PredictionService and ModelService, official stubs.

Every call goes through one wrapper that turns ServingError into its status code and message,
any other exception into INTERNAL (logged with its traceback), and records metrics; a bad
request never takes the server down.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import grpc
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from serving import handlers
from serving.call_metrics import recorded
from serving.errors import ServingError, echo, invalid
from serving.manager import ModelManager
from serving.metrics import ServingMetrics
from serving.model_config import ModelConfigError, model_sources
from serving.options import Limits

log = logging.getLogger(__name__)


def _answer(service, method: str, request, context, handle: Callable[[], object]):
    """``handle()``'s answer, or the status it raised; metrics either way."""
    spec = getattr(request, "model_spec", None)  # a ReloadConfigRequest names no model
    try:
        with recorded(service.metrics, service.manager, method, spec):
            return handle()
    except ServingError as error:
        context.abort(error.code, error.message)
    except Exception as error:  # never a dead server: report it and answer INTERNAL
        log.exception("%s failed", method)
        context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(
        self,
        manager: ModelManager,
        limits: Limits,
        metrics: ServingMetrics,
        run_slots: threading.Semaphore | None = None,
    ):
        self.manager, self.limits, self.metrics = manager, limits, metrics
        self.run_slots = run_slots

    def Predict(self, request, context):
        return _answer(
            self,
            "Predict",
            request,
            context,
            lambda: handlers.predict(self.manager, request, self.limits, self.run_slots),
        )

    def GetModelMetadata(self, request, context):
        return _answer(
            self,
            "GetModelMetadata",
            request,
            context,
            lambda: handlers.get_model_metadata(self.manager, request),
        )

    def _unimplemented(self, method: str, context):
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{method} is not served here: this model answers Predict (signatures "
            "serving_default, segment_jpeg, metadata)",
        )

    def Classify(self, request, context):
        self._unimplemented("Classify", context)

    def Regress(self, request, context):
        self._unimplemented("Regress", context)

    def MultiInference(self, request, context):
        self._unimplemented("MultiInference", context)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager, metrics: ServingMetrics, config_dir: Path):
        """``config_dir``: where a reloaded config's relative base paths are read from (the
        model config file's folder, as for the file itself)."""
        self.manager, self.metrics, self.config_dir = manager, metrics, config_dir

    def GetModelStatus(self, request, context):
        return _answer(
            self,
            "GetModelStatus",
            request,
            context,
            lambda: handlers.get_model_status(self.manager, request),
        )

    def HandleReloadConfigRequest(self, request, context):
        return _answer(
            self, "HandleReloadConfigRequest", request, context, lambda: self._reload(request)
        )

    def _reload(
        self, request: model_management_pb2.ReloadConfigRequest
    ) -> model_management_pb2.ReloadConfigResponse:
        """TF Serving's ReloadConfig (``model_service_impl.cc``): anything but a
        model_config_list (an empty config too: its switch has no case for one), or a list
        that cannot be served, is INVALID_ARGUMENT; the answer comes once the new models have
        loaded, UNKNOWN naming those that did not (they stay configured, as there)."""
        if request.config.WhichOneof("config") != "model_config_list":
            raise invalid(
                "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                "ModelConfigList is currently supported"
            )
        try:
            sources = model_sources(request.config, self.config_dir, "ReloadConfigRequest")
        except ModelConfigError as error:
            raise invalid(str(error)) from error
        missing = self.manager.reconfigure(sources)
        if missing:
            raise ServingError(
                grpc.StatusCode.UNKNOWN,
                f"{len(missing)} model(s) did not become available: "
                + "; ".join(f"{{{echo(name)}: {why}}}" for name, why in sorted(missing.items())),
            )
        log.info("HandleReloadConfigRequest: serving %s", ", ".join(s.name for s in sources))
        response = model_management_pb2.ReloadConfigResponse()
        response.status.SetInParent()  # error_code 0: OK, as TF Serving fills it
        return response
