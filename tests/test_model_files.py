"""Model files: safetensors + JSON card round trips; malformed and hostile files are refused clearly."""

import json
import os
import pickle
import struct

import pytest
import torch
import torch.nn as nn

import xdl
from xdl.errors import InputError, ModelFileError, UnknownModelError
from xdl.modelfile import Model, load_model

TINY = {
    "pconv-unet": dict(in_channels=2, depth=3, base_channels=8, max_channels=16),
    "unet": dict(in_channels=2, out_channels=1, depth=3, base_channels=8, max_channels=16, residual=True),
    "pix2pix": dict(in_channels=2, out_channels=1, depth=3, ngf=8, ndf=8),
    "mlp": dict(in_channels=3, out_channels=2, hidden=(16, 8), out_activation="sigmoid"),
}


def _call(model, name):
    torch.manual_seed(7)
    if name == "mlp":
        return model(torch.randn(50, 3))
    x = torch.randn(2, 2, 16, 24)
    if model.takes_mask:
        mask = (torch.rand_like(x) > 0.3).float()
        return model(x * mask, mask)
    return model(x)


def _trained_a_bit(model):
    # Touch BN running statistics so the round trip must carry buffers, not just parameters.
    model.train()
    with torch.no_grad():
        for p in model.module.parameters():
            p.add_(torch.randn_like(p) * 0.01)
        for _ in range(2):
            _call(model, model.architecture)
    return model.eval()


@pytest.fixture
def saved(tmp_path):
    m = xdl.zoo.create("mlp", in_channels=3, hidden=(4,), card={"inputs": ["t", "p", "q"], "outputs": ["r"]})
    path = tmp_path / "m.xdl.safetensors"
    m.save(path)
    return m, path


def _header(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _write(path, header, data):
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("name", ["pconv-unet", "unet", "pix2pix", "mlp"])
def test_save_load_bit_identical(tmp_path, name):
    m = _trained_a_bit(xdl.zoo.create(name, **TINY[name]))
    path = tmp_path / f"{name}.xdl.safetensors"
    m.save(path)
    m2 = load_model(path)
    assert type(m2.module) is type(m.module)
    assert not m2.module.training
    with torch.no_grad():
        a, b = _call(m, name), _call(m2, name)
    assert torch.equal(a, b)
    assert m2.card == m.card
    assert m2.content_hash() == m.content_hash()
    # Readable as any new file is (safetensors alone writes 0600: a cluster's workers under another
    # user could not read a saved model; probe).
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    for k, v in m.module.state_dict().items():  # buffers included
        assert torch.equal(v, m2.module.state_dict()[k]), k


def test_card_round_trip_and_defaults(tmp_path):
    card = {"inputs": ["sst"], "outputs": ["sst"], "units": {"sst": "K"}, "output_units": {"sst": "K"},
            "standard_names": {"sst": "sea_surface_temperature"},
            "normalization": {"kind": "global", "mean": {"sst": 290.5}, "std": {"sst": 4.25}},
            "training": {"data": "ERA5 1990-2000", "steps": 1000, "masks": "observed"},
            "metrics": {"rmse": 0.31}, "description": "test model", "custom_key": [1, 2]}
    m = xdl.zoo.create("pconv-unet", **TINY["pconv-unet"] | {"in_channels": 1}, card=card)
    assert m.mode == "spatial" and m.takes_mask and m.fills_gaps
    assert m.size_multiple == 8 and m.halo == 16 and m.in_channels == m.out_channels == 1
    assert m.config["kernels"] == [7, 5, 5] and m.architecture == "pconv-unet"
    assert m.xdl_version == xdl.__version__
    path = tmp_path / "sst.xdl.safetensors"
    m.save(path)
    m2 = load_model(str(path))
    assert m2.card == m.card
    for k, v in card.items():
        assert m2.card[k] == v
    assert m2.normalization["mean"]["sst"] == 290.5
    assert m2.units == {"sst": "K"} and m2.standard_names["sst"] == "sea_surface_temperature"
    assert json.loads(json.dumps(m2.card)) == m2.card
    r = repr(m2)
    assert "pconv-unet" in r and "spatial" in r and "sst" in r
    assert m2.num_parameters > 0


def test_model_wraps_plain_and_zoo_modules(tmp_path):
    from xdl.models.unet import UNet

    m = Model(UNet(1, 1, depth=2, base_channels=4))
    assert m.architecture == "unet" and m.config["depth"] == 2 and m.size_multiple == 4
    m.save(tmp_path / "u.safetensors")
    assert load_model(tmp_path / "u.safetensors").config == m.config

    plain = Model(nn.Conv2d(1, 1, 3, padding=1), card={"inputs": ["a"], "outputs": ["b"]})
    assert plain.architecture is None and plain.in_channels == 1 and plain.halo is None
    path = tmp_path / "plain.safetensors"
    plain.save(path)
    with pytest.raises(ModelFileError, match="plain"):
        load_model(path)
    back = load_model(path, module=nn.Conv2d(1, 1, 3, padding=1))
    assert torch.equal(back.module.weight, plain.module.weight) and back.inputs == ["a"]

    with pytest.raises(InputError):
        Model(nn.Linear(2, 2), card={"training": {"when": object()}})  # not JSON
    with pytest.raises(InputError):
        xdl.zoo.create("mlp", in_channels=2, inputs=["a", "b", "c"])  # 3 names, 2 channels
    with pytest.raises(InputError, match="hidden"):
        xdl.zoo.create("mlp", in_channels=2, hiden=(3,))


def test_model_is_usable_like_a_module():
    m = xdl.zoo.create("mlp", inputs=["a", "b"], outputs=["c"], hidden=(4,))
    assert m.in_channels == 2 and m.out_channels == 1 and m.config["in_channels"] == 2
    assert m.to("cpu") is m and m.eval() is m and not m.module.training
    assert m(torch.zeros(3, 2)).shape == (3, 1)
    assert m.device.type == "cpu"
    c = m.card
    c["inputs"].append("zzz")  # the card property is a copy
    assert m.inputs == ["a", "b"]


def test_zoo_list_describe_create():
    assert xdl.zoo.list() == ["fill-unet", "mlp", "pconv-unet", "pix2pix", "unet"]
    d = xdl.zoo.describe()
    assert set(d) == set(xdl.zoo.list()) and all(d.values())
    with pytest.raises(UnknownModelError, match="pconv-unet"):
        xdl.zoo.create("resnet-9000")
    p = xdl.zoo.create("pix2pix", in_channels=1, out_channels=1, depth=3, ngf=4, ndf=4)
    assert p.mode == "spatial" and not p.fills_gaps and p.size_multiple == 8


# ---------------------------------------------------------------- content hash

def test_content_hash_stable_and_sensitive(saved):
    m, path = saved
    h = m.content_hash()
    assert h == m.content_hash() and len(h) == 64
    assert load_model(path).content_hash() == h
    with torch.no_grad():
        m.module.net[0].weight[0, 0] += 1e-6
    assert m.content_hash() != h
    with torch.no_grad():
        m.module.net[0].weight[0, 0] -= 1e-6
    m2 = Model(m, card={"description": "other"})
    assert m2.content_hash() != m.content_hash()


def test_content_hash_sees_bn_buffers():
    m = xdl.zoo.create("unet", **TINY["unet"]).eval()
    h = m.content_hash()
    m.module.inc.body[1].running_mean += 1
    assert m.content_hash() != h


# ---------------------------------------------------------------- malformed and hostile files

def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file") as e:
        load_model(tmp_path / "nope.safetensors")
    assert "nope.safetensors" in str(e.value)
    with pytest.raises(ModelFileError, match="directory"):
        load_model(tmp_path)


def test_torch_save_file_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(ModelFileError, match="never unpickles") as e:
        load_model(path)
    msg = str(e.value)
    assert "model.pt" in msg and "xdl.Model(" in msg and ".save(" in msg


def test_raw_pickle_refused(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}, protocol=4))
    with pytest.raises(ModelFileError, match="never unpickles"):
        load_model(path)
    path.write_bytes(pickle.dumps({"weight": [1.0]}, protocol=2))  # legacy torch.save starts so too
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(path)


class _Planted:
    marker = None

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind", ["pickle", "torch"])
def test_planted_pickle_payload_never_runs(tmp_path, kind):
    marker = tmp_path / "PWNED"
    _Planted.marker = str(marker)
    path = tmp_path / f"evil.{kind}"
    if kind == "pickle":
        path.write_bytes(pickle.dumps(_Planted()))
    else:
        torch.save({"weight": _Planted()}, path)
    assert not marker.exists()
    with pytest.raises(ModelFileError):
        load_model(path)
    assert not marker.exists()
    # a pickle hidden behind a plausible safetensors name is refused just the same
    os.replace(path, tmp_path / "evil.xdl.safetensors")
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "evil.xdl.safetensors")
    assert not marker.exists()


def test_truncated_file(saved, tmp_path):
    _, path = saved
    raw = path.read_bytes()
    for cut in (3, 20, len(raw) - 5):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(raw[:cut])
        with pytest.raises(ModelFileError, match="truncated") as e:
            load_model(bad)
        assert f"cut{cut}" in str(e.value)


def test_header_length_beyond_file(saved, tmp_path):
    _, path = saved
    raw = path.read_bytes()
    bad = tmp_path / "biglen.safetensors"
    bad.write_bytes(struct.pack("<Q", len(raw) * 10) + raw[8:])
    with pytest.raises(ModelFileError, match="beyond the file size"):
        load_model(bad)


def test_garbage_bytes(tmp_path):
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(os.urandom(16) + b"this is not a model at all" * 10)
    with pytest.raises(ModelFileError, match="garbage.safetensors"):
        load_model(bad)
    bad.write_bytes(struct.pack("<Q", 12) + b"{not json!!}" + b"\0" * 16)
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(bad)
    bad.write_bytes(b"")
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(bad)


def test_plain_safetensors_without_card(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ModelFileError, match="xdl_card"):
        load_model(path)


def test_bad_card_json(saved, tmp_path):
    _, path = saved
    header, data = _header(path)
    header["__metadata__"]["xdl_card"] = "{broken"
    _write(tmp_path / "c.safetensors", header, data)
    with pytest.raises(ModelFileError, match="card is not valid JSON"):
        load_model(tmp_path / "c.safetensors")


def test_unknown_architecture(saved, tmp_path):
    _, path = saved
    header, data = _header(path)
    card = json.loads(header["__metadata__"]["xdl_card"])
    card["architecture"] = "transformer-xxl"
    header["__metadata__"]["xdl_card"] = json.dumps(card)
    bad = tmp_path / "arch.safetensors"
    _write(bad, header, data)
    with pytest.raises(UnknownModelError) as e:
        load_model(bad)
    assert isinstance(e.value, ModelFileError)
    msg = str(e.value)
    assert "transformer-xxl" in msg and "pconv-unet" in msg and "arch.safetensors" in msg


def test_missing_extra_misshaped_tensors(tmp_path):
    from safetensors.torch import save_file

    m = xdl.zoo.create("mlp", in_channels=3, hidden=(4,))
    sd = {k: v.contiguous() for k, v in m.module.state_dict().items()}
    meta = {"xdl_card": json.dumps(m.card), "xdl_format": "1"}

    cases = {
        "missing": ({k: v for k, v in sd.items() if k != "net.0.bias"}, "missing tensors: net.0.bias [4]"),
        "extra": ({**sd, "net.9.weight": torch.zeros(2, 2)}, "unexpected tensors: net.9.weight [2, 2]"),
        "shape": ({**sd, "net.0.weight": torch.zeros(5, 3)}, "net.0.weight is [5, 3], expected [4, 3]"),
    }
    for name, (tensors, expected) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, path, metadata=meta)
        with pytest.raises(ModelFileError) as e:
            load_model(path)
        assert expected in str(e.value) and f"{name}.safetensors" in str(e.value)


def test_bad_config_in_card(saved, tmp_path):
    _, path = saved
    header, data = _header(path)
    card = json.loads(header["__metadata__"]["xdl_card"])
    card["config"]["no_such_option"] = 1
    header["__metadata__"]["xdl_card"] = json.dumps(card)
    _write(tmp_path / "cfg.safetensors", header, data)
    with pytest.raises(ModelFileError, match="no_such_option"):
        load_model(tmp_path / "cfg.safetensors")


def test_unsupported_format_version(saved, tmp_path):
    _, path = saved
    header, data = _header(path)
    header["__metadata__"]["xdl_format"] = "99"
    _write(tmp_path / "v.safetensors", header, data)
    with pytest.raises(ModelFileError, match="upgrade xdl"):
        load_model(tmp_path / "v.safetensors")


def test_save_is_atomic_and_overwrites(saved):
    m, path = saved
    m2 = Model(m, card={"description": "second"})
    m2.save(path)
    assert load_model(path).description == "second"
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_header_length_starting_with_pickle_byte_is_still_read(saved, tmp_path):
    # A header of 0x480 bytes starts with b"\x80\x04", like a protocol-4 pickle: not to be refused.
    _, path = saved
    header, data = _header(path)
    h = json.dumps(header).encode()
    h += b" " * (0x480 - len(h))
    assert len(h) == 0x480
    p = tmp_path / "x80.safetensors"
    p.write_bytes(struct.pack("<Q", len(h)) + h + data)
    assert p.read_bytes()[:2] == b"\x80\x04"
    assert load_model(p).inputs == ["t", "p", "q"]
