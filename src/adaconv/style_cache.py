"""A training-time cache of the frozen encoder's output on AdaConv's style images.

AdaConv reads every style as a whole 256x256 image, so the VGG pass over a given painting gives the same
features every time it is drawn: about a quarter of an AdaConv step at 128² (docs/benchmarks.md) that can be
computed once. The cache keeps, per painting, its relu4_1 features in fp16 (1 MiB; the style encoder's input)
and the mean/σ of all four taps in fp32 (the style loss's target and the AdaIN base: of the 256x256 image, or
with ``statistics_size`` of the painting resized to that size, the training crop's scale). fp16 rounding (~1e-3
relative) is finer than the bf16 the encoder runs in under autocast. Entries are added until a memory budget is
spent; with a budget above the data set, every painting is encoded once per run. Style flips are turned off while
caching (a flipped painting would need an entry of its own).

The cache also lives on disk, in the run folder: each checkpoint adds a shard file with the entries computed
since the last one, and a resumed run reads them back, so it does not spend its first epoch (~1,240 steps of
batch 8 over ~9,900 paintings, ~0.7 s each) re-encoding paintings a previous session already encoded.
Entries are named by the painting's path inside the style folder, so shards stay valid if the folder's
listing changes; a shard made with another encoder normalisation, style size or statistics size is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as serialize

from .imageio import write_atomically
from .losses import FeatureStatistics, feature_statistics
from .preprocessing import resize


class StyleFeatureCache:
    def __init__(self, budget_bytes: int, statistics_size: int | None = None):
        self.budget_bytes = budget_bytes
        self.statistics_size = statistics_size
        self.used_bytes = 0
        self.entries: dict[int, tuple[torch.Tensor, list[torch.Tensor]]] = {}
        self.hits = 0
        self.misses = 0
        self.on_disk: set[int] = set()  # entries already in a shard file
        self.loaded = 0  # entries read from shard files

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
        features = statistics = None
        if missing:  # under the caller's autocast, if any
            features = encoder(images[missing])
            size = self.statistics_size
            statistics = feature_statistics(encoder(resize(images[missing], size, size)) if size else features)
        with torch.autocast(device.type, enabled=False):  # CPU autocast cannot stack fp16 tensors
            return self._assemble(keys, missing, features, statistics, device)

    def _assemble(self, keys, missing, features, statistics, device) -> tuple[torch.Tensor, FeatureStatistics]:
        fresh: dict[int, tuple[torch.Tensor, list[torch.Tensor]]] = {}
        if missing:
            for row, index in enumerate(missing):
                relu4_1 = features[-1][row].to(torch.float16)
                packed = [torch.cat([mean[row].flatten().float(), std[row].flatten().float()])
                          for mean, std in statistics]
                fresh[index] = (relu4_1, packed)
                self._keep(keys[index], relu4_1.cpu(), [p.cpu() for p in packed])
        rows = [fresh[i] if i in fresh else self.entries[key] for i, key in enumerate(keys)]
        relu4_1 = torch.stack([r[0] for r in rows]).to(device).float().contiguous(memory_format=torch.channels_last)
        statistics = []
        for tap in range(len(rows[0][1])):
            packed = torch.stack([r[1][tap] for r in rows]).to(device)
            channels = packed.shape[1] // 2
            statistics.append((packed[:, :channels, None, None], packed[:, channels:, None, None]))
        return relu4_1, statistics

    def _keep(self, key: int, relu4_1: torch.Tensor, packed: list[torch.Tensor]) -> bool:
        size = relu4_1.numel() * relu4_1.element_size() + sum(p.numel() * p.element_size() for p in packed)
        if key in self.entries or self.used_bytes + size > self.budget_bytes:
            return False
        self.entries[key] = (relu4_1, packed)
        self.used_bytes += size
        return True

    # -- on disk ---------------------------------------------------------------------------------
    def save_new(self, path: Path, names: Mapping[int, str], identity: str) -> int:
        """Write the entries not yet on disk as one shard file at ``path`` (atomically); returns their count.

        ``names``: each key's painting (its path inside the style folder); ``identity``: what the features depend
        on besides the painting (encoder normalisation, style size), checked when the shard is read back.
        """
        new = [key for key in self.entries if key not in self.on_disk]
        if not new:
            return 0
        tensors = {}
        for row, key in enumerate(new):
            relu4_1, packed = self.entries[key]
            tensors[f"{row}.relu4_1"] = relu4_1.contiguous()  # a row of a channels-last batch is strided
            tensors.update({f"{row}.statistics{tap}": values.contiguous() for tap, values in enumerate(packed)})
        metadata = {"identity": identity, "names": json.dumps([names[key] for key in new]),
                    "taps": str(len(self.entries[new[0]][1]))}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda handle: handle.write(serialize(tensors, metadata=metadata)))
        self.on_disk.update(new)
        return len(new)

    def load(self, folder: Path, keys: Mapping[str, int], identity: str) -> int:
        """Read every shard in ``folder`` made with ``identity``, for the paintings named in ``keys`` (name ->
        key), while the budget lasts; returns how many entries were read. Unreadable shards are skipped: their
        paintings are simply encoded again."""
        before = len(self.entries)
        for shard in sorted(Path(folder).glob("*.safetensors")):
            try:
                if not self._load_shard(shard, keys, identity):
                    break  # budget spent
            except (OSError, SafetensorError, ValueError, KeyError):
                continue
        self.loaded += len(self.entries) - before
        return len(self.entries) - before

    def _load_shard(self, shard: Path, keys: Mapping[str, int], identity: str) -> bool:
        """Entries of one shard file; False once the budget is spent."""
        with safe_open(shard, framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("identity") != identity:
                return True
            taps = int(metadata["taps"])
            for row, name in enumerate(json.loads(metadata["names"])):
                key = keys.get(name)
                if key is None or key in self.entries:
                    continue
                packed = [handle.get_tensor(f"{row}.statistics{tap}") for tap in range(taps)]
                if not self._keep(key, handle.get_tensor(f"{row}.relu4_1"), packed):
                    return False
                self.on_disk.add(key)
        return True
