"""Seeking: ``decode --skip/--until`` and the API's ranges give exactly the samples of the
whole decode (lossless and a lower tier, whose fill runs across frames), decode only the
frames the range needs, work on pipes and on every stream format version, and reject bad
ranges with a one-line usage error before writing anything."""

from __future__ import annotations

import io
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from nonseekable import NoSeek

import hybridcodec
from hybridcodec import cli, parallel, timecode
from hybridcodec.container import StreamReader
from hybridcodec.errors import CorruptStreamError, UsageError
from hybridcodec.truncation import truncate_file

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
CORPUS = REPO.parent / "shared" / "data" / "corpus" / "music"
F = 131072  # the shipped model's frame
RATE = 44100
N = 3 * F + 38000  # the test streams' length: 9.78 s


def _music(n: int) -> np.ndarray:
    """``n`` stereo 16-bit samples of corpus music (cellar-01, -02, ...), else a synthetic
    stand-in with moving tones, noise and silence (so that the fill has work)."""
    parts, have = [], 0
    for k in range(1, 10):
        path = CORPUS / f"cellar-{k:02d}.flac"
        if not path.exists():
            break
        a, rate = sf.read(path, dtype="int16")
        if rate == RATE and a.ndim == 2 and a.shape[1] == 2:
            parts.append(a)
            have += len(a)
        if have >= n:
            return np.concatenate(parts)[:n]
    rng = np.random.default_rng(1)
    t = np.arange(n)[:, None] / RATE
    x = 6000 * np.sin(2 * np.pi * (300 + 40 * np.sin(t)) * t * [1, 1.5]) * (t % 2 < 1.5)
    x = x + rng.normal(0, 800, (n, 2)) * (1 + np.sin(2 * np.pi * 0.3 * t))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    """A 3.3-frame lossless stream, its ``--kbps 96`` truncation, and their whole decodes."""
    d = tmp_path_factory.mktemp("seek")
    pcm = _music(N)
    sf.write(d / "src.wav", pcm, RATE, subtype="PCM_16")
    hybridcodec.encode(d / "src.wav", d / "full.hyb")
    truncate_file(d / "full.hyb", d / "low.hyb", kbps=96)
    low = (d / "low.hyb").read_bytes()
    low_pcm, _ = hybridcodec.decode_bytes(low)
    assert not hybridcodec.open_stream(low).lossless
    return SimpleNamespace(dir=d, pcm=pcm.astype(np.int32), full=d / "full.hyb",
                           data=(d / "full.hyb").read_bytes(), low=d / "low.hyb",
                           low_data=low, low_pcm=low_pcm)


RANGES = [
    pytest.param(F, 2 * F, id="frame-boundaries"),
    pytest.param(F - 1, F + 1, id="across-a-boundary"),
    pytest.param(2 * F + 1000, 2 * F + 5000, id="inside-one-frame"),
    pytest.param(3 * F + 7, None, id="to-the-end"),
    pytest.param(2 * F - 3000, -1000, id="negative-until"),
    pytest.param(5, 700, id="first-frame"),
]


@pytest.mark.parametrize("start,stop", RANGES)
def test_lossless_range_is_the_whole_decodes(streams, start, stop):
    out, rate = hybridcodec.decode_bytes(streams.data, skip=start, until=stop)
    assert rate == RATE and out.dtype == np.int32
    assert np.array_equal(out, streams.pcm[start:stop])


@pytest.mark.parametrize("start,stop", RANGES)
def test_lower_tier_range_is_the_whole_decodes(streams, start, stop):
    """The fill is warmed up over the frame before: the range is bit-exact, not close."""
    out, _ = hybridcodec.decode_bytes(streams.low_data, skip=start, until=stop)
    assert np.array_equal(out, streams.low_pcm[start:stop])


@pytest.mark.parametrize("fill,seed", [("mean", 0), ("zero", 0), ("sample", 7)])
def test_lower_tier_fill_modes(streams, fill, seed):
    whole, _ = hybridcodec.decode_bytes(streams.low_data, fill=fill, seed=seed)
    for start, stop in ((F - 1000, F + 3000), (3 * F + 5, None)):
        out, _ = hybridcodec.decode_bytes(streams.low_data, fill=fill, seed=seed,
                                          skip=start, until=stop)
        assert np.array_equal(out, whole[start:stop]), (fill, start)


def test_lower_tier_with_tiny_frames(tmp_path):
    """A model whose frames hold two fill slots (1024 samples): every slot is a batch of
    its own, so the fill's dependence on its past is a decaying chain and the decode
    starts FILL_WARMUP_HOPS hops early (codec.FILL_EXACT_SLOTS)."""
    from hybridcodec.model import HybridModel, ModelConfig

    model = tmp_path / "small.hcm"
    HybridModel(ModelConfig(frame_length=1024)).save(model)
    pcm = _music(60 * 1024 + 17)
    data = hybridcodec.encode_array(pcm, RATE, model=model, kbps=96)
    whole, _ = hybridcodec.decode_bytes(data, model=model)
    for start in (1024, 5 * 1024 + 3, 33 * 1024 - 1, 50 * 1024 + 512):
        out, _ = hybridcodec.decode_bytes(data, model=model, skip=start, until=start + 2000)
        assert np.array_equal(out, whole[start:start + 2000]), start


def _count_decoded(monkeypatch) -> list[int]:
    seen: list[int] = []
    real = parallel.run_task

    def counting(net, task):
        if task[0] in ("decode", "decode4"):
            seen.append(task[-1]["frame_index"])
        return real(net, task)

    monkeypatch.setattr(parallel, "run_task", counting)
    return seen


def test_a_seek_decodes_only_the_frames_it_needs(streams, monkeypatch):
    seen = _count_decoded(monkeypatch)
    hybridcodec.decode_bytes(streams.data, skip=2 * F + 10, until=2 * F + 20)
    assert seen == [2]
    del seen[:]
    hybridcodec.decode_bytes(streams.data, skip=F - 5, until=F + 5)
    assert seen == [0, 1]
    del seen[:]
    # a lower tier: one more frame before, for the fill; and the next one when the
    # range ends within the fill's two-hop lag of a frame's end
    hybridcodec.decode_bytes(streams.low_data, skip=2 * F + 10, until=2 * F + 20)
    assert seen == [1, 2]
    del seen[:]
    hybridcodec.decode_bytes(streams.low_data, skip=2 * F + 10, until=3 * F - 10)
    assert seen == [1, 2, 3]


def test_stream_api_ranges_and_seek(streams):
    pcm = streams.pcm
    with hybridcodec.open_stream(streams.full) as s:
        blocks = list(s.blocks(F + 100, 3 * F + 50))
        assert [len(b) for b in blocks] == [F - 100, F, 50]
        assert np.array_equal(np.concatenate(blocks), pcm[F + 100:3 * F + 50])
        assert s.md5_ok is None  # a part cannot be checked against the MD5
        with pytest.raises(UsageError, match="once"):
            s.blocks()
        s.seek("0:03")  # a time, as --skip takes it
        assert np.array_equal(np.concatenate(list(s.blocks(stop="+0:00.5"))),
                              pcm[132300:132300 + 22050])
        s.seek(2 * F)
        it = s.blocks()
        assert np.array_equal(next(it), pcm[2 * F:3 * F])
        s.seek(10)  # stops the iteration that is running
        with pytest.raises(StopIteration):
            next(it)
        assert np.array_equal(np.concatenate(list(s.blocks())), pcm[10:])
        s.seek(0)
        assert np.array_equal(np.concatenate(list(s.blocks())), pcm)
        assert s.md5_ok is True  # the whole stream again: checked
    with hybridcodec.open_stream(streams.low_data) as s:
        s.seek(2 * F + 1)
        assert np.array_equal(np.concatenate(list(s.blocks())), streams.low_pcm[2 * F + 1:])


def test_decode_file_range_report(streams, tmp_path):
    report = hybridcodec.decode(streams.full, tmp_path / "a.flac", skip="0:04",
                                until="-0:01")
    out, rate = sf.read(tmp_path / "a.flac", dtype="int16")
    start, stop = 4 * RATE, len(streams.pcm) - RATE
    assert np.array_equal(out, streams.pcm[start:stop])
    assert report.range == (start, stop) and report.md5_ok is None
    assert report.num_samples == len(streams.pcm)  # the stream's length, for % of PCM
    whole = hybridcodec.decode(streams.full, tmp_path / "b.wav", skip=0, until=None)
    assert whole.range is None and whole.md5_ok is True


def test_jobs_give_the_same_range(streams):
    s = hybridcodec.open_stream(streams.low_data, jobs=2)
    with s:
        out = np.concatenate(list(s.blocks(F + 7, 2 * F + 9)))
    assert np.array_equal(out, streams.low_pcm[F + 7:2 * F + 9])


# --------------------------------------------------------------------------- CLI


def run_cli(args, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main([str(a) for a in args], stdout=out, stderr=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("options,start,stop", [
    (["--skip", "0:03", "--until", "+0:01.5"], 132300, 198450),
    (["--skip", "131072", "--until", "262144"], F, 2 * F),
    (["--skip=1:0,25", "--until=-0:01"], None, None),  # past the end: checked below
    (["--until", "-0:01"], 0, -RATE),
    (["--until=-0:01"], 0, -RATE),
    (["--until", "-1000"], 0, -1000),
    (["--skip", "3", "--until", "-0"], 3, None),
])
def test_cli_skip_until(streams, tmp_path, options, start, stop):
    out = tmp_path / "out.wav"
    code, stdout, stderr = run_cli(["decode", streams.full, out, *options])
    if start is None:  # 60.25 s is past the end of the 9.8 s stream
        assert code == 2 and not out.exists()
        assert re.fullmatch(r"hybridcodec: \S+: skip 1:0,25 \(sample 2657025, 60\.25 s\) is "
                            r"at or past the end of the stream \(431216 samples, 9\.78 s\)\n",
                            stderr)
        return
    assert code == 0, stderr
    got, _ = sf.read(out, dtype="int16")
    want = streams.pcm[start:stop]
    assert np.array_equal(got, want)
    first = start
    last = (stop if stop is not None and stop > 0 else len(streams.pcm) + (stop or 0)) - 1
    assert f"(samples {first}..{last})" in stdout


def test_cli_lower_tier_and_pipes(streams, tmp_path):
    start, stop = 2 * F - 777, 2 * F + 5555
    for src, want in ((streams.low_data, streams.low_pcm), (streams.data, streams.pcm)):
        out = tmp_path / "pipe.wav"
        code, _, stderr = run_cli(["decode", "-", "-o", out, "-f", "--skip", start,
                                   "--until", stop], stdin_bytes=NoSeek(src))
        assert code == 0, stderr
        assert np.array_equal(sf.read(out, dtype="int16")[0], want[start:stop])
        # standard output: the WAV header declares the range's length
        buf = io.BytesIO()
        code, _, stderr = run_cli(["decode", "-", "--skip", start, "--until", "+100"],
                                  stdin_bytes=NoSeek(src), stdout_bytes=buf)
        assert code == 0, stderr
        got, _ = sf.read(io.BytesIO(buf.getvalue()), dtype="int16")
        assert np.array_equal(got, want[start:start + 100])
        assert "<stdin> -> <stdout>:" in stderr and " read -> " in stderr


@pytest.mark.parametrize("options,message", [
    (["--skip", "12.5"], r"argument --skip: not a sample number N or a time M:SS\.SS; for "
                         r"12\.5 seconds write 0:12\.5"),
    (["--skip", "-5"], r"argument --skip: skip is a position from the start, without a sign"),
    (["--skip", "1:00:00"], r"argument --skip: not a sample number"),
    (["--until", "ten"], r"argument --until: not a sample number N or a time M:SS\.SS, with "
                         r"- to count from the end or \+ from skip"),
    (["--until", "1:"], r"argument --until: not a sample number"),
    (["--skip", "431216"], r"skip 431216 \(sample 431216, 9\.78 s\) is at or past the end"),
    (["--until", "0:10"], r"until 0:10 \(sample 441000, 10\.00 s\) is past the end of the "
                          r"stream \(431216 samples, 9\.78 s\)"),
    (["--until", "-0:10"], r"until -0:10 lies before the start of the stream"),
    (["--skip", "0:05", "--until", "0:04"], r"until 0:04 \(sample 176400\) is not after skip "
                                            r"\(sample 220500\): the range would be empty"),
    (["--skip", "0:05", "--until", "+0"], r"until \+0 \(sample 220500\) is not after skip"),
    (["--until", "0"], r"until 0 \(sample 0\) is not after skip \(sample 0\)"),
])
def test_cli_bad_ranges_are_usage_errors(streams, tmp_path, capsys, options, message):
    out = tmp_path / "out.wav"
    code, stdout, stderr = run_cli(["decode", streams.full, "-o", out, *options])
    stderr += capsys.readouterr().err  # argparse writes its errors to sys.stderr
    assert code == 2
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing written
    lines = stderr.splitlines()
    assert lines[-1].startswith("hybridcodec: ") and re.search(message, lines[-1]), stderr
    if "argument" not in message:  # a range: resolved against the stream
        assert len(lines) == 1
    else:  # a syntax error: the verb's usage, then the one line
        assert len(lines) == 2 and lines[0].startswith("usage: hybridcodec decode")


def test_api_bad_ranges(streams):
    n = len(streams.pcm)
    for kwargs, pattern in (({"skip": 1.5}, "sample number \\(int\\) or a time string"),
                            ({"skip": True}, "sample number"),
                            ({"skip": -1}, "must not be negative"),
                            ({"skip": n}, "at or past the end"),
                            ({"until": n + 1}, "past the end"),
                            ({"until": -n - 1}, "before the start"),
                            ({"skip": 10, "until": 10}, "not after skip"),
                            ({"until": "0:1x"}, "not a sample number")):
        with pytest.raises(UsageError, match=pattern) as info:
            hybridcodec.decode_bytes(streams.data, **kwargs)
        assert "\n" not in str(info.value)
    with hybridcodec.open_stream(streams.data) as s:
        with pytest.raises(UsageError, match="at or past the end"):
            s.seek(n)


def test_times_resolve_exactly():
    # floor(seconds * rate) in exact arithmetic: 0.7 * 44100 is 30869.999... in floats
    assert timecode.parse("0:00.7").offset(44100) == 30870
    assert timecode.parse("1:30").offset(48000) == 90 * 48000
    assert timecode.parse("0:12,5").offset(8000) == 100000
    assert timecode.parse("0:00.00001").offset(44100) == 0  # within the first sample
    assert timecode.resolve("0:01", "+0:01", 10 * RATE, RATE) == (RATE, 2 * RATE)
    assert timecode.resolve(None, "-0", 100, 8000) == (0, 100)


def test_pipe_reads_forward_only(streams):
    with hybridcodec.open_stream(NoSeek(streams.data)) as s:
        assert np.array_equal(np.concatenate(list(s.blocks(2 * F + 3, 2 * F + 9))),
                              streams.pcm[2 * F + 3:2 * F + 9])
        s.seek(3 * F)  # forward: fine
        assert np.array_equal(np.concatenate(list(s.blocks())), streams.pcm[3 * F:])
        s.seek(0)
        with pytest.raises(UsageError, match="cannot seek backwards") as info:
            list(s.blocks())
        assert "\n" not in str(info.value)


def _frame_offsets(data: bytes) -> list[int]:
    reader = StreamReader(io.BytesIO(data))
    ends = []
    for _ in reader.frames():
        ends.append(reader.bytes_read)
    return ends


def test_crcs_still_guard_the_range(streams, tmp_path):
    """A damaged frame outside the range is never read; one inside it is an error (or,
    with --ignore-errors, silence that is reported)."""
    ends = _frame_offsets(streams.data)
    damaged = bytearray(streams.data)
    damaged[(ends[1] + ends[2]) // 2] ^= 0x40  # the middle of frame 2's chunk
    damaged = bytes(damaged)
    out, _ = hybridcodec.decode_bytes(damaged, skip=3 * F + 1, until=3 * F + 100)
    assert np.array_equal(out, streams.pcm[3 * F + 1:3 * F + 100])
    with pytest.raises(CorruptStreamError, match="frame 2"):
        hybridcodec.decode_bytes(damaged, skip=2 * F + 1, until=2 * F + 100)
    path = tmp_path / "damaged.hyb"
    path.write_bytes(damaged)
    report = hybridcodec.decode(path, tmp_path / "x.wav", ignore_errors=True,
                                skip=2 * F - 10, until=2 * F + 10)
    got, _ = sf.read(tmp_path / "x.wav", dtype="int16")
    assert np.array_equal(got[:10], streams.pcm[2 * F - 10:2 * F]) and not got[10:].any()
    assert [r.frame for r in report.damaged] == [2]


# --------------------------------------------------------------------------- old versions


OLD_STREAMS = ["v1-cellar-01.hyb"] + [f"golden/{name}" for name in (
    "v2-synthetic.hyb", "v2-cellar-01.hyb", "v3-synthetic.hyb", "v3-tagged.hyb",
    "v4-synthetic.hyb", "v4-cellar-01.hyb", "v4-compact.hyb")]


@pytest.mark.parametrize("name", OLD_STREAMS)
def test_every_format_version(name):
    data = (FIXTURES / name).read_bytes()
    whole, _ = hybridcodec.decode_bytes(data)
    with hybridcodec.open_stream(data) as s:
        n, frame = s.num_samples, s.frame_length
        assert s.num_frames == -(-n // frame)
    ranges = [(n // 2, n // 2 + 100), (n - 10, None), (1, -1)]
    if n > frame:
        ranges.append((frame - 3, frame + 5))  # across the frame boundary
    for start, stop in ranges:
        want = whole[start:stop]
        out, _ = hybridcodec.decode_bytes(data, skip=start, until=stop)
        assert np.array_equal(out, want), (name, start, stop)
        with hybridcodec.open_stream(NoSeek(data)) as s:  # a pipe: walks frame headers
            assert np.array_equal(np.concatenate(list(s.blocks(start, stop))), want)


# --------------------------------------------------------------------------- README


def test_readme_example(tmp_path):
    """The Usage section's --skip/--until commands, run as written (the set-up command's
    /tmp/cellar-01.hyb made in a temporary folder)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    usage = text[text.index("## Usage"):text.index("## Python API")]
    lines = [ln.split("  #")[0].strip() for ln in usage.splitlines()
             if ln.startswith("hybridcodec decode /") and "--skip" in ln]
    assert len(lines) == 2, lines
    pcm = _music(308700)  # cellar-01's length
    sf.write(tmp_path / "cellar-01.flac", pcm, RATE, subtype="PCM_16")
    hybridcodec.encode(tmp_path / "cellar-01.flac", tmp_path / "cellar-01.hyb")
    expected = {"part.wav": (110250, 242550), "tail.wav": (220500, 308700 - RATE)}
    for line in lines:
        words = [w.replace("/tmp/", f"{tmp_path}/") for w in shlex.split(line)]
        code, _, stderr = run_cli(words[1:])
        assert code == 0, (line, stderr)
        name = Path(words[3]).name
        start, stop = expected[name]
        got, _ = sf.read(tmp_path / name, dtype="int16")
        assert np.array_equal(got, pcm[start:stop]), line
