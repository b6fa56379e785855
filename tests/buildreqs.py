"""Which build requirements of the `--no-build-isolation` installs are not pinned in requirements.lock?

`make setup` installs citeqa with `--no-build-isolation`, and so do the optional targets (`setup-local`
builds llama-cpp-python from source): their build backends must already be in the venv, which holds only
what requirements.lock pins. What each install needs is declared once: `[build-system].requires` for
citeqa itself, `[tool.citeqa.build-requires]` per extra in pyproject.toml. Pure and offline: nothing is
built or downloaded; the dependencies of a pinned build requirement are read from its installed metadata.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(text: str) -> dict[str, Version]:
    """`name==version` lines -> {normalised name: version}."""
    pins = {}
    for line in text.splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[norm(name)] = Version(version.strip())
    return pins


def declared(pyproject: dict) -> dict[str, list[str]]:
    """{"setup": citeqa's build-system.requires, EXTRA: [tool.citeqa.build-requires].EXTRA (plus citeqa's own)}."""
    own = pyproject["build-system"]["requires"]
    extras = pyproject.get("tool", {}).get("citeqa", {}).get("build-requires", {})
    return {"setup": list(own), **{extra: list(own) + list(reqs) for extra, reqs in extras.items()}}


def no_build_isolation_targets(makefile: str) -> set[str]:
    """The installs the Makefile runs with --no-build-isolation: "setup" for `-e .`, else the extra's name."""
    found = set()
    for line in makefile.splitlines():
        if "--no-build-isolation" in line:
            m = re.search(r"-e\s+\"?\.(?:\[(\w+)\])?", line)
            found.add(m[1] if m and m[1] else "setup")
    return found


def missing(requirements: list[str], pins: dict[str, Version], installed=metadata.version,
            requires=metadata.requires) -> list[str]:
    """Requirements (and, for installed pinned ones, their dependencies) the pins do not satisfy."""
    out, todo, seen = [], [Requirement(r) for r in requirements], set()
    while todo:
        req = todo.pop(0)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = norm(req.name)
        if name in seen:
            continue
        seen.add(name)
        if name not in pins:
            out.append(f"{req} (not in requirements.lock)")
            continue
        if not req.specifier.contains(pins[name], prereleases=True):
            out.append(f"{req} (requirements.lock pins {pins[name]})")
            continue
        try:
            if Version(installed(req.name)) == pins[name]:
                todo += [Requirement(r) for r in requires(req.name) or []]
        except metadata.PackageNotFoundError:
            pass
    return out


def report(root: Path) -> dict[str, list[str]]:
    """{install: [what requirements.lock lacks]} for every --no-build-isolation install of the Makefile."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    needs = declared(pyproject)
    pins = lock_pins((root / "requirements.lock").read_text(encoding="utf-8"))
    out = {}
    for target in sorted(no_build_isolation_targets((root / "Makefile").read_text(encoding="utf-8"))):
        if target not in needs:
            out[target] = [f"no [tool.citeqa.build-requires].{target} in pyproject.toml"]
        else:
            out[target] = missing(needs[target], pins)
    return out
