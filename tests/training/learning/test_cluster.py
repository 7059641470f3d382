"""Who a process is in a multi-machine run: TF_CONFIG, or a Kubernetes Indexed Job's
environment (what deploy/kubernetes/training sets)."""

from __future__ import annotations

import json

import pytest

from training.learning import cluster

WORKERS = "train-0.train-workers:2222, train-1.train-workers:2222"


def test_tf_config_is_read_as_given_and_wins_over_the_job_environment():
    given = {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}
    environ = {"TF_CONFIG": json.dumps(given), cluster.WORKERS_ENV: WORKERS}
    assert cluster.tf_config(environ) == given
    assert cluster.task_index(given) == 1 and not cluster.is_chief(given)


def test_an_indexed_jobs_pod_gets_its_tf_config_from_its_index():
    config = cluster.tf_config({cluster.WORKERS_ENV: WORKERS, cluster.INDEX_ENV: "1"})
    assert config == {
        "cluster": {"worker": ["train-0.train-workers:2222", "train-1.train-workers:2222"]},
        "task": {"type": "worker", "index": 1},
    }
    zero = cluster.tf_config({cluster.WORKERS_ENV: WORKERS, cluster.INDEX_ENV: "0"})
    assert cluster.is_chief(zero) and cluster.task_index(zero) == 0


def test_one_machine_has_no_tf_config_and_is_the_chief():
    assert cluster.tf_config({}) is None
    assert cluster.is_chief(None) and cluster.task_index(None) == 0
    assert cluster.is_chief({"task": {"type": "chief", "index": 0}})


def test_worker_0_is_not_the_chief_where_the_cluster_has_a_chief_task():
    workers = {"chief": ["c:1"], "worker": ["a:1", "b:1"]}
    chief = {"cluster": workers, "task": {"type": "chief", "index": 0}}
    worker_0 = {"cluster": workers, "task": {"type": "worker", "index": 0}}
    assert cluster.is_chief(chief) and not cluster.is_chief(worker_0)


@pytest.mark.parametrize("index", [None, "2", "-1", "one"])
def test_a_worker_list_without_a_valid_index_is_refused(index):
    environ = {cluster.WORKERS_ENV: WORKERS}
    if index is not None:
        environ[cluster.INDEX_ENV] = index
    with pytest.raises(ValueError, match="JOB_COMPLETION_INDEX must be one of 0…1"):
        cluster.tf_config(environ)


def test_tf_config_that_is_not_json_is_refused():
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        cluster.tf_config({"TF_CONFIG": "{worker: a}"})
