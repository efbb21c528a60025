"""The `robofume` CLI: help with examples, one-line errors, JSON benchmark output, the demo."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import torch

from robofume.cli import main
from robofume.data.episode_format import list_episodes


def test_help_shows_runnable_examples(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "robofume demo --out outputs/demo" in out and "robofume data generate" in out


def _all_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every parser of the CLI with its verb path, the top level first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, (*path, name))


def test_every_verb_help_shows_an_example_that_parses_as_printed() -> None:
    """Each leaf verb's --help ends with an example; every example line, copied from the printed help
    (line wrapping included), is a valid command line of that parser."""
    from robofume.cli import build_parser

    parser = build_parser()
    checked = 0
    for path, sub in _all_parsers(parser):
        text = sub.format_help()
        examples = [
            line.split("robofume ", 1)[1]
            for line in text.splitlines()
            if re.match(r"^\s*(examples?:\s*)?robofume \S", line)
        ]
        leaf = not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
        if leaf:
            assert examples, f"`robofume {' '.join(path)} --help` shows no example"
        for example in examples:
            argv = shlex.split(example, comments=True)
            try:
                parser.parse_args(argv)
            except SystemExit as exc:
                verb = " ".join(path)
                pytest.fail(f"example in `robofume {verb} --help` does not parse: {example!r} ({exc})")
            checked += 1
    assert checked >= 20


def test_pretrain_image_size_overrides_a_config_file(tmp_path) -> None:
    from policy_server.learner import LearnerConfig
    from robofume.cli import _learner_config, build_parser

    config = tmp_path / "config.json"
    config.write_text(json.dumps(dataclasses.asdict(LearnerConfig())))
    base = ["pretrain", "--data", "d", "--run", "r", "--config", str(config)]
    assert _learner_config(build_parser().parse_args(base)).network.image_size == 64
    args = build_parser().parse_args([*base, "--image-size", "96", "--batch-size", "32"])
    cfg = _learner_config(args)
    assert cfg.network.image_size == 96 and cfg.batch_size == 32


def test_learner_flags_override_the_run_config(tmp_path) -> None:
    from policy_server.learner import LearnerConfig, write_resolved_config
    from robofume.cli import _online_learner_config, build_parser

    write_resolved_config(tmp_path, LearnerConfig(recipe="calql"))
    base = ["learner", "--run", str(tmp_path)]
    cfg = _online_learner_config(build_parser().parse_args(base))
    assert cfg.recipe == "calql" and cfg.policy_average_tau == LearnerConfig().policy_average_tau > 0
    args = build_parser().parse_args([*base, "--recipe", "wsrl", "--policy-average-tau", "0"])
    cfg = _online_learner_config(args)
    assert cfg.recipe == "wsrl" and cfg.policy_average_tau == 0.0
    with pytest.raises(ValueError, match="policy_average_tau"):
        _online_learner_config(build_parser().parse_args([*base, "--policy-average-tau", "3"]))
    assert cfg.agent == LearnerConfig().agent and cfg.agent.actor_objective == "sac_bc"
    cfg = _online_learner_config(
        build_parser().parse_args([*base, "--actor-objective", "crr", "--crr-beta", "0.2"])
    )
    assert (cfg.agent.actor_objective, cfg.agent.crr_beta) == ("crr", 0.2)
    assert dataclasses.replace(cfg.agent, actor_objective="sac_bc", crr_beta=0.0) == LearnerConfig().agent
    with pytest.raises(ValueError, match="crr_beta"):
        _online_learner_config(build_parser().parse_args([*base, "--crr-beta", "-1"]))
    from policy_server.calql import ACTOR_OBJECTIVES

    choices = next(a.choices for a in build_parser()._subparsers._group_actions[0].choices["learner"]._actions
                   if a.dest == "actor_objective")  # fmt: skip
    assert tuple(choices) == ACTOR_OBJECTIVES


def test_data_generate_offers_every_recovery_region() -> None:
    from robofume.cli import build_parser
    from robofume.data.generate import RECOVERY_REGIONS

    generate = dict(_all_parsers(build_parser()))[("data", "generate")]
    choices = next(a.choices for a in generate._actions if a.dest == "recovery_region")
    assert tuple(choices) == RECOVERY_REGIONS


def test_console_script_is_installed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "robofume.cli", "data", "generate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "example: robofume data generate" in result.stdout


def test_unwritable_output_is_one_line_error(tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    code = main(["data", "generate", "--out", str(blocker / "x"), "--prior", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("robofume: error: cannot create output folder") and "\n" not in err
    assert blocker.read_text() == "keep me"


def test_bad_resolution_is_one_line_error(tmp_path, capsys) -> None:
    code = main(["data", "generate", "--out", str(tmp_path / "d"), "--image-size", "7"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "image_size must be" in err and "\n" not in err


def test_data_info_reports_corrupt_files_without_touching_them(tmp_path, capsys) -> None:
    bad = tmp_path / "demos" / "forward_000000.npz"
    bad.parent.mkdir()
    bad.write_bytes(b"garbage")
    code = main(["data", "info", str(tmp_path)])
    info = json.loads(capsys.readouterr().out)
    assert code == 1 and len(info["corrupt"]) == 1 and str(bad) in info["corrupt"][0]
    assert bad.read_bytes() == b"garbage"


def test_data_info_of_a_folder_without_episodes_fails_with_one_line(tmp_path, capsys) -> None:
    code = main(["data", "info", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1 and json.loads(captured.out)["episodes"] == 0
    assert captured.err.strip() == f"robofume: error: no episode files under {tmp_path}"


def test_bench_sim_prints_json(capsys) -> None:
    assert main(["bench", "sim", "--json", "--steps", "10", "--image-size", "64"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bench"] == "sim" and result["image_size"] == 64
    assert result["steps_per_s_no_camera"] > 0 and result["render_ms_per_frame_median"] > 0
    assert result["machine"]["cores"] >= 1


def test_demo_runs_both_tasks_and_writes_video_and_strip(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--cycles", "1", "--video-size", "64"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [e["task"] for e in summary["episodes"]] == ["forward", "backward"]
    assert all(e["success"] for e in summary["episodes"]) and summary["scene_resets"] == 0
    assert os.path.getsize(out / "demo.mp4") > 1000 and os.path.getsize(out / "strip.png") > 1000
    assert len(list_episodes(out / "data")) == 10


def test_pretrain_then_resume_from_a_dataset(tmp_path, capsys) -> None:
    from robofume.data.generate import GenerateConfig, generate_dataset

    data = tmp_path / "data"
    generate_dataset(
        GenerateConfig(
            out=str(data), demos_per_task=1, failures_per_task=0, prior=0, image_size=32, workers=1
        ),
        progress=False,
    )
    run = tmp_path / "run"
    args = [
        "pretrain",
        "--data",
        str(data),
        "--run",
        str(run),
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--image-size",
        "32",
        "--bc-steps",
        "3",
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["counters"]["pretrain_updates"] == 2 and out["counters"]["weight_version"] >= 1
    assert out["counters"]["bc_updates"] == 3
    assert (run / "config.json").exists() and list((run / "weights").glob("*.safetensors"))
    assert main([*args[:6], "3", *args[7:]]) == 0  # resumes: one more update, episodes not added twice
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["counters"]["pretrain_updates"] == 3


def test_pretrain_without_data_is_one_line_error(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["pretrain", "--data", str(tmp_path / "empty"), "--run", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no episode files" in err and "\n" not in err


def test_bench_policy_serves_each_batch_on_the_device_asked(capsys) -> None:
    assert main(["bench", "policy", "--device", "cpu", "--batch-sizes", "1", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["device"] == "cpu" and result["batch3_p50_ms"] > 0
    assert "batch4_p50_ms" not in result and result["batch1_p99_ms"] >= result["batch1_p50_ms"]
    assert result["policy_image_size"] == 64


def test_bench_policy_runs_a_network_of_the_image_size_asked(capsys) -> None:
    argv = ["bench", "policy", "--device", "cpu", "--batch-sizes", "1", "--policy-image-size", "96"]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["policy_image_size"] == 96 and result["image_size"] == 128
    assert main([*argv[:-1], "16", "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert "image_size must be between 32 and 256" in err and "\n" not in err


def test_bench_classifier_latency_only_times_the_backbones(tmp_path, capsys) -> None:
    argv = ["bench", "classifier", "--preset", "quick", "--latency-only", "--device", "cpu"]
    assert main([*argv, "--batch-sizes", "1", "2", "--out", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bench"] == "classifier-latency" and result["device"] == "cpu"
    assert [(r["device"], r["batch"]) for r in result["latency"]] == [("cpu", 1), ("cpu", 2)]
    assert all(r["frames_per_s"] > 0 for r in result["latency"])
    assert json.loads((tmp_path / "classifier_latency.json").read_text())["latency"] == result["latency"]


def test_bench_classifier_latency_only_times_a_given_backbone(tmp_path, capsys) -> None:
    from reward_vlm.backbones import build_tiny_backbone

    backbone = build_tiny_backbone("open_clip", tmp_path / "mine", image_size=32)
    argv = [
        "bench",
        "classifier",
        "--preset",
        "quick",
        "--latency-only",
        "--device",
        "cpu",
        "--batch-sizes",
        "1",
    ]
    assert main([*argv, "--backbone-path", backbone, "--out", str(tmp_path / "out"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["latency"]
    assert any(backbone in r["backbone"] and "error" not in r for r in rows), rows


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["learner", "policy"])
def test_bench_on_cuda_without_a_gpu_is_a_one_line_error(name: str, capsys) -> None:
    assert main(["bench", name, "--device", "cuda", "--json"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pretrain", "--data", "d", "--run", "r", "--steps", "-5"], "--steps must be >= 0"),
        (["pretrain", "--data", "d", "--run", "r", "--bc-steps", "-1"], "--bc-steps must be >= 0"),
        (["bench", "sim", "--steps", "0", "--json"], "--steps must be >= 1"),
        (["bench", "policy", "--batch-sizes", "1", "-2", "--json"], "--batch-sizes must all be >= 1"),
        (["demo", "--out", "unused", "--seed", "-1"], "seed must be >= 0"),
    ],
)
def test_negative_counts_and_seeds_are_one_line_errors(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not os.path.exists("unused") and not os.path.exists("r")


def test_bench_reward_node_that_fails_to_start_is_a_one_line_error(monkeypatch, capsys) -> None:
    from reward_vlm import node_bench

    def fail(_cfg: object) -> dict:
        raise node_bench.RewardBenchError("reward node exited (2); see /tmp/x/reward_node.log")

    monkeypatch.setattr(node_bench, "run_reward_node_bench", fail)
    assert main(["bench", "reward-node", "--seconds", "1", "--json"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "robofume: error: reward node exited (2); see /tmp/x/reward_node.log"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--namespace", "robot 1"], "bad namespace"),
        (["--limits-file", "MISSING"], "cannot read file"),
        (["--limits-file", "LIST"], "expected a mapping"),
        (["--home", "a,b,c"], "--home must be"),
    ],
)
def test_session_checks_robot_side_settings_before_the_long_preparation(
    tmp_path, capsys, extra: list[str], message: str
) -> None:
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    extra = [
        {"MISSING": str(tmp_path / "nope.yaml"), "LIST": str(tmp_path / "list.yaml")}.get(a, a) for a in extra
    ]
    out = tmp_path / "session"
    code = main(["session", "--out", str(out), "--prepare-only", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("robofume: error:") and message in err and "\n" not in err
    assert not out.exists()  # refused before any stage ran


def test_pretrain_refuses_a_bad_device_before_touching_the_run_folder(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    code = main(["pretrain", "--data", str(tmp_path), "--run", str(run), "--device", "tpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "device 'tpu'" in err and "\n" not in err
    assert not run.exists()
