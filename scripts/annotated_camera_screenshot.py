"""Picture of the visualizer's ``camera/annotated`` image for the README (docs/img/annotated_camera.png).

Runs the MuJoCo mock arm with the scripted expert part-way through a forward attempt, and draws the
frame as the visualizer node would, twice: while the task runs, and when the controller asks for help::

    python scripts/annotated_camera_screenshot.py --out docs/img/annotated_camera.png
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from PIL import Image

from reset_free.visualization import SessionMonitor, render_overlay
from robofume.sim.mock_arm_env import MockArmConfig, MockArmEnv
from robofume.sim.scripted_expert import ScriptedExpert

STATUS = {
    "task": "forward",
    "episode": "23",
    "episode_step": "31",
    "episodes": '{"backward": 11, "forward": 12}',
    "successes": '{"backward": 7, "forward": 9}',
}


def annotated_frames(size: int = 384, steps: int = 31, seed: int = 3) -> list[np.ndarray]:
    """Two annotated frames of the same camera image: running forward, and help needed."""
    env = MockArmEnv(MockArmConfig(image_size=128, terminate_on_success=False))
    try:
        env.reset(seed=seed, options={"task": "forward"})
        expert = ScriptedExpert(env, rng=np.random.default_rng(seed))
        for _ in range(steps):
            env.step(expert.act())
        frame = env.camera_frame(128)
    finally:
        env.close()
    running = SessionMonitor()
    running.on_status({**STATUS, "phase": "forward", "reason": ""}, now=0.0)
    running.on_verdict("success", 0.91, True, "", now=0.0)
    held = SessionMonitor()
    reason = "5 failed attempts in a row in both directions"
    held.on_status({**STATUS, "phase": "help_needed", "reason": reason}, now=0.0)
    held.on_verdict("failure", 0.12, False, "", now=0.0)
    return [render_overlay(frame, m.snapshot(now=0.5), size) for m in (running, held)]


def main(argv: list[str] | None = None) -> int:
    """Write the two annotated frames side by side as one PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img/annotated_camera.png", help="PNG file to write")
    parser.add_argument("--size", type=int, default=384, help="height of each annotated frame in px")
    args = parser.parse_args(argv)
    frames = annotated_frames(args.size)
    gap = np.full((args.size, 8, 3), 255, np.uint8)
    strip = np.concatenate([frames[0], gap, frames[1]], axis=1)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    Image.fromarray(strip).save(tmp, format="PNG", optimize=True)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({strip.shape[1]}x{strip.shape[0]})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
