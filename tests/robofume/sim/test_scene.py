from __future__ import annotations

import numpy as np
import pytest

from robofume.sim.scene import TRAY_CLEARANCE, SceneVariant, Tray, build_model


def test_tray_walls_stand_just_outside_the_reach_box() -> None:
    tray = Tray((0.3, -0.3), (0.7, 0.3), height=0.04)
    low, high = tray.inner_bounds()
    np.testing.assert_allclose(low, [0.3 - TRAY_CLEARANCE, -0.3 - TRAY_CLEARANCE])
    np.testing.assert_allclose(high, [0.7 + TRAY_CLEARANCE, 0.3 + TRAY_CLEARANCE])
    model = build_model(SceneVariant(), 64, tray=tray)
    walls = [model.geom(f"tray_wall{k}") for k in range(4)]
    for wall in walls:
        assert wall.pos[2] - wall.size[2] == pytest.approx(0.0)  # standing on the table top
        assert 2 * wall.size[2] == pytest.approx(0.04)
    inner_faces = sorted(
        [float(w.pos[0] + w.size[0]) for w in walls if w.pos[0] < low[0]]
        + [float(w.pos[0] - w.size[0]) for w in walls if w.pos[0] > high[0]]
    )
    np.testing.assert_allclose(inner_faces, [low[0], high[0]])
    open_table = build_model(SceneVariant(), 64)
    assert "tray_wall0" not in {open_table.geom(g).name for g in range(open_table.ngeom)}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"height": 0.0}, "tray height"),
        ({"height": 0.5}, "tray height"),
        ({"reach_high": (0.1, 0.3)}, "empty"),
    ],
)
def test_bad_tray_is_rejected(kwargs: dict, message: str) -> None:
    args = {"reach_low": (0.3, -0.3), "reach_high": (0.7, 0.3), **kwargs}
    with pytest.raises(ValueError, match=message):
        Tray(**args)
