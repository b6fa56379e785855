"""`make setup-local` (and the other --no-build-isolation installs) find their build backends in the venv:
requirements.lock pins what pyproject.toml declares. Cheap: nothing is built (tests/buildreqs.py)."""

from __future__ import annotations

from packaging.version import Version

from tests.buildreqs import lock_pins, missing, no_build_isolation_targets, report
from tests.conftest import ROOT


def test_every_no_build_isolation_install_finds_its_build_requirements_in_the_lock() -> None:
    found = report(ROOT)
    assert {"setup", "local", "train"} <= set(found)
    assert found == {target: [] for target in found}, found


def test_the_check_fails_when_the_lock_lacks_a_build_requirement() -> None:
    pins = lock_pins((ROOT / "requirements.lock").read_text(encoding="utf-8"))
    local = ["setuptools>=77", "scikit-build-core>=0.9.2", "cmake>=3.21", "ninja"]
    assert missing(local, pins) == []
    without = {k: v for k, v in pins.items() if k != "scikit-build-core"}
    assert missing(local, without) == ["scikit-build-core>=0.9.2 (not in requirements.lock)"]
    old = {**pins, "cmake": Version("3.20.5")}
    assert missing(local, old) == ["cmake>=3.21 (requirements.lock pins 3.20.5)"]
    # a pinned build requirement's own dependencies count too (scikit-build-core needs pathspec)
    assert missing(["scikit-build-core>=0.9.2"], {k: v for k, v in pins.items() if k != "pathspec"}) == \
        ["pathspec>=0.12.0 (not in requirements.lock)"]


def test_makefile_installs_are_found() -> None:
    make = 'a:\n\tpip install --no-build-isolation -e .\nb:\n\tpip install -q --no-build-isolation -e ".[local]"\n'
    assert no_build_isolation_targets(make) == {"setup", "local"}
