"""Rendering on the machine's other cores when renders run at once.

A render is Python from start to end (Jinja, the file writes, packing the workspace), so renders
in one process take turns on its one interpreter lock while the machine's other cores idle. When a
render starts while another is in progress, this hands it to a worker process if one is free; a
render on its own stays in the calling thread.

A worker renders exactly as the thread would: the same `render`, `.cruft.json` and packing code,
the template read from the same directory. It takes only local templates without hooks: hooks stream
their output to the run's log and stop with its cancel, which a worker could not pass on. Workers are
spawned (not forked: the server has threads) when the server starts, in the background, because a
worker takes seconds to import and a cold server's first burst would otherwise render in threads; until
one answers, renders stay in threads. They import only what rendering needs (not the database), which
keeps their memory small. `PLTF_RENDER_PROCESSES` sizes the pool; one CPU, or 0, starts none.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import FieldError, PltfError
from ..sandbox import Sandbox
from ..workspace_archive import pack
from .catalog import Template, TemplateCatalog
from .render import Rendered, build_context, render


@dataclass
class RenderJob:
    """What to render a template with, and where."""

    values: dict[str, Any]
    output_dir: Path
    directory: str | None  # the `directory` input, recorded in .cruft.json
    archive: bool  # pack the workspace too (not on a dry run)


@dataclass
class RenderedWorkspace:
    rendered: Rendered
    # The workspace packed as WorkspaceStore keeps it; None when none was asked for (a dry run).
    archive: bytes | None = None
    # Where it was rendered: "thread" or "worker" (for the log and the tests).
    where: str = "thread"
    log: list[str] = field(default_factory=list)


def render_workspace(
    settings: Settings, template: Template, job: RenderJob, log: Callable[[str], None]
) -> RenderedWorkspace:
    """Renders, records the template version in `.cruft.json` and packs the workspace, in this thread."""
    from ..updates.history import CRUFT_FILE, TemplateHistory, write_cruft

    sandbox = Sandbox(settings)
    rendered = render(
        template, job.values, job.output_dir, settings.templates.hook_timeout_seconds, log=log, sandbox=sandbox
    )
    # What made it, in .cruft.json, so that template:update can render this version again.
    commit = TemplateHistory(settings).record(template)
    if write_cruft(rendered.project_dir, template, commit, build_context(template, job.values), job.directory):
        rendered.files = sorted([*rendered.files, CRUFT_FILE])
    return RenderedWorkspace(rendered, pack(rendered.project_dir) if job.archive else None)


class RenderPool:
    def __init__(self, settings: Settings) -> None:
        configured = settings.runs.render_processes
        self.size = max(0, (os.cpu_count() or 1) - 1) if configured is None else configured
        self._lock = threading.Lock()
        self._in_progress = 0  # renders of this process, in threads and workers
        self._busy_workers = 0
        self._executor: ProcessPoolExecutor | None = None
        self._ready = False

    def render(
        self, settings: Settings, template: Template, job: RenderJob, log: Callable[[str], None]
    ) -> RenderedWorkspace:
        eligible = self.size > 0 and template.origin is None and not template.hooks()
        with self._lock:
            self._in_progress += 1
            overlapping = self._in_progress > 1
            use_worker = eligible and overlapping and self._ready and self._busy_workers < self.size
            if use_worker:
                self._busy_workers += 1
            elif eligible and overlapping and self._executor is None:
                self._start(settings)
        try:
            if not use_worker:
                return render_workspace(settings, template, job, log)
            assert self._executor is not None
            try:
                done = self._executor.submit(_render_in_worker, settings, template.name, job).result()
            except BrokenProcessPool:
                # A worker died (killed, out of memory): this render goes to the thread, the next overlap
                # starts new workers.
                self._discard()
                return render_workspace(settings, template, job, log)
        finally:
            with self._lock:
                self._in_progress -= 1
                if use_worker:
                    self._busy_workers -= 1
        if isinstance(done, _Failure):
            raise done.error()
        for line in done.log:
            log(line)
        return done

    def start_early(self, settings: Settings) -> bool:
        """Starts the workers now without waiting for them (at server start-up), so that the first burst
        finds them ready; False when this machine or the settings want none."""
        if self.size == 0 or (os.cpu_count() or 1) < 2:
            return False
        with self._lock:
            if self._executor is None:
                self._start(settings)
        return True

    def _start(self, settings: Settings) -> None:
        """Starts the workers, and takes renders to them once one has answered (imports take seconds)."""
        context = multiprocessing.get_context("spawn")
        self._executor = ProcessPoolExecutor(
            max_workers=self.size, mp_context=context, initializer=_end_with_parent, initargs=(os.getpid(),)
        )

        def ready(future: Future[None]) -> None:
            if future.exception() is None:
                self._ready = True

        # One warm-up each: a spawning pool starts a process per job submitted while none is idle, so
        # every worker process is started here.
        with _main_module_not_rerun():
            for _ in range(self.size):
                self._executor.submit(_warm_up, settings).add_done_callback(ready)

    def close(self, timeout: float = 5.0) -> None:
        """Ends the workers with the server: asked to stop, then killed if one has not within `timeout`.

        The executor's own shutdown only asks; a worker it never hears back from would outlive the
        server (seen on a loaded machine), holding its memory and the templates directory open.
        """
        workers = self._discard()
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                worker.kill()
                worker.join()

    def _discard(self) -> list[multiprocessing.process.BaseProcess]:
        with self._lock:
            executor, self._executor, self._ready = self._executor, None, False
        if executor is None:
            return []
        workers: list[multiprocessing.process.BaseProcess] = list(
            (executor._processes or {}).values()
        )  # gone from the executor once shut down
        executor.shutdown(wait=False, cancel_futures=True)
        return workers


@dataclass
class _Failure:
    """An error of a worker's render, sent back as data (PltfError, a dataclass, does not unpickle)."""

    message: str
    status: int
    code: str
    fields: list[tuple[str, str]]
    internal: str | None = None

    def error(self) -> Exception:
        if self.internal is not None:
            return RenderWorkerError(f"{self.internal}: {self.message}")
        return PltfError(self.message, self.status, self.code, [FieldError(f, m) for f, m in self.fields])


class RenderWorkerError(Exception):
    """A worker's render failed unexpectedly (the run reports it as it would a thread's)."""


@contextlib.contextmanager
def _main_module_not_rerun() -> Iterator[None]:
    """While workers are spawned, the parent's `__main__` names itself as multiprocessing's own `__main__`.

    A spawned process runs the parent's main script again before its first job, unless that script is a
    module's `__main__`. The `pltf` console script imports the CLI, which is the whole server (FastAPI,
    SQLAlchemy, the database drivers): 15 MB more in each worker, and seconds of imports, for nothing a
    render uses. The workers' jobs are functions of this module, so they need nothing from it.
    """
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
    try:
        yield
    finally:
        main.__spec__ = spec


def _end_with_parent(parent: int) -> None:
    """A worker ends when its server does, also when the server was killed and could not tell it to."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


_catalogs: dict[Path, TemplateCatalog] = {}


def _warm_up(settings: Settings) -> None:
    _catalog(settings).list()


def _catalog(settings: Settings) -> TemplateCatalog:
    # One per templates directory, so a worker keeps the templates' compiled Jinja between renders.
    catalog = _catalogs.get(settings.templates.templates_dir)
    if catalog is None:
        catalog = _catalogs[settings.templates.templates_dir] = TemplateCatalog(settings)
    return catalog


def _render_in_worker(settings: Settings, name: str, job: RenderJob) -> RenderedWorkspace | _Failure:
    log: list[str] = []
    try:
        template = _catalog(settings).get(name)
        done = render_workspace(settings, template, job, log.append)
    except PltfError as exc:
        return _Failure(exc.message, exc.status, exc.code, [(f.field, f.message) for f in exc.fields])
    except Exception as exc:  # noqa: BLE001 - sent back to the run, which fails as for a thread's error
        return _Failure(str(exc), 500, "internal", [], type(exc).__name__)
    done.where, done.log = "worker", log
    return done


_pool: RenderPool | None = None
_pool_lock = threading.Lock()


def render_pool(settings: Settings) -> RenderPool:
    """This process's pool, sized by the first settings that ask (its workers take the settings with each job)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = RenderPool(settings)
        return _pool
