"""Reliability: recovery from damage, verify, parallel coding, stdin/stdout, interrupts,
and bit-exact nets across devices (issue 6).

Most tests code with a small model (frame_length 1024, otherwise the defaults) so that a
stream has many frames and stays fast; the interrupt tests use the default model.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from nonseekable import NoSeek
import soundfile as sf

from hybridcodec import cli, codec
from hybridcodec.audio_io import wav_header
from hybridcodec.container import (UNLISTED_EMPTY, DamagedFrame, Frame, StreamHeader,
                                   StreamReader, StreamWriter, Unit)
from hybridcodec.errors import CorruptStreamError, HybridCodecError, UsageError
from hybridcodec.model import HybridModel, ModelConfig

REPO_DIR = Path(__file__).resolve().parents[1]
FRAME = 1024


class Sink(io.RawIOBase):
    """A pipe to write to: not seekable, keeps what it gets."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.data += bytes(b)
        return len(b)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("model") / "small.hcm"
    HybridModel(ModelConfig(frame_length=FRAME)).save(path)
    return str(path)


def make_audio(n: int, channels: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = np.stack([3000 * np.sin(2 * np.pi * (220 + 110 * c) * t / 44100) for c in range(channels)],
                 axis=1)
    return (x + rng.normal(0, 300, x.shape)).astype(np.int16)


@pytest.fixture(scope="module")
def coded(tmp_path_factory, small_model):
    """(wav path, hyb path, samples) of a 10.5-frame stereo file coded with the small model."""
    d = tmp_path_factory.mktemp("coded")
    x = make_audio(10 * FRAME + 500)
    wav = d / "a.wav"
    sf.write(wav, x, 44100, subtype="PCM_16")
    hyb = d / "a.hyb"
    codec.encode_file(wav, hyb, model=small_model)
    return wav, hyb, x


def frame_offsets(data: bytes) -> list[int]:
    """Byte offset of every frame chunk (and the end chunk, last) of a valid stream."""
    reader = StreamReader(io.BytesIO(data))
    offsets = []
    pos = reader.bytes_read
    for frame in reader.frames():
        offsets.append(pos)
        pos = reader.bytes_read
    offsets.append(pos)
    return offsets


def decode_bytes(data: bytes, model: str, **kw):
    out = io.BytesIO()
    report = codec.decode_file(io.BytesIO(data), out, model=model, **kw)
    y, _ = sf.read(io.BytesIO(out.getvalue()), dtype="int16", always_2d=True)
    return y, report


# --------------------------------------------------------------------------- container


def synthetic_stream(num_frames: int = 8, version: int = 4) -> bytes:
    """Frames of three layers (one empty) whose second payload is full of fake syncs."""
    frame = 128 if version >= 4 else 100  # version 4 frames are a power of two long
    h = StreamHeader(44100, 2, 16, "PCM_16", "WAV", num_frames * frame, frame,
                     "0123456789abcdef", 2, 3, version=version)
    buf = io.BytesIO()
    writer = StreamWriter(buf, h)
    for i in range(num_frames):
        if version >= 4:
            writer.write_frame(Frame(i, frame, units=(Unit(0, 1, bytes([i]) * 52),
                                                      Unit(1, 1, b"HF" * 20)),
                                     flags=UNLISTED_EMPTY))
        else:
            writer.write_frame(Frame(i, frame, ((0, bytes([i]) * 50), (1, b"HF" * 20),
                                                (2, b""))))
    writer.finish(b"0" * 16)
    return buf.getvalue()


def recovered(data: bytes, seekable: bool = True):
    reader = StreamReader(io.BytesIO(data) if seekable else NoSeek(data), recover=True)
    items = [("lost" if isinstance(f, DamagedFrame) else "ok", f.index) for f in reader.frames()]
    return items, reader


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("seekable", [True, False])
def test_recovery_rules(seekable, version):
    good = synthetic_stream(version=version)
    off = frame_offsets(good)  # the frames, then what follows the last (index or end)
    end_at = len(good) - (42 if version >= 4 else 34)
    frame = 128 if version >= 4 else 100
    ok = [("ok", i) for i in range(8)]
    items, reader = recovered(good, seekable)
    assert items == ok and reader.footer is not None and reader.problems == []

    def case(mutate):
        d = bytearray(good)
        mutate(d)
        return recovered(bytes(d), seekable)

    def flip(i):
        return lambda d: d.__setitem__(i, d[i] ^ 0x40)

    # payload CRC: only that frame is lost, the rest decode, the end chunk is used
    items, reader = case(flip(off[3] + 60))
    assert items == ok[:3] + [("lost", 3)] + ok[4:] and reader.footer is not None
    # frame header CRC: resync on the next frame header
    items, reader = case(flip(off[5] + 3))
    assert items == ok[:5] + [("lost", 5)] + ok[6:]
    # bytes deleted inside a payload: the next frame is still found where it is
    items, _ = case(lambda d: d.__delitem__(slice(off[2] + 40, off[2] + 43)))
    assert items == ok[:2] + [("lost", 2)] + ok[3:]
    # junk inserted between frames: skipped, nothing lost, but reported
    items, reader = case(lambda d: d.__setitem__(slice(off[4], off[4]), b"HFHE" + b"x" * 30))
    assert items == ok and reader.problems and "no frame lost" in reader.problems[0]
    # whole frames cut out: reported lost, later frames decoded
    items, _ = case(lambda d: d.__delitem__(slice(off[1], off[4])))
    assert items == ok[:1] + [("lost", 1), ("lost", 2), ("lost", 3)] + ok[4:]
    # truncated: the frames up to the cut are delivered; nothing says how long the rest
    # was, so the missing tail is not filled in, only reported
    for cut in (off[6] + 7, off[6]):
        items, reader = recovered(good[:cut], seekable)
        assert items == ok[:6] and reader.footer is None and reader.missing_from == 6
        assert f"stream ends after sample {6 * frame} of {8 * frame}" in reader.problems[0]
        assert any("end chunk missing" in p for p in reader.problems)
    items, reader = recovered(good[: off[6] + 30], seekable)  # inside frame 6's payload
    assert items == ok[:6] + [("lost", 6)] and reader.missing_from == 7
    items, reader = recovered(good[: end_at + 10], seekable)  # inside the end chunk
    assert items == ok and reader.footer is None and reader.missing_from is None
    # frames missing before a good end chunk: the end chunk confirms they existed
    items, reader = case(lambda d: d.__delitem__(slice(off[5], off[-1])))
    assert items == ok[:5] + [("lost", 5), ("lost", 6), ("lost", 7)]
    assert reader.footer is not None
    # damaged end chunk: frames fine, MD5 cannot be checked
    items, reader = case(flip(end_at + 20))
    assert items == ok and reader.footer is None and reader.problems
    # trailing data: reported, footer kept
    items, reader = recovered(good + b"junk", seekable)
    assert items == ok and reader.footer is not None and "trailing" in reader.problems[0]
    if version < 4:
        return
    # version 4's index chunk: damaged, it is ignored with one warning; cut, the end
    # chunk is missing as well
    assert off[-1] < end_at
    items, reader = case(flip(off[-1] + 4))
    assert items == ok and reader.footer is not None
    assert reader.problems == [f"index chunk at byte {off[-1]} damaged (ignored)"]
    items, reader = recovered(good[: off[-1] + 5], seekable)
    assert items == ok and reader.footer is None and reader.missing_from is None
    assert "index chunk" in reader.problems[0] and "end chunk missing" in reader.problems[1]


@pytest.mark.parametrize("version", [3, 4])
def test_recovery_needs_the_header(version):
    good = synthetic_stream(version=version)
    bad = bytearray(good)
    bad[10] ^= 1
    with pytest.raises(CorruptStreamError, match="header CRC"):
        StreamReader(io.BytesIO(bytes(bad)), recover=True)


@pytest.mark.parametrize("version, words", [(3, "frame 3 layer id"),
                                           (4, "frame 3 payload CRC")])
def test_strict_reader_unchanged(version, words):
    good = synthetic_stream(version=version)
    off = frame_offsets(good)
    bad = bytearray(good)
    bad[off[3] + 60] ^= 1
    reader = StreamReader(io.BytesIO(bytes(bad)))
    with pytest.raises(CorruptStreamError, match=words):
        list(reader.frames())


# --------------------------------------------------------------------------- decode / verify


def test_ignore_errors_silences_only_the_damaged_frame(coded, small_model):
    wav, hyb, x = coded
    data = hyb.read_bytes()
    off = frame_offsets(data)
    bad = bytearray(data)
    bad[(off[4] + off[5]) // 2] ^= 0x01  # inside frame 4's payloads
    with pytest.raises(CorruptStreamError, match="frame 4"):
        decode_bytes(bytes(bad), small_model)
    y, report = decode_bytes(bytes(bad), small_model, ignore_errors=True)
    assert len(y) == len(x)
    lo, hi = 4 * FRAME, 5 * FRAME
    assert np.array_equal(y[:lo], x[:lo]) and np.array_equal(y[hi:], x[hi:])
    assert not y[lo:hi].any()
    assert [(r.frame, r.start, r.end) for r in report.damaged] == [(4, lo, hi)]
    assert report.md5_ok is False and any("MD5" in w for w in report.warnings)
    assert not report.clean


def test_ignore_errors_on_clean_stream_is_clean(coded, small_model):
    _, hyb, x = coded
    y, report = decode_bytes(hyb.read_bytes(), small_model, ignore_errors=True)
    assert np.array_equal(y, x) and report.clean


def test_verify(coded, small_model):
    _, hyb, x = coded
    report = codec.verify_file(hyb, model=small_model)
    assert report.ok and report.num_samples == len(x) and report.num_frames == 11
    data = bytearray(hyb.read_bytes())
    off = frame_offsets(bytes(data))
    data[off[2] + 5] ^= 0x10  # frame 2 header
    del data[off[7] + 100: off[7] + 110]  # frame 7 payload
    bad = bytes(data)
    with pytest.raises(CorruptStreamError):
        codec.verify_file(io.BytesIO(bad), model=small_model)
    report = codec.verify_file(io.BytesIO(bad), model=small_model, ignore_errors=True)
    assert not report.ok and [r.frame for r in report.damaged] == [2, 7]
    # a truncated stream: the rest is missing, the MD5 cannot be checked
    report = codec.verify_file(NoSeek(bytes(hyb.read_bytes()[: off[9] + 3])),
                               model=small_model, ignore_errors=True)
    assert report.damaged == [] and report.md5_ok is None and not report.ok
    assert "stream ends after sample 9216 of 10740" in report.warnings[0]


def test_cli_verify_and_ignore_errors(coded, small_model, tmp_path, capsys):
    _, hyb, x = coded
    assert cli.main(["verify", str(hyb), "--model", small_model]) == 0
    out, _ = capsys.readouterr()
    assert "ok" in out and "MD5 ok" in out
    data = bytearray(hyb.read_bytes())
    off = frame_offsets(bytes(data))
    data[(off[6] + off[7]) // 2] ^= 0x80
    bad = tmp_path / "bad.hyb"
    bad.write_bytes(bytes(data))
    assert cli.main(["verify", str(bad), "--model", small_model]) == 4
    _, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and "frame 6" in err and "Traceback" not in err
    assert cli.main(["verify", "--ignore-errors", str(bad), "--model", small_model]) == 4
    _, err = capsys.readouterr()
    assert "frame 6 (samples 6144..7167)" in err and "damaged: 1 of 11 frames" in err
    out_wav = tmp_path / "bad.wav"
    assert cli.main(["decode", str(bad), str(out_wav), "--model", small_model]) == 4
    assert not out_wav.exists() and os.listdir(tmp_path) == ["bad.hyb"]
    capsys.readouterr()
    code = cli.main(["decode", "--ignore-errors", str(bad), str(out_wav), "--model", small_model])
    _, err = capsys.readouterr()
    assert code == cli.EXIT_DAMAGED_OUTPUT == 6
    assert "warning: frame 6 (samples 6144..7167)" in err and "written as silence" in err
    y, _ = sf.read(out_wav, dtype="int16")
    assert np.array_equal(y[:6144], x[:6144]) and np.array_equal(y[7168:], x[7168:])


# --------------------------------------------------------------------------- parallel


def test_jobs_byte_identical(coded, small_model, tmp_path):
    wav, hyb, x = coded
    for jobs in (2, 3):
        out = tmp_path / f"j{jobs}.hyb"
        codec.encode_file(wav, out, model=small_model, jobs=jobs)
        assert out.read_bytes() == hyb.read_bytes()
        y, report = decode_bytes(hyb.read_bytes(), small_model, jobs=jobs)
        assert np.array_equal(y, x) and report.clean
    assert codec.verify_file(hyb, model=small_model, jobs=2).ok


@pytest.fixture(scope="module")
def segmented_coded(tmp_path_factory):
    """(model path, wav, lossless stream, lower tier) with format 4's payload cut in
    segments: frames of 8192 samples in 4 segments, 5.1 frames of stereo."""
    from hybridcodec.truncation import truncate_file

    d = tmp_path_factory.mktemp("segmented")
    model = d / "seg.hcm"
    HybridModel(ModelConfig(frame_length=8192, segment_length=2048)).save(model)
    wav = d / "a.wav"
    sf.write(wav, make_audio(5 * 8192 + 700, seed=5), 44100, subtype="PCM_16")
    hyb, low = d / "a.hyb", d / "a.low.hyb"
    codec.encode_file(wav, hyb, model=str(model))
    truncate_file(hyb, low, kbps=100)
    return str(model), wav, hyb, low


def test_jobs_byte_identical_segmented_payload(segmented_coded, tmp_path):
    """Format 4's payload: --jobs 2 encodes the same bytes (each frame's envelope reads
    into the next frame) and decodes the same PCM, a lower tier too (its fill runs in the
    parent, across frame boundaries), with every fill mode, and with a damaged frame."""
    model, wav, hyb, low = segmented_coded
    two = tmp_path / "j2.hyb"
    codec.encode_file(wav, two, model=model, jobs=2)
    assert two.read_bytes() == hyb.read_bytes()
    reader = StreamReader(io.BytesIO(low.read_bytes()))
    assert reader.header.num_frames == 6 and not reader.header.complete
    assert any(u.truncated for f in reader.frames() for u in f.units)  # cut in segments
    x, _ = sf.read(wav, dtype="int16", always_2d=True)
    y, report = decode_bytes(hyb.read_bytes(), model, jobs=2)
    assert np.array_equal(y, x) and report.clean
    for fill in ("sample", "mean", "zero"):
        one, _ = decode_bytes(low.read_bytes(), model, jobs=1, fill=fill, seed=3)
        par, report = decode_bytes(low.read_bytes(), model, jobs=2, fill=fill, seed=3)
        assert one.shape == x.shape and np.array_equal(one, par), fill
        assert report.md5_ok is None and not report.damaged
    data = bytearray(low.read_bytes())
    off = frame_offsets(bytes(data))
    data[(off[2] + off[3]) // 2] ^= 1
    one, r1 = decode_bytes(bytes(data), model, jobs=1, ignore_errors=True)
    par, r2 = decode_bytes(bytes(data), model, jobs=2, ignore_errors=True)
    assert [r.frame for r in r1.damaged] == [r.frame for r in r2.damaged] == [2]
    assert np.array_equal(one, par)


def test_jobs_with_damage(coded, small_model):
    _, hyb, x = coded
    data = bytearray(hyb.read_bytes())
    off = frame_offsets(bytes(data))
    data[(off[3] + off[4]) // 2] ^= 1
    with pytest.raises(CorruptStreamError, match="frame 3"):
        decode_bytes(bytes(data), small_model, jobs=2)
    y, report = decode_bytes(bytes(data), small_model, jobs=2, ignore_errors=True)
    assert [r.frame for r in report.damaged] == [3]


def test_jobs_option_checked(coded, small_model, tmp_path):
    wav, _, _ = coded
    with pytest.raises(UsageError):
        codec.encode_file(wav, tmp_path / "x.hyb", model=small_model, jobs=-1)
    assert cli.main(["encode", str(wav), "-o", str(tmp_path / "x.hyb"), "-j", "x"]) == 2


# --------------------------------------------------------------------------- stdin / stdout


def test_codec_streams(coded, small_model):
    wav, hyb, x = coded
    out = Sink()
    report = codec.encode_file(NoSeek(wav.read_bytes()), out, model=small_model)
    assert bytes(out.data) == hyb.read_bytes() and report.output_bytes == len(out.data)
    assert report.input_bytes == wav.stat().st_size
    sink = Sink()
    report = codec.decode_file(NoSeek(hyb.read_bytes()), sink, model=small_model)
    y, _ = sf.read(io.BytesIO(bytes(sink.data)), dtype="int16")
    assert np.array_equal(y, x) and report.output_bytes == len(sink.data)


def test_truncated_stream_to_a_pipe(coded, small_model):
    _, hyb, x = coded
    data = hyb.read_bytes()
    off = frame_offsets(data)
    sink = Sink()
    report = codec.decode_file(NoSeek(data[: off[8]]), sink, model=small_model,
                               ignore_errors=True)
    assert any("declares 10740 samples, 8192 were written" in w for w in report.warnings)
    y, _ = sf.read(io.BytesIO(bytes(sink.data)), dtype="int16")  # a short WAV: readable
    assert np.array_equal(y, x[:8192])


def test_cli_dash_in_process(coded, small_model, tmp_path):
    wav, hyb, x = coded
    out = Sink()
    err = io.StringIO()
    code = cli.main(["encode", "-", "--model", small_model], stdin_bytes=NoSeek(wav.read_bytes()),
                    stdout_bytes=out, stdout=io.StringIO(), stderr=err)
    assert code == 0 and bytes(out.data) == hyb.read_bytes()
    assert "<stdin> -> <stdout>" in err.getvalue()  # the summary goes to stderr
    code = cli.main(["decode", "-", str(tmp_path / "y.wav"), "--model", small_model],
                    stdin_bytes=NoSeek(hyb.read_bytes()), stderr=err, stdout=io.StringIO())
    assert code == 0
    assert np.array_equal(sf.read(tmp_path / "y.wav", dtype="int16")[0], x)
    assert cli.main(["encode", "-", "-", "x.hyb"]) == 2  # stdin only once


def test_cli_pipes_subprocess(coded, small_model, tmp_path):
    wav, hyb, x = coded
    env = dict(os.environ, PYTHONPATH=str(REPO_DIR))
    cmd = [sys.executable, "-m", "hybridcodec"]
    enc = subprocess.run(cmd + ["encode", "-", "--model", small_model], input=wav.read_bytes(),
                         capture_output=True, env=env, timeout=120)
    assert enc.returncode == 0, enc.stderr
    assert enc.stdout == hyb.read_bytes()
    dec = subprocess.run(cmd + ["decode", "-", "-o", "-", "--model", small_model],
                         input=enc.stdout, capture_output=True, env=env, timeout=120)
    assert dec.returncode == 0, dec.stderr
    y, rate = sf.read(io.BytesIO(dec.stdout), dtype="int16")
    assert rate == 44100 and np.array_equal(y, x)
    # the WAV on stdout is what decoding to a .wav file gives, sample for sample
    codec.decode_file(hyb, tmp_path / "f.wav", model=small_model)
    assert np.array_equal(sf.read(tmp_path / "f.wav", dtype="int16")[0], y)


@pytest.mark.parametrize("bits,channels,n", [(8, 1, 7), (16, 2, 5), (24, 1, 3), (24, 6, 4)])
def test_wav_header_streaming(bits, channels, n):
    from hybridcodec.audio_io import AudioInfo, open_audio_writer

    subtype = {8: "PCM_U8", 16: "PCM_16", 24: "PCM_24"}[bits]
    info = AudioInfo(22050, channels, n, bits, subtype, "WAV")
    rng = np.random.default_rng(bits)
    x = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(n, channels), dtype=np.int32)
    sink = Sink()
    with open_audio_writer(sink, info) as w:
        w.write(x[:2])
        w.write(x[2:])
    data = bytes(sink.data)
    assert data.startswith(wav_header(info)) and len(data) % 2 == 0
    y, rate = sf.read(io.BytesIO(data), dtype="int32", always_2d=True)
    assert rate == 22050 and np.array_equal(y >> (32 - bits), x)


def test_wav_header_too_long():
    from hybridcodec.audio_io import AudioInfo

    with pytest.raises(UsageError, match="4 GiB"):
        wav_header(AudioInfo(44100, 2, 2**30, 16, "PCM_16", "WAV"))


# --------------------------------------------------------------------------- interrupts


class Stop(Exception):
    pass


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("verb", ["encode", "decode"])
def test_interrupt_from_progress_leaves_nothing(coded, small_model, tmp_path, verb, jobs):
    wav, hyb, _ = coded
    calls = []

    def progress(done, total):
        calls.append(done)
        if len(calls) == 3:
            raise KeyboardInterrupt

    out = tmp_path / ("o.hyb" if verb == "encode" else "o.wav")
    func = codec.encode_file if verb == "encode" else codec.decode_file
    with pytest.raises(KeyboardInterrupt):
        func(wav if verb == "encode" else hyb, out, model=small_model, progress=progress,
             jobs=jobs)
    assert os.listdir(tmp_path) == []
    assert len(calls) == 3 and calls[-1] < 10 * FRAME


def test_interrupt_waits_for_the_frame_boundary():
    from hybridcodec import cancel

    with cancel.deferred():
        cancel.interrupt(KeyboardInterrupt())  # as a signal handler does, mid-frame
        with pytest.raises(KeyboardInterrupt):
            cancel.checkpoint()  # ... raised between frames
        cancel.checkpoint()  # once
    with pytest.raises(KeyboardInterrupt):
        cancel.interrupt(KeyboardInterrupt())  # outside the codec: at once


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_inside_a_frame_in_process(coded, small_model, tmp_path, monkeypatch, sig, code):
    """A signal that arrives while a frame is being decoded stops the run after it."""
    from hybridcodec import framecodec, segmented

    _, hyb, _ = coded
    calls = []

    def patched(original):
        def decode_frame(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                signal.raise_signal(sig)  # the handler runs here, inside the frame
            return original(*args, **kwargs)
        return decode_frame

    # the frame decoder of either payload (the small model has format 4's, the default)
    for module in (framecodec, segmented):
        monkeypatch.setattr(module, "decode_frame", patched(module.decode_frame))
    out = tmp_path / "o.wav"
    err = io.StringIO()
    assert cli.main(["decode", str(hyb), str(out), "--model", small_model], stderr=err,
                    stdout=io.StringIO()) == code
    assert len(calls) == 3  # the frame in progress finished, no other started
    assert os.listdir(tmp_path) == []
    assert err.getvalue().strip() in ("hybridcodec: interrupted", "hybridcodec: terminated")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


@pytest.fixture(scope="module")
def long_input(tmp_path_factory):
    """A 40 s stereo WAV and its stream (default model): several seconds of coding."""
    d = tmp_path_factory.mktemp("long")
    wav = d / "long.wav"
    sf.write(wav, make_audio(40 * 44100, seed=3), 44100, subtype="PCM_16")
    hyb = d / "long.hyb"
    codec.encode_file(wav, hyb, jobs=2)
    return wav, hyb


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("verb,jobs", [("encode", 1), ("decode", 1), ("encode", 2)])
def test_signal_leaves_nothing(long_input, tmp_path, sig, code, verb, jobs):
    wav, hyb = long_input
    out = tmp_path / ("out.hyb" if verb == "encode" else "out.wav")
    src = wav if verb == "encode" else hyb
    env = dict(os.environ, PYTHONPATH=str(REPO_DIR))
    proc = subprocess.Popen([sys.executable, "-m", "hybridcodec", verb, str(src), "-o", str(out),
                             "-j", str(jobs)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.endswith(".part") for p in tmp_path.iterdir()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no temporary output appeared"
            time.sleep(0.05)
        time.sleep(0.5)  # well into the file
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, stderr
    assert b"Traceback" not in stderr
    assert stderr.decode().strip().splitlines()[-1] in ("hybridcodec: interrupted",
                                                         "hybridcodec: terminated")
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file
