"""Stylising video: frames decoded and encoded with PyAV, the style encoded once, optional temporal smoothing.

Per-frame statistics make a stylised video flicker: each frame's content features are normalised by their own
channel mean and σ (AdaIN's relu4_1, every adaptive layer of AdaConv), which jump with small changes of the
picture. ``TemporalStatistics`` replaces them by an exponential moving average over frames, so the colour and
contrast of the style drift smoothly instead. ``flicker`` measures the effect: mean |Δ output| between consecutive
frames relative to mean |Δ input| (1 ≈ the output changes as much as the input; higher = added flicker).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from .errors import AdaconvError
from .modulation import mean_std
from .preprocessing import pad_to_multiple, resize

VIDEO_CODECS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9", ".avi": "mpeg4"}


def _require_av():
    try:
        import av
    except ImportError:
        raise AdaconvError("video needs PyAV: pip install 'adaconv[video]'") from None
    return av


class TemporalStatistics:
    """Content statistics smoothed over frames: s_t = k·s_{t−1} + (1 − k)·s(frame t), per layer."""

    def __init__(self, momentum: float):
        if not 0.0 <= momentum < 1.0:
            raise AdaconvError(f"stability must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.state: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, layer: int, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = mean_std(features)
        if self.momentum == 0.0:
            return mean, std
        smoothed_means, smoothed_stds = [], []
        previous = self.state.get(layer)
        for frame in range(features.shape[0]):  # frames of a batch are consecutive: a short recurrence
            current = (mean[frame:frame + 1], std[frame:frame + 1])
            if previous is not None:
                k = self.momentum
                current = (k * previous[0] + (1 - k) * current[0], k * previous[1] + (1 - k) * current[1])
            smoothed_means.append(current[0])
            smoothed_stds.append(current[1])
            previous = current
        self.state[layer] = previous
        return torch.cat(smoothed_means), torch.cat(smoothed_stds)


class MotionAwareBlend:
    """Blends each stylised frame with the previous blended output where the *input* did not change:
    out'_t = g·k·out'_{t−1} + (1 − g·k)·out_t with g = exp(−|in_t − in_{t−1}| / τ) per pixel. Static regions
    stop shimmering; moving ones follow the new frame, so there is no ghosting trail."""

    def __init__(self, strength: float, tau: float = 0.04):
        self.strength, self.tau = strength, tau
        self.previous: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        blended = []
        for frame_in, frame_out in zip(inputs, outputs):
            if self.previous is not None:
                change = (frame_in - self.previous[0]).abs().mean(0, keepdim=True)
                weight = self.strength * torch.exp(-change / self.tau)
                frame_out = weight * self.previous[1] + (1 - weight) * frame_out
            self.previous = (frame_in, frame_out)
            blended.append(frame_out)
        return torch.stack(blended)


class FlickerMeter:
    """Accumulates mean |out_t − out_{t−1}| and mean |in_t − in_{t−1}| frame by frame (constant memory)."""

    def __init__(self):
        self.previous: tuple[np.ndarray, np.ndarray] | None = None
        self.output_change = self.input_change = 0.0
        self.steps = 0

    def update(self, input_frame, output_frame) -> None:
        current = (np.asarray(input_frame, dtype=np.float32), np.asarray(output_frame, dtype=np.float32))
        if self.previous is not None:
            self.input_change += float(np.abs(current[0] - self.previous[0]).mean())
            self.output_change += float(np.abs(current[1] - self.previous[1]).mean())
            self.steps += 1
        self.previous = current

    @property
    def value(self) -> float:
        if self.steps == 0:
            raise ValueError("flicker needs at least two frames")
        return self.output_change / max(self.input_change, 1e-12)


def flicker(outputs: list, inputs: list) -> float:
    """mean |out_t − out_{t−1}| / mean |in_t − in_{t−1}| over a sequence (arrays of equal shapes, same scale)."""
    if len(outputs) != len(inputs):
        raise ValueError("flicker needs one input per output")
    meter = FlickerMeter()
    for input_frame, output_frame in zip(inputs, outputs):
        meter.update(input_frame, output_frame)
    return meter.value


class FrameStylizer:
    """Stylises batches of RGB frames with one style code and (optionally) smoothed statistics."""

    def __init__(self, stylizer, style, *, alpha: float = 1.0, stability: float = 0.0, style_size: int | None = None):
        self.stylizer = stylizer
        self.onnx = not hasattr(stylizer, "model")  # the onnxruntime backend: graphs, no model object
        self.code = stylizer.encode_style(style, style_size=style_size)
        self.alpha = alpha
        self.statistics = TemporalStatistics(stability) if stability > 0 and not self.onnx else None
        self.blend = MotionAwareBlend(stability) if stability > 0 else None
        if not self.onnx:
            self.model, self.device = stylizer.model, stylizer.device

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> stylised [B, 3, H, W] in [0, 1]."""
        from .models import StyleCode, blend_style_codes

        if self.onnx:
            return self._onnx(frames)
        batch, (height, width) = pad_to_multiple(frames.to(self.device))
        batch = batch.contiguous(memory_format=torch.channels_last)
        with self.stylizer.autocast():
            features = self.model.encoder.encode(batch)
            code = StyleCode(*(None if v is None else v.expand(len(batch), *v.shape[1:]) for v in self.code._values()))
            if self.alpha != 1.0:
                own = self.model.own_style_code(batch, features)
                code = blend_style_codes([own, code], [1 - self.alpha, self.alpha])
            output = self.model.decode(features, code, statistics=self.statistics)
        output = output[:, :, :height, :width].float().clamp(0, 1).cpu()
        return self.blend(frames.float().cpu(), output) if self.blend is not None else output


    def _onnx(self, frames: torch.Tensor) -> torch.Tensor:
        """Frame by frame through the exported graphs (their statistics are per frame; smoothing is the blend)."""
        outputs = []
        for frame in frames:
            code = self.code
            if self.alpha != 1.0:
                own_input = frame.numpy()[None]
                if self.stylizer.kind == "adaconv":
                    own_input = resize(frame, 256, 256).numpy()[None]
                own = dict(zip(self.stylizer.code_names, self.stylizer.style_session.run(None, {"style": own_input})))
                code = self.stylizer.blend([own, code], [1 - self.alpha, self.alpha])
            image = self.stylizer.stylize_array(np.ascontiguousarray(frame.numpy()[None]), code)
            outputs.append(torch.from_numpy(np.asarray(image)).permute(2, 0, 1).float() / 255.0)
        output = torch.stack(outputs)
        return self.blend(frames.float(), output) if self.blend is not None else output


def _frames_to_tensor(frames) -> torch.Tensor:
    arrays = np.stack([frame.to_ndarray(format="rgb24") for frame in frames])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255.0


def _batches(container, stream, batch: int) -> Iterator[tuple[list, list]]:
    """Decode ``stream``; yield (video frames, other packets) as batches fill, so audio is muxed as it comes."""
    pending, passthrough = [], []
    for packet in container.demux():
        if packet.stream.index != stream.index:
            if packet.dts is not None:
                passthrough.append(packet)
            continue
        for frame in packet.decode():
            pending.append(frame)
            if len(pending) == batch:
                yield pending, passthrough
                pending, passthrough = [], []
    if pending or passthrough:
        yield pending, passthrough


def stylize_video(stylizer, source: str | os.PathLike, target: str | os.PathLike, style, *, alpha: float = 1.0,
                  batch: int = 4, stability: float = 0.0, content_size: int | None = None,
                  style_size: int | None = None, progress: bool = False, measure_flicker: bool = False) -> dict:
    """Stylise every frame of ``source`` into ``target`` (written atomically); audio is copied through.

    Returns a summary: frames, seconds, FPS and (with ``measure_flicker``) the flicker of input and output.
    """
    av = _require_av()
    from tqdm import tqdm

    source, target = Path(source), Path(target)
    codec = VIDEO_CODECS.get(target.suffix.lower())
    if codec is None:
        raise AdaconvError(f"{target}: unsupported video extension (use {', '.join(sorted(VIDEO_CODECS))})")
    try:
        container = av.open(str(source))
    except (av.error.FFmpegError, OSError) as error:
        raise AdaconvError(f"{source}: cannot read video ({error})") from None
    if not container.streams.video:
        container.close()
        raise AdaconvError(f"{source}: holds no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    audio = container.streams.audio[0] if container.streams.audio else None
    width, height = stream.codec_context.width, stream.codec_context.height
    if content_size is not None and max(width, height) != content_size:
        factor = content_size / max(width, height)
        width, height = max(2, round(width * factor / 2) * 2), max(2, round(height * factor / 2) * 2)
    frame_stylizer = FrameStylizer(stylizer, style, alpha=alpha, stability=stability, style_size=style_size)
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    partial = target.with_name(f".{target.stem}.partial{target.suffix}")
    output = av.open(str(partial), mode="w")
    written, started = 0, time.perf_counter()
    meter = FlickerMeter() if measure_flicker else None
    try:
        video_out = output.add_stream(codec, rate=rate)
        video_out.width, video_out.height = width, height
        video_out.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        audio_out = output.add_stream_from_template(audio) if audio is not None else None
        bar = tqdm(total=stream.frames or None, unit="frame", desc="video", disable=not progress)
        for frames, packets in _batches(container, stream, batch):
            for packet in packets:
                if audio_out is not None and packet.stream.index == audio.index:
                    packet.stream = audio_out
                    output.mux(packet)
            if not frames:
                continue
            tensor = _frames_to_tensor(frames)
            if tensor.shape[-2:] != (height, width):
                tensor = resize(tensor, height, width)
            result = frame_stylizer(tensor)
            pixels = (result.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
            for index, array in enumerate(pixels):
                frame = av.VideoFrame.from_ndarray(array, format="rgb24")
                for packet in video_out.encode(frame):
                    output.mux(packet)
                if meter is not None:
                    meter.update(tensor[index].permute(1, 2, 0).numpy() * 255, array)
            written += len(frames)
            bar.update(len(frames))
            bar.set_postfix(fps=f"{written / (time.perf_counter() - started):.2f}")
        for packet in video_out.encode(None):
            output.mux(packet)
        bar.close()
        output.close()
        container.close()
    except BaseException:
        output.close()
        container.close()
        partial.unlink(missing_ok=True)
        raise
    if written == 0:
        partial.unlink(missing_ok=True)
        raise AdaconvError(f"{source}: no frames could be decoded")
    os.replace(partial, target)
    seconds = time.perf_counter() - started
    summary = {"input": str(source), "output": str(target), "frames": written, "size": [width, height],
               "fps_in": float(rate), "seconds": round(seconds, 2), "fps": round(written / seconds, 3),
               "audio": audio is not None, "stability": stability, "codec": codec}
    if meter is not None and meter.steps:
        summary["flicker"] = round(meter.value, 4)
    return summary
