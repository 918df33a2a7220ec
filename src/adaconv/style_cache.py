"""A training-time cache of the frozen encoder's output on AdaConv's style images.

AdaConv reads every style as a whole 256x256 image, so the VGG pass over a given painting gives the same
features every time it is drawn: about a quarter of an AdaConv step at 128² (docs/benchmarks.md) that can be
computed once. The cache keeps, per painting, its relu4_1 features in fp16 (1 MiB; the style encoder's input)
and the mean/σ of all four taps in fp32 (the style loss's target). fp16 rounding (~1e-3 relative) is finer
than the bf16 the encoder runs in under autocast. Entries are added until a memory budget is spent; with a
budget above the data set, every painting is encoded once per run. Style flips are turned off while caching
(a flipped painting would need an entry of its own).
"""

from __future__ import annotations

import torch

from .losses import FeatureStatistics, feature_statistics


class StyleFeatureCache:
    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self.used_bytes = 0
        self.entries: dict[int, tuple[torch.Tensor, list[torch.Tensor]]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.entries)

    @torch.no_grad()
    def features(self, keys: list[int], images: torch.Tensor, encoder) -> tuple[torch.Tensor, FeatureStatistics]:
        """relu4_1 [B, 512, 32, 32] and per-tap (μ, σ) for the styles ``keys`` (their images: ``images``).

        Missing entries are computed in one encoder pass over just those images, and stored while the budget
        lasts. The returned tensors are on the images' device.
        """
        device = images.device
        missing = [i for i, key in enumerate(keys) if key not in self.entries]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        features = encoder(images[missing]) if missing else None  # under the caller's autocast, if any
        with torch.autocast(device.type, enabled=False):  # CPU autocast cannot stack fp16 tensors
            return self._assemble(keys, missing, features, device)

    def _assemble(self, keys, missing, features, device) -> tuple[torch.Tensor, FeatureStatistics]:
        fresh: dict[int, tuple[torch.Tensor, list[torch.Tensor]]] = {}
        if missing:
            statistics = feature_statistics(features)
            for row, index in enumerate(missing):
                relu4_1 = features[-1][row].to(torch.float16)
                packed = [torch.cat([mean[row].flatten().float(), std[row].flatten().float()])
                          for mean, std in statistics]
                fresh[index] = (relu4_1, packed)
                size = relu4_1.numel() * 2 + sum(p.numel() * 4 for p in packed)
                if self.used_bytes + size <= self.budget_bytes and keys[index] not in self.entries:
                    self.entries[keys[index]] = (relu4_1.cpu(), [p.cpu() for p in packed])
                    self.used_bytes += size
        rows = [fresh[i] if i in fresh else self.entries[key] for i, key in enumerate(keys)]
        relu4_1 = torch.stack([r[0] for r in rows]).to(device).float().contiguous(memory_format=torch.channels_last)
        statistics = []
        for tap in range(len(rows[0][1])):
            packed = torch.stack([r[1][tap] for r in rows]).to(device)
            channels = packed.shape[1] // 2
            statistics.append((packed[:, :channels, None, None], packed[:, channels:, None, None]))
        return relu4_1, statistics
