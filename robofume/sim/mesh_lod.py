"""Cheaper visual meshes for the mock camera: quadric simplification of the arm's render meshes.

The Panda + 2F-85 visual meshes have about 198k triangles, and software rendering (Mesa's llvmpipe,
``MUJOCO_GL=egl`` without a GPU) spends its time on geometry, not pixels: a 128 px frame costs
about as much as a 64 px one. Simplifying every render-only mesh to at most ``max_faces``
(2,000) triangles makes a frame about 2.4x cheaper at a mean pixel difference under one grey level
(``robofume bench sim``; figures in docs/benchmarks.md, "Mock arm").

Only what the camera sees changes. Collision geoms keep their original meshes (MuJoCo collides
with their convex hulls), and bodies that take their inertia from their geoms keep the inertia the
original meshes gave them, so the physics are bit-identical. A mesh that a collision geom shares
with a visual geom is copied: the visual geom gets the simplified copy.
"""

from __future__ import annotations

import mujoco
import numpy as np

VISUAL_MESH_MAX_FACES = 2000
"""Default triangle budget per visual mesh of the mock scene (0 keeps the original meshes)."""

SIMPLIFIED_SUFFIX = "_lod"


def is_visual_only(geom: mujoco.MjsGeom) -> bool:
    """True for a geom that is rendered but never collides."""
    return int(geom.contype) == 0 and int(geom.conaffinity) == 0


def _asset_frame_mesh(model: mujoco.MjModel, mesh_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Welded vertices (in the asset's frame, scale applied) and faces of a compiled mesh.

    MuJoCo moves a mesh to its inertial frame when compiling (``mesh_pos``, ``mesh_quat``) and
    splits vertices by normal; undoing both gives a connected mesh that the geom's own pose places
    exactly where the original was."""
    v0, nv = int(model.mesh_vertadr[mesh_id]), int(model.mesh_vertnum[mesh_id])
    f0, nf = int(model.mesh_faceadr[mesh_id]), int(model.mesh_facenum[mesh_id])
    verts = model.mesh_vert[v0 : v0 + nv].astype(np.float64)
    faces = model.mesh_face[f0 : f0 + nf].astype(np.int64)
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, model.mesh_quat[mesh_id])
    asset = verts @ rot.reshape(3, 3).T + model.mesh_pos[mesh_id]
    welded, inverse = np.unique(np.round(asset, 7), axis=0, return_inverse=True)
    faces = inverse.reshape(-1)[faces]
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    return welded, faces[keep]


def simplify_mesh(verts: np.ndarray, faces: np.ndarray, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric-error simplification of a triangle mesh to at most about ``max_faces`` faces."""
    import fast_simplification

    if len(faces) <= max_faces:
        return verts, faces
    points, triangles = fast_simplification.simplify(verts, faces, target_count=max_faces)
    return np.asarray(points, np.float64), np.asarray(triangles, np.int64)


Inertial = tuple[float, np.ndarray, np.ndarray, np.ndarray]
"""A body's mass, inertial-frame position, orientation and principal inertia."""

_CACHE: dict[
    tuple[str, tuple[str, ...], int],
    tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, Inertial]],
] = {}


def _simplified_meshes(
    model: mujoco.MjModel, names: tuple[str, ...], max_faces: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Simplified (vertices, faces) of each named mesh over ``max_faces`` triangles."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in names:
        mesh_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_MESH, name)
        if mesh_id < 0 or int(model.mesh_facenum[mesh_id]) <= max_faces:
            continue
        out[name] = simplify_mesh(*_asset_frame_mesh(model, mesh_id), max_faces)
    return out


def _inertials(model: mujoco.MjModel, bodies: set[str]) -> dict[str, Inertial]:
    """The compiled inertial of each named body."""
    out: dict[str, Inertial] = {}
    for name in bodies:
        b = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
        out[name] = (
            float(model.body_mass[b]),
            model.body_ipos[b].copy(),
            model.body_iquat[b].copy(),
            model.body_inertia[b].copy(),
        )
    return out


def simplify_visual_meshes(spec: mujoco.MjSpec, max_faces: int, cache_key: str) -> int:
    """Point every visual-only mesh geom of ``spec`` at a copy of its mesh simplified to at most
    ``max_faces`` triangles; returns how many meshes were replaced.

    Bodies whose visual geoms change keep the inertial the original meshes gave them (some of the
    gripper's bodies take their mass from all their geoms), so the physics are bit-identical.
    ``cache_key`` names the asset (its path): the simplification runs once per process and key.
    Must be called on a spec that has not been compiled yet."""
    if max_faces <= 0:
        return 0
    if max_faces < 50:
        raise ValueError(f"visual mesh budget must be 0 (off) or at least 50 faces, got {max_faces}")
    visual = [g for g in spec.geoms if g.type == mujoco.mjtGeom.mjGEOM_MESH and is_visual_only(g)]
    names = tuple(sorted({g.meshname for g in visual if g.meshname}))
    key = (cache_key, names, max_faces)
    if key not in _CACHE:  # scenes are built many times per process; simplify once
        reference = spec.copy().compile()
        meshes = _simplified_meshes(reference, names, max_faces)
        bodies = {g.parent.name for g in visual if g.meshname in meshes}
        _CACHE[key] = (meshes, _inertials(reference, bodies))
    simplified, inertials = _CACHE[key]
    for name, (verts, faces) in simplified.items():
        lod = spec.add_mesh()
        lod.name = name + SIMPLIFIED_SUFFIX
        lod.scale = [1.0, 1.0, 1.0]  # the vertices already carry the asset's scale
        lod.uservert = verts.astype(np.float32).ravel().tolist()
        lod.userface = faces.astype(np.int32).ravel().tolist()
    for geom in visual:
        if geom.meshname in simplified:
            geom.meshname = geom.meshname + SIMPLIFIED_SUFFIX
    for name, (mass, ipos, iquat, inertia) in inertials.items():
        body = spec.body(name)
        if body.explicitinertial:  # an <inertial> in the model: the geoms never counted
            continue
        body.explicitinertial = True
        body.mass, body.ipos, body.iquat, body.inertia = mass, ipos, iquat, inertia
    return len(simplified)
