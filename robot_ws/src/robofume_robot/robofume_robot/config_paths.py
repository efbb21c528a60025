"""Find the package's config folder (parameter files, safety limits, Fast DDS profile)."""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> Path:
    """``config/`` of robofume_robot: beside the sources (pip/editable install) or in the ament share."""
    source = Path(__file__).resolve().parents[1] / "config"
    if source.is_dir():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("robofume_robot")) / "config"
    except (ImportError, LookupError) as exc:
        raise FileNotFoundError(
            "robofume_robot config folder not found (source tree or ament share)"
        ) from exc


def resolve_config_path(path: str | os.PathLike[str]) -> Path:
    """``path`` if it exists (absolute or relative to the working folder), else inside ``config_dir()``."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return config_dir() / p
