import pytest

from edge_sr.config import DCSCNConfig, preset
from edge_sr.errors import EdgeSRError


@pytest.mark.parametrize(
    "name,filters,params",
    [
        ("compact", [32, 26, 22, 18, 14, 11, 8], 26_172),  # paper: 26.2K
        ("normal", [96, 76, 65, 55, 47, 39, 32], 244_193),  # paper: 244K
        ("large", [196, 172, 153, 136, 120, 105, 90, 75, 61, 48], 1_329_111),  # paper: 1.33M
    ],
)
def test_presets_match_the_paper(name, filters, params):
    cfg = preset(name, 2)
    assert cfg.feature_filters == filters
    assert cfg.param_count() == params


def test_macs_per_pixel_match_the_table():
    assert round(preset("compact").macs_per_lr_pixel() / 1000, 1) == 25.8
    assert round(preset("normal").macs_per_lr_pixel() / 1000) == 243
    # 320x240 LR frame, normal: about 18.7 GMAC = 37 GFLOP
    assert preset("normal").gflop_per_frame(240, 320) == pytest.approx(37.3, abs=0.2)


@pytest.mark.parametrize("name", ["compact", "normal", "large"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_torch_module_matches_config(name, scale):
    torch = pytest.importorskip("torch")
    from edge_sr.model import DCSCN

    cfg = preset(name, scale)
    m = DCSCN(cfg)
    assert sum(p.numel() for p in m.parameters()) == cfg.param_count()
    x = torch.rand(1, 1, 9, 11)
    with torch.no_grad():
        assert m(x).shape == (1, 1, 9 * scale, 11 * scale)
        # forward = bicubic + residual
        up = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
        assert torch.allclose(m(x) - up, m.residual(x), atol=1e-6)


def test_bad_config_is_refused():
    with pytest.raises(EdgeSRError, match="unsupported scale 5"):
        preset("compact", 5)
    with pytest.raises(EdgeSRError, match="unknown preset"):
        preset("huge")
    with pytest.raises(EdgeSRError, match="unknown DCSCN config keys"):
        DCSCNConfig.from_dict({"scale": 2, "bogus": 1})


def test_config_round_trip():
    cfg = preset("normal", 3)
    assert DCSCNConfig.from_dict(cfg.to_dict()) == cfg


def test_relu_variant():
    """activation="relu": no slope parameters, the same convs; a PReLU config's dict is written as before the
    option existed (the shipped files' metadata unchanged) and both round-trip."""
    import dataclasses

    torch = pytest.importorskip("torch")
    from edge_sr.model import DCSCN

    p = preset("compact", 2)
    r = dataclasses.replace(p, activation="relu")
    assert "activation" not in p.to_dict() and r.to_dict()["activation"] == "relu"
    assert DCSCNConfig.from_dict(r.to_dict()) == r and DCSCNConfig.from_dict(p.to_dict()) == p
    assert r.param_count() == p.param_count() - sum(p.feature_filters) - p.a_filters - 2 * p.b_filters
    m = DCSCN(r)
    assert sum(q.numel() for q in m.parameters()) == r.param_count()
    assert not any(isinstance(mod, torch.nn.PReLU) for mod in m.modules())
    with torch.no_grad():  # every conv but the last is followed by a ReLU: the concatenated features are >= 0
        feats = [layer(torch.rand(1, 1, 8, 8) - 0.5) for layer in m.features[:1]]
    assert (feats[0] >= 0).all()
    with pytest.raises(EdgeSRError, match="unknown activation 'gelu'"):
        dataclasses.replace(p, activation="gelu")
