"""Where independent units of work run: in this process, in a local process pool, or on a Dask
cluster (``distributed``), with the same results.

A unit is a picklable function applied to one item (one seed's training, one model set × method
of the stability study). :meth:`Executor.map` returns results in item order and calls
``on_result(index, result)`` in the calling process as each unit finishes, so callers write each
result atomically as soon as it exists: an interrupted run keeps every finished unit.

Every unit of a pool or cluster runs with an explicit torch thread count (``threads``; default:
the cores divided by the workers), so that workers do not oversubscribe the CPU, and so that a unit
computes the same numbers wherever it runs. The serial executor runs units with this process's
thread count unless it is given one.

Every function that takes an ``executor`` takes an :class:`Executor`; its default is
:data:`SERIAL`, units one after another here, so no caller branches on "no executor".
"""

from __future__ import annotations

import abc
import os
from typing import Callable, Sequence
import torch
from tqdm.auto import tqdm
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import as_completed


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (macOS)
        return os.cpu_count() or 1


def _run_with_threads(fn: Callable, threads: int | None, item, *shared):
    if threads is None:  # this process's thread count, as the caller set it
        return fn(*shared, item)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn(*shared, item)
    finally:
        torch.set_num_threads(previous)


class Executor(abc.ABC):
    """Base class. ``workers``: parallel units; ``threads``: torch threads per unit.
    ``in_process``: whether units run in this process (so a unit may draw its own progress bars)."""

    name = "executor"
    in_process = False

    def __init__(self, workers: int = 1, threads: int | None = None):
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.workers = workers
        self.threads = threads or max(1, _cores() // workers)

    @abc.abstractmethod
    def map(self, fn: Callable, items: Sequence, on_result: Callable | None = None, desc: str = "units",
            progress: bool = True, shared: tuple = (), describe: Callable | None = None) -> list:
        """``[fn(*shared, item) for item in items]``; ``shared`` (e.g. a dataset) is sent to each
        worker once, not with every unit. ``describe(item)``: the text the progress bar shows
        beside it (the unit running here, the unit just finished elsewhere)."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __str__(self) -> str:
        return f"{self.name}(workers={self.workers},threads={self.threads or torch.get_num_threads()})"


class SerialExecutor(Executor):
    """Units one after another in this process (the default, :data:`SERIAL`). ``threads``: torch
    threads per unit; None keeps this process's thread count."""

    name = "serial"
    in_process = True

    def __init__(self, workers: int = 1, threads: int | None = None):
        if workers != 1:
            raise ValueError(f"workers must be 1 for the serial executor (units one after another), got {workers!r}")
        super().__init__(workers, threads)
        self.threads = threads

    def map(self, fn, items, on_result=None, desc="units", progress=True, shared=(), describe=None):
        results = []
        bar = tqdm(items, desc=desc, disable=not progress)
        for index, item in enumerate(bar):
            if describe is not None:
                bar.set_postfix_str(describe(item))
            result = _run_with_threads(fn, self.threads, item, *shared)
            if on_result is not None:
                on_result(index, result)
            results.append(result)
        return results


class ProcessExecutor(Executor):
    """A local pool of ``workers`` processes (spawned, so no state is shared with this one)."""

    name = "processes"

    def __init__(self, workers: int = 2, threads: int | None = None):
        super().__init__(workers, threads)

        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def map(self, fn, items, on_result=None, desc="units", progress=True, shared=(), describe=None):
        items = list(items)
        futures = {self._pool.submit(_run_with_threads, fn, self.threads, item, *shared): index
                   for index, item in enumerate(items)}
        results = [None] * len(futures)
        bar = tqdm(as_completed(futures), total=len(futures), desc=desc, disable=not progress)
        for future in bar:
            index = futures[future]
            results[index] = future.result()
            if describe is not None:
                bar.set_postfix_str(describe(items[index]))
            if on_result is not None:
                on_result(index, results[index])
        return results

    def close(self):
        self._pool.shutdown()


class DaskExecutor(Executor):
    """Units as tasks on a Dask cluster: ``scheduler="tcp://host:port"`` connects to a running one
    (e.g. started on SLURM with dask-jobqueue, see the README); without it a ``LocalCluster`` of
    ``workers`` single-threaded processes is started and closed with the executor."""

    name = "dask"

    def __init__(self, scheduler: str | None = None, workers: int = 2, threads: int | None = None):
        try:
            from distributed import Client, LocalCluster
        except ImportError as error:  # pragma: no cover
            raise ImportError("the Dask executor needs the 'distributed' package: pip install 'dask[distributed]'") \
                from error
        super().__init__(workers, threads)
        self._cluster = None
        if scheduler:
            self.client = Client(scheduler)
            self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))
            self.threads = threads or 1
        else:
            self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=40)
            self.client = Client(self._cluster)

    def map(self, fn, items, on_result=None, desc="units", progress=True, shared=(), describe=None):
        from distributed import as_completed

        items = list(items)
        # large shared inputs (the dataset, the models) go to every worker once
        scattered = [self.client.scatter(value, broadcast=True) for value in shared]
        futures = [self.client.submit(_run_with_threads, fn, self.threads, item, *scattered, pure=False)
                   for item in items]
        index_of = {future.key: index for index, future in enumerate(futures)}
        results = [None] * len(futures)
        bar = tqdm(as_completed(futures), total=len(futures), desc=desc, disable=not progress)
        for future in bar:
            index = index_of[future.key]
            results[index] = future.result()
            if describe is not None:
                bar.set_postfix_str(describe(items[index]))
            if on_result is not None:
                on_result(index, results[index])
        return results

    def close(self):
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def check_executor(executor, name: str = "executor") -> Executor:
    """``executor`` when it is an :class:`Executor`; otherwise a TypeError naming ``name`` (None is
    no longer "run here": that is :data:`SERIAL`)."""
    if not isinstance(executor, Executor):
        raise TypeError(f"{name} must be a stablesal.core.executor.Executor (SERIAL runs the units here, one after "
                        f"another; make_executor(workers=...) runs them in parallel), got {executor!r}")
    return executor


SERIAL = SerialExecutor()  # the default executor: units one after another here, with this process's threads


def make_executor(workers: int = 1, scheduler: str | None = None, dask: bool = False,
                  threads: int | None = None) -> Executor:
    """``scheduler`` or ``dask`` → :class:`DaskExecutor`; ``workers > 1`` → :class:`ProcessExecutor`;
    otherwise :class:`SerialExecutor`."""
    if scheduler or dask:
        return DaskExecutor(scheduler=scheduler, workers=workers, threads=threads)
    if workers > 1:
        return ProcessExecutor(workers=workers, threads=threads)
    return SerialExecutor(workers=1, threads=threads)
