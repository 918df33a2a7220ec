"""Video and camera on a real clip: frames, size, rate and audio kept; smoothing measured; headless camera."""

import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest
import torch

from adaconv import Stylizer
from adaconv.cli import main
from adaconv.modulation import mean_std
from adaconv.video import MotionAwareBlend, TemporalStatistics, flicker

FRAMES = 12


@pytest.fixture(scope="module")
def clip(tmp_path_factory, data_dir):
    """The first 12 frames of the gallery clip at 160x90, with its audio (a real H.264 + AAC file)."""
    source = av.open(str(data_dir / "gallery" / "videos" / "cutBunny.mp4"))
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=24)
    video.width, video.height, video.pix_fmt = 160, 90, "yuv420p"
    audio = out.add_stream("aac", rate=44100)
    frames = 0
    for frame in source.decode(video=0):
        for packet in video.encode(frame.reformat(width=160, height=90, format="yuv420p")):
            out.mux(packet)
        frames += 1
        if frames == FRAMES:
            break
    source.seek(0)
    for frame in source.decode(audio=0):
        if frame.time is not None and frame.time > FRAMES / 24:
            break
        frame.pts = None
        for packet in audio.encode(frame):
            out.mux(packet)
    for stream in (video, audio):
        for packet in stream.encode(None):
            out.mux(packet)
    out.close()
    source.close()
    return path


def test_video_end_to_end_keeps_frames_size_rate_and_audio(tmp_path, clip, style_path, adain_weights, capsys):
    out = tmp_path / "styled.mp4"
    assert main(["video", str(clip), "-o", str(out), "--style", str(style_path), "--weights", str(adain_weights),
                 "--batch", "5", "--flicker", "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == FRAMES and summary["audio"] and summary["flicker"] > 0
    with av.open(str(out)) as result:
        stream = result.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (160, 90)
        assert stream.average_rate == 24
        assert len(result.streams.audio) == 1
        assert sum(1 for _ in result.decode(video=0)) == FRAMES
    assert not list(tmp_path.glob(".*partial*"))


def test_bad_video_is_one_line(tmp_path, style_path, capsys):
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    assert main(["video", str(fake), "-o", str(tmp_path / "o.mp4"), "--style", str(style_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "cannot read video" in error and "\n" not in error
    assert main(["video", str(fake), "-o", str(tmp_path / "o.xyz"), "--style", str(style_path)]) == 2
    assert not (tmp_path / "o.mp4").exists()


def test_temporal_statistics_average_over_frames():
    features = torch.rand(3, 4, 8, 8) + torch.arange(3.0).view(3, 1, 1, 1)
    smoothed_mean, _ = TemporalStatistics(0.5)(0, features)
    mean, _ = mean_std(features)
    assert torch.allclose(smoothed_mean[0], mean[0])
    assert torch.allclose(smoothed_mean[1], 0.5 * mean[0] + 0.5 * mean[1])
    assert torch.allclose(smoothed_mean[2], 0.5 * smoothed_mean[1] + 0.5 * mean[2])
    still = TemporalStatistics(0.0)(0, features)[0]
    assert torch.equal(still, mean)


def test_motion_aware_blend_smooths_static_and_follows_motion():
    inputs = torch.zeros(2, 3, 4, 4)
    inputs[1, :, :, 2:] = 1.0  # the right half moves, the left half is still
    outputs = torch.stack([torch.zeros(3, 4, 4), torch.ones(3, 4, 4)])
    blended = MotionAwareBlend(0.8)(inputs, outputs)
    assert torch.allclose(blended[1, :, :, :2], torch.full((3, 4, 2), 0.2))  # static: mostly the previous
    assert (blended[1, :, :, 2:] > 0.99).all()  # moving: the new frame


def test_stability_reduces_flicker_on_the_real_clip(clip, data_dir):
    from adaconv.video import FrameStylizer, _frames_to_tensor

    with av.open(str(clip)) as container:
        frames = _frames_to_tensor(list(container.decode(video=0)))
    stylizer = Stylizer.from_pretrained("adain", device="cpu")
    painting = data_dir / "bench" / "style" / "05.png"
    values = []
    for stability in (0.0, 0.8):
        run = FrameStylizer(stylizer, painting, stability=stability)
        outputs = torch.cat([run(frames[i:i + 4]) for i in range(0, len(frames), 4)])
        values.append(flicker(list(outputs.numpy()), list(frames.numpy())))
    assert values[1] < 0.8 * values[0]


def test_frames_in_bf16_match_fp32_within_rounding(clip, style_path):
    """--precision bf16 reaches the video path (which calls the model itself), with stability on and α < 1."""
    from adaconv.video import FrameStylizer, _frames_to_tensor

    with av.open(str(clip)) as container:
        frames = _frames_to_tensor(list(container.decode(video=0))[:4])
    outputs = []
    for precision in ("fp32", "bf16"):
        stylizer = Stylizer.from_pretrained("adain", device="cpu", precision=precision)
        outputs.append(FrameStylizer(stylizer, style_path, alpha=0.8, stability=0.5)(frames))
    difference = (outputs[0] - outputs[1]).abs()
    assert outputs[1].dtype == torch.float32 and outputs[1].shape == frames.shape
    assert 0 < difference.mean() < 0.01


def test_flicker_of_a_copy_is_one_and_of_noise_is_larger():
    rng = np.random.default_rng(0)
    frames = [rng.random((8, 8)) * 0.1 + i * 0.05 for i in range(5)]
    assert flicker(frames, frames) == pytest.approx(1.0)
    noisy = [f + rng.random((8, 8)) for f in frames]
    assert flicker(noisy, frames) > 2


def test_camera_headless_from_a_file(tmp_path, clip, style_path, adain_weights):
    out = tmp_path / "camera.mp4"
    result = subprocess.run([sys.executable, "-m", "adaconv", "camera", "--source", str(clip), "--no-window",
                             "-o", str(out), "--style", str(style_path), str(style_path), "--size", "96",
                             "--max-frames", "6", "--weights", str(adain_weights)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "6 frames" in result.stderr
    with av.open(str(out)) as written:
        assert sum(1 for _ in written.decode(video=0)) == 6
        assert written.streams.video[0].codec_context.width == 96


def test_video_through_onnxruntime(tmp_path, clip, style_path, adain_weights):
    out = tmp_path / "onnx.mp4"
    env_cache = tmp_path / "cache"
    result = subprocess.run([sys.executable, "-m", "adaconv", "video", str(clip), "-o", str(out), "--style",
                             str(style_path), "--weights", str(adain_weights), "--backend", "onnxruntime",
                             "--stability", "0.5", "--content-size", "96"],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "XDG_CACHE_HOME": str(env_cache)})
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as written:
        assert sum(1 for _ in written.decode(video=0)) == FRAMES
    assert list(env_cache.glob("adaconv/onnx/adain-*/adaconv-onnx.json"))
