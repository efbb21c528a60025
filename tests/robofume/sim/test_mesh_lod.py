"""Simplified visual meshes: fewer triangles for the camera, the same physics, the same picture."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from robofume.sim.mesh_lod import SIMPLIFIED_SUFFIX, simplify_mesh
from robofume.sim.mock_arm_env import MockArmConfig, MockArmEnv
from robofume.sim.scene import PANDA_HOME_QPOS, SceneVariant, build_model


def _visible_faces(model: mujoco.MjModel) -> int:
    return sum(
        int(model.mesh_facenum[model.geom_dataid[g]])
        for g in range(model.ngeom)
        if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH and model.geom_group[g] < 3
    )


@pytest.fixture(scope="module")
def models() -> tuple[mujoco.MjModel, mujoco.MjModel]:
    return build_model(SceneVariant(), 128, 0), build_model(SceneVariant(), 128, 2000)


def test_visual_meshes_shrink_and_collision_meshes_do_not(models) -> None:
    full, lod = models
    assert _visible_faces(lod) < _visible_faces(full) / 2
    assert full.ngeom == lod.ngeom
    for g in range(full.ngeom):
        if full.geom_type[g] != mujoco.mjtGeom.mjGEOM_MESH:
            continue
        name = mujoco.mj_id2name(lod, mujoco.mjtObj.mjOBJ_MESH, lod.geom_dataid[g])
        if full.geom_contype[g] or full.geom_conaffinity[g]:  # collides: the original mesh
            assert not name.endswith(SIMPLIFIED_SUFFIX)
            assert lod.mesh_facenum[lod.geom_dataid[g]] == full.mesh_facenum[full.geom_dataid[g]]
        else:
            assert lod.mesh_facenum[lod.geom_dataid[g]] <= max(2000, full.mesh_facenum[full.geom_dataid[g]])


def test_physics_are_identical(models) -> None:
    full, lod = models
    np.testing.assert_array_equal(full.body_mass, lod.body_mass)
    np.testing.assert_array_equal(full.body_inertia, lod.body_inertia)
    runs = []
    for model in (full, lod):
        data = mujoco.MjData(model)
        data.qpos[:7] = PANDA_HOME_QPOS
        data.ctrl[:7] = PANDA_HOME_QPOS + np.array([0.3, 0.2, -0.1, 0.2, 0.1, -0.2, 0.4])
        mujoco.mj_step(model, data, nstep=300)
        runs.append(data.qpos.copy())
    np.testing.assert_array_equal(runs[0], runs[1])


def test_camera_sees_the_same_scene() -> None:
    frames = []
    for faces in (0, 2000):
        env = MockArmEnv(MockArmConfig(image_size=96, visual_max_faces=faces))
        try:
            env.reset(seed=3, options={"task": "forward"})
            # lower the gripper into view so that the simplified links cover many pixels
            pos, yaw, grip = env.commanded_target()
            env.apply_target([pos[0], pos[1], 0.12], yaw, grip)
            frames.append(env.camera_frame().astype(np.int16))
        finally:
            env.close()
    diff = np.abs(frames[0] - frames[1])
    assert diff.mean() < 2.0
    assert (diff.max(axis=-1) > 40).mean() < 0.02


def test_simplify_mesh_respects_the_budget_and_keeps_small_meshes() -> None:
    spec = mujoco.MjSpec()
    spec.add_mesh(name="ball").make_sphere(subdivision=4)
    model = spec.compile()
    verts = model.mesh_vert[: model.mesh_vertnum[0]].astype(np.float64)
    faces = model.mesh_face[: model.mesh_facenum[0]].astype(np.int64)
    assert len(faces) > 2000
    small_v, small_f = simplify_mesh(verts, faces, 500)
    assert len(small_f) <= 500 and small_f.max() < len(small_v)
    # still the unit sphere: every vertex stays near radius 1
    np.testing.assert_allclose(np.linalg.norm(small_v, axis=1), 1.0, atol=0.05)
    same_v, same_f = simplify_mesh(verts, faces, len(faces))
    assert same_f is faces and same_v is verts


def test_bad_budget_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="visual_max_faces"):
        MockArmConfig(visual_max_faces=10)
    with pytest.raises(ValueError, match="at least 50"):
        build_model(SceneVariant(), 64, 10)
