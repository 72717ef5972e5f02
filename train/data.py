"""Training data: random crops of integer PCM from folders of audio.

Files are split at file level with :func:`train.fit_priors.is_validation` (a hash of
the file name, so the split is the same on every machine and for the least-squares fit).
Each training example is one *coded channel* of a random crop: the crop goes through
the codec's own channel handling (:func:`hybridcodec.framecodec.coded_signals`: wasted
low bits, stereo decorrelation), so the nets train on the signals they will code, for
any channel count and sample rate. Augmentation keeps integers inside the file's bit
depth: gain (applied above the wasted low bits, with the peak kept in range), polarity
and channel order.

All audio of the selected files is decoded into memory once (int32); the music and
instruments sets of the corpus take ~130 MB.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hybridcodec.audio_io import open_audio
from hybridcodec.channels import wasted_bits
from hybridcodec.framecodec import coded_signals

from .errors import DataError, TrainingError
from .fit_priors import audio_files, is_validation

log = logging.getLogger(__name__)


@dataclass
class Clip:
    """One decoded file: int32 PCM (n, channels) and its bit depth."""

    name: str
    pcm: np.ndarray
    bits: int


def load_clip(path: Path) -> Clip:
    with open_audio(path) as reader:
        info = reader.info
        pcm = reader.read(info.num_samples)
    return Clip(path.name, pcm, info.bits_per_sample)


@dataclass
class Augment:
    """Probabilities and ranges of the integer-preserving augmentations."""

    gain_prob: float = 0.5
    gain_db: tuple[float, float] = (-12.0, 6.0)
    polarity_prob: float = 0.5
    swap_prob: float = 0.5

    def __call__(self, pcm: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
        x = pcm.astype(np.int64)
        if x.shape[1] > 1 and rng.random() < self.swap_prob:
            x = x[:, rng.permutation(x.shape[1])]
        sign = -1.0 if rng.random() < self.polarity_prob else 1.0
        gain = 10.0 ** (rng.uniform(*self.gain_db) / 20.0) if rng.random() < self.gain_prob else 1.0
        return apply_gain(x, bits, sign * gain)


def apply_gain(x: np.ndarray, bits: int, gain: float) -> np.ndarray:
    """Scale int PCM by ``gain`` (negative: polarity flip) above its common wasted low
    bits, so they stay wasted, and never past full scale."""
    if gain == 1.0:
        return x
    w = min((wasted_bits(x[:, c]) for c in range(x.shape[1])), default=0)
    v = x >> w
    top = (1 << (bits - 1 - w)) - 1
    peak = int(np.abs(v).max(initial=0))
    if peak and abs(gain) * peak > top:
        gain = np.sign(gain) * top / peak
    return np.clip(np.round(v * gain), -top - 1, top).astype(np.int64) << w


class RandomCrops(Dataset):
    """``length`` examples; example i is a crop drawn with a generator seeded by
    (seed, offset + i), so every index is reproducible, indices split across DDP ranks
    give distinct data, and a resumed run continues with new crops (``offset``)."""

    def __init__(self, clips: list[Clip], crop_length: int, length: int, seed: int = 0,
                 augment: Augment | None = None) -> None:
        self.clips = [c for c in clips if len(c.pcm) >= crop_length]
        if not self.clips:
            raise DataError(f"no training file has {crop_length} samples: lower data.crop_length")
        if len(self.clips) < len(clips):
            log.info("%d files shorter than a crop are not used for training",
                     len(clips) - len(self.clips))
        weights = np.array([c.pcm.size for c in self.clips], np.float64)
        self.p = weights / weights.sum()
        self.crop_length, self.length, self.seed = crop_length, length, seed
        self.augment = augment
        self.offset = 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.offset + i])
        clip = self.clips[rng.choice(len(self.clips), p=self.p)]
        start = rng.integers(0, len(clip.pcm) - self.crop_length + 1)
        pcm = clip.pcm[start: start + self.crop_length]
        if self.augment is not None:
            pcm = self.augment(pcm, clip.bits, rng)
        _, _, signals = coded_signals(pcm.astype(np.int64))
        return torch.from_numpy(signals[rng.integers(len(signals))].astype(np.float64))


class FixedCrops(Dataset):
    """Deterministic crops (evenly spaced, every coded channel) for the validation loss."""

    def __init__(self, clips: list[Clip], crop_length: int, crops_per_file: int) -> None:
        self.items = []
        for clip in clips:
            n = len(clip.pcm)
            if n < crop_length:
                continue
            k = min(crops_per_file, n // crop_length)
            for start in np.linspace(0, n - crop_length, k).astype(int):
                _, _, signals = coded_signals(
                    clip.pcm[start: start + crop_length].astype(np.int64))
                self.items += [torch.from_numpy(s.astype(np.float64)) for s in signals]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.items[i]


class AudioDataModule(L.LightningDataModule):
    """Random crops of the training files; fixed crops of the validation files.

    ``root``: a folder (or list of folders) searched recursively for .flac/.wav;
    ``sets``: optional sub-folders of ``root`` to use (e.g. ``[music, instruments]``).
    ``max_files`` caps the files of each split (first in sorted order), for quick runs.
    """

    def __init__(self, root: str | list[str], sets: list[str] | None = None,
                 crop_length: int = 16384, batch_size: int = 16,
                 crops_per_epoch: int = 1_000_000, val_fraction: float = 0.25,
                 val_crops_per_file: int = 4, max_files: int | None = None,
                 num_workers: int = 0, seed: int = 0, augment: dict | None = None) -> None:
        super().__init__()
        for name, value, low in (("crop_length", crop_length, 2), ("batch_size", batch_size, 1),
                                 ("crops_per_epoch", crops_per_epoch, 1),
                                 ("val_crops_per_file", val_crops_per_file, 0),
                                 ("num_workers", num_workers, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise TrainingError(f"data.{name}={value!r}: need an integer >= {low}")
        if max_files is not None and (isinstance(max_files, bool) or not isinstance(max_files, int)
                                      or max_files < 1):
            raise TrainingError(f"data.max_files={max_files!r}: need an integer >= 1 or null")
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) \
                or not 0.0 <= val_fraction < 1.0:
            raise TrainingError(f"data.val_fraction={val_fraction!r}: need 0 <= value < 1")
        roots = [root] if isinstance(root, (str, Path)) else list(root)
        self.roots = [Path(r) / s for r in roots for s in (sets or ["."])]
        self.sets = sets
        self.crop_length, self.batch_size = crop_length, batch_size
        self.crops_per_epoch, self.val_fraction = crops_per_epoch, val_fraction
        self.val_crops_per_file, self.max_files = val_crops_per_file, max_files
        self.num_workers, self.seed = num_workers, seed
        self.augment = Augment(**augment) if augment else None
        self._files: tuple[list[Path], list[Path]] | None = None
        self._offset = 0  # crops used before a resumed run (from the checkpoint)
        self.train_set: RandomCrops | None = None
        self.val_set: FixedCrops | None = None

    def _split(self) -> tuple[list[Path], list[Path]]:
        if self._files is None:
            sets = "" if self.sets is None else \
                f"; data.sets={list(self.sets)} are sub-folders of it, data.sets=null uses all of it"
            files = audio_files(self.roots, f" (set data.root or HYBRIDCODEC_DATA{sets})")
            train = [f for f in files if not is_validation(f, self.val_fraction)]
            val = [f for f in files if is_validation(f, self.val_fraction)]
            if self.max_files is not None:
                train, val = train[: self.max_files], val[: self.max_files]
            if not train:
                raise DataError(f"no training audio (.flac, .wav) under "
                                f"{', '.join(map(str, self.roots))}")
            self._files = (train, val)
        return self._files

    @property
    def train_files(self) -> list[Path]:
        return self._split()[0]

    @property
    def val_files(self) -> list[Path]:
        return self._split()[1]

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            train = [load_clip(f) for f in self.train_files]
            self.train_set = RandomCrops(train, self.crop_length, self.crops_per_epoch,
                                         self.seed, self.augment)
            self.train_set.offset = self._offset
            log.info("training on %d files (%.1f M samples)", len(train),
                     sum(c.pcm.size for c in train) / 1e6)
        if self.val_set is None:
            val = [load_clip(f) for f in self.val_files]
            self.val_set = FixedCrops(val, self.crop_length, self.val_crops_per_file)

    def state_dict(self) -> dict:
        """Saved in checkpoints: how many crops training has drawn (all ranks). A resumed
        run restarts its epoch at index 0, so its crops start at this offset."""
        steps = self.trainer.global_step if self.trainer is not None else 0
        world = self.trainer.world_size if self.trainer is not None else 1
        return {"crops_used": steps * self.batch_size * world}

    def load_state_dict(self, state: dict) -> None:
        self._offset = int(state.get("crops_used", 0))
        if self.train_set is not None:
            self.train_set.offset = self._offset

    def train_dataloader(self) -> DataLoader:
        # Content is random per index already: no shuffling needed (and none of the cost
        # of permuting a long epoch); DDP still gives every rank its own indices.
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=False,
                          num_workers=self.num_workers, drop_last=True,
                          persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False,
                          num_workers=0)
