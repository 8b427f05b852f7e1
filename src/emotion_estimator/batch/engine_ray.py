"""``--engine ray``: the same tasks on a Ray cluster (extra ``[distributed]``).

One long-lived actor per CPU holds its :class:`Worker` (classifier loaded once). Actors are
restarted when their process or node is lost and Ray re-runs the task that was in flight
(``max_task_retries``); an input whose retries run out is recorded as failed. Inputs and the
model must be readable at the same path on every node, and ``--out`` must be a folder (or
URL, e.g. ``s3://``) that all nodes share.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import InputError, describe
from .engine_local import OnFrames, OnRecord
from .inputs import BatchInput
from .manifest import FAILED, BatchOptions, Record


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError("--engine ray needs Ray: pip install 'emotion-estimator[distributed]'"
                         ) from None
    return ray


def local_ray_options(num_cpus: int | None = None) -> dict[str, Any]:
    """``ray.init`` options for a new Ray on this machine.

    Ray runs its workers at nice 15 by default; here they get the priority the local pool's
    workers have (0), so on a machine shared with other work only the engine differs.
    """
    return {"include_dashboard": False, "num_cpus": num_cpus,
            "_system_config": {"worker_niceness": 0}}


class _BatchActor:
    """A Ray actor holding one Worker; ``retried``: restarted after a loss, task not yet rerun."""

    def __init__(self, options: BatchOptions, out: str) -> None:
        import ray

        from .tasks import Worker

        self.worker = Worker(options, out)
        self.retried = ray.get_runtime_context().was_current_actor_reconstructed

    def run(self, input_id: str, path: str, attempt: int) -> Record:
        # Ray re-runs the task that was in flight first on a restarted actor
        attempt, self.retried = attempt + int(self.retried), False
        return self.worker.run(input_id, path, attempt)


class RayEngine:
    """Runs inputs on Ray actors; ``address``: None (a local Ray), ``auto``, ``ray://H:P``."""

    name = "ray"

    def __init__(self, options: BatchOptions, out: str, workers: int | None = None,
                 retries: int = 2, address: str | None = None) -> None:
        self.options, self.out = options, out
        self.workers, self.retries, self.address = workers, retries, address
        self.ray = _ray()

    def _connect(self) -> bool:
        """Join (or start) Ray; True when this call started it (and so shuts it down)."""
        if self.ray.is_initialized():
            return False
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
        if address is None:  # a new Ray on this machine
            kwargs.update(local_ray_options(self.workers))
        try:
            self.ray.init(address=address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise InputError(f"cannot reach Ray at {address or 'a new local instance'}: "
                             f"{describe(exc)}") from exc
        return True

    def run(self, inputs: list[BatchInput], on_record: OnRecord, on_frames: OnFrames) -> None:
        """Process all inputs; ``on_record`` gets each finished input's record."""
        ray = self.ray
        started = self._connect()
        actors: list[Any] = []
        try:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            count = max(1, min(self.workers or cpus, len(inputs)))
            actor_cls = ray.remote(num_cpus=1, max_restarts=-1,
                                   max_task_retries=self.retries)(_BatchActor)
            actors.extend(actor_cls.remote(self.options, self.out) for _ in range(count))
            idle = list(actors)
            pending = list(reversed(inputs))
            running: dict[Any, tuple[Any, BatchInput]] = {}
            while pending or running:
                while idle and pending:
                    actor, inp = idle.pop(), pending.pop()
                    running[actor.run.remote(inp.id, inp.path, 1)] = (actor, inp)
                done, _ = ray.wait(list(running), num_returns=1)
                actor, inp = running.pop(done[0])
                idle.append(actor)
                record = self._result(done[0], inp)
                on_frames(record.frames)  # Ray reports frames per finished input
                on_record(record)
        finally:
            for actor in actors:
                ray.kill(actor)
            if started:
                ray.shutdown()

    def _result(self, ref: Any, inp: BatchInput) -> Record:
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            return Record(id=inp.id, path=inp.path, status=FAILED, attempts=self.retries + 1,
                          error=f"Ray worker lost {self.retries + 1} times: {describe(exc)}")
        except ray.exceptions.RayError as exc:
            return Record(id=inp.id, path=inp.path, status=FAILED, attempts=1,
                          error=describe(exc))
