"""Model files (hybridcodec/model.py): save/load round trip, bad files, the embedded default.

A model file pins down every integer the coding path uses; its id is a hash of them. So a
saved and reloaded model must have the same id *and* code every frame to the same bytes,
and anything that is not a complete model file must raise :class:`ModelError` (exactly
that type: nothing from numpy, zipfile or json may escape).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tracemalloc
import zipfile
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import hybridcodec
from hybridcodec.errors import ModelError
from hybridcodec.framecodec import decode_frame, encode_frame, layer_count
from hybridcodec.model import DEFAULT_MODEL_NAME, HybridModel, ModelConfig, load_model, model_id_of

REPO = Path(__file__).resolve().parents[1]
ID_CHARS = set("0123456789abcdef")


def _pcm(n: int = 3000, channels: int = 2, seed: int = 0) -> np.ndarray:
    """A smooth 16-bit-range signal with some noise: exercises prediction and the cascade."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    freqs = 0.003 + 0.011 * np.arange(channels)[None, :]
    x = 9000 * np.sin(2 * np.pi * freqs * t) + 2500 * np.sin(2 * np.pi * 7.1 * freqs * t)
    x = x + rng.normal(0, 300, size=(n, channels))
    return np.clip(np.round(x), -32768, 32767).astype(np.int64)


def _perturbed_model(seed: int = 1) -> HybridModel:
    """A model that differs from the untrained one in every net (as training would)."""
    rng = np.random.default_rng(seed)
    model = HybridModel(ModelConfig())
    for net in model.nets().values():
        net.linear += np.round(rng.normal(0, 0.01 * 2**net.frac_bits, net.taps)).astype(np.int64)
    return model


def _config_json(model: HybridModel) -> str:
    # JSON normalises tuples to lists, as the model file does.
    return json.dumps(asdict(model.config), sort_keys=True)


def _default_bytes() -> bytes:
    return resources.files("hybridcodec.models").joinpath(DEFAULT_MODEL_NAME).read_bytes()


def _assert_model_error(path) -> ModelError:
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert type(info.value) is ModelError, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert message and "\n" not in message
    return info.value


# --------------------------------------------------------------------------- save / load


@pytest.mark.parametrize("which", ["untrained", "perturbed", "default"])
def test_save_load_keeps_id_and_coding(tmp_path, which):
    if which == "untrained":
        model = HybridModel()
    elif which == "perturbed":
        model = _perturbed_model()
    else:
        model = HybridModel.from_bytes(_default_bytes())
    path = tmp_path / f"{which}.hcm"
    saved_id = model.save(path)
    assert path.is_file() and not list(tmp_path.glob("*.tmp")), "save leaves a temp file"
    assert saved_id == model_id_of(model)
    assert len(saved_id) == 16 and set(saved_id) <= ID_CHARS

    loaded, loaded_id = load_model(path)
    assert loaded_id == saved_id
    assert model_id_of(loaded) == saved_id
    assert _config_json(loaded) == _config_json(model)

    # Same coding behaviour: identical bytes for every layer, and each decodes the other.
    for channels, seed in [(1, 3), (2, 4), (3, 5)]:
        pcm = _pcm(2500, channels, seed)
        layers = encode_frame(model, pcm)
        assert encode_frame(loaded, pcm) == layers
        assert np.array_equal(decode_frame(loaded, dict(layers), len(pcm), channels), pcm)

    # Saving again gives the same file bytes (no timestamps or random ids inside).
    again = tmp_path / "again.hcm"
    assert loaded.save(again) == saved_id
    assert model_id_of(HybridModel.from_bytes(again.read_bytes())) == saved_id


def test_different_weights_give_different_ids(tmp_path):
    untrained = model_id_of(HybridModel())
    perturbed = model_id_of(_perturbed_model(1))
    other = model_id_of(_perturbed_model(2))
    default = load_model(None)[1]
    assert len({untrained, perturbed, other, default}) == 4


def test_model_file_used_by_encode_and_decode(tmp_path):
    """A model saved to a file codes a whole file; the stream names that model's id."""
    import soundfile as sf

    from hybridcodec.container import StreamReader

    model = _perturbed_model(7)
    model_path = tmp_path / "m.hcm"
    model_id = model.save(model_path)
    pcm = _pcm(5000, 2, 11)
    sf.write(tmp_path / "in.wav", pcm.astype(np.int16), 16000, subtype="PCM_16")
    hybridcodec.encode(tmp_path / "in.wav", tmp_path / "x.hyb", model=str(model_path))
    with open(tmp_path / "x.hyb", "rb") as fp:
        assert StreamReader(fp).header.model_id == model_id
    hybridcodec.decode(tmp_path / "x.hyb", tmp_path / "out.wav", model=str(model_path))
    out, rate = sf.read(tmp_path / "out.wav", dtype="int16", always_2d=True)
    assert rate == 16000 and np.array_equal(out, pcm)


# --------------------------------------------------------------------------- bad files


def test_garbage_model_file(tmp_path):
    path = tmp_path / "garbage.hcm"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    _assert_model_error(path)


def test_empty_model_file(tmp_path):
    path = tmp_path / "empty.hcm"
    path.write_bytes(b"")
    _assert_model_error(path)


@pytest.mark.parametrize("fraction", [0.0005, 0.1, 0.5, 0.9, 0.999])
def test_truncated_model_file(tmp_path, fraction):
    data = _default_bytes()
    path = tmp_path / f"trunc-{fraction}.hcm"
    path.write_bytes(data[: max(1, int(len(data) * fraction))])
    _assert_model_error(path)


def test_model_file_missing_and_directory(tmp_path):
    _assert_model_error(tmp_path / "does-not-exist.hcm")
    (tmp_path / "adir.hcm").mkdir()
    _assert_model_error(tmp_path / "adir.hcm")


def _rewrite_npz(data: bytes, edit) -> bytes:
    """Load a model npz, let ``edit`` change the dict of arrays, save it again."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _set_meta(arrays: dict, text: str) -> None:
    arrays["meta"] = np.frombuffer(text.encode(), np.uint8)


@pytest.mark.parametrize(
    "name, edit",
    [
        ("npz-without-meta", lambda a: a.pop("meta")),
        ("meta-not-json", lambda a: _set_meta(a, "{not json")),
        ("meta-not-object", lambda a: _set_meta(a, "[1, 2]")),
        ("wrong-magic", lambda a: _set_meta(a, '{"magic": "other", "version": 1, "config": {}}')),
        ("future-version", lambda a: _set_meta(
            a, '{"magic": "hybridcodec-model", "version": 99, "config": {}}')),
        ("config-unknown-key", lambda a: _set_meta(
            a, '{"magic": "hybridcodec-model", "version": 1, "config": {"no_such": 1}}')),
        ("missing-weight", lambda a: a.pop(sorted(k for k in a if k.endswith("linear"))[0])),
        ("wrong-weight-shape", lambda a: a.__setitem__(
            sorted(k for k in a if k.endswith("linear"))[0], np.zeros((1, 1, 3), np.int64))),
        ("missing-table", lambda a: a.pop("table_freq")),
    ],
)
def test_inconsistent_model_file(tmp_path, name, edit):
    path = tmp_path / f"{name}.hcm"
    path.write_bytes(_rewrite_npz(_default_bytes(), edit))
    _assert_model_error(path)


def _edit_config(arrays: dict, change) -> None:
    meta = json.loads(bytes(arrays["meta"]).decode())
    change(meta["config"])
    _set_meta(arrays, json.dumps(meta))


@pytest.mark.parametrize("name, change", [
    ("envelope-missing-key", lambda c: c["envelope"].pop("slot_ms")),
    ("envelope-slot-too-long", lambda c: c["envelope"].__setitem__("slot_ms", 1000.0)),
    ("envelope-fine-levels-above-levels", lambda c: c["envelope"].__setitem__("fine_levels", 9)),
    ("envelope-step-zero", lambda c: c["envelope"]["coarse"].__setitem__("step", 0.0)),
    ("envelope-decimate-float", lambda c: c["envelope"]["fine"].__setitem__("decimate", 1.5)),
    ("segments-below-1024", lambda c: c.__setitem__("segment_length", 512)),
    ("segments-not-power-of-two", lambda c: c.__setitem__("segment_length", 3 << 12)),
    ("cascade-order-too-long", lambda c: c["detail_cascade"][0].__setitem__(1, 4096)),
    ("cascade-step-too-large", lambda c: c["coarse_cascade"][0].__setitem__(2, 1 << 12)),
    ("too-many-layers", lambda c: c.update(levels=12, anchor_planes=7)),
    ("missing-key", lambda c: c.pop("cross_channel")),
])
def test_out_of_range_config_is_a_model_error(tmp_path, name, change):
    """Every config rule of the format spec rejects the file with a one-line error (the
    payload-4 rules were once unreachable behind another check)."""
    path = tmp_path / f"{name}.hcm"
    path.write_bytes(_rewrite_npz(_default_bytes(), lambda a: _edit_config(a, change)))
    _assert_model_error(path)


def test_deeply_nested_meta_is_a_model_error(tmp_path):
    """JSON nested deeper than the parser's recursion limit (the fuzz campaign found a
    RecursionError escaping: exit 70)."""
    path = tmp_path / "deep.hcm"
    path.write_bytes(_rewrite_npz(_default_bytes(), lambda a: _set_meta(
        a, "[" * 100_000 + "]" * 100_000)))
    _assert_model_error(path)


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("name", ["table_freq.npy", "means.0.linear.npy", "other"])
@pytest.mark.parametrize("shape", [(2**27,), (2**40,), (2**14, 2**14)])
def test_npy_header_declaring_more_than_its_member_holds(tmp_path, name, shape):
    """A member whose .npy header declares a huge array is refused before numpy
    allocates it (the fuzz campaign found np.load allocating the declared 1 GB to 8 TB
    first, whatever the member held); a member without the .npy suffix too."""
    members = _members(_default_bytes())
    real = members.get(name, members["table_freq.npy"])
    array = np.load(io.BytesIO(real))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<i8", "fortran_order": False, "shape": shape})
    members[name] = header.getvalue() + array.tobytes()
    path = tmp_path / "lying.hcm"
    path.write_bytes(_zip_of(members))
    tracemalloc.start()
    try:
        error = _assert_model_error(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak
    assert "declares" in str(error)


def test_npy_object_array_member(tmp_path):
    """A member holding pickled objects is not a model file (np.load refuses it too)."""
    members = _members(_default_bytes())
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    members["table_freq.npy"] = buf.getvalue()
    path = tmp_path / "object.hcm"
    path.write_bytes(_zip_of(members))
    _assert_model_error(path)


@pytest.mark.parametrize("value, ok", [
    (16 * 2**14, True), (-16 * 2**14, True), (16 * 2**14 + 1, False),
    (-2**63, False),  # |-2**63| overflows to -2**63: it passed the range check
    (0.5, False), (float("nan"), False),  # float weights were cast to int64 (NaN: -2**63)
    (2**63 + 5, False),  # uint64
])
def test_weights_must_be_integers_in_range(tmp_path, value, ok):
    def edit(arrays):
        key = sorted(k for k in arrays if k.endswith("linear"))[0]
        dtype = np.float64 if isinstance(value, float) else \
            np.uint64 if value >= 2**63 else np.int64
        weights = arrays[key].astype(dtype)
        weights.flat[0] = value
        arrays[key] = weights

    path = tmp_path / "weights.hcm"
    path.write_bytes(_rewrite_npz(_default_bytes(), edit))
    if ok:
        load_model(path)
    else:
        _assert_model_error(path)


def test_zip_that_is_not_a_model(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hello.txt", "not a model")
    path = tmp_path / "zip.hcm"
    path.write_bytes(buf.getvalue())
    _assert_model_error(path)


def test_bad_model_through_public_api(tmp_path):
    """encode/decode with a bad --model raise ModelError and write nothing."""
    import soundfile as sf

    bad = tmp_path / "bad.hcm"
    bad.write_bytes(b"PK\x03\x04 definitely not a model")
    sf.write(tmp_path / "in.wav", _pcm(1000, 1).astype(np.int16), 8000, subtype="PCM_16")
    with pytest.raises(ModelError) as info:
        hybridcodec.encode(tmp_path / "in.wav", tmp_path / "x.hyb", model=str(bad))
    assert type(info.value) is ModelError
    assert not (tmp_path / "x.hyb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.hcm", "in.wav"]


# --------------------------------------------------------------------------- embedded default


def test_default_model_embedded_small_and_stable():
    data = _default_bytes()
    assert 0 < len(data) < 5 * 1024 * 1024
    model, model_id = load_model(None)
    assert isinstance(model, HybridModel)
    assert len(model_id) == 16 and set(model_id) <= ID_CHARS
    # Load twice from the bytes (no cache involved): same id, and the same as load_model's.
    a = HybridModel.from_bytes(data)
    b = HybridModel.from_bytes(data)
    assert model_id_of(a) == model_id_of(b) == model_id
    assert load_model(None)[1] == model_id
    # The default is not the untrained model (it was fitted on the corpus).
    assert model_id != model_id_of(HybridModel())


def test_default_model_id_same_in_fresh_process():
    code = ("from hybridcodec.model import load_model; print(load_model(None)[1])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True).stdout.strip()
    assert out == load_model(None)[1]


def test_default_model_codes_a_frame():
    model, _ = load_model(None)
    pcm = _pcm(4000, 2, 21)
    layers = encode_frame(model, pcm)
    ids = [k for k, _ in layers]
    assert ids[0] == 0 and ids == sorted(set(ids)) and ids[-1] < layer_count(model)
    assert np.array_equal(decode_frame(model, dict(layers), len(pcm), 2), pcm)
    # A sane size: well below 16-bit PCM for this smooth signal.
    assert sum(len(p) for _, p in layers) < pcm.size * 2 * 0.8


@pytest.mark.parametrize("key", ["min_block", "levels", "description"])
def test_old_model_file_lacking_a_key_without_a_version_value(tmp_path, key):
    """A version 2 file (the shipped e40987291b5fd215) without a key its version gives no
    value for is rejected rather than filled from this build's defaults, which a later
    release may change (and the model id with them)."""
    path = Path(__file__).parents[1] / "hybridcodec" / "models" / "e40987291b5fd215.hcm"

    def drop(arrays):
        meta = json.loads(arrays["meta"].tobytes())
        assert meta["version"] == 2
        del meta["config"][key]
        _set_meta(arrays, json.dumps(meta, sort_keys=True))

    bad = tmp_path / "bad.hcm"
    bad.write_bytes(_rewrite_npz(path.read_bytes(), drop))
    with pytest.raises(ModelError, match=f"missing config keys.*{key}"):
        load_model(bad)
