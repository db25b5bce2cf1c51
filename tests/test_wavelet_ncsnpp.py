"""WaveDiff's generators against the official modules, and WaveletNCSNpp's published cost.

Fixtures (tests/fixtures/wavelet_ncsnpp_parity/, wavelet_ncsnpp_patch2_parity/ and
wavediff_ncsnpp_parity/, README.md there): tiny official ``WaveletNCSNpp`` (once with
``patch_size`` 2, as run.sh celeba_1024) and CIFAR-10-style ``NCSNpp`` of VinAIResearch/WaveDiff
(commit f1ad48bbc7a8bb95fc90f87e7811ac2513a4411e, ``score_sde/models/ncsnpp_generator_adagn.py``)
with random weights, their inputs and outputs. Cost: the official 256 px constructor (run.sh
celeba_256 / lsun) has 31,485,452 parameters and fvcore counts 28,543,553,608 FLOPs (MACs) for
one forward at 12 x 128 x 128; Trinh and Hamagami 2024 (LDDGAN paper), Table 2: 31.48M, 28.54 G.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import genbench.backbones.wavelet_ncsnpp as wn
from genbench import registry
from genbench.backbones.ncsnpp import ncsnpp
from genbench.errors import UserError
from genbench.metrics.cost import count_macs

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL_256_PARAMS = 31_485_452
OFFICIAL_256_FVCORE = 28_543_553_608  # fvcore FlopCountAnalysis(...).total() on the official net
GENBENCH_256_MACS = 28_421_432_320  # torch's FlopCounterMode / 2: convs, linears, attention
GROUP_NORM_FVCORE = 122_109_952  # fvcore's group-norm term: 4 (5 with affine) per element


def _load(name: str, factory):
    folder = FIXTURES / name
    args = json.loads((folder / "config.json").read_text())["args"]
    torch.manual_seed(0)
    net = factory(in_channels=args["num_channels"], resolution=args["image_size"],
                  nf=args["num_channels_dae"], ch_mult=args["ch_mult"],
                  num_res_blocks=args["num_res_blocks"], attn_resolutions=args["attn_resolutions"],
                  z_dim=args["nz"], z_emb_dim=args["z_emb_dim"], n_mlp=args["n_mlp"],
                  **({"patch_size": args["patch_size"]} if args["patch_size"] > 1 else {})).eval()
    state = {k: v.float() for k, v in load_file(folder / "weights.safetensors").items()}
    net.load_state_dict(state, strict=True)  # official parameter names, nothing left over
    return net, load_file(folder / "io.safetensors")


def _run(net, io) -> torch.Tensor:
    with torch.no_grad():
        return net(io["x"], io["t"], io["z"])


def _max_error(net, io) -> float:
    return (_run(net, io) - io["out"]).abs().max().item()


@pytest.mark.parametrize("name,factory", [("wavelet_ncsnpp_parity", wn.wavelet_ncsnpp),
                                          ("wavelet_ncsnpp_patch2_parity", wn.wavelet_ncsnpp),
                                          ("wavediff_ncsnpp_parity", ncsnpp)])
def test_forward_equals_the_official_module(name, factory):
    net, io = _load(name, factory)
    assert _max_error(net, io) < 1e-5
    with torch.no_grad():  # a perturbed weight is seen
        net.all_modules[-1].bias[0] += 1e-3
    assert _max_error(net, io) > 5e-4


def test_patch_size_2_keeps_the_official_two_channel_orders(monkeypatch):
    """The official input pattern stacks patches as (p1, p2, C), the output pattern reads them as
    (C, p1, p2); undoing the input rearrangement exactly at the output is detected."""
    net, io = _load("wavelet_ncsnpp_patch2_parity", wn.wavelet_ncsnpp)
    assert net.patch_size == 2 and (net.in_channels, net.resolution) == (12, 16)
    assert net.config.in_channels == 48 and net.config.resolution == 8  # the patched network
    assert sum(p.numel() for p in net.parameters()) == 158_808  # config.json's official count

    def inverse_of_patchify(x, p):
        b, c, h, w = x.shape
        x = x.reshape(b, p, p, c // (p * p), h, w).permute(0, 3, 4, 1, 5, 2)
        return x.reshape(b, c // (p * p), h * p, w * p)

    y = torch.randn(2, 3, 4, 6)
    assert torch.equal(inverse_of_patchify(wn.patchify(y, 2), 2), y)
    assert not torch.equal(wn.unpatchify(wn.patchify(y, 2), 2), y)
    monkeypatch.setattr(wn, "unpatchify", inverse_of_patchify)
    assert _max_error(net, io) > 1e-2


def test_patchify_layout_on_a_known_image():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)  # C=2, 4x4
    patched = wn.patchify(x, 2)
    assert patched.shape == (1, 8, 2, 2)
    # channel (p1 * 2 + p2) * C + c holds pixel (2h + p1, 2w + p2) of channel c
    assert patched[0, (1 * 2 + 0) * 2 + 1, 0, 1].item() == x[0, 1, 1, 2].item()
    # unpatchify reads channel c * 4 + p1 * 2 + p2 as pixel (2h + p1, 2w + p2) of channel c
    out = wn.unpatchify(patched, 2)
    assert out[0, 0, 1, 2].item() == patched[0, 0 * 4 + 1 * 2 + 0, 0, 1].item()


def _swap_middle_bands(monkeypatch) -> None:
    """pytorch_wavelets' band order (LL, cH, cV, HH) inside the network instead of DWT_2D's."""
    dwt, idwt = wn.haar_dwt, wn.haar_idwt

    def swapped_dwt(x):
        ll, lh, hl, hh = dwt(x)
        return ll, hl, lh, hh

    monkeypatch.setattr(wn, "haar_dwt", swapped_dwt)
    monkeypatch.setattr(wn, "haar_idwt", lambda ll, lh, hl, hh: idwt(ll, hl, lh, hh))


def test_swapped_band_order_inside_the_network_is_detected(monkeypatch):
    net, io = _load("wavelet_ncsnpp_parity", wn.wavelet_ncsnpp)
    _swap_middle_bands(monkeypatch)
    x = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(wn.haar_idwt(*wn.haar_dwt(x)), x)  # still a perfect transform
    assert _max_error(net, io) > 1e-2


def test_bottleneck_and_skipped_bands_matter():
    """Dropping the frequency bottleneck's second pass or the decoder's high bands is seen at
    ten times the parity tolerance (deep in the tiny random net, each moves the output ~1e-4)."""
    net, io = _load("wavelet_ncsnpp_parity", wn.wavelet_ncsnpp)
    original = net._bottleneck

    def no_second_pass(blocks, h, temb, zemb):
        first, attention, second = next(blocks), next(blocks), next(blocks)
        ll, lh, hl, hh = wn.haar_dwt(h)
        h = wn.haar_idwt(first(ll / 2, temb, zemb) * 2, lh, hl, hh)
        return second(attention(h), temb, zemb)

    net._bottleneck = no_second_pass
    assert _max_error(net, io) > 1e-4  # ten times the parity tolerance
    net._bottleneck = original
    assert _max_error(net, io) < 1e-5
    up_block = next(m for m in net.all_modules if getattr(m, "up", False))
    with torch.no_grad():
        up_block.convH_0.weight.zero_()  # the decoder no longer sees the encoder's high bands
    assert _max_error(net, io) > 1e-4


def test_haar_dwt_is_wavediff_dwt_2d_on_a_known_block():
    block = torch.tensor([[1.0, 1.0], [2.0, 3.0]]).reshape(1, 1, 2, 2)
    ll, lh, hl, hh = (b.item() for b in wn.haar_dwt(block))
    # DWT_2D: LH is high-pass along the width (pywt cV), HL along the height (pywt cH)
    assert (ll, lh, hl, hh) == pytest.approx((3.5, -0.5, -1.5, 0.5))
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    assert torch.allclose(wn.haar_idwt(*wn.haar_dwt(x)), x, atol=1e-12, rtol=0)


def test_registered_and_rejects_what_it_cannot_build():
    assert "wavelet_ncsnpp" in registry.names("backbone")
    with pytest.raises(UserError, match="divisible by 2\\*\\*len\\(ch_mult\\)=8"):
        wn.wavelet_ncsnpp(in_channels=12, resolution=12, nf=16, ch_mult=(1, 2, 2))
    with pytest.raises(UserError, match="z_dim must be >= 1"):
        wn.wavelet_ncsnpp(in_channels=12, resolution=16, z_dim=0)
    with pytest.raises(UserError, match="progressive_input='input_skip'"):
        wn.wavelet_ncsnpp(in_channels=12, resolution=16, progressive_input="input_skip")
    with pytest.raises(UserError, match="not divisible by patch_size=4"):
        wn.wavelet_ncsnpp(in_channels=12, resolution=18, nf=16, ch_mult=(1, 2), patch_size=4)
    with pytest.raises(UserError, match="after patch_size=2"):
        wn.wavelet_ncsnpp(in_channels=12, resolution=36, nf=16, ch_mult=(1, 2, 2), patch_size=2)
    with pytest.raises(UserError, match="patch_size=0"):
        wn.wavelet_ncsnpp(in_channels=12, resolution=16, patch_size=0)


def _group_norm_fvcore(net, *inputs) -> int:
    """fvcore's ``norm_flop_counter``: input elements x (5 if affine else 4) per group norm."""
    total = 0

    def hook(module, args, output):
        nonlocal total
        total += args[0].numel() * (5 if module.affine else 4)

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, torch.nn.GroupNorm)]
    net(*inputs)
    for handle in handles:
        handle.remove()
    return total


def test_256px_cost_matches_table2():
    """31.48M and 28.54 G (fvcore): genbench's count plus fvcore's group-norm term.

    Differences of convention, op by op: fvcore also counts group norms (4 FLOPs per element
    without affine, 5 with); genbench's counter does not. Convolutions, linears, the attention
    projections and products agree exactly; numpy rounds fvcore's count of each official
    attention einsum to 4 digits (11,336 MACs in all). Neither counts the Haar transforms (fvcore
    cannot trace WaveDiff's custom autograd DWT/IDWT; genbench's are additions).
    """
    with torch.device("meta"):
        net = registry.create("backbone", "wavelet_ncsnpp", in_channels=12, resolution=128)
        assert sum(p.numel() for p in net.parameters()) == OFFICIAL_256_PARAMS
        inputs = (torch.zeros(1, 12, 128, 128), torch.tensor([1]), torch.zeros(1, 100))
        macs = count_macs(lambda: net(*inputs))
        norms = _group_norm_fvcore(net, *inputs)
    assert macs == GENBENCH_256_MACS and norms == GROUP_NORM_FVCORE
    assert macs + norms == pytest.approx(OFFICIAL_256_FVCORE, abs=12_000)
    assert round((macs + norms) / 1e9, 2) == 28.54
    assert abs(OFFICIAL_256_PARAMS / 1e6 - 31.48) <= 0.01  # Table 2 prints 31.48 for 31.485452
