"""Training throughput and where a training step's time goes (``bench.bench_speed``'s ``train``
and ``profile`` sections).

Images/s of ``trainer.pretrain.pretrain`` and ``trainer.finetune.finetune_on_samples`` (lite,
256 px, batch 8, real faces, data loading included: the fastest wall-clock gap between step ends
after two warm-up steps; the mean rate is kept too) against the plainest smp loop (NCHW, PIL
resize, Adam); the trainer also with channels_last off. The profile splits one fine-tuning step
into data, forward, backward and optimizer, trainer-style and naive, and lists the top
operators of one step from torch.profiler.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from bench.harness import SHARED
from trainer.models import build_model, get_preset

DEV = SHARED / "celebamask-hq-dev"


class _Lazy(Sequence):
    """First ``n`` samples of a reader, loaded on access."""

    def __init__(self, source: Any, n: int) -> None:
        self.source, self.n = source, min(n, len(source))
        self.names = list(source.names[: self.n])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:  # type: ignore[override]
        return self.source[i]


def _rate(stamps: list[float], batch: int, warmup: int = 2) -> float:
    """Images/s of the fastest step (wall clock between consecutive step ends, data loading
    included), after ``warmup`` steps. The fastest step is the least disturbed by other
    processes on a shared machine; ``_RATES`` keeps the mean rate beside it."""
    t = stamps[warmup:]
    if len(t) < 2:
        return float("nan")
    gaps = np.diff(t)
    _RATES.append(
        {
            "best_img_s": round(batch / float(gaps.min()), 2),
            "mean_img_s": round(batch * len(gaps) / float(gaps.sum()), 2),
        }
    )
    return batch / float(gaps.min())


_RATES: list[dict[str, float]] = []


def trainer_pretrain_rate(
    steps: int,
    batch: int,
    size: int,
    channels_last: bool = True,
    *,
    preset: str = "lite",
    device: str = "cpu",
    workers: int = 0,
    images: Any = None,
) -> float:
    """``images``: a folder of photos (default the dev faces)."""
    from trainer.configs import PretrainConfig, PretrainRuntime
    from trainer.pretrain import pretrain
    from trainer.recipes import pretrain_recipe

    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = PretrainConfig(
            image_dirs=(str(images or DEV / "images"),),
            runtime=PretrainRuntime(
                out_dir=tmp, device=device, channels_last=channels_last, num_workers=workers
            ),
            preset=preset,
            input_size=size,
            recipe=pretrain_recipe("center", batch_size=batch, max_steps=steps + 3, epochs=1),
        )
        pretrain(config, on_progress=lambda s: stamps.append(time.perf_counter()))
    return _rate(stamps, batch)


def trainer_finetune_rate(
    steps: int,
    batch: int,
    size: int,
    channels_last: bool = True,
    *,
    preset: str = "lite",
    device: str = "cpu",
    workers: int = 0,
    samples: Any = None,
) -> float:
    """``samples``: labeled Samples (default the first 64 dev faces)."""
    from trainer.configs import FinetuneConfig, FinetuneData, FinetuneRuntime
    from trainer.data.celebamask import CelebAMaskDataset
    from trainer.finetune import finetune_on_samples
    from trainer.recipes import finetune_recipe

    stamps: list[float] = []
    if samples is None:
        samples = _Lazy(CelebAMaskDataset(DEV, label_set="lapa"), 64)
    with tempfile.TemporaryDirectory() as tmp:
        config = FinetuneConfig(
            FinetuneRuntime(
                out_dir=tmp,
                device=device,
                progress_bar=False,
                channels_last=channels_last,
                num_workers=workers,
            ),
            init="scratch",
            preset=preset,
            input_size=size,
            recipe=finetune_recipe("plain", batch_size=batch, epochs=100, max_steps=steps + 3),
            # aligned CelebAMask-HQ crops, as the recorded results
            data=FinetuneData(root=str(DEV), val_split=None, framing="whole"),
        )

        def on_progress(stats: dict[str, Any]) -> None:
            if stats.get("phase") == "train":
                stamps.append(time.perf_counter())

        finetune_on_samples(config, samples, None, on_progress=on_progress)
    return _rate(stamps, batch)


class _NaiveData(torch.utils.data.Dataset):
    """The plainest data path: PIL open, PIL resize, numpy → tensor, normalise."""

    def __init__(self, n: int, size: int, task: str) -> None:
        self.images = sorted((DEV / "images").glob("*.jpg"))[:n]
        self.size, self.task = size, task
        from trainer.labels import celebamask_to_lapa_lut

        self.lut = celebamask_to_lapa_lut()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        img = (
            Image.open(self.images[i]).convert("RGB").resize((self.size, self.size), Image.BILINEAR)
        )
        x = torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
        x = (x - mean) / std
        if self.task == "finetune":
            mask_path = DEV / "masks" / (self.images[i].stem + ".png")
            lab = Image.open(mask_path).resize((self.size, self.size), Image.NEAREST)
            return x, torch.from_numpy(self.lut[np.asarray(lab)].astype(np.int64))
        # Stage-1 style target: the image; input: random squares in the centre blanked.
        mask = torch.zeros(1, self.size, self.size, dtype=torch.bool)
        rng = np.random.default_rng(i)
        lo, hi = self.size // 6, self.size * 5 // 6
        for _ in range(20):
            s = int(rng.integers(self.size // 16, self.size // 8 + 1))
            t, left = rng.integers(lo, hi - s, size=2)
            mask[:, t : t + s, left : left + s] = True
        return x.masked_fill(mask, 0.0), x


def naive_rate(
    task: str, steps: int, batch: int, size: int, phases: dict[str, float] | None = None
) -> float:
    """The plain smp loop; fills ``phases`` with mean seconds per step of each phase."""
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    model = smp.UnetPlusPlus(
        "mobilenet_v2",
        encoder_weights=None,
        classes=11 if task == "finetune" else 3,
        decoder_channels=(256, 128, 64, 32, 16),
    )
    loader = torch.utils.data.DataLoader(
        _NaiveData(batch * (steps + 3), size, task), batch_size=batch, shuffle=True
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    stamps = []
    acc = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    best = {k: float("inf") for k in acc}
    it = iter(loader)
    for step in range(steps + 3):
        t0 = time.perf_counter()
        x, y = next(it)
        t1 = time.perf_counter()
        out = model(x)
        loss = (
            torch.nn.functional.cross_entropy(out, y)
            if task == "finetune"
            else torch.nn.functional.mse_loss(out, y)
        )
        t2 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        stamps.append(t4)
        if step >= 2:
            for key, dt in zip(acc, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                acc[key] += dt
                best[key] = min(best[key], dt)
    if phases is not None:
        phases.update({k: round(v, 3) for k, v in best.items()})
    return _rate(stamps, batch)


def trainer_style_phases(steps: int, batch: int, size: int) -> dict[str, float]:
    """The trainer's fine-tuning step, phase by phase: its data path (ParsingDataset with
    TrainAugment), channels_last, AdamW, gradient clipping."""
    from torch.utils.data import DataLoader

    from trainer.data.celebamask import CelebAMaskDataset
    from trainer.data.torch_datasets import ParsingDataset
    from trainer.data.transforms import TrainAugment
    from trainer.labels import LAPA
    from trainer.losses import parsing_loss

    torch.manual_seed(0)
    model = build_model(get_preset("lite").with_overrides(input_size=size)).train()
    model = model.to(memory_format=torch.channels_last)
    samples = _Lazy(CelebAMaskDataset(DEV, label_set="lapa"), batch * (steps + 3))
    loader = DataLoader(
        ParsingDataset(samples, size, TrainAugment(size, LAPA)), batch_size=batch, shuffle=True
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    best = {
        "data": float("inf"),
        "forward": float("inf"),
        "backward": float("inf"),
        "optimizer": float("inf"),
    }
    it = iter(loader)
    for step in range(steps + 3):
        t0 = time.perf_counter()
        x, y = next(it)
        x = model.normalize(x).contiguous(memory_format=torch.channels_last)
        t1 = time.perf_counter()
        loss = parsing_loss(model(x), y)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        t4 = time.perf_counter()
        if step >= 2:
            for key, dt in zip(best, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                best[key] = min(best[key], dt)
    return {k: round(v, 3) for k, v in best.items()}


def bench_train(
    steps: int, batch: int, size: int, rounds: int = 2, loops: Sequence[str] | None = None
) -> dict[str, Any]:
    """Fastest-step images/s of each loop over ``rounds`` alternating runs; every run's fastest
    and mean rates are kept under "detail". ``loops``: names of the runs to time (default all;
    e.g. without the ``*_nchw`` ones on a busy machine)."""
    out: dict[str, Any] = {"preset": "lite", "input": size, "batch": batch, "timed_steps": steps}
    runs: list[tuple[str, Callable[[], float]]] = [
        ("pretrain_trainer", lambda: trainer_pretrain_rate(steps, batch, size)),
        (
            "pretrain_trainer_nchw",
            lambda: trainer_pretrain_rate(steps, batch, size, channels_last=False),
        ),
        ("pretrain_naive", lambda: naive_rate("pretrain", steps, batch, size)),
        ("finetune_trainer", lambda: trainer_finetune_rate(steps, batch, size)),
        (
            "finetune_trainer_nchw",
            lambda: trainer_finetune_rate(steps, batch, size, channels_last=False),
        ),
        ("finetune_naive", lambda: naive_rate("finetune", steps, batch, size)),
    ]
    if loops is not None:
        runs = [(name, fn) for name, fn in runs if name in loops]
    detail: dict[str, list[dict[str, float]]] = {name: [] for name, _ in runs}
    for _ in range(rounds):  # rounds alternate the loops, so each meets the same disturbances
        for name, fn in runs:
            fn()
            detail[name].append(_RATES[-1])
            print(name, _RATES[-1], flush=True)
    for name, rates in detail.items():
        out[f"{name}_img_s"] = max(r["best_img_s"] for r in rates)
    out["detail"] = detail
    for task in ("pretrain", "finetune"):
        if f"{task}_trainer" in detail and f"{task}_naive" in detail:
            out[f"{task}_speedup"] = round(
                out[f"{task}_trainer_img_s"] / out[f"{task}_naive_img_s"], 2
            )
            # Each round's trainer run beside its naive run (same round: the same load).
            out[f"{task}_speedup_by_round"] = [
                round(t["best_img_s"] / n["best_img_s"], 2)
                for t, n in zip(detail[f"{task}_trainer"], detail[f"{task}_naive"], strict=True)
            ]
    return out


def bench_profile(steps: int, batch: int, size: int) -> dict[str, Any]:
    naive: dict[str, float] = {}
    naive_rate("finetune", steps, batch, size, phases=naive)
    trainer_style = trainer_style_phases(steps, batch, size)
    print("fastest phase times s/step: naive", naive, "trainer-style", trainer_style, flush=True)
    # Top operators of one trainer-style step (forward + backward + AdamW).
    from torch.profiler import ProfilerActivity, profile

    model = build_model(get_preset("lite").with_overrides(input_size=size)).train()
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 11, (batch, size, size))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    top = [
        {
            "op": e.key,
            "self_ms": round(e.self_cpu_time_total / 1000, 1),
            "share": round(e.self_cpu_time_total / total, 3),
            "calls": e.count,
        }
        for e in events[:12]
    ]
    return {"naive_phases_s": naive, "trainer_phases_s": trainer_style, "top_ops_one_step": top}
