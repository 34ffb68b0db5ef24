"""Multi-process pretraining: 2 CPU processes with the gloo backend, as torchrun would start them."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tests.conftest import synthetic_face
from trainer.checkpoint import load_checkpoint
from trainer.configs import PretrainConfig
from trainer.data.imageio import write_image
from trainer.distributed import DistInfo, init_distributed, wrap_model
from trainer.engine import seed_everything
from trainer.hooks import read_jsonl
from trainer.models import build_model, get_preset

WORLD_SIZE = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, images: str, root: str, port: int) -> None:
    """One rank: the environment torchrun would set, then an ordinary pretrain() call."""
    torch.set_num_threads(1)  # two processes share the CI machine's cores
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD_SIZE),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    from safetensors.torch import save_file

    import trainer.pretrain as pretrain_module

    built = []
    original_build = pretrain_module.build_model

    def build_and_keep(*args, **kwargs):  # test-only: keep this rank's model to compare later
        built.append(original_build(*args, **kwargs))
        return built[-1]

    pretrain_module.build_model = build_and_keep
    marker = Path(root) / f"steps_rank{rank}.txt"

    def on_progress(stats: dict) -> None:
        with open(marker, "a") as f:
            f.write(f"{stats['step']} {stats['rank']}\n")

    config = PretrainConfig.from_flat(dict(
        image_dirs=(images,),
        # Each rank gets its own out_dir so the test can see who wrote what.
        out_dir=str(Path(root) / f"out_rank{rank}"),
        preset="tiny",
        epochs=1,
        batch_size=2,  # 8 faces / 2 ranks / batch 2 = 2 steps
        device="cpu",
        channels_last=False,
    ))
    pretrain_module.pretrain(config, on_progress=on_progress)
    # Parameters only: BatchNorm running statistics are per rank between forwards (DDP
    # broadcasts rank 0's at the start of each), and rank 0's are what the checkpoint keeps.
    state = {k: v.detach().contiguous() for k, v in built[0].named_parameters()}
    save_file(state, str(Path(root) / f"weights_rank{rank}.safetensors"))


@pytest.mark.slow
def test_two_gloo_ranks_train_in_step_and_only_rank_0_writes(tmp_path) -> None:
    from safetensors.torch import load_file

    images = tmp_path / "faces"
    for i in range(8):
        write_image(images / f"{i}.png", synthetic_face(64, seed=i)[0])
    mp.spawn(_worker, args=(str(images), str(tmp_path), _free_port()), nprocs=WORLD_SIZE)

    for rank in range(WORLD_SIZE):  # both ranks trained every step
        lines = (tmp_path / f"steps_rank{rank}.txt").read_text().split("\n")
        assert [line for line in lines if line] == [f"1 {rank}", f"2 {rank}"]

    written = sorted(p.name for p in (tmp_path / "out_rank0").iterdir())
    assert written == [".pretrain.lock", "pretrain_last.safetensors", "pretrain_log.jsonl"]
    assert not (tmp_path / "out_rank1").exists() or not any((tmp_path / "out_rank1").iterdir())
    assert [r["step"] for r in read_jsonl(tmp_path / "out_rank0" / "pretrain_log.jsonl")] == [1, 2]
    ckpt = load_checkpoint(tmp_path / "out_rank0" / "pretrain_last.safetensors")
    assert ckpt.meta["step"] == 2 and ckpt.meta["world_size"] == 2
    assert ckpt.meta["num_images"] == 8

    rank0 = load_file(str(tmp_path / "weights_rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "weights_rank1.safetensors"))
    assert rank0.keys() == rank1.keys() and len(rank0) > 100
    for key, value in rank0.items():  # DDP kept the replicas identical
        assert torch.equal(value, rank1[key]), key
        assert torch.equal(value, ckpt.model_state[key]), key
    seed_everything(0)  # what pretrain() does before building the model
    initial = build_model(get_preset("tiny"), ("reconstruction",)).state_dict()
    assert any(not torch.equal(initial[k], v) for k, v in rank0.items())  # it did train


def test_single_process_needs_no_process_group(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    info = init_distributed("cpu")
    assert info == DistInfo(device=torch.device("cpu")) and info.is_main
    model = torch.nn.Linear(2, 2)
    assert wrap_model(model, info) is model
