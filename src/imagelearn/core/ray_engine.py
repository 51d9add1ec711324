"""The Ray engine of the execution layer: ``engine="ray"`` (the ``ray`` extra).

:func:`~imagelearn.core.execution.map_images` hands this backend its batches (blocks of
images) unchanged; the cache lookups, the failures and their reasons, ``finish`` and the
progress of images stay in the layer, so an unreadable image is reported exactly as the
local engine reports it and capability code never knows which engine ran it.

- Workers are Ray actors, one CPU each, natively single-threaded like the local worker
  processes. Network work (a batch function that can move: ``on_device``) also gets one
  worker per GPU of the cluster (``num_gpus=1``, no CPU reserved, so it never waits for the
  CPU workers' places), which runs the PyTorch network on its GPU; blocks go to whichever
  worker is free, so the GPU workers take as many as they can. They are started once per
  process and reused by later calls (an actor's process start and imports cost seconds),
  until :meth:`RayBackend.close`. Each call puts its batch function in the object store
  once; a worker deserialises it on its first block of the call and keeps it (a network, a
  vocabulary) for the rest.
- Blocks run two at a time per worker (one computing, one queued) and come back in order.
- A block whose worker dies (killed, out of memory, its node pre-empted) is run again on a new
  worker, up to :data:`BLOCK_ATTEMPTS` times in all; then :class:`WorkerLostError`.
- On the driver, a bar counts blocks done of the total with the images/s, and a line at
  the end of each call says how many, how fast, on how many workers (log level INFO).

Networks (``workers="inline"``) run on every CPU of the cluster, one copy per worker, instead
of inside one process. Workers must reach the image paths and output folders the driver names
(shared storage), and have imagelearn installed: :meth:`RayBackend.cluster_report` checks
both (``imagelearn cluster-check``).

Measured against Ray Data's ``map_batches`` with an actor pool: ``bench/bench_ray.py``.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    NodeDiedError,
    ObjectLostError,
    OutOfMemoryError,
    RayActorError,
    WorkerCrashedError,
)

from imagelearn.core.errors import ImagelearnError, ParameterError
from imagelearn.core.execution import Workers
from imagelearn.core.progress import progress_bar
from imagelearn.core.threads import (
    SINGLE_THREADED_ENVIRONMENT,
    resolve_n_jobs,
    single_threaded_worker,
)

#: Runs of one block before its worker's deaths fail the call.
BLOCK_ATTEMPTS = 4
#: Blocks sent to a worker before it returns one: one computing, one waiting.
BLOCKS_IN_FLIGHT = 2
#: Environment of the worker actors: native pools single-threaded, no progress bars.
WORKER_ENVIRONMENT = {**SINGLE_THREADED_ENVIRONMENT, "IMAGELEARN_QUIET": "1"}

#: What a worker's death looks like to the driver, whatever killed it.
WORKER_DEATHS = (
    RayActorError,
    ActorDiedError,
    ActorUnavailableError,
    WorkerCrashedError,
    NodeDiedError,
    OutOfMemoryError,
    ObjectLostError,
)

logger = logging.getLogger(__name__)


class WorkerLostError(ImagelearnError):
    """A block's workers died :data:`BLOCK_ATTEMPTS` times (an image that crashes the decoder,
    or a cluster losing nodes); the blocks finished before are kept where the work keeps them."""


def _not_a_skip(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("skipped ")


@ray.remote(concurrency_groups={"control": 1})
class _Worker:
    """One worker process: runs batches with the call's function, deserialised once per call
    (its ``pid`` and ``device`` answer at once, even while a batch runs).

    A worker started with ``gpu=True`` holds a GPU: network batches run there on PyTorch
    (device ``"cuda"``) when PyTorch sees the GPU, else where the driver placed them.
    """

    def __init__(self, gpu: bool = False) -> None:
        os.environ.update(WORKER_ENVIRONMENT)  # before the work imports FAISS, PyTorch...
        single_threaded_worker()
        # the driver reports every unreadable input; work nested here would report it again
        logging.getLogger("imagelearn.core.execution").addFilter(_not_a_skip)
        self._key: str | None = None
        self._function: Callable[[list[Any]], list[Any]] | None = None
        self._gpu_ids = [str(gpu_id) for gpu_id in ray.get_gpu_ids()] if gpu else []
        self._device: str | None = None
        if self._gpu_ids:
            import torch

            if torch.cuda.is_available():
                self._device = "cuda"
            else:
                logger.warning(
                    "worker %d holds GPU %s, but PyTorch sees no CUDA device: its networks "
                    "run where the driver placed them",
                    os.getpid(),
                    ",".join(self._gpu_ids),
                )

    def run(self, function: list[ray.ObjectRef], batch: list[Any]) -> list[Any]:
        """``function(batch)``; ``function`` is the call's function, as a one-item list of its
        reference (so Ray passes the reference, fetched here only when the call changes)."""
        (reference,) = function
        if reference.hex() != self._key:
            work = ray.get(reference)
            if self._device is not None and getattr(work, "placeable", False):
                work = work.on_device(self._device)
            self._function, self._key = work, reference.hex()
        return self._function(batch)

    @ray.method(concurrency_group="control")
    def pid(self) -> int:
        return os.getpid()

    @ray.method(concurrency_group="control")
    def device(self) -> tuple[list[str], str | None]:
        """The GPUs Ray gave this worker, and the device its networks run on (None: the
        driver's choice)."""
        return self._gpu_ids, self._device


#: The CPU workers of this process's Ray connection, shared by every :class:`RayBackend`.
_WORKERS: list[Any] = []
#: Its GPU workers (one per GPU of the cluster), which join the calls running networks.
_GPU_WORKERS: list[Any] = []


def _new_worker(gpu: bool = False) -> Any:
    if gpu:
        return _Worker.options(num_cpus=0, num_gpus=1, max_restarts=0).remote(gpu=True)
    return _Worker.options(num_cpus=1, max_restarts=0).remote()


class RayBackend:
    """Batches on a pool of Ray actors (see the module docstring).

    Parameters
    ----------
    address : str, optional
        The cluster (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:10001"``); None: the
        ``RAY_ADDRESS`` environment variable, else a Ray instance started on this machine.
        A process already connected to Ray (``ray.init`` done) uses that connection.
    """

    distributed = True

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    def connect(self) -> None:
        """Connect to the cluster, unless this process already is."""
        if not ray.is_initialized():
            _WORKERS.clear()  # those of an earlier connection are gone
            _GPU_WORKERS.clear()
            ray.init(
                address=self.address,
                include_dashboard=False,
                logging_level=logging.WARNING,
                configure_logging=False,
            )

    def cluster_cpus(self) -> int:
        self.connect()
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def cluster_gpus(self) -> int:
        self.connect()
        return int(ray.cluster_resources().get("GPU", 0))

    def n_workers(self, n_jobs: int | None, workers: Workers) -> int:
        """Workers for ``n_jobs`` against the cluster's CPUs (networks: all of them)."""
        cpus = self.cluster_cpus()
        if workers == "inline":
            return cpus
        return min(cpus, resolve_n_jobs(n_jobs, cores=cpus))

    def worker_pids(self) -> list[int]:
        """Process ids of the started CPU workers (tests kill one)."""
        return ray.get([worker.pid.remote() for worker in _WORKERS])

    def gpu_worker_devices(self) -> list[tuple[list[str], str | None]]:
        """For each started GPU worker: the GPUs Ray gave it and its networks' device."""
        return ray.get([worker.device.remote() for worker in _GPU_WORKERS])

    def close(self) -> None:
        """Stop the workers (each holds a CPU or a GPU of the cluster until then, or until
        this process ends)."""
        for worker in _WORKERS + _GPU_WORKERS:
            ray.kill(worker, no_restart=True)
        _WORKERS.clear()
        _GPU_WORKERS.clear()

    def map_batches(
        self,
        function: Callable[[list[Any]], list[Any]],
        batches: Sequence[list[Any]],
        n_jobs: int,
        workers: Workers,
    ) -> Iterator[list[Any]]:
        self.connect()
        try:
            reference = ray.put(function)
        except (TypeError, pickle.PicklingError) as error:
            raise ParameterError(
                "engine", f"this work cannot be sent to Ray workers: {str(error).splitlines()[0]}"
            ) from error
        queue = deque(range(len(batches)))
        attempts = [0] * len(batches)
        running: dict[ray.ObjectRef, tuple[int, int, Any]] = {}  # -> batch, slot, worker
        done: dict[int, list[Any]] = {}
        while len(_WORKERS) < n_jobs:
            _WORKERS.append(_new_worker())
        slots = [(_WORKERS, position) for position in range(n_jobs)]  # -> pool, its position
        if getattr(function, "placeable", False):
            while len(_GPU_WORKERS) < self.cluster_gpus():
                _GPU_WORKERS.append(_new_worker(gpu=True))
            slots += [(_GPU_WORKERS, position) for position in range(len(_GPU_WORKERS))]
        n_slots = len(slots)

        def submit(slot: int) -> None:
            if queue:
                index = queue.popleft()
                pool, position = slots[slot]
                worker = pool[position]
                running[worker.run.remote([reference], batches[index])] = (index, slot, worker)

        with progress_bar("blocks", len(batches), unit="block") as bar:
            started, n_images, next_index = time.perf_counter(), 0, 0
            for _ in range(BLOCKS_IN_FLIGHT):
                for slot in range(n_slots):
                    submit(slot)
            try:
                while running:
                    [ready], _ = ray.wait(list(running), num_returns=1)
                    index, slot, worker = running.pop(ready)
                    try:
                        done[index] = ray.get(ready)
                        logger.debug(
                            "ray: %s: block %d of %d done%s",
                            getattr(function, "description", ""),
                            index + 1,
                            len(batches),
                            " on a GPU worker" if slots[slot][0] is _GPU_WORKERS else "",
                        )
                    except WORKER_DEATHS as error:
                        pool, position = slots[slot]
                        if pool[position] is worker:  # not replaced for an earlier block yet
                            ray.kill(worker, no_restart=True)
                            pool[position] = _new_worker(gpu=pool is _GPU_WORKERS)
                        self._retry(index, attempts, batches, error)
                        queue.appendleft(index)
                    submit(slot)
                    while next_index in done:
                        outcomes = done.pop(next_index)
                        n_images += len(outcomes)
                        bar.update(1)
                        bar.set_postfix_str(
                            f"{n_images / (time.perf_counter() - started):.1f} img/s",
                            refresh=False,
                        )
                        next_index += 1
                        yield outcomes
                elapsed = time.perf_counter() - started
                logger.info(
                    "ray: %d blocks, %d inputs in %.1f s (%.1f/s) on %d workers (%d with a GPU)",
                    len(batches),
                    n_images,
                    elapsed,
                    n_images / elapsed,
                    n_slots,
                    n_slots - n_jobs,
                )
            finally:
                for pending in running:  # the caller stopped early (strict, an error)
                    ray.cancel(pending)

    def cluster_report(
        self, paths: Sequence[str | os.PathLike] = (), output: str | os.PathLike | None = None
    ) -> ClusterReport:
        """The cluster's resources, and whether a worker on every alive node can read
        ``paths`` and write into ``output``.

        Parameters
        ----------
        paths : sequence of path-like
            Image files the driver will name (made absolute, as the workers will get them).
        output : path-like, optional
            A folder the workers will write into (a sharded index's shards); created if
            missing.
        """
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.connect()
        resources = ray.cluster_resources()
        alive = [node for node in ray.nodes() if node.get("Alive")]
        names = [os.path.abspath(p) for p in paths]
        target = os.path.abspath(output) if output is not None else None
        check = ray.remote(num_cpus=0)(_check_reach)
        checks = ray.get(
            [
                check.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
                ).remote(names, target)
                for node in alive
            ]
        )
        return ClusterReport(
            address=ray.get_runtime_context().gcs_address,
            n_nodes=len(alive),
            cpus=int(resources.get("CPU", 0)),
            gpus=int(resources.get("GPU", 0)),
            memory=int(resources.get("memory", 0)),
            object_store_memory=int(resources.get("object_store_memory", 0)),
            nodes=checks,
            n_paths=len(names),
            output=target,
        )

    @staticmethod
    def _retry(
        index: int, attempts: list[int], batches: Sequence[list[Any]], error: Exception
    ) -> None:
        attempts[index] += 1
        if attempts[index] >= BLOCK_ATTEMPTS:
            raise WorkerLostError(
                f"block {index + 1} of {len(batches)} ({len(batches[index])} inputs) lost its "
                f"worker {attempts[index]} times; last: {type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}"
            ) from error
        logger.warning(
            "a worker died on block %d of %d (%s); running it again",
            index + 1,
            len(batches),
            type(error).__name__,
        )


@dataclass(frozen=True)
class NodeCheck:
    """What one node's worker could reach.

    Attributes
    ----------
    node : str
        The node's address.
    unreadable : list of (path, reason)
        Image paths the worker could not read.
    output_problem : str
        Why the worker could not write into the output folder ("" when it could, or none
        was given).
    """

    node: str
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    output_problem: str = ""


@dataclass(frozen=True)
class ClusterReport:
    """The resources of a Ray cluster and what its workers can reach.

    Attributes
    ----------
    address : str
        The cluster as connected to.
    n_nodes, cpus, gpus : int
    memory, object_store_memory : int
        Bytes, over all nodes.
    nodes : list of NodeCheck
    n_paths : int
        Image paths each node tried.
    """

    address: str
    n_nodes: int
    cpus: int
    gpus: int
    memory: int
    object_store_memory: int
    nodes: list[NodeCheck]
    n_paths: int
    output: str | None

    @property
    def ok(self) -> bool:
        return all(not node.unreadable and not node.output_problem for node in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "nodes": self.n_nodes,
            "cpus": self.cpus,
            "gpus": self.gpus,
            "memory_bytes": self.memory,
            "object_store_bytes": self.object_store_memory,
            "paths_checked": self.n_paths,
            "output": self.output,
            "checks": [
                {
                    "node": node.node,
                    "unreadable": [list(item) for item in node.unreadable],
                    "output_problem": node.output_problem,
                }
                for node in self.nodes
            ],
            "ok": self.ok,
        }

    def format(self) -> str:
        gib = 2**30
        lines = [
            f"cluster: {self.address}",
            f"nodes: {self.n_nodes}, CPUs: {self.cpus}, GPUs: {self.gpus}, "
            f"memory: {self.memory / gib:.1f} GiB, object store: "
            f"{self.object_store_memory / gib:.1f} GiB",
        ]
        for node in self.nodes:
            reached = self.n_paths - len(node.unreadable)
            line = f"node {node.node}: read {reached} of {self.n_paths} image paths"
            if self.output is not None:
                line += f"; output folder {'not writable: ' + node.output_problem if node.output_problem else 'writable'}"
            lines.append(line)
            lines += [f"  cannot read {path}: {reason}" for path, reason in node.unreadable[:10]]
        lines.append("ok" if self.ok else "PROBLEMS: workers cannot reach what the driver names")
        return "\n".join(lines)


def _check_reach(paths: list[str], output: str | None) -> NodeCheck:
    """Run on one node: read a few bytes of every path, write and delete a file in ``output``."""
    unreadable = []
    for path in paths:
        try:
            with open(path, "rb") as stream:
                stream.read(16)
        except OSError as error:
            unreadable.append((path, error.strerror or str(error)))
    problem = ""
    if output is not None:
        try:
            Path(output).mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=output, prefix=".imagelearn-check-"):
                pass
        except OSError as error:
            problem = f"{error.strerror or error}"
    return NodeCheck(ray.util.get_node_ip_address() or socket.gethostname(), unreadable, problem)
