"""SparK's stage 1 for CNNs (trainer.sparse): the masked encoder, the cell masker, the recipe."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import synthetic_face, write_synthetic_lapa
from trainer.checkpoint import load_checkpoint
from trainer.configs import FinetuneConfig, PretrainConfig
from trainer.data.imageio import write_image
from trainer.data.masking import center_bounds
from trainer.finetune import finetune
from trainer.finetune_model import build_finetune_model
from trainer.models import build_model, get_preset
from trainer.pretrain import pretrain
from trainer.recipes import pretrain_recipe
from trainer.sparse import GridMasker, SparseBatchNorm2d, SparseEncoder, SparseReconstructor

# 64 px: a 2×2 grid of 32-px cells, two of them masked; small enough for ResNet-50 on a CPU.
SIZE = 64


def _net(preset: str, size: int = SIZE, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(get_preset(preset).with_overrides(input_size=size), ("reconstruction",))


def _masked_cells(size: int, batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    masker = GridMasker(size, 0.6, "image")
    cells = masker(batch, torch.Generator().manual_seed(seed))
    return cells, masker.pixels(cells)


# ---------------------------------------------------------------------------------------------
# The sparse encoder


@pytest.mark.parametrize("preset", ["lite", "paper"])
@pytest.mark.parametrize("training", [True, False])
def test_masked_input_never_reaches_the_visible_features_at_any_stage(preset, training) -> None:
    net = _net(preset).train(training)
    encoder = SparseEncoder(net.encoder)
    cells, pixels = _masked_cells(SIZE)
    x = torch.randn(2, 3, SIZE, SIZE)
    other = torch.where(pixels, torch.randn_like(x) * 5, x)  # only the masked pixels differ
    with torch.no_grad():
        first = encoder(x, ~cells)
        second = encoder(other, ~cells)
    assert len(first) == 6 and first[-1].shape[-1] == 2  # input and five stages, to stride 32
    for a, b in zip(first, second, strict=True):
        keep = SparseReconstructor.sparse_mask(~cells, a)
        assert torch.equal(a, b)  # nothing of the masked pixels, at any stage
        assert a.mul(1 - keep).abs().max() == 0  # and the mask is still whole there
        assert a.mul(keep).abs().max() > 0


@pytest.mark.parametrize("preset", ["lite", "paper"])
def test_re_zeroing_only_where_no_sparse_norm_follows_changes_nothing_and_costs_fewer_hooks(
    preset,
) -> None:
    """A convolution whose output goes straight into a sparse norm need not be re-zeroed (the
    norm ignores and zeroes the masked positions itself): features and gradients are those of
    re-zeroing after every convolution and pooling layer."""
    net = _net(preset).train()
    reference = copy.deepcopy(net)
    pruned = SparseEncoder(net.encoder)
    every = SparseEncoder(reference.encoder, prune=False)
    assert len(pruned.rezeroed) < len(every.rezeroed)
    assert not any(isinstance(m, nn.Conv2d) for m in pruned.rezeroed)  # each feeds a norm
    cells, _ = _masked_cells(SIZE)
    x = torch.randn(2, 3, SIZE, SIZE)
    for encoder, model in ((pruned, net), (every, reference)):
        feats = encoder(x, ~cells)
        sum(f.pow(2).mean() for f in feats).backward()
        model.feats = [f.detach() for f in feats]
    for a, b in zip(net.feats, reference.feats, strict=True):
        torch.testing.assert_close(a, b)
    for (name, p), q in zip(
        net.encoder.named_parameters(), reference.encoder.parameters(), strict=True
    ):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


class _ResidualAroundNorm(nn.Module):
    """A convolution whose output feeds a norm *and* a sum (a functional use, no module)."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.bn, self.c2 = (
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.Conv2d(4, 4, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c(x)
        return self.c2(self.bn(y) + y)


def test_a_convolution_also_used_outside_its_norm_keeps_its_re_zeroing() -> None:
    # The review's case: the probe saw only module consumers, so `bn(y) + y` exempted `c` and
    # masked positions leaked into visible features (by up to 0.27).
    torch.manual_seed(0)
    net = _ResidualAroundNorm().train()
    reference = copy.deepcopy(net)
    pruned, every = SparseEncoder(net), SparseEncoder(reference, prune=False)
    assert net.c in pruned.rezeroed
    cells, pixels = _masked_cells(SIZE)
    x = torch.randn(2, 3, SIZE, SIZE)
    other = torch.where(pixels, torch.randn_like(x) * 5, x)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x, ~cells), every(x, ~cells))
        assert torch.equal(pruned(x, ~cells), pruned(other, ~cells))


@pytest.mark.parametrize("preset", ["lite", "paper"])
def test_a_fully_visible_input_gives_the_dense_encoder(preset) -> None:
    # In float64: the same function up to rounding (in float32 the two summation orders drift
    # apart by ~1e-4 of the largest value through ResNet-50's 50 layers, whatever the seed).
    net = _net(preset).double()
    dense = copy.deepcopy(net.encoder)
    encoder = SparseEncoder(net.encoder)
    x = torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5)).double()
    visible = torch.ones(4, 1, 2, 2, dtype=torch.bool)
    for training in (True, False):  # batch statistics, then the running ones they updated
        encoder.train(training)
        dense.train(training)
        with torch.no_grad():
            for s, d in zip(encoder(x, visible), dense(x), strict=True):
                torch.testing.assert_close(s, d, rtol=1e-9, atol=1e-9 * d.abs().max().item())
    for (name, s), d in zip(
        net.encoder.state_dict().items(), dense.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(
            s, d, rtol=1e-9, atol=1e-9 * max(1.0, d.abs().max().item()), msg=name
        )


def test_norms_take_their_statistics_from_the_visible_positions_only() -> None:
    bn = nn.BatchNorm2d(4)
    encoder = SparseEncoder(nn.Sequential(bn))
    sparse = encoder.encoder[0]
    assert isinstance(sparse, SparseBatchNorm2d) and sparse.weight is bn.weight
    x = torch.randn(2, 4, 64, 64) + 3.0
    cells, pixels = _masked_cells(64)
    zeroed = x.masked_fill(pixels, 0.0)
    out = sparse_forward(encoder, zeroed, ~cells)
    visible = out.permute(1, 0, 2, 3)[:, ~pixels[:, 0]]  # (C, visible positions)
    torch.testing.assert_close(visible.mean(1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(visible.std(1, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    seen = x.permute(1, 0, 2, 3)[:, ~pixels[:, 0]]
    torch.testing.assert_close(bn.running_mean, 0.1 * seen.mean(1), rtol=1e-4, atol=1e-5)
    plain = encoder.release()[0]
    assert type(plain) is nn.BatchNorm2d and plain.running_mean is bn.running_mean


def test_sparse_norm_matches_the_masked_statistics_formula_in_value_and_gradient() -> None:
    """Normalising the visible positions only, written out as masked sums, in training mode:
    the output, the gradients of input, weight and bias, and the running statistics."""
    torch.manual_seed(3)
    bn = nn.BatchNorm2d(5)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    reference = copy.deepcopy(bn)
    encoder = SparseEncoder(nn.Sequential(bn))
    cells, pixels = _masked_cells(64, batch=3)
    x = (torch.randn(3, 5, 64, 64) * 2 + 1).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    out = sparse_forward(encoder, x, ~cells)
    m = (~pixels).float()
    xr = x.detach().clone().requires_grad_(True)
    count = m.sum()
    mean = (xr * m).sum(dim=(0, 2, 3)) / count
    centred = (xr - mean.view(1, -1, 1, 1)) * m
    var = centred.pow(2).sum(dim=(0, 2, 3)) / count
    y = centred * torch.rsqrt(var + reference.eps).view(1, -1, 1, 1)
    expected = (y * reference.weight.view(1, -1, 1, 1) + reference.bias.view(1, -1, 1, 1)) * m
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (expected * g).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(bn.bias.grad, reference.bias.grad, rtol=1e-4, atol=1e-4)
    unbiased = var.detach() * count / (count - 1)
    torch.testing.assert_close(bn.running_mean, 0.1 * mean.detach(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * unbiased, rtol=1e-4, atol=1e-6)


def test_sparse_norm_with_a_single_visible_position_gives_its_bias() -> None:
    """One visible position (one image, one visible cell at the coarsest grid): no variance to
    normalise by, so the output is the bias there and zero elsewhere, as a batch norm of one
    value per channel would give, instead of an error."""
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    encoder = SparseEncoder(nn.Sequential(bn))
    visible = torch.tensor([[[[True, False], [False, False]]]])
    out = sparse_forward(encoder, torch.randn(1, 3, 2, 2), visible)
    assert torch.allclose(out[0, :, 0, 0], bn.bias.detach())
    assert out[0, :, 1:, :].abs().max() == 0 and out[0, :, 0, 1].abs().max() == 0
    # One value has no variance to learn from: the running variance is left as it was (pulling
    # it toward 0 would blow up evaluation outputs by up to 1/sqrt(eps)).
    assert torch.equal(bn.running_var, torch.ones(3))
    # And in bf16 (CUDA autocast in pretraining) as in float32.
    out16 = sparse_forward(encoder, torch.randn(1, 3, 2, 2, dtype=torch.bfloat16), visible)
    assert out16.dtype == torch.bfloat16


def sparse_forward(encoder: SparseEncoder, x: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Run a one-layer 'encoder' (no feature list) with the mask in flight."""
    encoder.visibility.set(visible.float())
    try:
        return encoder.encoder(x)
    finally:
        encoder.visibility.set(None)


def test_release_gives_back_the_plain_encoder_with_stage_ones_statistics() -> None:
    net = _net("lite")
    reference = copy.deepcopy(net)
    recon = SparseReconstructor(net).train()
    cells, pixels = _masked_cells(SIZE)
    with torch.no_grad():
        recon(torch.randn(2, 3, SIZE, SIZE).masked_fill(pixels, 0), ~cells)
    model = recon.release()
    norms = [m for m in model.encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(type(m) is nn.BatchNorm2d for m in norms)
    assert not any(m._forward_hooks for m in model.encoder.modules())
    # The statistics moved (stage 1 set them) and the keys are the plain network's.
    assert model.state_dict().keys() == reference.state_dict().keys()
    key = next(k for k in model.state_dict() if k.endswith("running_mean"))
    assert not torch.equal(model.state_dict()[key], reference.state_dict()[key])
    x = torch.randn(1, 3, SIZE, SIZE)
    model.eval()
    reference.load_state_dict(model.state_dict())
    torch.testing.assert_close(
        model(x, head="reconstruction"), reference.eval()(x, head="reconstruction")
    )


def test_mask_tokens_fill_the_masked_positions_before_the_decoder() -> None:
    recon = SparseReconstructor(_net("tiny")).eval()
    assert [t.shape[1] for t in recon.mask_tokens] == list(recon.model.encoder.out_channels)[1:]
    cells = torch.tensor([[[[True, False], [False, False]]]])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = recon(x, ~cells)
        recon.mask_tokens[-1].add_(1.0)
        after = recon(x, ~cells)
        assert not torch.equal(before, after)
        # With nothing masked, the tokens play no part.
        everything = torch.ones_like(cells)
        one = recon(x, everything)
        recon.mask_tokens[-1].add_(1.0)
        torch.testing.assert_close(recon(x, everything), one)
    restored = SparseReconstructor(_net("tiny"))
    restored.load_tokens(recon.tokens_state())
    for a, b in zip(restored.mask_tokens, recon.mask_tokens, strict=True):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------
# The cell masker


def test_cells_lie_on_the_stride_32_grid_and_in_the_central_region() -> None:
    masker = GridMasker(256, 0.6, "center")
    start, stop = center_bounds(256)
    assert len(masker.candidates) == 36 and masker.count == 22  # 6×6 centred cells, 60%
    cells = masker(8, torch.Generator().manual_seed(0))
    assert cells.shape == (8, 1, 8, 8) and (cells.sum(dim=(1, 2, 3)) == 22).all()
    assert masker.masked_share(cells) == pytest.approx(22 / 36)
    rows = cells.any(dim=3)[:, 0].any(0).nonzero().flatten() * 32 + 16
    assert rows.min() >= start and rows.max() < stop  # no cell centred outside the region
    pixels = masker.pixels(cells)
    assert pixels.shape == (8, 1, 256, 256)
    blocks = pixels.view(8, 1, 8, 32, 8, 32)
    assert torch.equal(blocks.all(dim=(3, 5)), blocks.any(dim=(3, 5)))  # whole cells only
    again = masker(8, torch.Generator().manual_seed(0))
    assert torch.equal(cells, again)


def test_the_image_variant_masks_anywhere_and_every_image_keeps_a_visible_cell() -> None:
    masker = GridMasker(256, 0.6, "image")
    assert len(masker.candidates) == 64 and masker.count == 38
    cells = masker(64, torch.Generator().manual_seed(0))
    assert cells[:, 0, 0, :].any() and cells[:, 0, :, 0].any()  # the border is masked too
    with pytest.raises(ValueError, match="leaves none visible"):
        GridMasker(32, 0.6, "image")
    with pytest.raises(ValueError, match="multiple of the 32-px grid"):
        GridMasker(100)


def test_sparse_recipes_are_registered_and_checked() -> None:
    sparse = pretrain_recipe("sparse")
    assert sparse.sparse and sparse.mask_ratio == 0.6 and sparse.mask_cells == "center"
    assert sparse.loss_region == "masked" and sparse.norm_pix and sparse.norm_patch == 32
    assert pretrain_recipe("sparse-image").mask_cells == "image"
    assert not pretrain_recipe("spark").sparse
    with pytest.raises(ValueError, match="needs sparse"):
        pretrain_recipe("spark", mask_cells="image")
    with pytest.raises(ValueError, match="not num_patches"):
        pretrain_recipe("sparse", num_patches=4)


# ---------------------------------------------------------------------------------------------
# Stage 1 with the sparse recipe, then stage 2


RUN = {"preset": "tiny", "epochs": 2, "batch_size": 2, "lr": 3e-3, "seed": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    for i in range(8):
        write_image(root / f"face{i}.png", synthetic_face(64, seed=i)[0])
    return root


def _config(faces: Path, out: Path) -> PretrainConfig:
    return PretrainConfig.from_flat(
        dict(image_dirs=(str(faces),), out_dir=str(out), **RUN), "sparse"
    )


@pytest.fixture(scope="module")
def sparse_run(faces, tmp_path_factory) -> tuple[Path, list[dict]]:
    progress: list[dict] = []
    out = tmp_path_factory.mktemp("sparse")
    return pretrain(_config(faces, out), on_progress=progress.append), progress


def test_a_sparse_stage_one_loads_into_stage_two_as_any_other(sparse_run, tmp_path) -> None:
    path, progress = sparse_run
    assert len(progress) == 8 and all(p["masked_share"] == 0.5 for p in progress)  # 2 of 4 cells
    ckpt = load_checkpoint(path)
    assert ckpt.heads == ("reconstruction",) and len(ckpt.meta["mask_tokens"]) == 5
    lapa = write_synthetic_lapa(tmp_path / "lapa", {"train": 4, "val": 2})
    config = FinetuneConfig.from_flat(
        dict(data=str(lapa), out_dir=str(tmp_path / "ft"), batch_size=2, epochs=1, max_steps=1,
             device="cpu", warmup_steps=0, progress_bar=False, init=f"ssl:{path}", lr=0.0)
    )  # fmt: skip
    model, _ = build_finetune_model(config)
    assert all(type(m) is nn.BatchNorm2d for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    for key, value in model.backbone_state_dict().items():
        assert torch.equal(value, ckpt.model_state[key]), key
    published = load_checkpoint(finetune(config).last_path).model_state
    weights = [k for k in model.backbone_state_dict() if k.endswith(".weight")]
    assert all(torch.equal(published[k], ckpt.model_state[k]) for k in weights)


def test_a_cancelled_sparse_run_resumes_where_an_uninterrupted_one_ends(
    faces, sparse_run, tmp_path
):
    cancel = threading.Event()
    config = _config(faces, tmp_path)
    stopped = pretrain(config, on_progress=lambda s: s["step"] == 3 and cancel.set(), cancel=cancel)
    final = load_checkpoint(pretrain(config, resume=stopped))
    uninterrupted = load_checkpoint(sparse_run[0])
    assert final.meta["step"] == 8
    for key, value in uninterrupted.model_state.items():
        torch.testing.assert_close(final.model_state[key], value, rtol=1e-4, atol=1e-5)
    for a, b in zip(final.meta["mask_tokens"], uninterrupted.meta["mask_tokens"], strict=True):
        torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-4, atol=1e-5)
