"""One loaded version of a model: the SavedModel, its SignatureDefs, and its in-flight count.

All compute is the SavedModel's: this is a handle around ``tf.saved_model.load``, not a model
runtime. The SignatureDefs come from ``saved_model.pb`` itself, so input names, dtypes,
shapes and defaults are exactly what TF Serving would see.

    version = load_version("deeplabv3", 3, Path("models/deeplabv3/3"))
    inputs = {"images": frames, "output_size": [[0, 0]]}  # as checked, defaults filled
    with version.in_flight():
        outputs = version.signatures["serving_default"](**inputs)
        class_map = version.outputs_of("serving_default", ["class_map"])(**inputs)

Like TF Serving, which runs the session for the requested fetches only, a request that asks for
some of a signature's outputs (``output_filter``) runs only the ops they need:
:meth:`LoadedVersion.outputs_of` wraps the signature in a ``tf.function`` returning those
outputs, and grappler inlines the call and prunes the rest. A class map alone skips the
confidence's softmax over every pixel: 25 % of the demo model's time at 480×640.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2


class InFlight:
    """How many requests are being answered, and a wait until none is: a version counts its
    requests so that unloading waits for them, the server's thread pool counts received RPCs
    so that shutdown does."""

    def __init__(self) -> None:
        self._idle = threading.Condition()
        self._active = 0

    @property
    def active(self) -> int:
        return self._active

    def enter(self) -> None:
        with self._idle:
            self._active += 1

    def leave(self) -> None:
        with self._idle:
            self._active -= 1
            if self._active == 0:
                self._idle.notify_all()

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """True once no request is being answered (False if ``timeout`` passed first)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)


class PrunedSignature:
    """A signature of a loaded SavedModel returning only some of its outputs: a
    ``tf.function`` calling it, traced once for any shape (the signature's input specs, so no
    retracing per frame size). Holds the loaded model: the signature's variables live as long
    as the object that loaded them."""

    def __init__(self, signature, outputs: tuple[str, ...], model: object):
        specs = signature.structured_input_signature[1]
        self.input_names = sorted(specs)
        self.model = model

        @tf.function(input_signature=[specs[name] for name in self.input_names])
        def only(*tensors):
            results = signature(**dict(zip(self.input_names, tensors, strict=True)))
            return {name: results[name] for name in outputs}

        self.function = only

    def __call__(self, **inputs) -> dict:
        return self.function(*(inputs[name] for name in self.input_names))


@dataclass
class LoadedVersion:
    name: str
    version: int
    path: Path
    signatures: dict  # name → concrete function of the loaded SavedModel
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]
    load_seconds: float
    _model: object = None  # keeps the loaded object (and its variables) alive
    _requests: InFlight = field(default_factory=InFlight, init=False, repr=False)
    _pruned_cache: dict = field(default_factory=dict, init=False, repr=False)
    _pruned_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def outputs_of(self, signature: str, outputs: Sequence[str]) -> Callable[..., dict]:
        """The ``signature`` function computing only ``outputs`` (the signature itself when
        they are all of its outputs); called with the signature's inputs as keywords."""
        function = self.signatures[signature]
        wanted = tuple(sorted(set(outputs)))
        unknown = set(wanted) - set(function.structured_outputs)
        if unknown:
            raise ValueError(f"{signature} has no output {', '.join(sorted(unknown))}")
        if set(wanted) == set(function.structured_outputs):
            return function
        with self._pruned_lock:
            pruned = self._pruned_cache.get((signature, wanted))
            if pruned is None:
                pruned = PrunedSignature(function, wanted, self._model)
                self._pruned_cache[signature, wanted] = pruned
        return pruned

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[LoadedVersion]:
        """Counts a request against this version while it runs (unloading waits for zero)."""
        with self._requests.track():
            yield self

    @property
    def active(self) -> int:
        return self._requests.active

    def wait_idle(self, timeout: float | None = None) -> bool:
        """True once no request runs on this version (False if ``timeout`` passed first)."""
        return self._requests.wait_idle(timeout)


def read_signature_defs(path: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The serving MetaGraph's SignatureDefs of a SavedModel folder."""
    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    for meta_graph in saved.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return {
                name: signature
                for name, signature in meta_graph.signature_def.items()
                if not name.startswith("__")  # __saved_model_init_op is not a signature
            }
    raise ValueError(f"{path}: no MetaGraph tagged 'serve'")


def load_version(name: str, version: int, path: Path) -> LoadedVersion:
    """Loads ``path``; raises (with TensorFlow's message) if it is not a loadable SavedModel."""
    started = time.perf_counter()
    signature_defs = read_signature_defs(path)
    model = tf.saved_model.load(str(path), tags=["serve"])
    return LoadedVersion(
        name=name,
        version=version,
        path=path,
        signatures=dict(model.signatures),
        signature_defs=signature_defs,
        load_seconds=time.perf_counter() - started,
        _model=model,
    )
