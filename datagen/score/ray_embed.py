"""Sentence embeddings on Ray actors: a pool of actors, each holding one sentence-transformers
model, that embeds batches of texts and returns the vectors in order.

:class:`EmbedActors` is an ``encode`` for :meth:`datagen.score.embeddings.EmbeddingStore.compute`:
the store (in the driver) still decides which texts miss its cache, cuts them into the batches it
would embed itself and writes the cache; only the forward passes run on the cluster. The same
batches through the same model give the vectors this process would compute. Each actor asks Ray
for ``num_cpus`` CPUs and ``num_gpus`` GPUs (default 0: a GPU is used only when asked for, and
``device`` then defaults to ``cuda``); the model is loaded once per actor, from the folder the
driver names, which every node must see (the embedded model is inside an installed package).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from datagen.core.errors import UserError


class EmbedActors:
    """``actors`` encoders on the Ray cluster this process is connected to (default: as many as
    its free CPUs, or GPUs when ``num_gpus`` > 0, allow). Call it with a list of batches of texts;
    :meth:`close` ends the actors."""

    def __init__(self, model_path: str, *, batch_size: int = 64, device: str | None = None, actors: int | None = None,
                 num_cpus: float = 1, num_gpus: float = 0) -> None:
        import ray

        if not ray.is_initialized():
            raise UserError("embedding on Ray needs a Ray cluster: run with --executor ray")
        if num_cpus < 0 or num_gpus < 0 or (actors is not None and actors < 1):
            raise UserError("embedding actors: num_cpus and num_gpus must be >= 0, actors >= 1")
        total = ray.cluster_resources()
        if num_gpus > 0 and total.get("GPU", 0) < num_gpus:
            raise UserError(f"embedding actors ask for {num_gpus:g} GPU each, but the Ray cluster has {total.get('GPU', 0):g}")
        fit = total.get("GPU", 0) / num_gpus if num_gpus > 0 else total.get("CPU", 1) / max(num_cpus, 1)
        self.size = int(actors or max(1, int(fit)))
        remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(_Encoder)
        device = device or ("cuda" if num_gpus > 0 else None)
        self._ray = ray
        self._actors = [remote.remote(model_path, batch_size, device) for _ in range(self.size)]
        self._pool = ray.util.ActorPool(list(self._actors))

    def __call__(self, batches: list[list[str]]) -> list[np.ndarray]:
        """The vectors of each batch, in order (batches spread over the idle actors)."""
        return list(self._pool.map(lambda actor, batch: actor.encode.remote(batch), batches))

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []


class _Encoder:
    """One actor: the model, loaded once."""

    def __init__(self, model_path: str, batch_size: int, device: str | None) -> None:
        from datagen.score.embeddings import load_encoder

        self.batch_size = batch_size
        self.model: Any = load_encoder(model_path, device)

    def encode(self, texts: list[str]) -> np.ndarray:
        from datagen.score.embeddings import encode_texts

        return encode_texts(self.model, texts, self.batch_size)
