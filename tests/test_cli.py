"""The command line (hybridcodec.cli).

Most tests replace the codec calls (``cli.encode_file`` / ``decode_file`` /
``describe_stream`` / ``decoded_suffix``) with fakes, to check the CLI's own rules: output
naming, refusing to overwrite, one-line errors, exit codes, interrupts. The tests at the
end run the real codec end to end.
"""

from __future__ import annotations

import errno
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from hybridcodec import atomic, cli
from hybridcodec.atomic import atomic_output
from hybridcodec.container import MAGIC
from hybridcodec.errors import (CorruptStreamError, ModelError, ModelMismatchError,
                                OutputWriteError, UnsupportedAudioError)


@dataclass
class FakeReport:
    input_bytes: int
    output_bytes: int
    num_samples: int
    sample_rate: int
    channels: int
    seconds: float
    bits_per_sample: int = 16


class FakeCodec:
    """Stands in for the codec; records calls and writes outputs atomically like it."""

    def __init__(self, monkeypatch, *, suffix: str = ".wav") -> None:
        self.calls: list[tuple] = []
        self.options: list[dict] = []  # the other keyword arguments of each call
        self.fail: dict[str, BaseException] = {}
        self.suffix = suffix
        monkeypatch.setattr(cli, "encode_file", self.encode)
        monkeypatch.setattr(cli, "decode_file", self.decode)
        monkeypatch.setattr(cli, "decoded_suffix", lambda src: self.suffix)
        monkeypatch.setattr(cli, "describe_stream", self.describe)

    def _code(self, verb, src, dst, *, model=None, overwrite=False, progress=None, **options):
        self.calls.append((verb, os.fspath(src), os.fspath(dst), model, overwrite, progress))
        self.options.append(options)
        with atomic_output(dst, overwrite=overwrite) as fp:
            fp.write(b"x" * 500)
            if progress is not None:
                progress(50, 100)
                progress(100, 100)
            exc = self.fail.get(Path(src).name)
            if exc is not None:
                raise exc
        # 44100 stereo 16-bit samples: 176400 bytes of PCM
        return FakeReport(1000, 500, 44100, 44100, 2, 0.5)

    def encode(self, src, dst, **kw):
        return self._code("encode", src, dst, **kw)

    def decode(self, src, dst, **kw):
        return self._code("decode", src, dst, **kw)

    def describe(self, src):
        exc = self.fail.get(Path(src).name)
        if exc is not None:
            raise exc
        return f"{src}:\n  format      fake stream\n"


@pytest.fixture
def fake(monkeypatch):
    return FakeCodec(monkeypatch)


@pytest.fixture
def wavs(tmp_path):
    """Three small (fake-content) inputs; the fake codec never reads them."""
    paths = []
    for name in ("a.wav", "b.wav", "c.flac"):
        p = tmp_path / name
        p.write_bytes(b"RIFF")
        paths.append(str(p))
    return paths


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate", "x"], ["encode"], ["encode", "a.wav", "--bogus"], ["info"]],
)
def test_argument_errors_exit_2(argv, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2
    assert "hybridcodec" in err


def test_help_and_version(capsys):
    assert run(["--help"], capsys)[0] == 0
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.startswith("hybridcodec ")


def test_output_with_several_inputs_is_usage_error(fake, wavs, tmp_path, capsys):
    code, out, err = run(["encode", *wavs, "-o", tmp_path / "x.hyb"], capsys)
    assert code == 2
    assert error_lines(err) == [error_lines(err)[0]] and "--outdir" in err
    assert fake.calls == []
    assert not (tmp_path / "x.hyb").exists()


def test_output_and_outdir_exclusive(fake, wavs, tmp_path, capsys):
    code, _, _ = run(["encode", wavs[0], "-o", tmp_path / "x.hyb", "--outdir", tmp_path], capsys)
    assert code == 2 and fake.calls == []


# ----------------------------------------------------------------------------- naming


def test_encode_default_names_beside_inputs(fake, wavs, capsys):
    code, out, err = run(["encode", *wavs], capsys)
    assert code == 0, err
    dsts = [c[2] for c in fake.calls]
    assert dsts == [str(Path(w).with_suffix(".hyb")) for w in wavs]
    assert all(os.path.exists(d) for d in dsts)
    assert all(c[4] is False and c[5] is None for c in fake.calls)  # no -f, not a TTY


def test_outdir(fake, wavs, tmp_path, capsys):
    outdir = tmp_path / "new" / "dir"
    code, _, err = run(["encode", *wavs[:2], "--outdir", outdir], capsys)
    assert code == 0, err
    assert sorted(os.listdir(outdir)) == ["a.hyb", "b.hyb"]


def test_outdir_is_a_file(fake, wavs, capsys):
    code, _, err = run(["encode", wavs[0], "--outdir", wavs[1]], capsys)
    assert code == 2 and "not a directory" in err and fake.calls == []


def test_in_out_form(fake, wavs, tmp_path, capsys):
    out = tmp_path / "sub.hyb"
    code, _, err = run(["encode", wavs[0], out, "--model", "m.hcm", "-f"], capsys)
    assert code == 0, err
    assert fake.calls == [("encode", wavs[0], str(out), "m.hcm", True, None)]
    # two inputs that are both audio stay two inputs
    fake.calls.clear()
    code, _, _ = run(["encode", wavs[0], wavs[1]], capsys)
    assert code == 0 and len(fake.calls) == 2
    # decode IN.hyb OUT.flac
    fake.calls.clear()
    code, _, err = run(["decode", out, tmp_path / "back.flac"], capsys)
    assert code == 0, err
    assert fake.calls[0][1:3] == (str(out), str(tmp_path / "back.flac"))


def test_decode_default_suffix(monkeypatch, tmp_path, capsys):
    fake = FakeCodec(monkeypatch, suffix=".flac")
    src = tmp_path / "song.hyb"
    src.write_bytes(b"HYB")
    code, _, err = run(["decode", src], capsys)
    assert code == 0, err
    assert fake.calls[0][2] == str(tmp_path / "song.flac")


def test_decode_bad_output_extension(fake, tmp_path, capsys):
    src = tmp_path / "song.hyb"
    src.write_bytes(b"HYB")
    code, _, err = run(["decode", src, "-o", tmp_path / "song.mp3"], capsys)
    assert code == 2 and ".flac" in err and fake.calls == []


def test_output_is_input_refused(fake, tmp_path, capsys):
    src = tmp_path / "x.hyb"
    src.write_bytes(b"data")
    code, _, err = run(["encode", src, "-f"], capsys)  # default output x.hyb == input
    assert code == 2 and fake.calls == []
    assert src.read_bytes() == b"data"


def test_two_inputs_one_output_name(fake, tmp_path, capsys):
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    a, b = tmp_path / "d1" / "x.wav", tmp_path / "d2" / "x.wav"
    a.write_bytes(b"1")
    b.write_bytes(b"2")
    code, _, err = run(["encode", a, b, "--outdir", tmp_path / "out", "-f"], capsys)
    assert code == 2 and len(fake.calls) == 1
    assert "already the output" in err


# ----------------------------------------------------------------------------- overwrite


def test_refuses_to_overwrite(fake, wavs, capsys):
    existing = Path(wavs[0]).with_suffix(".hyb")
    existing.write_bytes(b"precious")
    code, _, err = run(["encode", *wavs], capsys)
    assert code == 2
    lines = error_lines(err)
    assert lines == [f"hybridcodec: {wavs[0]}: {existing} exists (use -f to overwrite)"]
    assert existing.read_bytes() == b"precious"
    assert [c[1] for c in fake.calls] == wavs[1:]  # the others still ran
    fake.calls.clear()
    code, _, err = run(["encode", "-f", wavs[0]], capsys)
    assert code == 0, err
    assert fake.calls[0][4] is True and existing.read_bytes() == b"x" * 500


# ----------------------------------------------------------------------------- errors


def test_missing_input_reported_and_run_continues(fake, wavs, tmp_path, capsys):
    missing = tmp_path / "missing.wav"
    code, out, err = run(["encode", missing, *wavs], capsys)
    assert code == 3
    assert error_lines(err) == [f"hybridcodec: {missing}: cannot read audio: no such file"]
    assert [c[1] for c in fake.calls] == wavs


def test_first_error_decides_exit_code(fake, wavs, capsys):
    fake.fail["a.wav"] = ModelError("bad model file m.hcm")
    fake.fail["b.wav"] = UnsupportedAudioError(f"{wavs[1]}: 32-bit float audio is not supported")
    code, out, err = run(["encode", *wavs], capsys)
    assert code == 5
    assert error_lines(err) == [
        f"hybridcodec: {wavs[0]}: bad model file m.hcm",
        # a message that already names the file is not prefixed twice
        f"hybridcodec: {wavs[1]}: 32-bit float audio is not supported",
    ]
    # failed files leave no output; the good one is there
    assert not Path(wavs[0]).with_suffix(".hyb").exists()
    assert not Path(wavs[1]).with_suffix(".hyb").exists()
    assert Path(wavs[2]).with_suffix(".hyb").exists()
    assert len(out.splitlines()) == 1


def test_internal_error(fake, wavs, capsys, monkeypatch):
    monkeypatch.delenv("HYBRIDCODEC_DEBUG", raising=False)
    fake.fail["a.wav"] = ValueError("boom\nsecond line")
    code, _, err = run(["encode", *wavs], capsys)
    assert code == 70
    lines = error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("hybridcodec: ")
    assert "internal error: boom second line (a bug: please report it;" in lines[0]
    assert "ValueError" not in err  # no Python class names for the user
    assert len(fake.calls) == 3


def test_internal_error_debug_traceback(fake, wavs, capsys, monkeypatch):
    monkeypatch.setenv("HYBRIDCODEC_DEBUG", "1")
    fake.fail["a.wav"] = ValueError("boom")
    code, _, err = run(["encode", wavs[0]], capsys)
    assert code == 70 and "Traceback" in err


def test_keyboard_interrupt(fake, wavs, capsys):
    fake.fail["b.wav"] = KeyboardInterrupt()
    code, _, err = run(["encode", *wavs], capsys)
    assert code == 130
    assert Path(wavs[0]).with_suffix(".hyb").exists()
    assert not Path(wavs[1]).with_suffix(".hyb").exists()  # no partial output
    assert not Path(wavs[2]).with_suffix(".hyb").exists()  # stopped there
    assert sorted(os.listdir(Path(wavs[0]).parent)) == ["a.hyb", "a.wav", "b.wav", "c.flac"]


def test_info(fake, tmp_path, capsys):
    a, b, bad = tmp_path / "a.hyb", tmp_path / "b.hyb", tmp_path / "garbage.hyb"
    for p in (a, b, bad):
        p.write_bytes(os.urandom(64))
    fake.fail["garbage.hyb"] = CorruptStreamError(f"{bad}: not a hybridcodec stream (bad magic)")
    code, out, err = run(["info", a, bad, b, tmp_path / "nope.hyb"], capsys)
    assert code == 4
    assert f"{a}:" in out and f"{b}:" in out and "fake stream" in out
    assert error_lines(err) == [
        f"hybridcodec: {bad}: not a hybridcodec stream (bad magic)",
        f"hybridcodec: {tmp_path / 'nope.hyb'}: cannot open: no such file",
    ]


# ----------------------------------------------------------------------------- output


def test_summary_line_and_quiet(fake, wavs, capsys):
    code, out, err = run(["encode", wavs[0]], capsys)
    assert code == 0 and err == ""
    line = out.strip()
    assert re.fullmatch(
        re.escape(f"{wavs[0]} -> {Path(wavs[0]).with_suffix('.hyb')}: ")
        + r"1\.0 kB -> 500 B \(0\.3 % of PCM\), 2\.0x realtime",
        line,
    ), line
    code, out, err = run(["encode", "-q", "-f", wavs[0]], capsys)
    assert code == 0 and out == "" and err == ""


def test_summary_units_and_percent_of_pcm():
    """The percentage is the stream's size against raw PCM (as ``info`` has it), written
    beside the stream: the output of encode, the input of decode."""
    rep = FakeReport(1_234_567, 512_000, 441_000, 44100, 2, 0.4)  # PCM: 1764000 bytes
    assert cli.summary_line("a", "b", rep) == (
        "a -> b: 1.23 MB -> 512.0 kB (29.0 % of PCM), 25.0x realtime"
    )
    rep = FakeReport(512_000, 1_764_044, 441_000, 44100, 2, 0.4, bits_per_sample=24)
    assert cli.summary_line("a.hyb", "b.wav", rep, "decode") == (  # PCM: 2646000 bytes
        "a.hyb -> b.wav: 512.0 kB (19.3 % of PCM) -> 1.76 MB, 25.0x realtime"
    )
    empty = FakeReport(0, 80, 0, 44100, 1, 0.0)
    assert "n/a" in cli.summary_line("a", "b", empty)


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_only_on_a_tty(fake, wavs):
    err = FakeTTY()
    out = io.StringIO()
    assert cli.main(["encode", wavs[0]], stdout=out, stderr=err) == 0
    progress = fake.calls[0][5]
    assert progress is not None
    assert "\r" in err.getvalue() and "100 %" in err.getvalue()
    assert "->" in out.getvalue()
    fake.calls.clear()
    err = FakeTTY()
    assert cli.main(["encode", "-q", "-f", wavs[0]], stdout=out, stderr=err) == 0
    assert fake.calls[0][5] is None and err.getvalue() == ""


# ----------------------------------------------------------------------------- real codec


def _write_wav(path, n=3000, channels=2, rate=16000, subtype="PCM_16", fmt=None):
    rng = np.random.default_rng(1)
    t = np.arange(n)[:, None]
    x = (3000 * np.sin(t * 0.05 * (1 + np.arange(channels)))).astype(np.int32)
    x += rng.integers(-50, 50, size=x.shape).astype(np.int32)
    sf.write(path, x.astype(np.int16), rate, subtype=subtype, format=fmt)
    return x


def test_real_roundtrip_wav(tmp_path, capsys):
    src = tmp_path / "tone.wav"
    x = _write_wav(src)
    code, out, err = run(["encode", src], capsys)
    assert code == 0, err
    assert (tmp_path / "tone.hyb").exists() and "realtime" in out
    (tmp_path / "tone.wav").rename(tmp_path / "orig.wav")
    code, out, err = run(["decode", tmp_path / "tone.hyb"], capsys)
    assert code == 0, err
    y, rate = sf.read(tmp_path / "tone.wav", dtype="int16", always_2d=True)
    assert rate == 16000
    np.testing.assert_array_equal(y, x)
    code, out, err = run(["info", tmp_path / "tone.hyb"], capsys)
    assert code == 0 and "16000" in out


def test_real_flac_source_decodes_to_flac(tmp_path, capsys):
    src = tmp_path / "tone.flac"
    x = _write_wav(src, n=777, channels=1, rate=8000)
    assert run(["encode", "-q", src, "--outdir", tmp_path / "enc"], capsys)[0] == 0
    code, _, err = run(["decode", "-q", tmp_path / "enc" / "tone.hyb"], capsys)
    assert code == 0, err
    y, _ = sf.read(tmp_path / "enc" / "tone.flac", dtype="int16", always_2d=True)
    np.testing.assert_array_equal(y, x)


def test_real_info_on_garbage(tmp_path, capsys):
    bad = tmp_path / "garbage.hyb"
    bad.write_bytes(b"this is not a stream" * 10)
    code, out, err = run(["info", bad], capsys)
    assert code == 4
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"hybridcodec: {bad}: ")


def test_real_decode_garbage_leaves_nothing(tmp_path, capsys):
    bad = tmp_path / "garbage.hyb"
    bad.write_bytes(os.urandom(2000))
    code, _, err = run(["decode", bad, "-o", tmp_path / "out.wav"], capsys)
    assert code == 4, err
    assert sorted(os.listdir(tmp_path)) == ["garbage.hyb"]


def test_real_encode_unsupported_audio(tmp_path, capsys):
    src = tmp_path / "song.wav"
    sf.write(src, np.zeros((100, 1), np.float32), 8000, subtype="FLOAT")
    code, _, err = run(["encode", src], capsys)
    assert code == 3
    assert error_lines(err) == [
        f"hybridcodec: {src}: 32-bit float audio is not supported (integer PCM 8-24 bit only)"
    ]
    assert sorted(os.listdir(tmp_path)) == ["song.wav"]


def test_python_dash_m(tmp_path, repo_dir):
    """``python -m hybridcodec`` is the same CLI, exit status included (no coding: fast)."""
    bad = tmp_path / "bad.hyb"
    bad.write_bytes(b"not a stream")
    env = dict(os.environ, PYTHONPATH=str(repo_dir))
    proc = subprocess.run(
        [sys.executable, "-m", "hybridcodec", "info", str(tmp_path / "missing.hyb"), str(bad)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    lines = error_lines(proc.stderr)
    assert lines[0] == f"hybridcodec: {tmp_path / 'missing.hyb'}: cannot open: no such file"
    assert len(lines) == 2 and lines[1].startswith(f"hybridcodec: {bad}: ")


# ----------------------------------------------------------------------------- write errors


def _no_class_names(err: str) -> None:
    """No Python class name (OSError, assertionError, ...) and no traceback."""
    assert not re.search(r"\w*(Error|Exception)\b|Traceback", err), err


def run_main(argv) -> int:
    return cli.main([str(a) for a in argv], stdout=io.StringIO(), stderr=io.StringIO())


class FullDisk(io.BufferedRandom):
    """A file with room for ``ROOM`` bytes, then No space left on device."""

    ROOM = 2000

    def write(self, data):
        if self.tell() + len(data) > self.ROOM:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


@pytest.fixture
def full_disk(monkeypatch):
    # the temporary file behind every atomic output
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: FullDisk(io.FileIO(fd, "r+")))


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".aiff", ".hyb"])
def test_full_disk_is_one_line_and_leaves_nothing(full_disk, tmp_path, capsys, suffix):
    src = tmp_path / "tone.wav"
    _write_wav(src, n=20000)
    hyb = tmp_path / "tone.hyb"
    if suffix != ".hyb":
        with open(hyb, "wb") as fp:  # written around the full disk
            from hybridcodec import codec

            codec.encode_file(str(src), fp)
    before = sorted(os.listdir(tmp_path))
    out = tmp_path / f"out{suffix}"
    verb, inp = ("encode", src) if suffix == ".hyb" else ("decode", hyb)
    code, _, err = run([verb, inp, "-o", out], capsys)
    assert code == 1
    assert error_lines(err) == [f"hybridcodec: {inp}: cannot write {out}: No space left on device"]
    _no_class_names(err)
    assert sorted(os.listdir(tmp_path)) == before  # no output, no temporary file


def test_full_disk_behind_standard_output(tmp_path):
    class Full(io.BytesIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    src = tmp_path / "tone.wav"
    _write_wav(src, n=3000)
    err = io.StringIO()
    code = cli.main(["encode", str(src), "-o", "-"], stdout=io.StringIO(), stderr=err,
                    stdout_bytes=Full())
    assert code == 1
    assert err.getvalue() == f"hybridcodec: {src}: cannot write <stdout>: No space left on device\n"


def test_a_swallowed_write_error_is_never_committed(full_disk, tmp_path):
    """libsndfile's write callback cannot raise: the file must still not appear."""
    out = tmp_path / "x.bin"
    with pytest.raises(OutputWriteError, match="cannot write .*x.bin: No space left"):
        with atomic_output(out, overwrite=False) as fp:
            try:
                fp.write(b"x" * 5000)
            except OutputWriteError:
                pass  # as cffi does: printed, not raised
            assert fp.write(b"more") == 0  # the file is lost: nothing more goes to it
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(sys.platform != "linux", reason="needs Linux's RLIMIT_FSIZE")
def test_real_write_error_in_a_real_process(tmp_path, repo_dir):
    """A real failing write (file size limit: EFBIG) through libsndfile, end to end."""
    import resource

    src = tmp_path / "tone.wav"
    _write_wav(src, n=40000)
    assert run_main(["encode", "-q", src]) == 0
    out = tmp_path / "out.flac"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))

    env = dict(os.environ, PYTHONPATH=str(repo_dir), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-m", "hybridcodec", "decode",
                           str(tmp_path / "tone.hyb"), "-o", str(out)],
                          preexec_fn=limit, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert error_lines(proc.stderr) == [
        f"hybridcodec: {tmp_path / 'tone.hyb'}: cannot write {out}: File too large"]
    assert sorted(os.listdir(tmp_path)) == ["tone.hyb", "tone.wav"]


# ----------------------------------------------------------------------------- model mismatch


def test_check_model_says_which_model_and_whether_it_ships():
    from hybridcodec import codec
    from hybridcodec.model import load_model

    default = load_model(None)[1]
    unknown = SimpleNamespace(model_id="0123456789abcdef")
    with pytest.raises(ModelMismatchError) as info:
        codec.check_model(unknown, default, None, "a.hyb")
    assert str(info.value) == (
        f"a.hyb: coded with model 0123456789abcdef, which does not ship with hybridcodec, "
        f"but the built-in default model is {default}: decode with --model and the model "
        "file that coded it")
    with pytest.raises(ModelMismatchError) as info:  # the built-in one, another given
        codec.check_model(SimpleNamespace(model_id=default), "d75f0313db39e650", "my.hcm",
                          "a.hyb")
    assert str(info.value) == (
        f"a.hyb: coded with the built-in default model {default}, but model file my.hcm is "
        "d75f0313db39e650: decode without --model")


def test_stream_of_a_bundled_model_with_the_default_given(tmp_path, capsys, repo_dir):
    """A stream of the 0.1 default (shipped), decoded with --model default.hcm explicitly."""
    fixture = repo_dir / "tests" / "fixtures" / "v1-cellar-01.hyb"
    default = repo_dir / "hybridcodec" / "models" / "default.hcm"
    code, _, err = run(["decode", fixture, "--model", default, "-o", tmp_path / "x.wav"], capsys)
    assert code == 5
    line, = error_lines(err)
    assert "ccd651dbb62662d7, an earlier default that ships with hybridcodec" in line
    assert f"model file {default} (the built-in default) is" in line
    assert line.endswith("decode without --model") and "pass the right" not in line
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- info


def test_info_layer_table_lines_up(tmp_path, capsys):
    src = tmp_path / "tone.wav"
    _write_wav(src, n=2000)
    assert run(["encode", "-q", src], capsys)[0] == 0
    code, out, err = run(["info", tmp_path / "tone.hyb"], capsys)
    assert code == 0, err
    rows = [line for line in out.splitlines() if re.match(r"    (\d\d| \d|--)  ", line)]
    assert len(rows) == 21  # 20 layers and the container overhead
    assert len({line.index(" bytes") for line in rows}) == 1, "\n".join(rows)


# ----------------------------------------------------------------------------- summary: percent of PCM


def test_real_summary_percent_matches_info(tmp_path, capsys):
    src = tmp_path / "tone.wav"
    _write_wav(src, n=4000)
    code, out, _ = run(["encode", src], capsys)
    enc = re.search(r"\((\d+\.\d) % of PCM\), ", out)
    code, info, _ = run(["info", tmp_path / "tone.hyb"], capsys)
    assert enc and f", {enc.group(1)} % of PCM, " in info
    code, out, _ = run(["decode", tmp_path / "tone.hyb", "-o", tmp_path / "back.wav"], capsys)
    assert code == 0 and f"kB ({enc.group(1)} % of PCM) -> " in out


# ----------------------------------------------------------------------------- messages


def test_error_without_a_message_names_no_python_class(fake, wavs, capsys):
    fake.fail["a.wav"] = CorruptStreamError()
    code, _, err = run(["encode", wavs[0]], capsys)
    assert code == 4
    assert error_lines(err) == [f"hybridcodec: {wavs[0]}: corrupt or truncated stream"]


# ----------------------------------------------------------------------------- options anywhere


@pytest.fixture
def stream(tmp_path):
    """A file that starts like a stream (the fake codec never reads further)."""
    p = tmp_path / "a.hyb"
    p.write_bytes(MAGIC + b"\0" * 60)
    return p


def test_options_between_and_after_the_paths(fake, stream, tmp_path, capsys, monkeypatch):
    out = tmp_path / "x.wav"
    out.write_bytes(b"old")
    code, _, err = run(["decode", stream, "-f", out], capsys)  # -f between IN and OUT
    assert code == 0, err
    assert fake.calls[-1][1:3] == (str(stream), str(out)) and fake.calls[-1][4] is True
    src = tmp_path / "in.flac"
    src.write_bytes(b"fLaC")
    code, _, err = run(["encode", src, "--tier", "low", tmp_path / "out.hyb"], capsys)
    assert code == 0, err
    assert fake.calls[-1][1:3] == (str(src), str(tmp_path / "out.hyb"))
    assert fake.options[-1] == {"tier": "low"}
    cut = []
    monkeypatch.setattr(cli, "truncate_file", lambda src, dst, **kw: cut.append(
        (os.fspath(src), os.fspath(dst), kw)) or SimpleNamespace(
            input_bytes=1000, output_bytes=100, num_samples=44100, sample_rate=44100,
            channels=2, bits_per_sample=16, tier="10kbps", layers=1))
    code, _, err = run(["truncate", stream, "--kbps", "10", tmp_path / "b.hyb"], capsys)
    assert code == 0, err
    assert cut == [(str(stream), str(tmp_path / "b.hyb"),
                    {"tier": None, "kbps": 10.0, "overwrite": False})]


def test_usage_error_prints_the_verbs_usage(capsys):
    code, _, err = run(["encode", "a.wav", "--bogus"], capsys)
    assert code == 2
    assert err.startswith("usage: hybridcodec encode ")
    assert err.splitlines()[-1] == "hybridcodec: unrecognized arguments: --bogus"
    code, _, err = run(["decode", "a.hyb", "--fill", "noise"], capsys)
    assert code == 2 and err.startswith("usage: hybridcodec decode ")
    code, _, err = run(["frobnicate"], capsys)  # no verb: the top level answers
    assert code == 2 and "{encode,decode,verify,info,truncate}" in err


# ----------------------------------------------------------------------------- a second path


def test_second_path_with_a_wrong_suffix_is_a_usage_error(fake, tmp_path, capsys):
    rain = tmp_path / "rain.flac"
    rain.write_bytes(b"fLaC")
    code, _, err = run(["encode", rain, tmp_path / "x.wav"], capsys)
    assert code == 2 and fake.calls == []
    assert error_lines(err) == [f"hybridcodec: {tmp_path / 'x.wav'} does not exist, so it is "
                                "not an input, and as the output it would need the .hyb suffix"]
    assert sorted(os.listdir(tmp_path)) == ["rain.flac"]  # no rain.hyb


def test_decode_second_path_that_is_no_stream(fake, stream, tmp_path, capsys):
    before = sorted(os.listdir(tmp_path))
    code, _, err = run(["decode", stream, tmp_path / "x.mp3"], capsys)  # missing
    assert code == 2 and len(error_lines(err)) == 1 and "does not exist" in err
    assert ".wav, .flac, .aif or .aiff" in err
    song = tmp_path / "song.mp3"
    song.write_bytes(b"ID3\x04 an mp3")  # an existing audio file is no stream either
    code, _, err = run(["decode", stream, song], capsys)
    assert code == 2 and error_lines(err) == [
        f"hybridcodec: {song} is not a .hyb stream, so it is not an input, and as the "
        "output it would need .wav, .flac, .aif or .aiff"]
    (tmp_path / "outdir").mkdir()
    code, _, err = run(["decode", stream, tmp_path / "outdir"], capsys)
    assert code == 2 and f"use --outdir {tmp_path / 'outdir'}" in err
    assert fake.calls == []
    assert sorted(os.listdir(tmp_path)) == sorted(before + ["song.mp3", "outdir"])


def test_two_streams_stay_two_inputs(fake, stream, tmp_path, capsys):
    odd = tmp_path / "b.stream"  # a stream by its content, whatever its name
    odd.write_bytes(MAGIC + b"\0" * 60)
    code, _, err = run(["decode", stream, odd], capsys)
    assert code == 0, err
    assert [c[1] for c in fake.calls] == [str(stream), str(odd)]
    fake.calls.clear()
    missing = tmp_path / "gone.hyb"  # a missing stream is reported in its turn
    code, _, err = run(["decode", stream, missing, "-f"], capsys)
    assert code == 3 and [c[1] for c in fake.calls] == [str(stream)]
    assert error_lines(err) == [f"hybridcodec: {missing}: cannot open: no such file"]


# ----------------------------------------------------------------------------- -o folders


def test_output_folder_is_created_like_outdir(fake, wavs, tmp_path, capsys):
    out = tmp_path / "new" / "sub" / "x.hyb"
    code, _, err = run(["encode", wavs[0], "-o", out], capsys)
    assert code == 0, err
    assert out.read_bytes() == b"x" * 500
    code, _, err = run(["encode", wavs[1], tmp_path / "other" / "y.hyb"], capsys)  # IN OUT
    assert code == 0, err
    assert (tmp_path / "other" / "y.hyb").exists()
    code, _, err = run(["encode", wavs[0], "-o", Path(wavs[1]) / "x.hyb"], capsys)
    assert code == 2 and error_lines(err) == [
        f"hybridcodec: -o {Path(wavs[1]) / 'x.hyb'}: its folder {wavs[1]} is not a directory"]
    # nothing is created before the checks of the whole command line have passed
    code, _, _ = run(["encode", *wavs, "-o", tmp_path / "never" / "x.hyb"], capsys)
    assert code == 2 and not (tmp_path / "never").exists()


# ----------------------------------------------------------------------------- broken pipe


class ClosedPipe(io.StringIO):
    """Standard output whose reader has gone (``| head``)."""

    def write(self, text):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def test_closed_pipe_ends_the_run_quietly(fake, stream, tmp_path):
    err = io.StringIO()
    code = cli.main(["info", str(stream), str(stream), str(stream)], stdout=ClosedPipe(),
                    stderr=err)
    assert code == cli.EXIT_BROKEN_PIPE == 141
    assert err.getvalue() == ""


class ClosedBinaryPipe(io.BytesIO):
    def write(self, data):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def test_closed_pipe_under_binary_output(tmp_path):
    src = tmp_path / "tone.wav"
    _write_wav(src, n=5000)
    err = io.StringIO()
    code = cli.main(["encode", str(src), "-o", "-"], stdout=io.StringIO(), stderr=err,
                    stdout_bytes=ClosedBinaryPipe())
    assert code == 141 and err.getvalue() == ""
    assert sorted(os.listdir(tmp_path)) == ["tone.wav"]


def test_closed_pipe_real_process(tmp_path, repo_dir):
    """``hybridcodec info FILE... | head -1``: no message, exit 141 (128 + SIGPIPE)."""
    fixture = repo_dir / "tests" / "fixtures" / "v1-cellar-01.hyb"
    env = dict(os.environ, PYTHONPATH=str(repo_dir))
    proc = subprocess.Popen([sys.executable, "-m", "hybridcodec", "info", *[str(fixture)] * 300],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, as head does
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 141
    assert first.decode().strip() == f"{fixture}:"
    assert stderr == b""


# ----------------------------------------------------------------------------- start-up signals


SIGNAL_AT_IMPORT = """
import signal, sys

class _SignalAtImport:
    # sends the signal to this process when the CLI first imports the module
    done = False

    def find_spec(self, name, path=None, target=None):
        if name == {module!r} and not self.done:
            self.done = True
            signal.raise_signal(signal.{sig})
        return None

sys.meta_path.insert(0, _SignalAtImport())
"""


@pytest.mark.parametrize("module,sig,code", [
    ("argparse", "SIGINT", 130),  # the CLI module's own imports, before cli.main
    ("numba", "SIGINT", 130),  # the codec's imports, a second or more
    ("constriction", "SIGTERM", 143),
])
def test_signal_during_start_up_is_quiet(tmp_path, repo_dir, module, sig, code):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SIGNAL_AT_IMPORT.format(module=module, sig=sig))
    src = tmp_path / "tone.wav"
    _write_wav(src, n=1000)
    env = dict(os.environ, PYTHONPATH=f"{hook}{os.pathsep}{repo_dir}")
    proc = subprocess.run([sys.executable, "-m", "hybridcodec", "encode", str(src), "-o",
                           str(tmp_path / "out.hyb")], capture_output=True, text=True, env=env,
                          timeout=300)
    word = "terminated" if sig == "SIGTERM" else "interrupted"
    assert (proc.returncode, proc.stderr) == (code, f"hybridcodec: {word}\n")
    assert sorted(os.listdir(tmp_path)) == ["hook", "tone.wav"]
