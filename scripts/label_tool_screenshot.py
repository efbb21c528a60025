"""Screenshot of the labeling tool for the README (docs/img/labeling_tool.png).

Labels a few episodes of a dataset the way a user would (keys in headless Chromium), writing the
labels to a temporary file so the dataset is not changed, and saves a 1280x800 screenshot::

    python scripts/label_tool_screenshot.py --data data/mock --out docs/img/labeling_tool.png
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

from reward_vlm.label_server import LabelServer, LabelServerConfig
from robofume.data.episode_format import list_episodes, load_episode

CHROMIUM = "/usr/bin/chromium"


def _first_success(path: str) -> int:
    success = load_episode(path).success
    return int(np.argmax(success)) if success.any() else len(success)


def take_screenshot(data: str, out: str, chromium: str = CHROMIUM) -> str:
    """Label two demos (one per task) through the page's keys and save the screenshot to ``out``."""
    from playwright.sync_api import sync_playwright

    demos = [
        p for p in list_episodes(data, "demos") if os.path.basename(p).startswith(("forward", "backward"))
    ]
    forward = next(p for p in demos if os.path.basename(p).startswith("forward"))
    backward = next(p for p in demos if os.path.basename(p).startswith("backward"))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = LabelServerConfig(data=data, labels=os.path.join(tmp, "labels.json"), port=0)
        server = LabelServer(cfg).start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
                page.goto(server.url)
                page.wait_for_selector("body[data-ready='1']")
                for path in (backward, forward):
                    rel = os.path.relpath(path, data).replace(os.sep, "/")
                    first = _first_success(path)
                    page.locator(f"#episodes li[data-id='{rel}']").click()
                    for _ in range(first):
                        page.keyboard.press("ArrowRight")
                    page.keyboard.press("Shift+S")  # success from the first successful frame to the end
                    page.keyboard.press("ArrowLeft")
                    page.keyboard.press("Shift+F")  # failure before it
                    page.wait_for_function(
                        "n => document.querySelectorAll("
                        "'#filmstrip .thumb.success, #filmstrip .thumb.failure').length === n",
                        arg=page.locator("#filmstrip .thumb").count(),
                    )
                page.keyboard.press("End")  # the strip scrolls to the last frames: failures, then success
                page.wait_for_function(
                    "() => [...document.querySelectorAll('#filmstrip img')].slice(-24)"
                    ".every(i => i.complete && i.naturalWidth > 0)"
                )
                page.wait_for_timeout(300)
                os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
                page.screenshot(path=out)
                browser.close()
        finally:
            server.stop()
    return out


def main() -> int:
    """Command line: ``--data`` dataset folder, ``--out`` PNG path."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="dataset folder with demos/ (robofume data generate)")
    parser.add_argument("--out", default="docs/img/labeling_tool.png", help="PNG to write")
    parser.add_argument("--chromium", default=CHROMIUM, help=f"Chromium executable (default: {CHROMIUM})")
    args = parser.parse_args()
    print(take_screenshot(args.data, args.out, args.chromium))
    return 0


if __name__ == "__main__":
    sys.exit(main())
