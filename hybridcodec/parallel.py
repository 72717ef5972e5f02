"""Frames coded in parallel worker processes (``--jobs N``), in order, with bounded memory.

Frames are independent, so a pool of N processes can code them at once. Each worker
loads the model once (in its initializer) and codes like the
in-process path (:func:`hybridcodec.codec.single_threaded`). The parent reads the input,
hands frames out and writes the results *in frame order*; at most ``2 * N`` frames are
in flight, so memory stays bounded whatever the file length. The bytes produced are
those of the in-process path: the frame codec is deterministic and nothing here
touches it.

Workers ignore SIGINT: an interrupt (Ctrl-C reaches the whole process group) is handled
by the parent alone, which cancels what is queued and shuts the pool down.
"""

from __future__ import annotations

import os
import signal
from collections import deque
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .cancel import checkpoint
from .errors import HybridCodecError

__all__ = ["FramePool", "InProcess", "frame_runner", "run_task", "check_jobs", "MAX_JOBS"]

MAX_JOBS = 256

_NET = None  # the worker's model
_INHERITED = None  # the parent's model, inherited by forked workers
_WARMED: set = set()  # ids of models whose kernels this process has run once


def check_jobs(jobs: Any) -> int:
    """``jobs`` as an int in 1..MAX_JOBS (0 means one per CPU), else UsageError."""
    from .errors import UsageError

    if isinstance(jobs, bool) or not isinstance(jobs, int):
        raise UsageError(f"jobs must be an integer, got {jobs!r}")
    if jobs == 0:
        jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
            (os.cpu_count() or 1)
    if not 1 <= jobs <= MAX_JOBS:
        raise UsageError(f"--jobs must be 0 (one per CPU) or 1..{MAX_JOBS}, got {jobs}")
    return jobs


def _init_worker(model: str | None) -> None:
    global _NET
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # terminate() just ends the worker
    from .jit import command_line_process
    from .model import load_model

    command_line_process()  # a worker runs the codec's numba code only

    if _INHERITED is not None:
        _NET = _INHERITED  # forked: the parent's model, kernels already loaded
    else:
        _NET, _ = load_model(model)


def run_task(net, task: tuple) -> Any:
    """Do one task: ``("encode", pcm)`` -> layers; ``("decode", layers, n, nch, where[, kwargs])`` ->
    PCM, or the codec's own error as a value (never raised); the format 4 payload's
    ``("encode4", pcm, sample_rate, kwargs)`` -> [(layer, LayerCode)] and ``("decode4",
    units, n, nch, sample_rate, where, kwargs)`` -> FrameDecode (or the error);
    ``("pass", value)`` -> value."""
    kind = task[0]
    if kind == "encode":
        from .framecodec import encode_frame

        return encode_frame(net, task[1])
    if kind == "encode4":  # format 4 payload: (pcm, sample_rate, kwargs)
        from .segmented import encode_frame as encode_segmented

        return encode_segmented(net, task[1], task[2], **task[3])
    if kind in ("decode", "decode4"):
        if kind == "decode":
            from .framecodec import decode_frame
        else:
            from .segmented import decode_frame
        try:
            return decode_frame(net, *task[1:-1], **task[-1]) if kind == "decode4" else \
                decode_frame(net, *task[1:5], **(task[5] if len(task) > 5 else {}))
        except HybridCodecError as exc:
            return exc
    return task[1]


def warm_up(net) -> None:
    """Code one tiny frame both ways, once per model and process, so that numba has
    loaded (or compiled) every kernel before worker processes are forked."""
    if id(net) in _WARMED:
        return
    pcm = np.random.default_rng(0).integers(-3000, 3000, size=(256, 2)).astype(np.int64)
    if net.config.payload == 4:
        from .segmented import num_segments

        codes = run_task(net, ("encode4", pcm, 44100, {}))
        segments = num_segments(len(pcm), net.config.segment_length)
        units = [(k, 1, c.payload, segments) for k, c in codes]
        run_task(net, ("decode4", units, len(pcm), 2, 44100, "warm-up", {}))
    else:
        layers = run_task(net, ("encode", pcm))
        run_task(net, ("decode", dict(layers), len(pcm), 2, "warm-up"))
    _WARMED.add(id(net))


def _job(task: tuple) -> Any:
    return run_task(_NET, task)


class _Ready:
    """A finished 'future' for a task that needs no worker."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value

    def cancel(self) -> bool:
        return False


class InProcess:
    """The ``jobs=1`` runner: the same tasks, coded in this process."""

    def __init__(self, net) -> None:
        self.net = net

    def __enter__(self) -> "InProcess":
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def run(self, tasks: Iterable[tuple]) -> Iterator[Any]:
        for task in tasks:
            checkpoint()
            yield run_task(self.net, task)


def _context():
    import multiprocessing  # here, not at the top: --jobs 1 never pays for it

    # Not fork: a long-lived parent (a notebook, a test run) may already have OpenMP or
    # numba worker threads, and a child forked while one holds a lock can hang forever
    # (seen in the test suite). forkserver forks workers from a clean, thread-free
    # server; each worker then loads the model itself (numba's cache keeps that short).
    if "forkserver" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context()


class FramePool:
    """A process pool that maps a frame job over an iterable, yielding results in order.

    Use as a context manager; leaving it (also by an exception or interrupt) cancels
    queued work and stops the workers.
    """

    def __init__(self, jobs: int, model: str | os.PathLike | None, net=None) -> None:
        global _INHERITED
        self.jobs = jobs
        self.max_in_flight = 2 * jobs
        from concurrent.futures import ProcessPoolExecutor

        model_arg = None if model is None else os.fspath(model)
        context = _context()
        if net is not None and context.get_start_method() == "fork":
            # Workers forked from here inherit the loaded model and, once warmed, its
            # compiled kernels (numba), instead of each loading them again.
            warm_up(net)
            _INHERITED = net
        try:
            self._pool = ProcessPoolExecutor(
                max_workers=jobs, mp_context=context, initializer=_init_worker,
                initargs=(model_arg,))
            self._pool.submit(int).result()  # start the workers now, while _INHERITED is set
        finally:
            _INHERITED = None

    def __enter__(self) -> "FramePool":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close(cancel=exc_type is not None)
        return False

    def close(self, cancel: bool = False) -> None:
        if cancel:
            # don't wait for frames being coded: stop the workers now
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                try:
                    proc.terminate()
                except Exception:  # pragma: no cover - already gone
                    pass
        self._pool.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _next(pending: deque) -> Any:
        checkpoint()
        result = pending.popleft().result()
        checkpoint()
        return result

    def run(self, tasks: Iterable[tuple]) -> Iterator[Any]:
        """Results of ``tasks`` (see :func:`run_task`), in order, at most 2N in flight."""
        from concurrent.futures.process import BrokenProcessPool

        pending: deque = deque()
        try:
            for task in tasks:
                if task[0] == "pass":
                    pending.append(_Ready(task[1]))
                else:
                    pending.append(self._pool.submit(_job, task))
                if len(pending) >= self.max_in_flight:
                    yield self._next(pending)
            while pending:
                yield self._next(pending)
        except BrokenProcessPool:
            raise RuntimeError("a worker process died (out of memory or killed?)") from None
        finally:
            for future in pending:
                future.cancel()


def frame_runner(jobs: int, net, model: str | os.PathLike | None):
    """:class:`InProcess` for one job, else a :class:`FramePool` of ``jobs`` workers."""
    return InProcess(net) if jobs <= 1 else FramePool(jobs, model, net)
