"""ROS 2 launch files generated from robofume's own launcher, so the two cannot drift.

``launch/<robot>_robot.launch.yaml`` (YAML launch format, for ``ros2 launch`` on a full ROS 2 install)
starts the nodes of ``launcher.ROBOTS[robot]`` with the same parameter file (``config/*.yaml`` in the
package share) and the same environment (``launcher.ros_environment``). Every parameter of that file is
also a launch argument ``<node>.<parameter>`` whose default is the file's value and whose description is
the parameter's ``# comment`` in the file. There are ``namespace``, ``gui`` (RViz2) and ``rviz_config``
arguments, and one argument per environment variable (defaulting to the shell's value, if set).

    python -m robofume_robot.launch_files            # rewrite launch/*.launch.yaml in the source tree
    python -m robofume_robot.launch_files --check    # exit 1 and name the stale files
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from robofume_robot import launcher
from robofume_robot.config_paths import config_dir
from robofume_robot.launcher import ROBOTS, NodeSpec, ros_environment

PACKAGE = "robofume_robot"
SHARE = f"$(find-pkg-share {PACKAGE})"
"""Launch substitution for the installed package share (``config/``, ``launch/``, ``rviz/``)."""
RVIZ_CONFIG = f"{SHARE}/rviz/robofume.rviz"

ENV_ARGS: dict[str, tuple[str, str]] = {
    "ROS_AUTOMATIC_DISCOVERY_RANGE": (
        "discovery_range",
        "ROS 2 discovery range: LOCALHOST (this machine only, the default), SUBNET (nodes on other hosts, "
        "see docker/README.md), OFF or SYSTEM_DEFAULT",
    ),
    "RMW_IMPLEMENTATION": (
        "rmw_implementation",
        "ROS 2 middleware; the Fast DDS profile applies to rmw_fastrtps_cpp",
    ),
    "FASTDDS_DEFAULT_PROFILES_FILE": (
        "fastdds_profile",
        "Fast DDS profile: a 16 MB shared-memory segment so camera frames stay on shared memory, plus UDP",
    ),
    "MUJOCO_GL": ("mujoco_gl", "MuJoCo rendering backend of the mock arm: egl (headless), osmesa or glfw"),
}
"""Environment variable the launcher sets -> (launch argument, description)."""


class LaunchFileError(ValueError):
    """The launcher's configuration cannot be expressed as a launch file (e.g. an undescribed parameter)."""


@dataclass(frozen=True)
class Param:
    """One node parameter of a parameter file: its value and the description from its ``# comment``."""

    node: str
    name: str
    value: Any
    description: str

    @property
    def arg(self) -> str:
        """Name of its launch argument."""
        return f"{self.node}.{self.name}"


def _split_comment(text: str) -> tuple[str, str]:
    """``'value  # comment'`` -> ``('value', 'comment')``, ignoring ``#`` inside quotes."""
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip(), text[i + 1 :].strip()
    return text.rstrip(), ""


_SECTION = re.compile(r"^(\S[^:]*):\s*(#.*)?$")
_KEY = re.compile(r"^(\s+)([A-Za-z_][\w.]*):(.*)$")


def read_parameter_file(path: str | Path) -> dict[str, list[Param]]:
    """Node name -> its parameters (in file order) of a ROS 2 parameter file with one ``# description``
    per parameter, on the parameter's line or on comment lines just above it."""
    path = Path(path)
    text = path.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise LaunchFileError(f"{path}: not valid YAML: {exc}") from exc
    descriptions: dict[tuple[str, str], str] = {}
    section, pending = "", []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        if not stripped:
            pending = []
            continue
        if m := _SECTION.match(line):
            section, pending = m.group(1).strip("'\""), []
            continue
        if (m := _KEY.match(line)) and m.group(2) != "ros__parameters":
            _, comment = _split_comment(m.group(3))
            descriptions[(section, m.group(2))] = comment or " ".join(pending)
        pending = []
    out: dict[str, list[Param]] = {}
    for section_key, body in data.items():
        params = (body or {}).get("ros__parameters") if isinstance(body, dict) else None
        if not isinstance(params, dict):
            raise LaunchFileError(f"{path}: section {section_key!r} has no ros__parameters mapping")
        node = str(section_key).rstrip("/").rsplit("/", 1)[-1]
        for name, value in params.items():
            if isinstance(value, dict):
                raise LaunchFileError(f"{path}: {node}.{name}: nested parameters are not supported here")
            description = descriptions.get((str(section_key), name), "")
            if not description:
                raise LaunchFileError(
                    f"{path}: parameter {node}.{name} has no '# description' comment; "
                    "every parameter needs one (it becomes the launch argument's description)"
                )
            out.setdefault(node, []).append(Param(node, name, value, description))
    return out


def launch_text(value: Any) -> str:
    """A parameter value as launch-argument text that ``ros2 launch`` turns back into the same value
    (it reads parameter text as YAML; strings that YAML would read otherwise are quoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if value == "" or yaml.safe_load(value) == value:
            return value
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, list) and value:
        return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    raise LaunchFileError(f"parameter value {value!r} has a type a launch argument cannot carry")


def executable(spec: NodeSpec) -> str:
    """Console script of a node (robot_ws setup.py ``NODE_EXECUTABLES``): the last part of its module."""
    return spec.module.rsplit(".", 1)[-1]


def _q(text: str) -> str:
    """A YAML double-quoted scalar."""
    return json.dumps(text, ensure_ascii=False)


def _arg(name: str, default: str, description: str) -> list[str]:
    return [
        "- arg:",
        f"    name: {_q(name)}",
        f"    default: {_q(default)}",
        f"    description: {_q(description)}",
    ]


def environment_args() -> list[tuple[str, str, str, str]]:
    """``(variable, argument, default, description)`` for every variable ``ros_environment`` sets;
    ``argument`` is empty for variables it always overrides (their value is fixed)."""
    sentinel = "\0unset"
    defaults = ros_environment({})
    kept = ros_environment(dict.fromkeys(defaults, sentinel))
    share_config = str(config_dir())
    out = []
    for var, value in defaults.items():
        if value.startswith(share_config):
            value = f"{SHARE}/config" + value[len(share_config) :]
        if kept[var] != sentinel:
            out.append((var, "", value, ""))
            continue
        if var not in ENV_ARGS:
            raise LaunchFileError(
                f"the launcher sets {var} but launch_files.ENV_ARGS has no launch argument for it; add one"
            )
        arg, description = ENV_ARGS[var]
        shown = value.replace(SHARE, f"<{PACKAGE} share>")
        out.append(
            (var, arg, f"$(env {var} {value})", f"{description} (default: ${var} if set, else {shown})")
        )
    return out


@dataclass(frozen=True)
class LaunchSpec:
    """One launch file: its nodes (as the launcher starts them) and the parameter file they default to."""

    file_name: str
    source: str
    """Where the nodes come from in robofume_robot.launcher (for the file's header)."""
    params_name: str
    """Parameter file in config/ of nodes without their own ``NodeSpec.params_file``."""
    nodes: tuple[NodeSpec, ...]
    optional: tuple[NodeSpec, ...] = ()
    """Nodes started only when their ``start_<name>`` argument is true."""


def node_params_name(spec: NodeSpec, default: str) -> str:
    """The parameter file in config/ a node reads (``NodeSpec.params_file``, else the launch file's)."""
    return getattr(spec, "params_file", None) or default


def launch_specs() -> list[LaunchSpec]:
    """One launch file per robot of ``ROBOTS``, plus ``session.launch.yaml`` for the session's nodes
    (``launcher.SESSION_NODES``, with ``MCAP_NODE`` optional) where the launcher defines them."""
    specs = [
        LaunchSpec(f"{robot}_robot.launch.yaml", f"ROBOTS[{robot!r}]", params, nodes)
        for robot, (params, nodes) in ROBOTS.items()
    ]
    session_nodes: tuple[NodeSpec, ...] = getattr(launcher, "SESSION_NODES", ())
    if session_nodes:
        mcap = getattr(launcher, "MCAP_NODE", None)
        specs.append(
            LaunchSpec(
                "session.launch.yaml",
                "SESSION_NODES" + (" and MCAP_NODE" if mcap else ""),
                launcher.SESSION_PARAMS,
                session_nodes,
                (mcap,) if mcap else (),
            )
        )
    return specs


def _title(path: Path, fallback: str) -> str:
    lines = path.read_text().splitlines()
    return next((line.lstrip("#").strip() for line in lines if line.startswith("#")), fallback)


def render(spec: LaunchSpec) -> str:
    """The text of one launch file."""
    all_nodes = (*spec.nodes, *spec.optional)
    files = sorted({node_params_name(n, spec.params_name) for n in all_nodes} | {spec.params_name})
    params: dict[str, dict[str, list[Param]]] = {}
    for name in files:
        path = config_dir() / name
        if not path.is_file():
            raise LaunchFileError(f"{path} not found (parameter file of launcher.{spec.source})")
        params[name] = read_parameter_file(path)
    for name, sections in params.items():
        readers = {n.name for n in all_nodes if node_params_name(n, spec.params_name) == name}
        unknown = sorted(set(sections) - readers) if readers else []
        if unknown:
            raise LaunchFileError(
                f"config/{name}: sections {unknown} match no node of launcher.{spec.source} reading it"
            )

    def node_params(node: NodeSpec) -> list[Param]:
        return params[node_params_name(node, spec.params_name)].get(node.name, [])

    file_name = spec.file_name
    lines = [
        f"# {_title(config_dir() / spec.params_name, file_name)}",
        "# GENERATED by `python -m robofume_robot.launch_files` from",
        f"# robofume_robot.launcher.{spec.source} and {', '.join(f'config/{f}' for f in files)}:",
        "# edit those and regenerate (tests/launch checks that this file is current).",
        "#",
        f"#   ros2 launch {PACKAGE} {file_name}                          # defaults",
        f"#   ros2 launch {PACKAGE} {file_name} gui:=true namespace:=robot1",
        f"#   ros2 launch {PACKAGE} {file_name} --show-args              # every argument",
        "launch:",
        "",
        "# General",
        *_arg(
            "namespace",
            "",
            "ROS namespace of every node, e.g. robot1 (one namespace per robot); empty = none",
        ),
        *_arg("gui", "false", "true = also start RViz2 (needs the rviz2 package and a display)"),
        *_arg("rviz_config", RVIZ_CONFIG, "RViz2 configuration file used when gui is true"),
    ]
    for node in spec.optional:
        lines += _arg(
            f"start_{node.name}", "false", f"true = also start the {node.name} node ({node.module})"
        )
    lines += ["", "# Environment of every node, as robofume's own launcher sets it"]
    env = environment_args()
    for _var, arg, default, description in env:
        if arg:
            lines += _arg(arg, default, description)
    for var, arg, default, _description in env:
        lines.append(f"- set_env: {{name: {_q(var)}, value: {_q(f'$(var {arg})' if arg else default)}}}")
    lines += ["", "# Node parameters: <node>.<parameter>, defaults from the parameter file"]
    for node in all_nodes:
        for p in node_params(node):
            lines += _arg(p.arg, launch_text(p.value), p.description)
    lines += ["", f"# Nodes (robofume_robot.launcher.{spec.source})"]
    for node in all_nodes:
        lines += [
            "- node:",
            f"    pkg: {PACKAGE}",
            f"    exec: {executable(node)}",
            f"    name: {node.name}",
            '    namespace: "$(var namespace)"',
            "    output: screen",
        ]
        if node.nice:  # off the control path: the same priority as robofume's own launcher gives
            lines.append(f'    launch-prefix: "nice -n {node.nice}"')
        if node in spec.optional:
            lines.append(f'    if: "$(var start_{node.name})"')
        lines += [
            "    param:",
            f"    - from: {_q(f'{SHARE}/config/{node_params_name(node, spec.params_name)}')}",
        ]
        for p in node_params(node):
            lines.append(f"    - {{name: {p.name}, value: {_q(f'$(var {p.arg})')}}}")
        for key, value in node.overrides.items():
            lines.append(f"    - {{name: {key}, value: {_q(launch_text(value))}}}")
    lines += [
        "",
        "# Monitoring",
        "- node:",
        "    pkg: rviz2",
        "    exec: rviz2",
        "    name: rviz2",
        '    namespace: "$(var namespace)"',
        '    args: "-d $(var rviz_config)"',
        '    if: "$(var gui)"',
        "",
    ]
    return "\n".join(lines)


def launch_files() -> dict[str, str]:
    """File name -> text of every launch file (``launch_specs``)."""
    return {spec.file_name: render(spec) for spec in launch_specs()}


def source_launch_dir() -> Path:
    """The repository's ``launch/`` folder (beside robot_ws) in a source checkout."""
    folder = Path(__file__).resolve().parents[4] / "launch"
    if not folder.is_dir():
        raise LaunchFileError(f"{folder} not found: run from a source checkout or pass --out")
    return folder


def main(argv: list[str] | None = None) -> int:
    """Write the launch files, or with ``--check`` report the stale ones (exit 1)."""
    parser = argparse.ArgumentParser(
        prog="python -m robofume_robot.launch_files",
        description="Write robofume's ROS 2 launch files from its launcher configuration.",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder to write to (default: the repo's launch/)"
    )
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = parser.parse_args(argv)
    try:
        out = args.out or source_launch_dir()
        files = launch_files()
    except LaunchFileError as exc:
        print(f"robofume: error: {exc}", file=sys.stderr)
        return 2
    stale = [
        name for name, text in files.items() if not (out / name).is_file() or (out / name).read_text() != text
    ]
    if args.check:
        for name in stale:
            print(f"{out / name} is out of date; run: python -m robofume_robot.launch_files", file=sys.stderr)
        return 1 if stale else 0
    from robofume.atomic_io import atomic_writer

    out.mkdir(parents=True, exist_ok=True)
    for name in stale:
        with atomic_writer(out / name) as f:
            f.write(files[name].encode())
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
