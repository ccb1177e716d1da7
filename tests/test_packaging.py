"""deeptui as a user installs it: a wheel built from the repo, installed in a fresh venv outside the
checkout, runs the quickstart from an empty folder and finds shipped presets by name."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def now(env: dict[str, str]) -> dict[str, str]:
    """A module-wide environment with this test's per-user state folder (conftest's), not the one
    of whichever test made the module's fixture."""
    return {**env, "XDG_STATE_HOME": os.environ["XDG_STATE_HOME"]}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, deeptui script, env) of a fresh venv holding only the built wheel; its other
    dependencies are borrowed from this test environment's site-packages (no download)."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        cwd=base,
    )
    (wheel,) = dist.glob("deeptui-*.whl")
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The test environment's packages (torch, textual, ...) without its editable deeptui: a .pth
    # line adds a folder to sys.path but does not run the .pth files inside it.
    Path(site, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return py, env_dir / "bin" / "deeptui", env


def test_the_wheel_runs_the_quickstart_from_an_empty_folder(installed, tmp_path):
    py, deeptui, env = installed
    empty = tmp_path / "empty"
    empty.mkdir()
    out = subprocess.run(
        [str(deeptui), "--headless", "--max-steps", "5", "--set", "log.interval=5"],
        cwd=empty,
        env=now(env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "deeptui: started quickstart" in out.stdout and "deeptui: finished" in out.stdout
    (run_dir,) = (empty / "runs").iterdir()
    assert (run_dir / "metrics.csv").read_text().count("\n") == 3  # header, 1 train row, 1 test row


def test_a_shipped_preset_resolves_by_name_and_the_version_prints(installed, tmp_path):
    py, deeptui, env = installed
    out = subprocess.run(
        [str(deeptui), "quickstart", "--headless", "--max-steps", "2", "--set", "log.interval=1"],
        cwd=tmp_path,
        env=now(env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "started quickstart" in out.stdout
    version = subprocess.run(
        [str(py), "-m", "deeptui", "--version"], cwd=tmp_path, env=now(env), capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.strip() == "deeptui 0.1.0"
    wrong = subprocess.run(
        [str(deeptui), "cifar_monstr", "--headless"], cwd=tmp_path, env=now(env), capture_output=True, text=True
    )
    assert wrong.returncode == 2 and "did you mean the shipped preset 'cifar_monster'" in wrong.stderr


@pytest.mark.parametrize("name", ["engine", "tui"])
def test_only_the_name_deeptui_is_installed(installed, tmp_path, name):
    py, _, env = installed
    out = subprocess.run([str(py), "-c", f"import {name}"], cwd=tmp_path, env=now(env), capture_output=True, text=True)
    assert out.returncode == 1 and "ModuleNotFoundError" in out.stderr
