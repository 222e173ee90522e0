"""The Dockerfile's list of what the runtime stage leaves out of the standard library."""

from __future__ import annotations

import re
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parent.parent / "Dockerfile"
_TRIM = re.compile(r"--trim '([^']+)'")


def trim_groups(text: str | None = None) -> list[tuple[str, list[str]]]:
    """(reason, globs) of each group of --trim lines, the reason the comment line above it."""
    lines = (DOCKERFILE.read_text() if text is None else text).splitlines()
    groups: list[tuple[str, list[str]]] = []
    reason = ""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            reason = stripped.lstrip("# ")
            continue
        globs = _TRIM.findall(stripped)
        if not globs:
            reason = ""
            continue
        if groups and groups[-1][0] == reason:
            groups[-1][1].extend(globs)
        else:
            groups.append((reason, globs))
    return groups


def trim_list() -> list[str]:
    return [glob for _, globs in trim_groups() for glob in globs]
