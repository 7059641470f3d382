"""Who this process is in a multi-machine run: ``TF_CONFIG``, or a Kubernetes Indexed Job's
environment.

``MultiWorkerMirroredStrategy`` reads ``TF_CONFIG``. Where it is unset and ``TRAINING_WORKERS``
lists the workers (``host:port``, comma-separated, worker 0 first), the worker's index comes
from ``JOB_COMPLETION_INDEX``, which Kubernetes sets in every pod of an Indexed Job, so one
pod template serves every worker (``deploy/kubernetes/training``):

    TRAINING_WORKERS=train-0.train-workers:2222,train-1.train-workers:2222 JOB_COMPLETION_INDEX=1
    tf_config()  # {"cluster": {"worker": [...]}, "task": {"type": "worker", "index": 1}}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

WORKERS_ENV = "TRAINING_WORKERS"
INDEX_ENV = "JOB_COMPLETION_INDEX"


def tf_config(environ: Mapping[str, str] = os.environ) -> dict | None:
    """``TF_CONFIG`` as a dict, else the one ``TRAINING_WORKERS`` and ``JOB_COMPLETION_INDEX``
    describe, else None (one machine)."""
    if environ.get("TF_CONFIG"):
        try:
            return json.loads(environ["TF_CONFIG"])
        except ValueError as error:
            raise ValueError(f"TF_CONFIG is not valid JSON ({error})") from error
    workers = [host.strip() for host in environ.get(WORKERS_ENV, "").split(",") if host.strip()]
    if not workers:
        return None
    index = environ.get(INDEX_ENV, "")
    if not index.isdigit() or int(index) >= len(workers):
        raise ValueError(
            f"{WORKERS_ENV} lists {len(workers)} workers, so {INDEX_ENV} must be one of "
            f"0…{len(workers) - 1}; got {index or 'nothing'!r}"
        )
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": int(index)}}


def task_index(config: dict | None) -> int:
    """This worker's index in ``config`` (0 on one machine)."""
    return int((config or {}).get("task", {}).get("index", 0))


def is_chief(config: dict | None) -> bool:
    """The chief writes the run folder; other workers write beside it. As TensorFlow has it,
    the chief is the ``chief`` task where the cluster has one, else worker 0."""
    config = config or {}
    task_type = config.get("task", {}).get("type", "chief")
    if task_type == "chief":
        return True
    has_chief = bool(config.get("cluster", {}).get("chief"))
    return task_type == "worker" and task_index(config) == 0 and not has_chief
