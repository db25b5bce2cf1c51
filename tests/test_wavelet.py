"""The Haar wavelet latent space: PyWavelets parity, exact inverse, range, shapes, cost."""

import json

import numpy as np
import pytest
import pywt
import torch

from genbench import registry
from genbench.errors import UserError
from genbench.latents.base import reconstruction_fid, reconstruction_images
from genbench.latents.wavelet import WaveletSpace
from genbench.metrics.cost import count_macs, count_parameters


def _images(n=3, c=3, h=8, w=6, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, c, h, w, generator=g, dtype=dtype) * 2 - 1)


def test_bands_equal_pywavelets_divided_by_two():
    x = _images(dtype=torch.float64)
    bands = WaveletSpace().encode(x)
    cA, (cH, cV, cD) = pywt.dwt2(x.numpy(), "haar", axes=(-2, -1))
    # band-major: LL of every channel, then LH, HL, HH, as WaveDiff's CIFAR-10 path concatenates
    # pytorch_wavelets' DWTForward(J=1, wave="haar") bands (VinAIResearch/WaveDiff train_wddgan.py)
    expected = np.concatenate([cA, cH, cV, cD], axis=1) / 2.0
    assert bands.shape == (3, 12, 4, 3)
    np.testing.assert_allclose(bands.numpy(), expected, rtol=0, atol=1e-12)


def test_band_order_on_a_known_block():
    # one 2x2 block [[a, b], [c, d]] per channel; channel k holds (k + 1) * block
    block = torch.tensor([[1.0, 2.0], [3.0, 5.0]]) / 8
    x = torch.stack([(k + 1) * block for k in range(3)]).unsqueeze(0)
    a, b, c, d = block.flatten().tolist()
    bands = [(a + b + c + d) / 4, (a + b - c - d) / 4, (a - b + c - d) / 4, (a - b - c + d) / 4]
    expected = [(k + 1) * v for v in bands for k in range(3)]  # LL, LH, HL, HH band-major
    assert WaveletSpace().encode(x).flatten().tolist() == pytest.approx(expected, abs=1e-7)


def test_round_trip_is_exact():
    space = WaveletSpace()
    x = _images(n=4, c=3, h=32, w=32)
    np.testing.assert_allclose(space.decode(space.encode(x)).numpy(), x.numpy(), atol=1e-6)
    grey = _images(n=2, c=1, h=16, w=16, dtype=torch.float64)
    assert torch.allclose(space.decode(space.encode(grey)), grey, atol=1e-12, rtol=0)


def test_inverse_matches_pywavelets_idwt2():
    x = _images(n=2, c=3, h=8, w=8, dtype=torch.float64)
    bands = WaveletSpace().encode(x).numpy() * 2.0
    ll, lh, hl, hh = np.split(bands, 4, axis=1)
    rebuilt = pywt.idwt2((ll, (lh, hl, hh)), "haar", axes=(-2, -1))
    np.testing.assert_allclose(rebuilt, x.numpy(), atol=1e-12)


def test_bands_stay_in_unit_interval_at_the_extremes():
    g = torch.Generator().manual_seed(1)
    signs = torch.randint(0, 2, (64, 3, 8, 8), generator=g).float() * 2 - 1  # corners of [-1,1]^n
    checker = (torch.arange(8).view(-1, 1) + torch.arange(8)).remainder(2).float() * 2 - 1
    x = torch.cat([signs, checker.expand(1, 3, 8, 8), torch.ones(1, 3, 8, 8)])
    bands = WaveletSpace().encode(x)
    assert bands.abs().max() <= 1.0
    assert bands.abs().max() == 1.0  # the bound is reached: the 1/2 scaling is not too generous


def test_decode_clamps_to_unit_interval():
    out = WaveletSpace().decode(torch.full((1, 12, 4, 4), 0.9))
    assert out.min() >= -1 and out.max() <= 1 and out.max() == 1.0


def test_latent_shape_and_errors():
    space = registry.create("latent", "wavelet")
    assert space.latent_shape((3, 32, 32)) == (12, 16, 16)
    assert space.latent_shape((1, 8, 8)) == (4, 4, 4)
    with pytest.raises(UserError, match="odd"):
        space.latent_shape((3, 31, 31))
    with pytest.raises(UserError):
        space.latent_shape((3, 32))
    with pytest.raises(UserError):
        space.decode(torch.zeros(1, 6, 4, 4))


def test_contract_cost_and_identity():
    space = WaveletSpace()
    assert space.needs_fit is False
    decoder = space.decoder_module()
    assert count_parameters(decoder) == 0
    z = torch.zeros(1, 12, 16, 16)
    assert count_macs(lambda: space.decode(z)) == 4 * 3 * 32 * 32  # 4 MACs per output pixel
    json.dumps(space.identity())


def test_reconstruction_images_are_lossless_for_the_wavelet():
    g = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (5, 3, 8, 8), generator=g, dtype=torch.uint8)
    assert torch.equal(reconstruction_images(WaveletSpace(), images, batch_size=2), images)


def test_reconstruction_fid_of_a_lossless_space_is_zero():
    from genbench.metrics.features import FeatureExtractor

    projection = torch.randn(3 * 8 * 8, 6, generator=torch.Generator().manual_seed(3))
    extractor = FeatureExtractor("toy", {"dims": 6}, lambda x: x.flatten(1).float() @ projection,
                                 progress=False)
    g = torch.Generator().manual_seed(4)
    images = torch.randint(0, 256, (40, 3, 8, 8), generator=g, dtype=torch.uint8)
    out = reconstruction_fid(WaveletSpace(), images, extractor, batch_size=16)
    assert out["rfid"] == pytest.approx(0.0, abs=1e-6) and out["num_images"] == 40
    shifted = reconstruction_fid(WaveletSpace(), images, extractor,
                                 real_features=extractor((images // 2).contiguous()))
    assert shifted["rfid"] > 1.0


# ---------------------------------------------------------------------------------------------
# Band order against WaveDiff's two transforms (tests/fixtures/wavelet_ncsnpp_parity/README.md)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("band_order", ["dwt_2d", "pytorch_wavelets"])
def test_band_order_matches_the_official_data_transform(band_order):
    from pathlib import Path

    from safetensors.torch import load_file

    ref = load_file(Path(__file__).parent / "fixtures" / "wavelet_ncsnpp_parity"
                    / "haar_data_transforms.safetensors")
    space = registry.create("latent", "wavelet", band_order=band_order)
    torch.testing.assert_close(space.encode(ref["images"]), ref[f"encode_{band_order}"],
                               rtol=0, atol=1e-6)
    decoded = space.decode(ref["bands"])  # decode clamps to [-1, 1], as WaveDiff's sampler does
    torch.testing.assert_close(decoded, ref[f"decode_{band_order}"].clamp(-1, 1), rtol=0,
                               atol=1e-6)
    other = "pytorch_wavelets" if band_order == "dwt_2d" else "dwt_2d"
    assert (space.encode(ref["images"]) - ref[f"encode_{other}"]).abs().max() > 0.1
    # the default keeps the identity recorded before band_order existed (cache keys)
    identities = {o: registry.create("latent", "wavelet", band_order=o).identity()
                  for o in ("dwt_2d", "pytorch_wavelets")}
    assert identities["pytorch_wavelets"]["band_order"] == "band-major LL,LH,HL,HH"
    assert identities["dwt_2d"] != identities["pytorch_wavelets"]


def test_unknown_band_order_is_a_user_error():
    with pytest.raises(UserError, match="latent.band_order='haar'"):
        registry.create("latent", "wavelet", band_order="haar")
