"""What keeps concurrent Creates from queueing: overlapping renders on other cores, writers that queue
for SQLite's lock instead of sleeping, a run reading its own rendered directory, and a template history
recorded once per version of the template's files."""

from __future__ import annotations

import io
import os
import sqlite3
import stat
import subprocess
import sys
import tarfile
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from actions_server import runs as runs_module
from actions_server.db import connect
from actions_server.errors import PltfError
from actions_server.sqlite_writes import queued_write_connections
from actions_server.templates import render_pool as render_pool_module
from actions_server.templates.catalog import TemplateCatalog
from actions_server.templates.render_pool import RenderJob, RenderPool, _render_in_worker
from actions_server.updates import history
from actions_server.updates.history import TemplateHistory
from actions_server.workspaces import WorkspaceStore
from conftest import ROOT, admin_client, make_settings, wait_until

VALUES = {"name": "users-api", "owner": "group:default/team-a"}


def tree(directory: Path) -> dict[str, tuple[bytes, bool]]:
    """Every file under `directory`: its bytes and whether it is executable."""
    return {
        str(path.relative_to(directory)): (path.read_bytes(), bool(path.stat().st_mode & stat.S_IXUSR))
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def unpacked(archive: bytes, into: Path) -> Path:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(into, filter="data")
    return into


def test_an_overlapping_render_goes_to_a_worker_and_makes_the_same_workspace(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, templates_dir=ROOT / "cookiecutters", render_processes=1)
    template = TemplateCatalog(settings).get("python-service")
    values = template.validate_values(VALUES)
    pool = RenderPool(settings)
    lone = pool.render(settings, template, RenderJob(values, tmp_path / "thread", None, archive=True), print)
    assert lone.where == "thread"  # a render on its own starts no worker
    assert pool._executor is None
    try:
        pool._start(settings)
        wait_until(lambda: pool._ready, timeout=120, what="the worker to start")
        pool._in_progress += 1  # another render is in progress
        overlapping = pool.render(settings, template, RenderJob(values, tmp_path / "worker", None, archive=True), print)
        # A worker that dies (killed, out of memory) costs no run: its render goes to the thread.
        assert pool._executor is not None
        for process in list(pool._executor._processes.values()):
            process.kill()
            process.join(60)
        rescued = pool.render(settings, template, RenderJob(values, tmp_path / "rescued", None, archive=True), print)
        assert rescued.where == "thread" and pool._executor is None
        assert tree(rescued.rendered.project_dir) == tree(lone.rendered.project_dir)
    finally:
        pool.close()
    assert overlapping.where == "worker"
    assert overlapping.rendered.files == lone.rendered.files
    assert tree(overlapping.rendered.project_dir) == tree(lone.rendered.project_dir)  # .cruft.json included
    assert overlapping.archive is not None and lone.archive is not None
    assert tree(unpacked(overlapping.archive, tmp_path / "a")) == tree(unpacked(lone.archive, tmp_path / "b"))


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU starts no render worker")
def test_render_workers_start_with_the_server_before_any_render_and_end_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render_pool_module, "_pool", None)  # this server's own pool, not another test's
    settings = make_settings(tmp_path, templates_dir=ROOT / "cookiecutters", render_processes=1)
    with admin_client(settings):
        pool = render_pool_module.render_pool(settings)
        assert pool._executor is not None  # started at start-up, not at the first overlap
        wait_until(lambda: pool._ready, timeout=120, what="the worker to answer")
        workers = list(pool._executor._processes.values())
        assert len(workers) == 1 and workers[0].is_alive()
    assert pool._executor is None
    assert not workers[0].is_alive()  # the server's shutdown waited for it, or killed it
    # Without workers (0, as the other tests have) a server starts none.
    monkeypatch.setattr(render_pool_module, "_pool", None)
    with admin_client(make_settings(tmp_path / "none")):
        assert render_pool_module.render_pool(settings)._executor is None


def test_a_render_worker_imports_no_database_code() -> None:
    # What a worker imports to render (the module of its job, and the template history it records).
    probe = (
        "import sys, actions_server.templates.render_pool, actions_server.updates.history; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'alembic', 'structlog', 'fastapi'}))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU starts no render worker")
def test_a_render_worker_does_not_run_the_servers_main_script_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As under `pltf serve`: __main__ is a console script (no module spec), whose imports are the whole
    # server. Spawned processes run such a script again unless told otherwise; this one leaves a mark.
    mark = tmp_path / "main-ran"
    script = tmp_path / "pltf"
    script.write_text(f"open({str(mark)!r}, 'w').close()\n")
    console_script = types.ModuleType("__main__")
    console_script.__file__ = str(script)
    console_script.__spec__ = None
    settings = make_settings(tmp_path, templates_dir=ROOT / "cookiecutters", render_processes=1)
    pool = RenderPool(settings)
    try:
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, "__main__", console_script)
            pool._start(settings)
        wait_until(lambda: pool._ready, timeout=120, what="the worker to answer")
    finally:
        pool.close()
    assert sys.modules["__main__"] is not console_script and console_script.__spec__ is None  # as it was
    assert not mark.exists()


def test_a_workers_error_reaches_the_run_as_the_same_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, templates_dir=ROOT / "cookiecutters")
    failure = _render_in_worker(settings, "no-such-template", RenderJob(VALUES, tmp_path / "out", None, archive=True))
    assert not hasattr(failure, "rendered")
    error = failure.error()  # type: ignore[union-attr]
    assert isinstance(error, PltfError)
    assert (error.status, error.code, error.message) == (422, "invalid_input", "unknown template 'no-such-template'")
    assert [f.field for f in error.fields] == ["template"]


def test_a_run_reads_the_directory_it_rendered_and_any_other_run_unpacks_the_archive(tmp_path: Path) -> None:
    store = WorkspaceStore(connect(f"sqlite:///{tmp_path / 'pltf.db'}"))
    project = tmp_path / "render" / "users-api"
    project.mkdir(parents=True)
    (project / "app.py").write_text("print('hi')\n")
    workspace = store.save(project, ["app.py"], "run-1")
    assert store.checkout(workspace, tmp_path / "one", "run-1") == project
    other = store.checkout(workspace, tmp_path / "two", "run-2")
    assert other == tmp_path / "two" / "users-api"
    assert (other / "app.py").read_text() == "print('hi')\n"
    # A link is judged by the archive's "data" filter, as before: not read through the live directory.
    (project / "passwd").symlink_to("/etc/passwd")
    linked = store.save(project, ["app.py", "passwd"], "run-1")
    with pytest.raises(tarfile.AbsoluteLinkError):
        store.checkout(linked, tmp_path / "three", "run-1")


def test_writers_queue_for_the_write_lock_and_a_failed_write_gives_it_back(tmp_path: Path) -> None:
    database = tmp_path / "queue.db"
    factory = queued_write_connections(wait_seconds=5)
    setup = sqlite3.connect(database)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE lines (id INTEGER PRIMARY KEY, text TEXT)")
    setup.close()
    holder = sqlite3.connect(database, factory=factory, check_same_thread=False, timeout=5)
    holder.execute("INSERT INTO lines VALUES (1, 'first')")  # holds the lock until its commit
    assert factory.write_lock.locked()
    finished: list[float] = []

    def write(row: int = 2) -> None:
        writer = sqlite3.connect(database, factory=factory, timeout=5)
        writer.execute("INSERT INTO lines VALUES (?, 'next')", (row,))
        writer.commit()
        finished.append(time.monotonic())
        writer.close()

    waiting = threading.Thread(target=write)
    waiting.start()
    time.sleep(0.3)
    assert not finished  # queued behind the open transaction
    holder.commit()
    committed = time.monotonic()
    waiting.join(timeout=60)  # returns when the write is done; the bound only stops a hang
    assert finished and finished[0] - committed < 1.0
    # A write that fails is rolled back, and the next writer goes at once (no 5 s wait for a lost lock).
    with pytest.raises(sqlite3.IntegrityError):
        holder.execute("INSERT INTO lines VALUES (1, 'again')")
    holder.rollback()
    assert not factory.write_lock.locked()
    started = time.monotonic()
    write(4)
    assert time.monotonic() - started < 1.0
    # Readers never queue.
    holder.execute("INSERT INTO lines VALUES (3, 'third')")
    reader = sqlite3.connect(database, factory=factory, timeout=5)
    assert reader.execute("SELECT count(*) FROM lines").fetchone() == (3,)
    holder.commit()
    assert reader.execute("SELECT count(*) FROM lines").fetchone() == (4,)


def test_a_template_history_is_recorded_once_per_version_of_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    templates = tmp_path / "templates"
    project = templates / "tiny" / "{{cookiecutter.name}}"
    project.mkdir(parents=True)
    (templates / "tiny" / "cookiecutter.json").write_text('{"name": "x"}')
    (project / "README.md").write_text("v1\n")
    settled = time.time() - 60
    for path in (templates / "tiny" / "cookiecutter.json", project / "README.md"):
        os.utime(path, (settled, settled))
    settings = make_settings(tmp_path, templates_dir=templates)
    template = TemplateCatalog(settings).get("tiny")
    first = TemplateHistory(settings).record(template)
    calls: list[list[str]] = []
    real_git = history.git
    monkeypatch.setattr(history, "git", lambda args, **kw: calls.append(list(args)) or real_git(args, **kw))
    assert TemplateHistory(settings).record(template) == first
    assert calls == []  # unchanged files: no git at all
    (project / "README.md").write_text("v2\n")  # just changed: recorded, and not trusted to stay so
    second = TemplateHistory(settings).record(template)
    assert second != first and calls
    calls.clear()
    assert TemplateHistory(settings).record(template) == second
    assert calls  # a file changed within the clock's resolution is looked at again


def test_a_runs_scratch_directory_is_removed_after_the_run_has_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    held: list[Callable[[], None]] = []

    class HeldRemover:
        def submit(self, remove: Callable[[], None]) -> None:
            held.append(remove)

    monkeypatch.setattr(runs_module, "_remover", HeldRemover())
    with admin_client(make_settings(tmp_path)) as client:
        run = client.post("/v1/actions/cookiecutter:render/runs", json={"input": {"template": "demo"}}).json()
    assert run["status"] == "succeeded"  # answered while its directory was still there
    assert len(held) == 1
    scratch = Path(held[0].__self__.name)  # type: ignore[attr-defined]
    assert scratch.name.startswith("pltf-run-") and any(scratch.rglob("*"))
    held[0]()
    assert not scratch.exists()
