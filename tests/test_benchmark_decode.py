"""``polyvision benchmark decode`` on the files people have: a backend that cannot read the
file is skipped with its reason in its row (two video streams, AV1 for decord), and the
access patterns fit short videos instead of running past their end."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from polyvision.datamodules.video.backends import backend_status
from polyvision.scripts import benchmark

_spec = importlib.util.spec_from_file_location("video_helpers", Path(__file__).parent / "datamodules" / "conftest.py")
vt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vt)  # write_video: frames that encode their own index

FAST = dict(repeats=1, clips=2)


def rows_of(rows, backend):
    return [r for r in rows if r["backend"] == backend]


def test_ten_frame_clip_fits_the_patterns(tmp_path):
    video = vt.write_video(tmp_path / "short.mp4", num_frames=10)
    notes: list[str] = []
    rows = benchmark.bench_decode(video, ["pyav"], notes=notes, **FAST)
    assert all("skipped" not in r for r in rows), rows
    random16 = {r["backend"]: r for r in rows if r["pattern"] == "random16"}
    assert set(random16) == {"pyav", benchmark.BASELINE}
    assert all(r["clip_len"] == 10 and r["frames"] == 10 * FAST["clips"] for r in random16.values())
    assert any("random16 reads clips of 10 frames" in n for n in notes)


def test_five_frame_clip_reduces_uniform8(tmp_path):
    video = vt.write_video(tmp_path / "tiny.mp4", num_frames=5)
    notes: list[str] = []
    rows = benchmark.bench_decode(video, ["pyav"], notes=notes, **FAST)
    uniform = next(r for r in rows if r["pattern"] == "uniform8")
    assert uniform["clip_len"] == 5 and uniform["frames"] == 5 * FAST["clips"]
    assert any("uniform8 reads 5 frames" in n for n in notes)
    assert benchmark.fit_patterns(100) == ({"sequential": 32, "random16": 16, "uniform8": 8}, [])


def test_two_video_streams_skip_decord_with_its_reason(tmp_path):
    video = vt.write_video(tmp_path / "two_streams.mp4", num_frames=20, second_stream=(96, 128))
    rows = benchmark.bench_decode(video, ["pyav", "decord"], **FAST)
    assert all("skipped" not in r and r["fps_median"] > 0 for r in rows_of(rows, "pyav"))
    decord = rows_of(rows, "decord")
    assert decord and all(r["skipped"] for r in decord)
    if backend_status("decord")[0]:
        assert "stream" in decord[0]["skipped"]


def _av1_encoder() -> str | None:
    import av

    return next((c for c in ("libsvtav1", "libaom-av1", "librav1e") if c in av.codecs_available), None)


def test_av1_is_skipped_by_backends_that_cannot_open_it(tmp_path, capsys):
    encoder = _av1_encoder()
    if encoder is None:
        pytest.skip("no AV1 encoder in this PyAV build (libsvtav1, libaom-av1 or librav1e)")
    video = vt.write_video(tmp_path / "av1.mp4", num_frames=24, height=64, width=64, codec=encoder)
    out = tmp_path / "bench.json"
    code = benchmark.main(["decode", str(video), "--repeats", "1", "--clips", "2", "--json", str(out)])
    saved = json.loads(out.read_text())
    readable = [r for r in saved["rows"] if "skipped" not in r]
    assert code == 0 and readable, saved  # PyAV reads AV1 where its build has a decoder
    for row in saved["rows"]:
        if "skipped" in row:
            assert row["skipped"] and any(row["backend"] in n for n in saved["notes"])
    if backend_status("decord")[0]:
        assert all("skipped" in r for r in rows_of(saved["rows"], "decord"))
        assert "skipped:" in capsys.readouterr().out  # the reason is in the table's row


def test_command_on_a_short_two_stream_file_prints_the_table(tmp_path, capsys):
    video = vt.write_video(tmp_path / "both.mp4", num_frames=10, second_stream=(96, 128))
    assert benchmark.main(["decode", str(video), "--repeats", "1", "--clips", "1",
                           "--backends", "pyav", "decord"]) == 0
    out = capsys.readouterr().out
    assert "pyav" in out and "random16 reads clips of 10 frames" in out
