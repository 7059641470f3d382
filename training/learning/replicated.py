"""Keras' ``fit`` over several replicas, with what Keras 3.15 gets wrong there fixed.

Under ``MultiWorkerMirroredStrategy`` (``TF_CONFIG``) Keras 3's TensorFlow trainer fails
(keras-team/keras#20585, tensorflow/tensorflow#72388), in three places:

1. ``fit`` first learns the input's shapes by all-reducing the first distributed batch
   across workers: ``strategy.reduce("MEAN", (images, labels), axis=None)`` hands the tuple to
   the collective ops, which fail with *"Attempt to convert a value (PerReplica:{…}) … to a
   Tensor"*. One replica's batch has the shapes; nothing needs reducing.
2. Every step's logs are reduced with ``strategy.reduce("MEAN", value, axis=0)``: the logs
   are scalars, *"Invalid reduction dimension 0 for input with 0 dimensions"*.
3. The last, partial validation batch is split across replicas, and TensorFlow gives the
   replicas it does not reach an empty batch (its documented handling of partial batches);
   the model's convolutions on CPU fail on a batch of 0.

And under every strategy (``MirroredStrategy`` too), Keras 3 creates the batch norms' moving
statistics without aggregation (tf_keras averaged them over the replicas): each replica
updates its own copy from its own images, so the copies drift apart, and every worker saves
and validates with different statistics.

:class:`ReplicatedModel` is the same functional model (same layers, same weights files) with
a train and test function that run Keras' own ``train_step`` and ``test_step`` under
``strategy.run``, a ``train_step`` that then averages the moving statistics over all
replicas (one all-reduce; the moving averages are linear, so this is tf_keras' mean
aggregation), a ``test_step`` that skips an empty batch, and a build from one replica's batch.
Losses, metrics, optimizer, callbacks and ``fit``'s loop stay Keras'. A step's logs (progress
bar) are the mean over this machine's replicas; the epoch's logs, which the callbacks and
``log.csv`` get, are Keras' metric results, summed over every worker.

    with strategy.scope():
        model = ReplicatedModel.of(build_deeplabv3(21))
        model.compile(...)
    model.fit(...)
"""

from __future__ import annotations

import keras
import tensorflow as tf


class ReplicatedModel(keras.Model):
    """A functional model whose ``fit`` and ``evaluate`` work under any
    ``tf.distribute`` strategy, several workers included."""

    @classmethod
    def of(cls, model: keras.Model) -> ReplicatedModel:
        """``model``'s graph and layers (shared, not copied) in a ReplicatedModel; call it in
        the strategy's scope, before ``compile``."""
        return cls(model.inputs, model.outputs, name=model.name)

    def _local_mean(self, value):
        """The mean of ``value`` over this machine's replicas (no communication)."""
        local = self.distribute_strategy.experimental_local_results(value)
        return local[0] if len(local) == 1 else tf.reduce_mean(tf.stack(local), axis=0)

    def _distributed(self, step):
        """``iterator → logs``: one ``step`` on every replica, as Keras' own train function
        does with ``steps_per_execution=1``."""
        strategy = self.distribute_strategy

        @tf.function(reduce_retracing=True)
        def one_step(iterator):
            outputs = strategy.run(step, args=(next(iterator),))
            return keras.tree.map_structure(self._local_mean, outputs)

        return one_step

    def make_train_function(self, force: bool = False):
        if self.train_function is None or force:
            self.train_function = self._distributed(self.train_step)
        return self.train_function

    def make_test_function(self, force: bool = False):
        if self.test_function is None or force:
            self.test_function = self._distributed(self.test_step)
        return self.test_function

    def train_step(self, data):
        """Keras' train step, then every replica holds the mean of the moving statistics."""
        logs = super().train_step(data)
        unaggregated = [v for v in self.non_trainable_variables if v.aggregation == "none"]
        context = tf.distribute.get_replica_context()
        means = context.all_reduce("MEAN", [tf.identity(v.value) for v in unaggregated])
        for variable, mean in zip(unaggregated, means, strict=True):
            variable.assign(mean)
        return logs

    def test_step(self, data):
        """Keras' test step, skipped on a replica whose share of a partial batch is empty."""
        keras_step = super().test_step
        size = tf.shape(keras.tree.flatten(data)[0])[0]
        return tf.cond(size > 0, lambda: keras_step(data), self.get_metrics_result)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras all-reduces a distributed batch across workers to learn its shapes (bug 1
        # above); one local replica's batch has them. Private in Keras 3.15: pinned there.
        local = self.distribute_strategy.experimental_local_results
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(lambda v: local(v)[0], next(batches))
                break
        super()._maybe_symbolic_build(data_batch=data_batch)
