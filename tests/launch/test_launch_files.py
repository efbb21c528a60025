"""The ROS 2 launch files in launch/ agree with robofume's own launcher (robofume_robot.launcher).

ROS 2 from PyPI has no ``launch`` package, so the files are read as plain YAML and interpreted here:
the subset of the YAML launch format they use (arg, set_env, node; $(var), $(env), $(find-pkg-share))
is resolved to what ``ros2 launch`` would run, and compared with ``Launcher.command`` and
``ros_environment``. The checks are driven by ``launcher.ROBOTS``: a node added there without a launch
file entry, a console script or a described parameter is named in the failure message.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from robofume_robot import launch_files
from robofume_robot import launcher as launcher_module
from robofume_robot.config_paths import config_dir
from robofume_robot.launch_files import LaunchFileError, launch_text, read_parameter_file
from robofume_robot.launcher import ROBOTS, Launcher, NodeSpec, ros_environment

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_DIR = ROOT / "launch"
SETUP_PY = ROOT / "robot_ws" / "src" / "robofume_robot" / "setup.py"
PACKAGE = "robofume_robot"
SHARE = {PACKAGE: str(config_dir().parent)}  # $(find-pkg-share robofume_robot) -> the package folder
REGENERATE = "run: python -m robofume_robot.launch_files"

# Attributes each entity of the YAML launch format accepts (launch / launch_ros parse methods).
ENTITY_ATTRS = {
    "arg": {"name", "default", "description", "choices"},
    "set_env": {"name", "value", "if", "unless"},
    "node": {
        "pkg",
        "exec",
        "name",
        "namespace",
        "output",
        "param",
        "remap",
        "args",
        "ros_args",
        "env",
        "respawn",
        "respawn_delay",
        "if",
        "unless",
        "exec_name",
        "launch-prefix",
    },
}
GUI_NODES = {("rviz2", "rviz2")}


# --- a small interpreter for the launch files ---------------------------------------------------


class SubstitutionError(ValueError):
    """A substitution the launch files may not use, or a reference to an undeclared argument."""


def _split_args(text: str) -> list[str]:
    """Split substitution arguments on spaces outside nested ``$( )``."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == " " and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    parts.append(cur)
    return [p for p in parts if p]


def resolve(text: str, args: dict[str, str], env: dict[str, str]) -> str:
    """``text`` with its substitutions performed as ``ros2 launch`` would."""
    out, i = [], 0
    while i < len(text):
        if not text.startswith("$(", i):
            out.append(text[i])
            i += 1
            continue
        depth, j = 0, i + 1
        while True:
            if j >= len(text):
                raise SubstitutionError(f"unbalanced substitution in {text!r}")
            depth += text[j] == "("
            depth -= text[j] == ")"
            if depth == 0:
                break
            j += 1
        name, _, rest = text[i + 2 : j].partition(" ")
        values = [resolve(p, args, env) for p in _split_args(rest)]
        if name == "var" and len(values) == 1:
            if values[0] not in args:
                raise SubstitutionError(f"$(var {values[0]}) refers to an undeclared argument")
            out.append(args[values[0]])
        elif name == "env" and len(values) in (1, 2):
            if values[0] not in env and len(values) == 1:
                raise SubstitutionError(f"$(env {values[0]}) without a default and the variable unset")
            out.append(env.get(values[0], values[-1]))
        elif name == "find-pkg-share" and len(values) == 1 and values[0] in SHARE:
            out.append(SHARE[values[0]])
        else:
            raise SubstitutionError(f"unsupported substitution $({text[i + 2 : j]})")
        i = j + 1
    return "".join(out)


def param_value(text: str) -> Any:
    """What launch_ros makes of parameter text: YAML, except that an empty string stays a string."""
    return text if text == "" else yaml.safe_load(text)


def load(path: Path) -> list[dict[str, Any]]:
    """The entities of a YAML launch file."""
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict) and list(doc) == ["launch"], f"{path}: top level must be 'launch:'"
    return doc["launch"]


def evaluate(
    entities: list[dict[str, Any]], overrides: dict[str, str] | None = None, env: dict[str, str] | None = None
) -> tuple[dict[str, str], dict[str, str], list[dict[str, Any]]]:
    """Resolved ``(arguments, environment set, nodes)`` for given command-line arguments and shell env."""
    overrides, env = dict(overrides or {}), dict(env or {})
    args: dict[str, str] = {}
    set_env: dict[str, str] = {}
    nodes = []
    for entity in entities:
        ((kind, body),) = entity.items()
        if kind == "arg":
            default = resolve(body.get("default", ""), args, env)
            args[body["name"]] = overrides.pop(body["name"], default)
        elif kind == "set_env":
            set_env[body["name"]] = resolve(body["value"], args, env)
            env[body["name"]] = set_env[body["name"]]
        elif kind == "node":
            node = {k: resolve(v, args, env) if isinstance(v, str) else v for k, v in body.items()}
            node["param"] = [
                {k: resolve(str(v), args, env) for k, v in p.items()} for p in body.get("param", [])
            ]
            nodes.append(node)
    assert not overrides, f"unknown launch arguments {sorted(overrides)}"
    return args, set_env, nodes


def node_executables() -> dict[str, str]:
    """``NODE_EXECUTABLES`` of robot_ws setup.py (console script -> module)."""
    tree = ast.parse(SETUP_PY.read_text())
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(
            getattr(t, "id", "") == "NODE_EXECUTABLES" for t in stmt.targets
        ):
            return ast.literal_eval(stmt.value)
    raise AssertionError(f"{SETUP_PY} defines no NODE_EXECUTABLES")


def has_main(module: str) -> bool:
    """Whether ``module`` defines a top-level ``main`` (found without importing the module itself)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return False
    tree = ast.parse(Path(spec.origin).read_text())
    return any(isinstance(s, ast.FunctionDef) and s.name == "main" for s in tree.body)


# --- the checks ---------------------------------------------------------------------------------


def check_structure(entities: list[dict[str, Any]], where: str) -> list[str]:
    """Entity kinds and attributes the YAML launch format accepts; described, used, unique arguments."""
    problems = []
    declared: list[str] = []
    used = set()
    for entity in entities:
        if not (isinstance(entity, dict) and len(entity) == 1):
            problems.append(f"{where}: entity {entity!r} is not a one-key mapping")
            continue
        ((kind, body),) = entity.items()
        if kind not in ENTITY_ATTRS:
            problems.append(f"{where}: entity kind {kind!r} is not used by robofume's launch files")
            continue
        extra = set(body) - ENTITY_ATTRS[kind]
        if extra:
            problems.append(f"{where}: {kind} has unknown attributes {sorted(extra)}")
        if kind == "arg":
            declared.append(body.get("name", ""))
            for key in ("name", "default", "description"):
                if not isinstance(body.get(key), str):
                    problems.append(f"{where}: arg {body.get('name')!r}: {key} must be a string")
            if not str(body.get("description", "")).strip():
                problems.append(f"{where}: arg {body.get('name')!r} has no description")
        text = yaml.safe_dump(body)
        used |= {m.split(")")[0] for m in text.split("$(var ")[1:]}
    dupes = sorted({a for a in declared if declared.count(a) > 1})
    if dupes:
        problems.append(f"{where}: arguments declared twice: {dupes}")
    unused = sorted(set(declared) - used)
    if unused:
        problems.append(f"{where}: arguments that nothing uses: {unused}")
    return problems


@dataclass(frozen=True)
class Expected:
    """What robofume's launcher starts, that one launch file must start too."""

    file_name: str
    source: str
    params_name: str
    nodes: tuple[NodeSpec, ...]
    optional: tuple[NodeSpec, ...] = ()


def expected_files(robots: dict[str, tuple[str, tuple[NodeSpec, ...]]] = ROBOTS) -> list[Expected]:
    """One launch file per robot flavour, and one for the session's nodes where the launcher has them."""
    out = [
        Expected(f"{robot}_robot.launch.yaml", f"ROBOTS[{robot!r}]", params, nodes)
        for robot, (params, nodes) in robots.items()
    ]
    if getattr(launcher_module, "SESSION_NODES", ()):
        mcap = getattr(launcher_module, "MCAP_NODE", None)
        out.append(
            Expected(
                "session.launch.yaml",
                "SESSION_NODES",
                launcher_module.SESSION_PARAMS,
                launcher_module.SESSION_NODES,
                (mcap,) if mcap else (),
            )
        )
    return out


def file_values(params_name: str) -> dict[str, dict[str, Any]]:
    """Node name -> parameter values of a parameter file in config/."""
    data = yaml.safe_load((config_dir() / params_name).read_text()) or {}
    return {str(k).rsplit("/", 1)[-1]: dict(v.get("ros__parameters") or {}) for k, v in data.items()}


def check_against_launcher(
    exp: Expected, entities: list[dict[str, Any]], executables: dict[str, str] | None = None
) -> list[str]:
    """Everything that would make ``ros2 launch`` run something other than robofume's launcher."""
    where = f"launch/{exp.file_name}"
    executables = node_executables() if executables is None else executables
    problems = check_structure(entities, where)
    try:
        _, set_env, nodes = evaluate(entities, {"namespace": "robot1"})
        declared = {e["arg"]["name"]: e["arg"] for e in entities if "arg" in e}
    except (SubstitutionError, KeyError, AssertionError) as exc:
        return [*problems, f"{where}: {exc}"]

    for name in ("namespace", "gui", "rviz_config"):
        if name not in declared:
            problems.append(f"{where}: no {name!r} argument")
    if declared.get("gui", {}).get("default") != "false":
        problems.append(f"{where}: the gui argument must default to false")

    optional = {spec.name for spec in exp.optional}
    if not [n for n in nodes if (n.get("pkg"), n.get("exec")) in GUI_NODES]:
        problems.append(f"{where}: no rviz2 node behind the gui argument")
    for raw in (e["node"] for e in entities if "node" in e):
        is_gui = (raw.get("pkg"), raw.get("exec")) in GUI_NODES
        condition = "$(var gui)" if is_gui else f"$(var start_{raw.get('name')})"
        if is_gui or raw.get("name") in optional:
            if raw.get("if") != condition or "unless" in raw:
                problems.append(f"{where}: {raw.get('name')} must start only if: {condition}")
            arg = condition[len("$(var ") : -1]
            if declared.get(arg, {}).get("default") != "false":
                problems.append(f"{where}: argument {arg} must exist and default to false")
        elif "if" in raw or "unless" in raw:
            problems.append(
                f"{where}: node {raw.get('name')!r} is conditional; the launcher always starts it"
            )
        if raw.get("namespace") != "$(var namespace)":
            problems.append(f"{where}: node {raw.get('name')!r} must use namespace: $(var namespace)")

    # Environment: the same variables and values, the shell's value kept where the launcher keeps it.
    for var, value in ros_environment({}).items():
        if var not in set_env:
            problems.append(
                f"{where}: no set_env for {var} (robofume_robot.launcher.ros_environment sets it)"
            )
        elif set_env[var] != value:
            problems.append(f"{where}: set_env {var}={set_env[var]!r}, the launcher uses {value!r}")
        else:
            shell = {var: "from-the-shell"}
            _, with_shell, _ = evaluate(entities, env=shell)
            if with_shell[var] != ros_environment(shell)[var]:
                problems.append(
                    f"{where}: {var} set in the shell is {with_shell[var]!r} under launch, "
                    f"{ros_environment(shell)[var]!r} under robofume's launcher"
                )

    # Nodes: exactly the launcher's, same executable, parameter file, parameter values, namespace.
    launched = {n.get("name"): n for n in nodes if (n.get("pkg"), n.get("exec")) not in GUI_NODES}
    launcher = Launcher("mock", namespace="robot1", env={})
    launcher.params_file = config_dir() / exp.params_name
    for spec in (*exp.nodes, *exp.optional):
        exe = spec.module.rsplit(".", 1)[-1]
        if executables.get(exe) != spec.module:
            problems.append(
                f"robot_ws/src/robofume_robot/setup.py: NODE_EXECUTABLES lacks {exe!r}: {spec.module!r} "
                f"(node {spec.name!r} of launcher.{exp.source})"
            )
        elif not has_main(spec.module):
            problems.append(f"{spec.module} has no main() for its console script {exe}")
        node = launched.pop(spec.name, None)
        if node is None:
            problems.append(f"{where}: no node {spec.name!r} (module {spec.module}); {REGENERATE}")
            continue
        if (node.get("pkg"), node.get("exec")) != (PACKAGE, exe):
            problems.append(
                f"{where}: node {spec.name!r} runs {node.get('pkg')}/{node.get('exec')}, "
                f"expected {PACKAGE}/{exe} ({spec.module})"
            )
        cmd = launcher.command(spec)
        expected_ns = cmd[cmd.index("-r", cmd.index("-r") + 1) + 1].split(":=", 1)[1]
        if "/" + node.get("namespace", "").strip("/") != expected_ns:
            problems.append(
                f"{where}: node {spec.name!r} namespace {node.get('namespace')!r} != {expected_ns}"
            )
        params_path = Path(cmd[cmd.index("--params-file") + 1])
        files = [p["from"] for p in node["param"] if "from" in p]
        if files != [str(params_path)]:
            problems.append(
                f"{where}: node {spec.name!r} reads parameter files {files}, the launcher reads {params_path}"
            )
        values = {p["name"]: param_value(p["value"]) for p in node["param"] if "name" in p}
        in_file = file_values(params_path.name).get(spec.name, {})
        for key, value in values.items():
            if key in spec.overrides:
                if value != spec.overrides[key]:
                    problems.append(
                        f"{where}: {spec.name}.{key}={value!r}, "
                        f"NodeSpec.overrides has {spec.overrides[key]!r}"
                    )
            elif key not in in_file:
                problems.append(
                    f"{where}: {spec.name}.{key} is set from a launch argument but is not in "
                    f"config/{params_path.name}"
                )
            elif value != in_file[key] or type(value) is not type(in_file[key]):
                problems.append(
                    f"{where}: {spec.name}.{key} defaults to {value!r}, config/{params_path.name} "
                    f"has {in_file[key]!r}; {REGENERATE}"
                )
        for key in sorted(set(in_file) - set(values)):
            problems.append(
                f"{where}: {spec.name}.{key} of config/{params_path.name} is no launch argument; {REGENERATE}"
            )
        for key in sorted(set(spec.overrides) - set(values)):
            problems.append(f"{where}: {spec.name}.{key} of NodeSpec.overrides is not set; {REGENERATE}")
    for extra in launched:
        problems.append(f"{where}: node {extra!r} is not in launcher.{exp.source}; {REGENERATE}")
    return problems


# --- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("exp", expected_files(), ids=lambda e: e.file_name)
def test_launch_file_agrees_with_launcher(exp: Expected) -> None:
    path = LAUNCH_DIR / exp.file_name
    assert path.is_file(), f"{path} missing; {REGENERATE}"
    problems = check_against_launcher(exp, load(path))
    assert not problems, "\n".join(problems)


def test_one_launch_file_per_node_set_and_up_to_date() -> None:
    present = {p.name for p in LAUNCH_DIR.glob("*.launch.yaml")}
    wanted = {e.file_name for e in expected_files()}
    assert present == wanted, (
        f"launch/ has {sorted(present)}, the launcher gives {sorted(wanted)}; {REGENERATE}"
    )
    expected = launch_files.launch_files()
    assert set(expected) == wanted
    for name, text in expected.items():
        assert (LAUNCH_DIR / name).read_text() == text, f"launch/{name} is out of date; {REGENERATE}"


def test_console_scripts_have_main() -> None:
    for exe, module in node_executables().items():
        assert module.rsplit(".", 1)[-1] == exe, (
            f"console script {exe} must be named after its module {module}"
        )
        assert has_main(module), f"{module} has no main()"


def test_namespace_and_arguments_reach_the_nodes() -> None:
    entities = load(LAUNCH_DIR / "mock_robot.launch.yaml")
    _, _, nodes = evaluate(entities, {"namespace": "r2", "arm.image_size": "64", "gui": "true"})
    arm = next(n for n in nodes if n.get("name") == "arm")
    assert arm["namespace"] == "r2"
    assert {"name": "image_size", "value": "64"} in arm["param"]
    rviz = next(n for n in nodes if n.get("exec") == "rviz2")
    assert rviz["if"] == "true" and rviz["args"].endswith("/rviz/robofume.rviz")
    assert rviz["args"].startswith("-d " + SHARE[PACKAGE])


def test_checker_names_a_node_missing_from_the_launch_file() -> None:
    """What the coordinator sees after adding a node to ROBOTS without regenerating."""
    mock = next(e for e in expected_files() if e.file_name == "mock_robot.launch.yaml")
    extra = NodeSpec("policy_server", "policy_server.policy_server_node")
    grown = Expected(mock.file_name, mock.source, mock.params_name, (*mock.nodes, extra))
    problems = check_against_launcher(grown, load(LAUNCH_DIR / "mock_robot.launch.yaml"), executables={})
    text = "\n".join(problems)
    assert "no node 'policy_server' (module policy_server.policy_server_node)" in text
    assert "NODE_EXECUTABLES lacks 'policy_server_node': 'policy_server.policy_server_node'" in text
    assert "NODE_EXECUTABLES lacks 'mock_arm_node'" in text


def test_checker_catches_drift() -> None:
    entities = load(LAUNCH_DIR / "real_robot.launch.yaml")

    def problems_after(edit: Any) -> str:
        changed = copy.deepcopy(entities)
        edit(changed)
        real = next(e for e in expected_files() if e.file_name == "real_robot.launch.yaml")
        return "\n".join(check_against_launcher(real, changed))

    def arg(es: list[dict[str, Any]], name: str) -> dict[str, Any]:
        return next(e["arg"] for e in es if e.get("arg", {}).get("name") == name)

    def node(es: list[dict[str, Any]], name: str) -> dict[str, Any]:
        return next(e["node"] for e in es if e.get("node", {}).get("name") == name)

    assert "defaults to 0.5, config/real_robot.yaml has 0.3" in problems_after(
        lambda es: arg(es, "arm_adapter.command_timeout").update(default="0.5")
    )
    assert "camera.fps' has no description" in problems_after(
        lambda es: arg(es, "camera.fps").update(description=" ")
    )
    assert "rviz2 must start only if: $(var gui)" in problems_after(lambda es: node(es, "rviz2").pop("if"))
    assert (
        "camera.exposure is set from a launch argument but is not in config/real_robot.yaml"
        in problems_after(
            lambda es: node(es, "camera")["param"].append({"name": "exposure", "value": "$(var camera.fps)"})
        )
    )
    assert "no set_env for ROS_AUTOMATIC_DISCOVERY_RANGE" in problems_after(
        lambda es: es.remove(
            next(e for e in es if e.get("set_env", {}).get("name") == "ROS_AUTOMATIC_DISCOVERY_RANGE")
        )
    )
    assert "the launcher reads" in problems_after(
        lambda es: node(es, "safety_gate")["param"][0].update(
            {"from": "$(find-pkg-share robofume_robot)/config/mock_robot.yaml"}
        )
    )
    assert "must use namespace" in problems_after(lambda es: node(es, "camera").pop("namespace"))
    assert "$(var nope) refers to an undeclared argument" in problems_after(
        lambda es: node(es, "camera").update(name="$(var nope)")
    )


def test_environment_follows_the_shell_like_the_launcher() -> None:
    entities = load(LAUNCH_DIR / "mock_robot.launch.yaml")
    _, env, _ = evaluate(entities)
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(config_dir() / "fastdds_shm.xml")
    _, env, _ = evaluate(entities, env={"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"})
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"
    _, env, _ = evaluate(
        entities, {"discovery_range": "OFF"}, env={"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    )
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "OFF"


# --- the generator ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [0, 7, 0.037, 10.0, True, "forward", "", "123456", "true", "~/.x/latch", "it's", "a: b", [0.1, 0.2]],
)
def test_launch_text_round_trips_through_launch_typing(value: Any) -> None:
    assert param_value(launch_text(value)) == value
    assert type(param_value(launch_text(value))) is type(value)


def test_parameter_descriptions_are_required(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "/**/arm:\n  ros__parameters:\n    # side of the image\n    # in px\n    size: 128\n"
        "    task: 'a # b'   # first task\n"
    )
    params = read_parameter_file(good)["arm"]
    assert [(p.name, p.value, p.description) for p in params] == [
        ("size", 128, "side of the image in px"),
        ("task", "a # b", "first task"),
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**/arm:\n  ros__parameters:\n    size: 128   # px\n    seed: 0\n")
    with pytest.raises(LaunchFileError, match=r"arm\.seed has no '# description'"):
        read_parameter_file(bad)


def test_new_launcher_environment_variable_needs_an_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    def env_with_extra(base: dict[str, str] | None = None) -> dict[str, str]:
        env = ros_environment(base)
        env.setdefault("ROS_LOCALHOST_ONLY", "1")
        return env

    monkeypatch.setattr(launch_files, "ros_environment", env_with_extra)
    with pytest.raises(LaunchFileError, match="ROS_LOCALHOST_ONLY"):
        launch_files.environment_args()


def test_main_check_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert launch_files.main(["--check", "--out", str(tmp_path)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert launch_files.main(["--out", str(tmp_path)]) == 0
    assert launch_files.main(["--check", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(launch_files.launch_files())
