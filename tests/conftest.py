"""Shared fixtures and the test lanes.

Every test session (every xdist worker) gets its own SALESML_HOME (models/, data/) in a temporary folder, so
nothing from a developer's own runs leaks in and nothing is written to the work tree.

Lanes (``make test-fast`` runs ``tests/unit -m "not slow and not cli"``; ``make test`` runs everything on both
cores): :func:`pytest_collection_modifyitems` marks every test under ``tests/service`` ``service``, every test
that runs the ``salesml`` command through :func:`run_cli` (in its body or in a fixture it uses) ``cli``, and
every test that uses :func:`pg_engine` ``postgres``.

pytest-xdist runs with ``--dist loadfile``: a file's tests stay on one worker, so module fixtures are built once.
(``--dist loadgroup`` with ``xdist_group`` marks would be the finer tool, but pytest-xdist 3.8 sets the group
through ``item._nodeid``, which pytest 9.2 no longer reads: the groups are silently ignored.) The trained model
store (:func:`trained_home`) is used from several files; a lock makes it trained once per run, not per worker.
The longest files start first (:data:`LONGEST_FIRST`; ``make test`` passes ``--no-loadscope-reorder`` so xdist
keeps that order instead of sorting files by their number of tests), so no worker is left alone with a long file
at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import CodeType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SALESML_DATA_DIR", REPO.parent / "shared" / "datasets"))
BIN = Path(sys.executable).parent
SMALL_SYNTHETIC_LINES = 40_000


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("salesml-home")
    old = {k: os.environ.get(k) for k in ("SALESML_HOME", "MLFLOW_TRACKING_URI", "SALESML_DATA_DIR")}
    os.environ["SALESML_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    if SHARED.is_dir():
        os.environ["SALESML_DATA_DIR"] = str(SHARED)
    yield home
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private SALESML_HOME (empty MLflow store) for one test."""
    monkeypatch.setenv("SALESML_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def requires_shared() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not SHARED.is_dir(), reason=f"public data sets not found at {SHARED}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"public data sets not found at {SHARED} (set SALESML_DATA_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def small_synthetic_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in synthetic spec at a size that generates in about a second."""
    spec = yaml.safe_load((REPO / "features" / "specs" / "synthetic.yaml").read_text())
    spec["generator"]["n_order_lines"] = SMALL_SYNTHETIC_LINES
    path = tmp_path_factory.mktemp("specs") / "synthetic-small.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run the installed ``salesml`` console command as a user would."""
    # An MLflow URI left in this process's environment must not redirect the CLI; pass it in env to use one.
    inherited = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full_env = {**inherited, **(env or {}), "COLUMNS": "200"}
    return subprocess.run(
        [str(BIN / "salesml"), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def salesml(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Any:
    """``salesml(*args, env=None)``: run the command in this process through the console script's own entry
    point (``training.cli.main``: the same parsing, error handling and exit codes), for the bad-input cases that
    fail before any work; :func:`run_cli` starts a new interpreter (about 1.5 s of imports per call) and is for
    the end-to-end runs. Returns what :func:`run_cli` returns; ``env`` stays set for the rest of the test."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        from training.cli import main

        for key, value in {**(env or {}), "COLUMNS": "200"}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(sys, "argv", ["salesml", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            main()
        out = capsys.readouterr()
        return subprocess.CompletedProcess(["salesml", *args], int(done.value.code or 0), out.out, out.err)

    yield run
    # The command pointed MLflow at this test's store; the next test picks its own.
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


def copy_dataset(src: Path, dst_root: Path) -> Path:
    """Copy one public data set folder into a writable data root (files keep their names)."""
    target = dst_root / src.name
    shutil.copytree(src, target)
    for p in target.rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    return target


def postgres_url() -> str | None:
    """The test database URL, or None when no server listens at 127.0.0.1:5432."""
    url = os.environ.get("SALESML_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return url
    except OSError:
        return None


def postgres_engine(**engine_kw: Any) -> Any:
    """A SQLAlchemy engine on the test database; skips the calling test, saying why, when no server listens at
    127.0.0.1:5432 or it refuses the connection. ``engine_kw`` go to ``create_engine``."""
    url = postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL server listening at 127.0.0.1:5432 (database 'test', trust auth)")
    import sqlalchemy as sa

    engine = sa.create_engine(url, **engine_kw)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as err:
        engine.dispose()
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 refused the test connection: {err}")
    return engine


@pytest.fixture
def pg_engine() -> Iterator[Any]:
    """An engine on the test database (the test skips without a server); disposed afterwards."""
    engine = postgres_engine()
    yield engine
    engine.dispose()


def pg_url(engine: Any) -> str:
    """The URL of ``engine`` as text, for the CLI and the library functions that take one."""
    return engine.url.render_as_string(hide_password=False)


# --- lanes ---------------------------------------------------------------------------------------------------


def _names(code: CodeType) -> set[str]:
    """Global names a function's code (and the functions nested in it) refer to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _names(const)
    return names


def _calls_run_cli(func: Any, seen: set[int]) -> bool:
    """Whether ``func`` names :func:`run_cli`, itself or through the test helpers (functions in ``tests``) it
    names."""
    code = getattr(func, "__code__", None)
    if code is None or id(func) in seen:
        return False
    seen.add(id(func))
    names = _names(code)
    if "run_cli" in names:
        return True
    scope = getattr(func, "__globals__", {})
    helpers = (scope.get(n) for n in names)
    return any(
        callable(h) and str(getattr(h, "__module__", "")).startswith("tests") and _calls_run_cli(h, seen)
        for h in helpers
    )


def _runs_the_cli(item: pytest.Item) -> bool:
    funcs = [getattr(item, "function", None)]
    for defs in item._fixtureinfo.name2fixturedefs.values():
        funcs += [d.func for d in defs]
    seen: set[int] = set()
    return any(_calls_run_cli(f, seen) for f in funcs if f is not None)


# The files that take longest, longest first, from the summed --durations of `make test` (2026-12-02, 2 cores).
# The first two are the first each worker runs; they are the ones that do not both wait for the trained store.
# A file not listed runs after these, in collection order; nothing is skipped.
LONGEST_FIRST = (
    "model/test_forecast_monthly.py",  # one full training on two hierarchies
    "service/test_service.py",  # trains the shared store, starts the service, schemathesis
    "model/test_notebooks.py",
    "model/test_monitor_forecast.py",  # one default sales training at 300,000 lines, four monitor runs
    "unit/test_governance.py",
    "model/test_churn.py",
    "unit/test_dask.py",  # LocalClusters, a scheduler and workers as processes, 2 M lines on 400 MiB workers
    "unit/test_forecast.py",
    "model/test_leads_model.py",
    "model/test_monitor_scores.py",
    "model/test_report.py",  # three report runs on the shared store
    "service/test_page.py",  # its own service and a browser
    "service/test_team_mode.py",
    "model/test_forecast_crm.py",
    "data/test_scores_cli.py",
    "unit/test_reproducibility.py",
    "data/test_public_datasets.py",
)


def _start_rank(item: pytest.Item) -> int:
    rel = Path(item.path).relative_to(REPO / "tests").as_posix()
    return LONGEST_FIRST.index(rel) if rel in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests = REPO / "tests"
    gone = [f for f in LONGEST_FIRST if not (tests / f).is_file()]
    if gone:
        raise pytest.UsageError(f"tests/conftest.py LONGEST_FIRST names files that do not exist: {gone}")
    items.sort(key=_start_rank)  # stable: a file's tests keep their order
    for item in items:
        path = Path(item.path)
        if path.is_relative_to(tests / "service"):
            item.add_marker(pytest.mark.service)
        if hasattr(item, "_fixtureinfo") and _runs_the_cli(item):
            item.add_marker(pytest.mark.cli)
        if "pg_engine" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


def _train_store(home: Path, spec: Path) -> None:
    env = {"SALESML_HOME": str(home)}
    steps = [
        ("train", "sales", "--dataset", str(spec), "--promote", "--fast"),
        ("train", "churn", "--dataset", str(spec), "--promote", "--trials", "2"),
        ("train", "leads", "--dataset", str(spec), "--promote", "--trials", "2"),
        ("train", "churn", "--dataset", str(spec), "--trials", "2"),
    ]
    for args in steps:
        result = run_cli(*args, env=env, timeout=900)
        assert result.returncode == 0, (
            f"salesml {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        )


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory, small_synthetic_spec: Path) -> Path:
    """A SALESML_HOME whose registry holds a champion of each model (and a second, unpromoted churn version).

    Trained once per test run: under pytest-xdist the first worker that needs it trains it into a folder all
    workers share (the others wait on a lock), and each worker gets its own copy, so that what one worker's
    tests write (snapshots, score files, the service's model cache) never meets another's.
    """
    import fcntl

    home = tmp_path_factory.mktemp("service-home")
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        _train_store(home, small_synthetic_spec)
        return home
    shared = tmp_path_factory.getbasetemp().parent / "trained-home"
    with (shared.parent / "trained-home.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not (shared / ".trained").exists():
            shutil.rmtree(shared, ignore_errors=True)  # a half-trained store of a worker that died
            shared.mkdir()
            _train_store(shared, small_synthetic_spec)
            (shared / ".trained").touch()
    shutil.copytree(shared, home, dirs_exist_ok=True)
    return home
