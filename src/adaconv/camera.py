"""``adaconv camera``: a live camera (or a video file) stylised in a window with an FPS overlay.

Keys in the window: n / p next / previous style, q or Esc quits. ``--no-window -o OUT`` writes the frames to a
video file instead of showing them, so the loop runs (and is tested) headless and without a camera.
OpenCV does the capture, the window and the headless writing (the `camera` extra).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .errors import AdaconvError
from .preprocessing import resize
from .video import FrameStylizer

KEYS_NEXT, KEYS_PREVIOUS, KEYS_QUIT = (ord("n"),), (ord("p"),), (ord("q"), 27)


def _require_cv2():
    try:
        import cv2
    except ImportError:
        raise AdaconvError("the camera needs OpenCV: pip install 'adaconv[camera]'") from None
    return cv2


def open_source(cv2, source: str):
    """A camera index ("0") or a video file."""
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        what = f"camera {source}" if source.isdigit() else source
        raise AdaconvError(f"{what}: cannot open (no such camera or unreadable video)")
    return capture


def run_camera(stylizer, styles: list[str], *, source: str = "0", window: bool = True, output: str | None = None,
               size: int = 256, alpha: float = 1.0, stability: float = 0.0, max_frames: int | None = None) -> dict:
    cv2 = _require_cv2()
    if not window and output is None:
        raise AdaconvError("--no-window needs -o OUT (a video file for the stylised frames)")
    stylizers = [FrameStylizer(stylizer, style, alpha=alpha, stability=stability) for style in styles]
    capture = open_source(cv2, source)
    current, frames, started, writer = 0, 0, time.perf_counter(), None
    partial = None
    fps = 0.0
    try:
        while max_frames is None or frames < max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            tick = time.perf_counter()
            rgb = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1).float() / 255.0
            height, width = rgb.shape[-2:]
            factor = size / max(height, width)
            small = resize(rgb, max(8, round(height * factor)), max(8, round(width * factor)))
            result = stylizers[current](small[None])[0]
            image = np.ascontiguousarray((result.permute(1, 2, 0).numpy()[:, :, ::-1] * 255 + 0.5).astype(np.uint8))
            instant = 1 / max(time.perf_counter() - tick, 1e-6)
            fps = instant if frames == 0 else 0.9 * fps + 0.1 * instant
            cv2.putText(image, f"{fps:.1f} FPS  style {current + 1}/{len(styles)}", (6, 18),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
            frames += 1
            if output is not None:
                if writer is None:
                    target = Path(output)
                    partial = target.with_name(f".{target.stem}.partial{target.suffix}")
                    rate = capture.get(cv2.CAP_PROP_FPS) or 25.0
                    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), rate,
                                             (image.shape[1], image.shape[0]))
                writer.write(image)
            if window:
                cv2.imshow("adaconv camera (n/p: style, q: quit)", image)
                key = cv2.waitKey(1) & 0xFF
                if key in KEYS_QUIT:
                    break
                if key in KEYS_NEXT:
                    current = (current + 1) % len(styles)
                elif key in KEYS_PREVIOUS:
                    current = (current - 1) % len(styles)
    except BaseException:
        if writer is not None:
            writer.release()
            partial.unlink(missing_ok=True)
        raise
    finally:
        capture.release()
        if window:
            cv2.destroyAllWindows()
    if writer is not None:
        writer.release()
        os.replace(partial, output)
    seconds = time.perf_counter() - started
    if frames == 0:
        raise AdaconvError(f"{source}: no frames could be read")
    summary = {"frames": frames, "seconds": round(seconds, 2), "fps": round(frames / seconds, 3),
               "output": output, "styles": styles}
    print(f"adaconv camera: {frames} frames, {frames / seconds:.2f} FPS", file=sys.stderr)
    return summary
