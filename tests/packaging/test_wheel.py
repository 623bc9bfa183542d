"""Homing as users install it: the wheel built from the sdist, installed into a fresh virtual
environment (not editable), running `homing dev`.

`python -m build` makes the sdist, and the wheel from that sdist, so a file missing from either
shows here. The wheel goes into a new virtual environment with `pip install --no-deps --no-index`
(nothing is downloaded); its dependencies are then made visible from the test's own environment
through a `.pth` line, which adds that folder to `sys.path` after the new environment's own
site-packages without running the editable install's hooks there. So `homing` is imported from
the wheel, which the test checks (`homing.__file__`).

What this asserts:

* every file of the package that is not Python (console templates and static files, the SQL
  queries and migrations) is in the wheel and in the sdist;
* `homing --version` of the installed command prints the project's version;
* `homing dev` from the installed wheel creates its store (the migrations), serves the console's
  page and its static files, and accepts and delivers a publish.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.reliability.support import HomingProcess, SinkProcess
from tests.support.http import AUTH
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _package_data() -> set[str]:
    """Every file of the `homing` package in the checkout that is not Python source."""
    return {
        str(path.relative_to(ROOT))
        for path in (ROOT / "homing").rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("HOMING_", "PYTHONPATH"))}


def test_the_installed_wheel_carries_its_files_and_runs_homing_dev(tmp_path: Path) -> None:
    if os.environ.get("CI") != "true":  # a venv installed before the test extra had it
        pytest.importorskip("build", reason="python -m build comes with the test extra")
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = dist.glob(f"homing-{VERSION}-*.whl")
    (sdist,) = dist.glob(f"homing-{VERSION}.tar.gz")

    data = _package_data()
    assert {"homing/console/templates/base.html", "homing/storage/sqlite/queries.sql"} <= data
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert data <= in_wheel, f"missing from the wheel: {sorted(data - in_wheel)}"
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert data <= in_sdist, f"missing from the sdist: {sorted(data - in_sdist)}"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--disable-pip-version-check", "--no-deps", "--no-index", str(wheel)],
        check=True, env=_clean_env(),
    )  # fmt: skip
    # Only now the dependencies: pip must not see (nor touch) the editable install beside them.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, env=_clean_env(),
    ).stdout.strip()  # fmt: skip
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # (In the test's folder: `python -c` would import a `homing/` in the current directory.)
    where = subprocess.run(
        [str(python), "-c", "import homing; print(homing.__file__)"],
        capture_output=True, text=True, check=True, env=_clean_env(), cwd=tmp_path,
    ).stdout.strip()  # fmt: skip
    assert where.startswith(site + "/homing/"), where

    homing_command = venv / "bin" / "homing"
    version = subprocess.run(
        [str(homing_command), "--version"],
        capture_output=True, text=True, check=True, env=_clean_env(), cwd=tmp_path,
    )  # fmt: skip
    assert version.stdout.strip() == f"homing {VERSION}"

    sink = SinkProcess()
    installed = HomingProcess(tmp_path / "data", tmp_path / "homing.log", executable=homing_command)
    try:
        installed.start()
        with httpx.Client(base_url=installed.base_url, timeout=10, follow_redirects=True) as client:
            page = client.get("/console")
            assert page.status_code == 200 and "<form" in page.text, page.text[:500]
            css = client.get("/console/static/console.css")
            assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
            published = client.post(
                f"/v2/publish/{sink.url('/from-the-wheel')}", content="hello", headers=AUTH
            )
            assert published.status_code == 201, published.text
            message_id = published.json()["messageId"]
            assert wait_until(lambda: message_id in sink.ids(), timeout=10)
    finally:
        installed.stop()
        sink.close()
    assert f"Homing {VERSION} (dev)" in installed.log_text()
