"""End to end in headless Chromium (Debian's, driven by Playwright): list, filmstrip, labels by mouse and
keys, counts, undo, a screenshot check, training progress and results, persistence across a restart."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import pytest

from reward_vlm.label_server import LabelServer, LabelServerConfig
from reward_vlm.labels import FrameLabel, load_labels

CHROMIUM = "/usr/bin/chromium"
FWD = "demos/forward_000000.npz"
SUCCESS_RGB = (34, 197, 94)  # --ok in style.css
FAILURE_RGB = (239, 68, 68)  # --bad in style.css

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} is missing (apt-get install chromium) for the browser test",
)


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _thumb(page: Any, frame: int) -> Any:
    return page.locator(f"#filmstrip .thumb[data-frame='{frame}']")


def _count(page: Any, task: str, kind: str) -> Any:
    return page.locator(f"#count-{task}-{kind}")


def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)


def _wait_images(page: Any) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('#filmstrip img')].every(i => i.complete && i.naturalWidth > 0)",
        timeout=15_000,
    )


def _near(pixel: np.ndarray, rgb: tuple[int, int, int], tol: int = 12) -> bool:
    return bool(np.all(np.abs(pixel[:3].astype(int) - np.array(rgb)) <= tol))


def test_label_tool_in_chromium(
    browser: Any, label_data: tuple[Path, dict[str, int]], fake_trainer: Any, fake_metrics: dict
) -> None:
    from playwright.sync_api import expect

    root, frames = label_data
    cfg = LabelServerConfig(data=str(root), port=0)
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    expect.set_options(timeout=10_000)

    release = threading.Event()

    def gated_trainer(progress: Any) -> dict:
        """Holds at epoch 1 until the page has shown it, so the progress check does not race."""
        progress({"phase": "train", "epoch": 1, "epochs": 2, "loss": 0.7})
        release.wait(20)
        return fake_trainer(epochs=2, delay=0.01)(progress)

    server = LabelServer(cfg, trainer=gated_trainer).start()
    try:
        _open(page, server.url)
        # the list shows every episode; the damaged ones are marked and not opened
        expect(page.locator("#episodes li")).to_have_count(len(frames) + 2)
        expect(page.locator("#episodes li.damaged")).to_have_count(2)
        expect(page.locator("#sidebar-foot")).to_contain_text("2 damaged")
        page.locator("#episodes li.damaged").first.click()
        expect(page.locator("#toast")).to_contain_text("corrupt")

        # mouse: open the forward demo, click frames and buttons
        page.locator(f"#episodes li[data-id='{FWD}']").click()
        expect(page.locator("#filmstrip .thumb")).to_have_count(frames[FWD])
        expect(page.locator("#task-forward")).to_contain_class("active")
        _wait_images(page)
        _thumb(page, 2).click()
        page.click("#btn-failure")
        expect(_thumb(page, 2)).to_contain_class("failure current")
        _thumb(page, 7).click()
        page.click("#btn-success")
        expect(_thumb(page, 7)).to_contain_class("success current")
        expect(_count(page, "forward", "success")).to_have_text("1")
        expect(_count(page, "forward", "failure")).to_have_text("1")

        # keys: left, s; t switches to the other task, f labels it; u and ctrl+z undo
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("s")
        expect(_thumb(page, 6)).to_contain_class("success current")
        expect(_count(page, "forward", "success")).to_have_text("2")
        page.keyboard.press("t")
        expect(page.locator("#task-backward")).to_contain_class("active")
        expect(_thumb(page, 7)).not_to_contain_class("success")  # forward labels are not backward ones
        page.keyboard.press("f")
        expect(_thumb(page, 6)).to_contain_class("failure current")
        expect(_count(page, "backward", "failure")).to_have_text("1")
        page.keyboard.press("u")
        expect(_count(page, "backward", "failure")).to_have_text("0")
        page.keyboard.press("t")
        expect(_thumb(page, 6)).to_contain_class("success current")
        page.keyboard.press("Control+z")
        expect(_thumb(page, 6)).not_to_contain_class("success")
        expect(_count(page, "forward", "success")).to_have_text("1")
        # a range: Home, right, shift+F = failure for frames 0..1 (one undo step), then undone
        page.keyboard.press("Home")
        page.keyboard.press("ArrowRight")
        page.keyboard.press("Shift+F")
        expect(_count(page, "forward", "failure")).to_have_text("3")
        page.keyboard.press("u")
        expect(_count(page, "forward", "failure")).to_have_text("1")
        expect(page.locator("#frame-info")).to_have_text(f"frame 1 / {frames[FWD] - 1}")
        assert set(load_labels(root / "labels.json")) == {
            FrameLabel(FWD, 2, "forward", False),
            FrameLabel(FWD, 7, "forward", True),
        }

        # screenshot: right size, not blank, label colours on the thumbnails' borders
        shot = iio.imread(io.BytesIO(page.screenshot()))
        assert shot.shape[:2] == (800, 1280)
        assert shot[..., :3].std() > 20, "the page rendered something"
        for frame, rgb in ((7, SUCCESS_RGB), (2, FAILURE_RGB)):
            box = _thumb(page, frame).bounding_box()
            assert box is not None
            x0, y0, w, h = (round(v) for v in (box["x"], box["y"], box["width"], box["height"]))
            for x, y in ((x0 + 1, y0 + h // 2), (x0 + w - 2, y0 + h // 2), (x0 + w // 2, y0 + 1)):
                assert _near(shot[y, x], rgb), f"frame {frame} border at {(x, y)} is {shot[y, x]}, want {rgb}"
            inside = shot[y0 + h // 2, x0 + w // 2]
            assert not _near(inside, rgb, tol=30), "the frame itself is shown inside the border"
        blank = _thumb(page, 4).bounding_box()
        assert blank is not None
        assert not _near(shot[round(blank["y"]) + 40, round(blank["x"]) + 1], SUCCESS_RGB)

        # training: progress, then precision/recall per task
        page.click("#train")
        expect(page.locator("#train-state")).to_contain_text("epoch 1/2")
        expect(page.locator("#train")).to_be_disabled()
        release.set()
        row = page.locator("#results-table tr[data-task='forward']")
        expect(row.locator("td[data-metric='precision']")).to_have_text(
            f"{fake_metrics['forward']['precision']:.3f}"
        )
        expect(row.locator("td[data-metric='recall']")).to_have_text(
            f"{fake_metrics['forward']['recall']:.3f}"
        )
        back = page.locator("#results-table tr[data-task='backward'] td[data-metric='recall']")
        expect(back).to_have_text(f"{fake_metrics['backward']['recall']:.3f}")
        expect(page.locator("#train-state")).to_contain_text("trained in")
        expect(page.locator("#train")).to_be_enabled()
    finally:
        server.stop()

    # a new server on the same files shows the same labels
    server = LabelServer(cfg).start()
    try:
        _open(page, server.url)
        page.locator(f"#episodes li[data-id='{FWD}']").click()
        expect(_thumb(page, 2)).to_contain_class("failure")
        expect(_thumb(page, 7)).to_contain_class("success")
        expect(_count(page, "forward", "success")).to_have_text("1")
        expect(_count(page, "forward", "failure")).to_have_text("1")
        expect(page.locator(f"#episodes li[data-id='{FWD}'] .badge")).to_contain_text("2 lab")
        expect(page.locator("#train")).to_be_disabled()  # this server has no trainer
    finally:
        server.stop()
    assert not errors, errors
