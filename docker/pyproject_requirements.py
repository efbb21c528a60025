"""Print the requirements of pyproject.toml (dependencies, plus the named extras) one per line.

Used by docker/Dockerfile.gpu to install robofume's dependencies in a layer that only changes with
pyproject.toml:  python3 pyproject_requirements.py pyproject.toml --extra ros > requirements.txt
"""

from __future__ import annotations

import argparse
import sys

import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    """``project.dependencies`` followed by ``project.optional-dependencies[extra]`` for each extra."""
    with open(pyproject, "rb") as f:
        project = tomllib.load(f).get("project", {})
    out = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise ValueError(f"{pyproject} has no extra {extra!r}; it has: {', '.join(sorted(optional))}")
        out += optional[extra]
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: print the requirements, or a one-line error (exit 2)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("pyproject")
    parser.add_argument("--extra", action="append", default=[], help="also an optional-dependencies group")
    args = parser.parse_args(argv)
    try:
        print("\n".join(requirements(args.pyproject, args.extra)))
    except (OSError, ValueError) as exc:  # TOMLDecodeError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
