"""The fast paths give the plain path's answers: fused (padded) attention, channels-last FDFtNet, chunked and
NHWC inference, threaded file decoding, GPU autocast and torch.compile. Correctness only; timings live in
bench/speed.py, never in tests.
"""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.nn.attention import SDPBackend, sdpa_kernel

from fdftnet import FDFtNet, list_models
from fdftnet.data import DataError
from fdftnet.inference import CPU_CHUNK, _cpu_has_bf16, predict_arrays, predict_files, predict_tensor
from fdftnet.layers import SelfAttention2d

DEVICE = os.environ.get("TORCH_DEVICE", "cpu")


def explicit_attention(attn: SelfAttention2d, x: torch.Tensor) -> torch.Tensor:
    """SAGAN attention written out: softmax(g f^T) h, no scaling, gamma-weighted residual."""
    B, C, H, W = x.shape
    f = attn.f(x).flatten(2)                                  # (B, C/8, N)
    g = attn.g(x).flatten(2)                                  # (B, C/8, N)
    h = attn.h(x).flatten(2)                                  # (B, C, N)
    beta = torch.softmax(g.transpose(1, 2) @ f, dim=-1)      # (B, N, N)
    o = (beta @ h.transpose(1, 2)).transpose(1, 2).reshape(B, C, H, W)
    return attn.gamma * o + x


def plain_copy(model: FDFtNet) -> FDFtNet:
    """The same weights in the NCHW-contiguous layout (the slow path), built independently."""
    other = FDFtNet(**model.config).to(memory_format=torch.contiguous_format)
    other.load_state_dict(model.state_dict())
    return other.eval()


# ----------------------------------------------------------------------------- attention

@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("C,side", [(32, 32), (64, 16)])  # the FTT's 32x32 and 16x16 stages: fused path
def test_fused_attention_matches_explicit_math_forward_and_backward(C, side, channels_last, seed):
    attn = SelfAttention2d(C)
    assert side * side >= attn.fused_min_positions
    with torch.no_grad():
        attn.gamma.fill_(0.7)
        for conv in (attn.f, attn.g):  # larger scores than the default init: a peaked softmax
            conv.weight.mul_(3.0)
    x = torch.randn(2, C, side, side)
    if channels_last:
        attn = attn.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    y1, y2 = attn(x1), explicit_attention(attn, x2)
    torch.testing.assert_close(y1, y2, rtol=1e-4, atol=1e-5)
    w = torch.randn_like(y1)
    g1 = torch.autograd.grad((y1 * w).sum(), [x1, *attn.parameters()])
    g2 = torch.autograd.grad((y2 * w).sum(), [x2, *attn.parameters()])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_fused_attention_runs_the_flash_kernel(seed):
    """With only the flash backend allowed, SDPA raises if our q/k/v do not fit it (it would fall back)."""
    attn = SelfAttention2d(32).to(memory_format=torch.channels_last).eval()
    for x in (torch.randn(2, 32, 32, 32),  # NCHW input: v is made unit-stride along C
              torch.randn(2, 32, 32, 32).contiguous(memory_format=torch.channels_last)):
        with torch.inference_mode(), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            attn(x)


def test_small_stage_keeps_unpadded_path(seed):
    attn = SelfAttention2d(128)
    with torch.no_grad():
        attn.gamma.fill_(0.5)
    x = torch.randn(2, 128, 8, 8)  # N = 64 < fused_min_positions
    torch.testing.assert_close(attn(x), explicit_attention(attn, x), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- channels-last FDFtNet

@pytest.mark.parametrize("backbone", list_models())
def test_channels_last_fdftnet_matches_plain_layout(backbone, seed):
    model = FDFtNet(backbone, mb_blocks=3).eval()
    for m in model.modules():  # non-trivial attention so the FTT branch matters
        if isinstance(m, SelfAttention2d):
            m.gamma.data.fill_(0.5)
    conv = next(p for p in model.parameters() if p.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    plain = plain_copy(model)
    assert next(p for p in plain.parameters() if p.ndim == 4).is_contiguous()
    x = torch.rand(3, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), plain(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), plain(x),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("frozen", [True, False])
def test_channels_last_training_step_matches_plain_layout(frozen, seed):
    model = FDFtNet("shallownetv3", mb_blocks=3, freeze_backbone=frozen)
    plain = plain_copy(model)
    x, y = torch.rand(4, 3, 64, 64), torch.tensor([0, 1, 1, 0])
    grads = []
    for m in (model, plain):
        m.train()
        torch.manual_seed(1)  # same dropout masks (the FDFtNet head has none, the backbone is eval or frozen)
        F.cross_entropy(m(x), y).backward()
        grads.append({n: p.grad for n, p in m.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-3, atol=1e-5, msg=n)


def test_channels_last_weights_save_contiguous_and_load_back(tmp_path, seed):
    model = FDFtNet("squeezenet", mb_blocks=2).eval()
    model.save_pretrained(tmp_path / "m")
    back = FDFtNet.from_pretrained(tmp_path / "m")
    assert next(p for p in back.parameters() if p.ndim == 4).is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(back(x), model(x))


# ----------------------------------------------------------------------------- inference paths

@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return FDFtNet("shallownetv3", mb_blocks=2).eval()


def test_chunked_predict_tensor_equals_one_big_forward(small_model):
    n = 2 * CPU_CHUNK + 5  # two full chunks and a remainder
    x = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8)
    with torch.inference_mode():
        ref = torch.softmax(small_model(x.float() / 255), dim=1)[:, 1].numpy()
    for bs in (256, 7, 1):
        np.testing.assert_allclose(predict_tensor(small_model, x, batch_size=bs), ref, rtol=1e-4, atol=1e-6)


def test_predict_arrays_nhwc_views_list_and_array_agree(small_model):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(5)]
    nchw = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    ref = predict_tensor(small_model, nchw)  # the old, contiguous NCHW input
    stacked = np.stack(arrays)
    readonly = stacked.copy()
    readonly.flags.writeable = False
    for inp in (arrays, stacked, readonly, stacked[::-1][::-1]):
        np.testing.assert_allclose(predict_arrays(small_model, inp), ref, rtol=1e-5, atol=1e-7)
    assert predict_arrays(small_model, []).shape == (0,)
    assert predict_arrays(small_model, np.zeros((0, 64, 64, 3), np.uint8)).shape == (0,)


def test_predict_files_threaded_decode_matches_one_by_one(small_model, tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(6):
        p = tmp_path / f"f{i}.png"
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(p)  # resized on load
        paths.append(p)
    many = predict_files(small_model, paths)
    one = np.concatenate([predict_files(small_model, [p]) for p in paths])
    np.testing.assert_allclose(many, one, rtol=1e-5, atol=1e-7)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.png"):
        predict_files(small_model, [paths[0], tmp_path / "bad.png", paths[1]])


def test_cpu_amp_is_opt_in_and_close_to_float32(small_model):
    x = torch.randint(0, 256, (40, 3, 64, 64), dtype=torch.uint8)
    p32 = predict_tensor(small_model, x)
    np.testing.assert_array_equal(predict_tensor(small_model, x, amp=False), p32)  # the default is float32
    p16 = predict_tensor(small_model, x, amp=True)  # bf16 where the CPU has it, else float32 again
    np.testing.assert_allclose(p16, p32, atol=2e-2)
    if not _cpu_has_bf16():
        np.testing.assert_array_equal(p16, p32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_bf16_autocast_close_to_float32(small_model):
    model = FDFtNet("shallownetv3", mb_blocks=2).cuda().eval()
    model.load_state_dict(small_model.state_dict())
    x = torch.randint(0, 256, (64, 3, 64, 64), dtype=torch.uint8)
    np.testing.assert_allclose(predict_tensor(model, x, amp=True), predict_tensor(model, x), atol=2e-2)


@pytest.mark.skipif(os.environ.get("FDFTNET_TEST_COMPILE") != "1",
                    reason="torch.compile takes ~30 s on 2 cores; set FDFTNET_TEST_COMPILE=1")
def test_torch_compile_path_matches_eager(small_model):
    compiled = torch.compile(small_model)  # what bench/speed.py --compile times
    x = torch.randint(0, 256, (CPU_CHUNK, 3, 64, 64), dtype=torch.uint8)
    np.testing.assert_allclose(predict_tensor(compiled, x), predict_tensor(small_model, x), rtol=1e-4, atol=1e-6)
