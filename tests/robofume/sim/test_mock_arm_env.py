"""The mock arm env: gymnasium API, spaces, workspace clipping, seeding, reset-free episodes, bad input."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from robofume.sim import ACTION_NAMES, PROPRIO_NAMES, MockArmConfig, MockArmEnv, SceneVariant


@pytest.fixture(scope="module")
def state_env() -> MockArmEnv:
    env = MockArmEnv(MockArmConfig(image_size=0, max_episode_steps=20))
    yield env
    env.close()


def test_check_env_with_camera() -> None:
    env = MockArmEnv(MockArmConfig(image_size=64, max_episode_steps=10))
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=1)
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["image"].std() > 5, "camera frame should show a scene, not a blank image"
    assert obs["proprio"].shape == (len(PROPRIO_NAMES),)
    assert env.action_space.shape == (len(ACTION_NAMES),)
    assert info["task"] == "forward" and info["success"] is False
    env.close()


def test_check_env_without_camera(state_env: MockArmEnv) -> None:
    check_env(state_env, skip_render_check=True)
    obs, _ = state_env.reset(seed=0)
    assert "image" not in obs


def test_actions_stay_inside_workspace_box(state_env: MockArmEnv) -> None:
    cfg = state_env.config
    low, high = np.array(cfg.workspace_low), np.array(cfg.workspace_high)
    state_env.reset(seed=3)
    for direction in ([1, 1, 1], [-1, -1, -1], [1, -1, -1], [-1, 1, 1]):
        for _ in range(15):
            state_env.step(np.array([*direction, 0, -1], dtype=np.float32))
        ee = state_env.ee_pos()
        assert np.all(ee >= low - 0.02) and np.all(ee <= high + 0.02), ee


def test_end_effector_follows_delta_commands(state_env: MockArmEnv) -> None:
    state_env.reset(seed=4)
    start = state_env.ee_pos()
    for _ in range(3):
        state_env.step(np.array([0, 0, -1, 0, -1], dtype=np.float32))
    for _ in range(2):  # let the servos settle on the commanded pose
        state_env.step(np.zeros(5, dtype=np.float32))
    moved = start - state_env.ee_pos()
    assert moved[2] == pytest.approx(3 * state_env.config.pos_step, abs=0.01)
    assert np.abs(moved[:2]).max() < 0.01


def test_same_seed_same_episode_and_different_seed_differs() -> None:
    def rollout(seed: int) -> np.ndarray:
        env = MockArmEnv(MockArmConfig(image_size=32))
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        for _ in range(5):
            obs, *_ = env.step(rng.uniform(-1, 1, 5).astype(np.float32))
        out = np.concatenate([obs["image"].ravel().astype(float), obs["proprio"], env.object_pos()])
        env.close()
        return out

    assert np.array_equal(rollout(7), rollout(7))
    assert not np.array_equal(rollout(7), rollout(8))


def test_placements_are_randomized(state_env: MockArmEnv) -> None:
    targets = []
    for seed in range(5):
        state_env.reset(seed=seed)
        targets.append(state_env.target_pos()[:2])
    assert np.ptp(np.array(targets), axis=0).min() > 0.02


def test_layout_seed_fixes_the_workstation_and_the_seed_varies_the_object(state_env: MockArmEnv) -> None:
    scenes = []
    for seed in (11, 12, 13):
        state_env.reset(seed=seed, options={"layout_seed": 4})
        scenes.append((state_env.target_pos()[:2], state_env.start_pos()[:2], state_env.object_pos()[:2]))
    for target, start, _obj in scenes[1:]:
        np.testing.assert_allclose(target, scenes[0][0])
        np.testing.assert_allclose(start, scenes[0][1])
    objects = np.array([obj for _t, _s, obj in scenes])
    assert np.ptp(objects, axis=0).max() > 1e-3  # the object's placement still follows the episode seed
    state_env.reset(seed=11, options={"layout_seed": 5})
    assert np.linalg.norm(state_env.target_pos()[:2] - scenes[0][0]) > 1e-3
    with pytest.raises(ValueError, match="layout_seed must be a non-negative int"):
        state_env.reset(seed=0, options={"layout_seed": -1})
    with pytest.raises(ValueError, match="layout_seed must be a non-negative int"):
        state_env.reset(seed=0, options={"layout_seed": "0"})


def test_keep_scene_switches_task_without_moving_anything(state_env: MockArmEnv) -> None:
    state_env.reset(seed=5, options={"task": "forward"})
    for _ in range(3):
        state_env.step(np.array([0.5, 0, -0.5, 0, -1], dtype=np.float32))
    before = (state_env.object_pos(), state_env.ee_pos(), state_env.target_pos())
    obs, info = state_env.reset(options={"task": "backward", "keep_scene": True})
    after = (state_env.object_pos(), state_env.ee_pos(), state_env.target_pos())
    for b, a in zip(before, after, strict=True):
        np.testing.assert_allclose(a, b)
    assert info["task"] == "backward" and obs["task"] == 1


def test_home_arm_drives_the_arm_home_and_leaves_the_scene_alone(state_env: MockArmEnv) -> None:
    state_env.reset(seed=6, options={"task": "forward"})
    home = state_env.ee_pos()
    for _ in range(12):  # down and sideways, gripper closing
        state_env.step(np.array([0.6, -0.4, -1.0, 0.8, 1.0], dtype=np.float32))
    away, obj, target = state_env.ee_pos(), state_env.object_pos(), state_env.target_pos()
    assert np.linalg.norm(away - home) > 0.15
    _obs, info = state_env.reset(options={"task": "backward", "keep_scene": True, "home_arm": True})
    assert np.linalg.norm(state_env.ee_pos() - home) < 0.015 and abs(state_env.ee_yaw()) < 0.1
    assert state_env.gripper_closed() < 0.2  # opened
    np.testing.assert_allclose(state_env.target_pos(), target)  # the scene is not re-randomised
    np.testing.assert_allclose(state_env.object_pos()[:2], obj[:2], atol=0.02)  # the object was not carried
    assert info["task"] == "backward" and info["steps"] == 0
    assert state_env.move_home() == 0  # already home


def test_truncates_at_time_limit_without_terminating(state_env: MockArmEnv) -> None:
    state_env.reset(seed=6)
    for i in range(state_env.config.max_episode_steps):
        _, reward, terminated, truncated, _ = state_env.step(np.zeros(5, dtype=np.float32))
        assert not terminated and reward == 0.0
        assert truncated == (i == state_env.config.max_episode_steps - 1)


def test_ground_truth_checkers_follow_object(state_env: MockArmEnv) -> None:
    state_env.reset(seed=2, options={"task": "forward"})
    assert state_env.is_success("backward") and not state_env.is_success("forward")
    state_env.reset(seed=2, options={"task": "backward"})  # fresh scene, object placed in the bin
    assert state_env.is_success("forward") and not state_env.is_success("backward")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 10}, "image_size"),
        ({"image_size": 4096}, "image_size"),
        ({"control_hz": 0.0}, "control_hz"),
        ({"tray_height": 0.005}, "tray_height"),
        ({"tray_height": -0.035}, "tray_height"),
        ({"variant": "x"}, None),
    ],
)
def test_bad_config_is_rejected(kwargs: dict, message: str | None) -> None:
    if message is None:
        with pytest.raises(ValueError, match="object_shape"):
            SceneVariant(object_shape="banana")
        return
    with pytest.raises(ValueError, match=message):
        MockArmConfig(**kwargs)


def test_bad_task_and_action_are_rejected(state_env: MockArmEnv) -> None:
    with pytest.raises(ValueError, match="unknown task 'sideways'; expected one of: forward, backward"):
        state_env.reset(seed=0, options={"task": "sideways"})
    state_env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        state_env.step(np.array([np.nan, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="5 values"):
        state_env.step(np.zeros(3))
    with pytest.raises(ValueError, match="unknown reset option"):
        state_env.reset(options={"tsak": "forward"})


def test_step_before_reset_is_an_error() -> None:
    env = MockArmEnv(MockArmConfig(image_size=0))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(5))


def test_object_band_puts_fresh_objects_at_the_edge_and_keeps_default_seeds() -> None:
    from robofume.sim.mock_arm_env import EDGE_BAND, MockArmConfig, MockArmEnv

    env = MockArmEnv(MockArmConfig(image_size=0))
    try:
        env.reset(seed=5, options={"task": "forward", "layout_seed": 3})
        default_pos = env.object_pos().copy()
        assert np.abs(default_pos[:2] - env.start_pos()[:2]).max() <= env.config.start_spread + 0.001
        for seed in range(6):
            env.reset(seed=seed, options={"task": "forward", "layout_seed": 3, "object_band": EDGE_BAND})
            far = np.abs(env.object_pos()[:2] - env.start_pos()[:2]).max()
            assert EDGE_BAND[0] - 0.003 <= far <= EDGE_BAND[1] + 0.003
        # the default placement draws exactly as before: same seed, same scene
        env.reset(seed=5, options={"task": "forward", "layout_seed": 3})
        np.testing.assert_allclose(env.object_pos(), default_pos)
        for bad in ((0.05, 0.04), (0.0, 0.2), "far", (1,)):
            with pytest.raises(ValueError, match="object_band"):
                env.reset(seed=0, options={"object_band": bad})
    finally:
        env.close()


def test_fresh_scenes_follow_the_spreads_and_a_cube_near_the_bin_wall_settles_inside() -> None:
    """``start_spread`` / ``target_spread`` bound a fresh object's offset, and at the largest bin
    spread a (yawed) cube still settles inside the bin, a success."""
    from robofume.sim.mock_arm_env import MAX_TARGET_SPREAD, MockArmConfig, MockArmEnv

    cfg = MockArmConfig(image_size=0, start_spread=0.05, target_spread=MAX_TARGET_SPREAD)
    env = MockArmEnv(cfg)
    try:
        start_offsets, target_offsets = [], []
        for seed in range(16):
            env.reset(seed=seed, options={"task": "forward", "layout_seed": 3})
            start_offsets.append(np.abs(env.object_pos()[:2] - env.start_pos()[:2]).max())
            assert env.is_success("backward")
            env.reset(seed=seed, options={"task": "backward", "layout_seed": 3})
            target_offsets.append(np.abs(env.object_pos()[:2] - env.target_pos()[:2]).max())
            assert env.is_success("forward"), f"seed {seed}: a fresh cube in the bin is not a success"
        assert 0.035 < max(start_offsets) <= 0.052
        assert 0.028 < max(target_offsets) <= MAX_TARGET_SPREAD + 0.004
    finally:
        env.close()
    for bad in ({"start_spread": 0.07}, {"start_spread": -0.01}, {"target_spread": 0.06}):
        with pytest.raises(ValueError, match="spread"):
            MockArmConfig(image_size=0, **bad)


def test_a_script_that_never_closes_its_env_exits_without_egl_tracebacks() -> None:
    """The renderer is closed at exit before MuJoCo's EGL hook (scripts and pool workers printed
    EGL tracebacks from the final garbage collection)."""
    import subprocess
    import sys

    code = (
        "from robofume.sim import MockArmConfig, MockArmEnv\n"
        "env = MockArmEnv(MockArmConfig(image_size=32))\n"
        "env.reset(seed=0)\n"
        "print('rendered')\n"
    )
    cmd = [sys.executable, "-c", code]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "rendered" in done.stdout, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "EGLError" not in done.stderr, done.stderr[-2000:]


def test_object_in_between_puts_the_object_outside_the_square_and_the_bin() -> None:
    from robofume.sim.mock_arm_env import EDGE_BAND, MockArmConfig, MockArmEnv
    from robofume.sim.scene import BIN_INNER_HALF, START_REGION_HALF

    env = MockArmEnv(MockArmConfig(image_size=0))
    try:
        for seed in range(8):
            for task in ("forward", "backward"):
                env.reset(seed=seed, options={"task": task, "layout_seed": 3, "object_in": "between"})
                obj = env.object_pos()[:2]
                assert np.abs(obj - env.start_pos()[:2]).max() > START_REGION_HALF
                assert np.abs(obj - env.target_pos()[:2]).max() > BIN_INNER_HALF
                assert not env.is_success("forward") and not env.is_success("backward")
        with pytest.raises(ValueError, match="object_in"):
            env.reset(seed=0, options={"object_in": "nowhere"})
        with pytest.raises(ValueError, match="object_band applies"):
            env.reset(seed=0, options={"object_in": "between", "object_band": EDGE_BAND})
    finally:
        env.close()


def test_object_in_table_puts_the_object_within_reach_outside_the_square_and_the_bin() -> None:
    from robofume.sim.mock_arm_env import EDGE_BAND, TABLE_REACH_MARGIN, MockArmConfig, MockArmEnv
    from robofume.sim.scene import BIN_INNER_HALF, START_REGION_HALF

    cfg = MockArmConfig(image_size=0)
    low = np.array(cfg.workspace_low[:2]) + TABLE_REACH_MARGIN
    high = np.array(cfg.workspace_high[:2]) - TABLE_REACH_MARGIN
    env = MockArmEnv(cfg)
    try:
        spots = []
        for seed in range(20):
            env.reset(seed=seed, options={"task": "forward", "layout_seed": 3, "object_in": "table"})
            obj = env.object_pos()[:2]
            assert np.all(obj > low - 0.005) and np.all(obj < high + 0.005)  # settling moves it a little
            assert np.abs(obj - env.start_pos()[:2]).max() > START_REGION_HALF
            assert np.abs(obj - env.target_pos()[:2]).max() > BIN_INNER_HALF
            assert not env.is_success("forward") and not env.is_success("backward")
            spots.append(env.object_line_coords())
        # wider than the "between" strip: some spots lie more than 10 cm to a side of the line
        assert max(abs(across) for _along, across in spots) > 0.12
        with pytest.raises(ValueError, match=r"object_band applies .* not 'table'"):
            env.reset(seed=0, options={"object_in": "table", "object_band": EDGE_BAND})
    finally:
        env.close()


def test_object_place_names_where_the_object_lies() -> None:
    from robofume.sim.mock_arm_env import MockArmConfig, MockArmEnv

    env = MockArmEnv(MockArmConfig(image_size=0))
    try:
        places = {}
        for object_in in ("start", "target", "between"):
            env.reset(seed=1, options={"task": "forward", "layout_seed": 3, "object_in": object_in})
            places[object_in] = env.object_place()
        assert places == {"start": "square", "target": "bin", "between": "between"}
        # far behind the start square, away from the bin: beyond the region recovery demos start in
        q = env._obj_qadr
        start, target = env.start_pos()[:2], env.target_pos()[:2]
        env.data.qpos[q : q + 2] = start - 0.5 * (target - start)
        mujoco.mj_forward(env.model, env.data)
        assert env.object_place() == "beyond"
        along, across = env.object_line_coords()
        assert along == pytest.approx(-0.5, abs=0.01) and across == pytest.approx(0.0, abs=0.01)
        # off the side of the workspace: no gripper pose reaches it
        env.data.qpos[q : q + 2] = [env.config.workspace_low[0] - 0.05, start[1]]
        mujoco.mj_forward(env.model, env.data)
        assert env.object_place() == "out_of_reach"
    finally:
        env.close()


def _push_object(env: MockArmEnv, seed: int, direction: tuple[float, float]) -> None:
    """Fresh scene with the object on the table; the closed gripper, lowered behind it, pushes it
    along ``direction`` as far as the workspace lets it, then lifts away."""
    env.reset(seed=seed, options={"task": "backward", "object_in": "table"})
    push = np.asarray(direction, dtype=float)
    behind = env.object_pos()[:2] - 0.08 * push
    for _ in range(30):
        env.apply_target(np.array([*behind, 0.10]), 0.0, 1.0)
    for _ in range(20):
        env.apply_target(np.array([*behind, 0.02]), 0.0, 1.0)
    for _ in range(40):
        ee = env.ee_pos()
        env.apply_target(np.array([*(ee[:2] + 0.06 * push), 0.02]), 0.0, 1.0)
    for _ in range(20):
        env.apply_target(np.array([*env.ee_pos()[:2], 0.15]), 0.0, 0.0)


def test_the_tray_keeps_a_pushed_object_within_reach_and_the_expert_picks_it_off_the_wall() -> None:
    from robofume.sim.scripted_expert import ScriptedExpert

    open_table = MockArmEnv(MockArmConfig(image_size=0, tray_height=0.0))
    try:
        _push_object(open_table, seed=20, direction=(0.0, 1.0))
        assert open_table.object_place() == "out_of_reach"
        assert "tray_wall0" not in {open_table.model.geom(g).name for g in range(open_table.model.ngeom)}
    finally:
        open_table.close()
    env = MockArmEnv(MockArmConfig(image_size=0, max_episode_steps=150))
    try:
        assert env.config.tray_height > 0
        for seed, direction in ((20, (0.0, 1.0)), (10, (-1.0, 0.0))):
            _push_object(env, seed, direction)
            assert env.object_place() == "beyond", (seed, env.object_pos())
            xy = env.object_pos()[:2]
            assert np.all(xy >= np.asarray(env.config.workspace_low[:2]))
            assert np.all(xy <= np.asarray(env.config.workspace_high[:2]))
        # the object now lies against the wall at the arm's side; the expert picks it up from there
        env.reset(options={"task": "backward", "keep_scene": True, "home_arm": True})
        expert = ScriptedExpert(env, rng=np.random.default_rng(0))
        expert.reset()
        for _ in range(150):
            _, _, terminated, truncated, info = env.step(expert.act())
            if terminated or truncated:
                break
        assert info["success"], env.object_pos()
    finally:
        env.close()
