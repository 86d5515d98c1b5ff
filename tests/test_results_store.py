"""Run-point HDF5 files: round trip, atomic writes, and refusing anything that is not one."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest

from ixhpc.errors import UserError
from ixhpc.results import load, store, write_point

from results_helpers import bench_result, metadata, write_v1_point


def test_round_trip_keeps_every_request_metadata_and_bench_config(tmp_path):
    bench, meta = bench_result(n=24, osl=40, failed=2), metadata(conc=8)
    path = tmp_path / "p.h5"
    rid = write_point(path, bench, meta)
    point = store.read(path)
    assert point.result_id == rid and point.n_requests == 24
    assert point.metadata == meta
    assert point.config == {k: v for k, v in bench["config"].items() if v is not None}
    req, rows = bench["requests"], point.requests.rows
    np.testing.assert_array_equal(rows["ttft"], np.array(req["ttft_ms"]))
    np.testing.assert_array_equal(rows["success"], np.array(req["success"]))
    np.testing.assert_array_equal(rows["output_len"], np.array(req["output_len"]))
    np.testing.assert_array_equal(point.requests.itl_offsets, np.array(req["itl_ms_offsets"]))
    np.testing.assert_allclose(point.requests.itl, np.array(req["itl_ms_values"]), rtol=1e-6)
    offsets = req["itl_ms_offsets"]
    np.testing.assert_allclose(point.requests.gaps(5), req["itl_ms_values"][offsets[5]:offsets[6]], rtol=1e-6)
    assert point.requests.errors() == req["error"]
    assert point.requests.error_texts == ["HTTP 503: overloaded"]  # stored once per distinct text
    assert math.isnan(rows["tpot"][0])  # failed requests keep their row
    frame = point.requests.frame()
    assert len(frame) == 24 and frame["error"].isna().sum() == 22


def test_file_carries_units_metadata_and_summary_for_people(tmp_path):
    bench, meta = bench_result(), metadata(tp=4)
    path = tmp_path / "p.h5"
    write_point(path, bench, meta)
    with h5py.File(path) as f:
        assert f.attrs["ixhpc_format"] == store.FORMAT and f.attrs["ixhpc_format_version"] == 2
        assert f.attrs["tp"] == 4 and f.attrs["runner"] == "b200"
        assert f["requests"].attrs["ttft"] == "ms" and f["requests"].attrs["input_len"] == "tokens"
        assert list(f["requests"].attrs["error_texts"]) == ["HTTP 503: overloaded"]
        assert f["itl"].attrs["units"] == "ms"
        assert f["requests"]["e2el"][3] == bench["requests"]["e2el_ms"][3]
        assert f["summary"].attrs["total_token_throughput"] == bench["summary"]["total_token_throughput"]
        assert f["metrics"].attrs["tput_per_gpu"] == pytest.approx(bench["summary"]["total_token_throughput"] / 4)
        assert f["bench_config"].attrs["seed"] == bench["config"]["seed"]


def test_version_1_files_are_still_read(tmp_path):
    bench, meta = bench_result(n=20, failed=3, seed=4), metadata(conc=4)
    rid = write_v1_point(tmp_path / "old.h5", bench, meta)
    point = store.read(tmp_path / "old.h5")
    assert point.result_id == rid and point.metadata == meta
    assert point.config["seed"] == 4 and point.config["random_range_ratio"] == 0.8
    write_point(tmp_path / "new.h5", bench, meta)
    new = store.read(tmp_path / "new.h5")
    assert new.result_id != rid  # the id belongs to the file's format, not only its content
    assert point.requests.rows.tobytes() == new.requests.rows.tobytes()
    assert point.requests.errors() == new.requests.errors()
    np.testing.assert_array_equal(point.requests.itl, new.requests.itl)
    assert point.requests_sha256 == new.requests_sha256
    assert load(tmp_path / "old.h5").loc[0, "result_id"] == rid


def test_load_single_point_file_gives_one_row(tmp_path):
    path = tmp_path / "p.h5"
    write_point(path, bench_result(), metadata(conc=16))
    df = load(path)
    assert len(df) == 1 and df.loc[0, "conc"] == 16 and df.loc[0, "runner"] == "b200"
    assert "tp" in df and "prefill_gpus" not in df


def test_existing_result_is_never_overwritten(tmp_path):
    path = tmp_path / "p.h5"
    write_point(path, bench_result(seed=1), metadata())
    before = path.read_bytes()
    with pytest.raises(UserError, match="never overwritten"):
        write_point(path, bench_result(seed=2), metadata())
    assert path.read_bytes() == before


def test_failed_write_leaves_no_file(tmp_path):
    bad_meta = metadata()
    del bad_meta["gpus"]
    with pytest.raises(UserError, match="gpus"):
        write_point(tmp_path / "p.h5", bench_result(), bad_meta)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mutate, message", [
    (lambda b, m: b["requests"].update(ttft_ms=b["requests"]["ttft_ms"][:-1]), "ttft_ms has"),
    (lambda b, m: b["requests"].update(itl_ms_offsets=[0, 1]), "itl_ms_offsets"),
    (lambda b, m: b["summary"].pop("output_throughput"), "output_throughput"),
    (lambda b, m: b.update(extra=1), "extra"),
    (lambda b, m: m.update(conc="8"), "conc"),
    (lambda b, m: m.pop("runner"), "runner"),
    (lambda b, m: m.update(nested={"a": 1}), "nested"),
])
def test_bad_inputs_are_one_clear_error(tmp_path, mutate, message):
    bench, meta = bench_result(), metadata()
    mutate(bench, meta)
    with pytest.raises(UserError, match=message):
        write_point(tmp_path / "p.h5", bench, meta)


def _corrupt_itl(path):
    data = bytearray(path.read_bytes())
    with h5py.File(path) as f:
        offset = f["itl"].id.get_offset()  # big enough to be stored apart from the header
    data[offset + 8:offset + 16] = b"\xff" * 8
    path.write_bytes(bytes(data))


def _corrupt_header(path):
    data = bytearray(path.read_bytes())
    with h5py.File(path) as f:
        first = float(f["requests"]["ttft"][0])
    at = bytes(data).find(np.float64(first).tobytes())  # compact: inside a checksummed header
    assert at > 0
    data[at:at + 8] = np.float64(first + 1).tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, reason", [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated or corrupt"),
    (lambda p: p.write_bytes(b"not hdf5 at all" * 100), "truncated or corrupt"),
    (_corrupt_itl, "checksum"),
    (_corrupt_header, "damaged run-point file"),
])
def test_damaged_files_are_refused_with_reason(tmp_path, damage, reason):
    path = tmp_path / "p.h5"
    write_point(path, bench_result(n=160, osl=128, failed=0), metadata())
    damage(path)
    with pytest.raises(store.PointFileError, match=reason):
        store.read(path)


def test_foreign_hdf5_and_altered_record_are_refused(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(store.PointFileError, match="not written by ixhpc"):
        store.read(foreign)
    path = tmp_path / "p.h5"
    write_point(path, bench_result(), metadata())
    with h5py.File(path, "r+") as f:
        rec = json.loads(f.attrs["record"])
        rec["summary"]["total_token_throughput"] *= 2
        f.attrs["record"] = json.dumps(rec)
    with pytest.raises(store.PointFileError, match="altered or corrupt"):
        store.read(path, with_requests=False)


def test_ingest_writes_point_and_rejects_bad_json(tmp_path):
    from ixhpc.errors import UserError
    from ixhpc.results import ingest

    bench, meta = tmp_path / "bench.json", tmp_path / "meta.json"
    bench.write_text(json.dumps(bench_result()))  # Python-flavoured: NaN, Infinity
    meta.write_text(json.dumps(metadata()))
    out = tmp_path / "point.h5"
    ingest.ingest(str(bench), str(meta), str(out))
    assert store.read(out).metadata == metadata()
    meta.write_text("{not json")
    with pytest.raises(UserError, match="not readable JSON") as err:
        ingest.ingest(str(bench), str(meta), str(tmp_path / "other.h5"))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "other.h5").exists()
