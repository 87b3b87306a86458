"""Weight shards, content-hashed artifacts, the model index, verify and inspect.

Synthetic numpy tensors only; tvmjs's own Python reader (`load_tensor_cache`) is the
independent check that what we write is what tvmjs loads.
"""

from __future__ import annotations

import hashlib
import json
import re
import weakref
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import tvm
from tvm.contrib import tvmjs

from webllm_build.artifacts import (
    BF16_MAX,
    INDEX_FILE,
    TENSOR_CACHE_FILE,
    content_hashed_copy,
    format_report,
    inspect_model,
    read_model_index,
    verify_directory,
    write_content_hashed,
    write_model_index,
    write_weights,
)
from webllm_build.atomic import atomic_directory
from webllm_build.errors import ArtifactError
from webllm_build.serve import HASHED_NAME

MIB = 1 << 20
SHARD_NAME = re.compile(r"^params-[0-9a-f]{16}\.bin$")


def tensors(seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """One tensor of each dtype a compiled model stores, in a fixed order."""
    rng = np.random.default_rng(seed)
    return [
        ("embed.q_weight", rng.integers(0, 2**32, size=(64, 16), dtype=np.uint32)),
        ("embed.q_scale", rng.standard_normal((64, 4)).astype(np.float16)),
        ("layers.0.norm.weight", rng.standard_normal(48).astype(np.float32)),
        ("layers.0.proj.weight", rng.standard_normal((48, 32)).astype(np.float32)),
        ("positions", rng.integers(-1000, 1000, size=(7, 3), dtype=np.int32)),
        ("scalar", np.array(3.5, dtype=np.float32)),
        ("empty", np.zeros((0, 4), dtype=np.float16)),
    ]


def load_with_tvmjs(directory: Path) -> dict[str, np.ndarray]:
    loaded, _ = tvmjs.load_tensor_cache(str(directory), tvm.cpu())
    return {name: array.numpy() for name, array in loaded.items()}


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def file_bytes(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def compiled_dir(directory: Path, params, *, features=("shader-f16",), **kwargs) -> Path:
    """A complete model directory as the compile stage will write it (with a fake library)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_weights(params, directory, **kwargs)
    source = directory.parent / f"{directory.name}-build.wasm"
    source.write_bytes(b"\0asm" + bytes(range(256)) * 8)
    library = content_hashed_copy(source, directory, "model")
    tokenizer = write_content_hashed(b'{"model": {}}', directory, "tokenizer", ".json")
    config = {"model": "tiny", "quantization": "q4f16_1", "required_features": list(features)}
    config_file = write_content_hashed(json.dumps(config).encode(), directory, "webllm-config", ".json")
    files = {
        "library": library,
        "tokenizer": tokenizer,
        "config": config_file,
        "tensor_cache": TENSOR_CACHE_FILE,
    }
    write_model_index(directory, files, {"model": "tiny", "required_features": list(features)})
    return directory


# --- the tvmjs format ---------------------------------------------------------------------


def test_raw_round_trip_through_tvmjs_loader(tmp_path):
    write_weights(tensors(), tmp_path)
    loaded = load_with_tvmjs(tmp_path)
    assert list(loaded) == [name for name, _ in tensors()]
    for name, array in tensors():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape, name
        np.testing.assert_array_equal(loaded[name], array, err_msg=name)


def test_bf16_round_trip_matches_numpy_bf16_rounding(tmp_path):
    manifest = write_weights(tensors(), tmp_path, bf16=True)
    loaded = load_with_tvmjs(tmp_path)
    records = {rec.name: rec for shard in manifest.shards for rec in shard.records}
    for name, array in tensors():
        if array.dtype == np.float32:
            assert records[name].format == "f32-to-bf16" and records[name].dtype == "float32"
            assert records[name].nbytes == array.size * 2
            expected = array.astype(ml_dtypes.bfloat16).astype(np.float32)
            assert loaded[name].dtype == np.float32
            np.testing.assert_array_equal(loaded[name], expected, err_msg=name)
        else:  # packed 4-bit words, f16 scales and ints are stored as they are
            assert records[name].format == "raw"
            np.testing.assert_array_equal(loaded[name], array, err_msg=name)


def test_bf16_edge_values_match_tvmjs_encoder(tmp_path):
    f32_max = np.finfo(np.float32).max
    values = np.array(
        [0.0, -0.0, 1.0, 1 + 2**-8, 1 + 3 * 2**-8, BF16_MAX, 3.3961e38, f32_max, -f32_max, np.inf, -np.inf],
        dtype=np.float32,
    )
    values = np.concatenate([values, np.float32(1e-40) * np.arange(4, dtype=np.float32)])
    write_weights([("v", values)], tmp_path, bf16=True)
    shard = read_json(tmp_path / TENSOR_CACHE_FILE)["records"][0]
    stored = np.frombuffer((tmp_path / shard["dataPath"]).read_bytes(), dtype=np.uint16)
    # tvmjs's own dumper is the reference for the bit patterns its loaders expect.
    np.testing.assert_array_equal(stored, tvmjs._convert_f32_to_bf16(values))
    loaded = load_with_tvmjs(tmp_path)["v"]
    assert np.isfinite(loaded[5:9]).all(), "values beyond bf16's range clamp, never become inf"


def test_bf16_keeps_nan(tmp_path):
    nan_low_payload = np.array([0x7F800001], dtype=np.uint32).view(np.float32)
    write_weights([("v", nan_low_payload)], tmp_path, bf16=True)
    assert np.isnan(load_with_tvmjs(tmp_path)["v"]).all()


def test_manifest_schema(tmp_path):
    params = tensors()
    write_weights(params, tmp_path)
    document = read_json(tmp_path / TENSOR_CACHE_FILE)
    assert list(document) == ["metadata", "records"]
    metadata = document["metadata"]
    scalars = sum(array.size for _, array in params)
    nbytes = sum(array.nbytes for _, array in params)
    assert metadata["ParamSize"] == scalars
    assert metadata["ParamBytes"] == nbytes
    assert metadata["BitsPerParam"] == pytest.approx(nbytes * 8 / scalars, abs=1e-4)
    assert metadata["WeightsFormat"] == 1
    seen = []
    for shard in document["records"]:
        assert list(shard) == ["dataPath", "format", "nbytes", "sha256", "records"]
        assert shard["format"] == "raw-shard" and SHARD_NAME.match(shard["dataPath"])
        data = (tmp_path / shard["dataPath"]).read_bytes()
        assert shard["nbytes"] == len(data)
        assert shard["sha256"] == hashlib.sha256(data).hexdigest()
        assert shard["dataPath"] == f"params-{shard['sha256'][:16]}.bin"
        offset = 0
        for rec in shard["records"]:
            assert list(rec) == ["name", "shape", "dtype", "format", "nbytes", "byteOffset"]
            assert rec["byteOffset"] == offset, "records lie back to back"
            offset += rec["nbytes"]
            seen.append(rec["name"])
        assert offset == shard["nbytes"]
    assert seen == [name for name, _ in params]
    by_name = {rec["name"]: rec for shard in document["records"] for rec in shard["records"]}
    for name, array in params:
        rec = by_name[name]
        assert (rec["shape"], rec["dtype"], rec["format"], rec["nbytes"]) == (
            list(array.shape),
            array.dtype.name,
            "raw",
            array.nbytes,
        )


def test_param_count_sets_bits_per_parameter(tmp_path):
    packed = np.zeros((16, 4), dtype=np.uint32)  # 16 x 32 four-bit weights
    scale = np.ones((16, 1), dtype=np.float16)
    manifest = write_weights([("w.q_weight", packed), ("w.q_scale", scale)], tmp_path, param_count=16 * 32)
    metadata = read_json(tmp_path / TENSOR_CACHE_FILE)["metadata"]
    assert metadata["ParamSize"] == 512 and metadata["ParamBytes"] == 256 + 32
    assert metadata["BitsPerParam"] == manifest.bits_per_param == 4.5


def test_hashed_names_are_served_immutable_and_pointers_revalidated(tmp_path):
    directory = compiled_dir(tmp_path / "m", tensors())
    index = read_model_index(directory)
    for path in directory.iterdir():
        hashed = path.name not in (INDEX_FILE, TENSOR_CACHE_FILE)
        assert bool(HASHED_NAME.search(path.name)) == hashed, path.name
    assert re.fullmatch(r"model-[0-9a-f]{16}\.wasm", index.files["library"].path)
    assert re.fullmatch(r"tokenizer-[0-9a-f]{16}\.json", index.files["tokenizer"].path)
    assert re.fullmatch(r"webllm-config-[0-9a-f]{16}\.json", index.files["config"].path)


# --- sharding -----------------------------------------------------------------------------


def sized(name: str, nbytes: int, seed: int) -> tuple[str, np.ndarray]:
    return name, np.random.default_rng(seed).standard_normal(nbytes // 4).astype(np.float32)


def test_shard_cap_is_respected_and_an_oversized_tensor_sits_alone(tmp_path):
    params = [sized(f"t{i}", 300 * 1024, i) for i in range(5)]
    params.insert(3, sized("big", MIB + MIB // 2, 99))
    manifest = write_weights(params, tmp_path, shard_mb=1)
    layout = [[rec.name for rec in shard.records] for shard in manifest.shards]
    assert layout == [["t0", "t1", "t2"], ["big"], ["t3", "t4"]]
    for shard in manifest.shards:
        assert shard.nbytes <= MIB or len(shard.records) == 1
    # Greedy: a shard closes only when its successor's first tensor would not have fit.
    for shard, following in zip(manifest.shards, manifest.shards[1:], strict=False):
        assert shard.nbytes + following.records[0].nbytes > MIB
    loaded = load_with_tvmjs(tmp_path)
    for name, array in params:
        np.testing.assert_array_equal(loaded[name], array)


def test_a_tensor_of_exactly_the_cap_fills_one_shard(tmp_path):
    manifest = write_weights([sized("a", MIB, 0), sized("b", MIB, 1)], tmp_path, shard_mb=1)
    assert [shard.nbytes for shard in manifest.shards] == [MIB, MIB]


def test_tensors_of_written_shards_are_released(tmp_path):
    """Streaming: the whole model is never in memory, only the shard being filled."""
    refs: list[weakref.ref] = []
    alive: list[int] = []

    def stream():
        for i in range(12):
            alive.append(sum(ref() is not None for ref in refs))
            name, array = sized(f"t{i}", 400 * 1024, i)
            refs.append(weakref.ref(array))
            yield name, array

    write_weights(stream(), tmp_path, shard_mb=1)
    # 1 MiB shards hold two 400 KiB tensors; nothing older than the open shard survives.
    assert max(alive) == 2, alive


def test_same_inputs_give_identical_files(tmp_path):
    first = compiled_dir(tmp_path / "a", tensors(), bf16=True)
    second = compiled_dir(tmp_path / "b", tensors(), bf16=True)
    assert file_bytes(first) == file_bytes(second)


def test_changing_one_tensor_renames_only_its_shard(tmp_path):
    params = [sized(f"t{i}", 300 * 1024, i) for i in range(9)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    before = write_weights(params, tmp_path / "a", shard_mb=1)
    params[4] = sized("t4", 300 * 1024, 1000)  # same size, new values
    after = write_weights(params, tmp_path / "b", shard_mb=1)
    old = [shard.data_path for shard in before.shards]
    new = [shard.data_path for shard in after.shards]
    assert len(old) == len(new) == 3
    changed = [i for i, (o, n) in enumerate(zip(old, new, strict=True)) if o != n]
    assert changed == [1], "only the shard holding t4 changes"
    for name in set(old) & set(new):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_identical_shards_share_one_file(tmp_path):
    zeros = np.zeros(MIB // 4, dtype=np.float32)
    manifest = write_weights([("a", zeros), ("b", zeros.copy())], tmp_path, shard_mb=1)
    assert manifest.shards[0].data_path == manifest.shards[1].data_path
    assert len(list(tmp_path.glob("params-*.bin"))) == 1
    assert set(load_with_tvmjs(tmp_path)) == {"a", "b"}


def test_write_errors_say_what_to_do(tmp_path):
    with pytest.raises(ArtifactError, match="appears twice"):
        write_weights([("a", np.zeros(2)), ("a", np.zeros(2))], tmp_path)
    with pytest.raises(ArtifactError, match="complex64, which tvmjs cannot load"):
        write_weights([("c", np.zeros(2, dtype=np.complex64))], tmp_path)
    with pytest.raises(ArtifactError, match="positive"):
        write_weights([], tmp_path, shard_mb=0)
    with pytest.raises(ArtifactError, match="no weights"):
        write_weights([], tmp_path)


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path):
    final = tmp_path / "model"

    def failing():
        yield sized("a", 600 * 1024, 0)
        yield sized("b", 600 * 1024, 1)  # closes the first shard
        raise RuntimeError("checkpoint read failed")

    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        write_weights(failing(), tmp, shard_mb=1)
    assert list(tmp_path.iterdir()) == []


# --- hashed copies and the index ----------------------------------------------------------


def test_content_hashed_copy_names_by_content(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    source = tmp_path / "lib.wasm"
    source.write_bytes(b"\0asm one")
    name = content_hashed_copy(source, out, "model")
    digest = hashlib.sha256(b"\0asm one").hexdigest()
    assert name == f"model-{digest[:16]}.wasm"
    assert (out / name).read_bytes() == b"\0asm one"
    source.write_bytes(b"\0asm two")
    assert content_hashed_copy(source, out, "model") != name
    assert write_content_hashed(b"\0asm one", out, "model", ".wasm") == name
    with pytest.raises(ArtifactError, match="Cannot read"):
        content_hashed_copy(tmp_path / "absent.wasm", out, "model")


def test_index_names_every_file_with_size_and_sha256(tmp_path):
    directory = compiled_dir(tmp_path / "m", tensors())
    document = read_json(directory / INDEX_FILE)
    assert document["format"] == 1 and document["model"] == "tiny"
    assert set(document["files"]) == {"library", "tokenizer", "config", "tensor_cache"}
    assert document["files"]["tensor_cache"]["path"] == TENSOR_CACHE_FILE
    for entry in document["files"].values():
        data = (directory / entry["path"]).read_bytes()
        assert entry["nbytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert read_model_index(directory).extra == {"model": "tiny", "required_features": ["shader-f16"]}
    with pytest.raises(ValueError, match="roles"):
        write_model_index(directory, {"library": "x"}, {})


# --- verify -------------------------------------------------------------------------------


def test_verify_passes_an_intact_directory(tmp_path):
    assert verify_directory(compiled_dir(tmp_path / "m", tensors())) == []


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


@pytest.mark.parametrize(
    "damage, words",
    [(corrupt, "corrupted"), (truncate, "truncated"), (Path.unlink, "missing")],
    ids=["corrupted", "truncated", "missing"],
)
def test_verify_names_a_damaged_shard(tmp_path, damage, words):
    params = [sized(f"t{i}", 300 * 1024, i) for i in range(6)]
    directory = compiled_dir(tmp_path / "m", params, shard_mb=1)
    victim = read_json(directory / TENSOR_CACHE_FILE)["records"][1]["dataPath"]
    damage(directory / victim)
    problems = verify_directory(directory)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{victim}: {words}") and "webllm_build compile" in problems[0]


def test_verify_catches_a_tampered_library(tmp_path):
    directory = compiled_dir(tmp_path / "m", tensors())
    library = read_model_index(directory).files["library"].path
    corrupt(directory / library)
    problems = verify_directory(directory)
    assert len(problems) == 1 and problems[0].startswith(f"{library}: corrupted")
    assert INDEX_FILE in problems[0]


def test_verify_catches_an_edited_manifest(tmp_path):
    directory = compiled_dir(tmp_path / "m", tensors())
    path = directory / TENSOR_CACHE_FILE
    document = read_json(path)
    document["records"][0]["records"][0]["byteOffset"] = 10**9
    path.write_text(json.dumps(document))
    problems = verify_directory(directory)
    assert any(p.startswith(f"{TENSOR_CACHE_FILE}: ") for p in problems), problems
    assert any("does not fit" in p for p in problems), problems


def test_verify_rejects_a_tvmjs_made_cache(tmp_path):
    directory = compiled_dir(tmp_path / "m", tensors())
    tvmjs.dump_tensor_cache(dict(tensors()), str(directory), encode_format="raw", show_progress=False)
    problems = verify_directory(directory)
    assert any("lacks the field 'sha256'" in p for p in problems), problems


def test_verify_and_inspect_refuse_a_directory_that_is_not_a_model(tmp_path):
    with pytest.raises(ArtifactError, match="not a directory"):
        verify_directory(tmp_path / "absent")
    (tmp_path / "site").mkdir()
    with pytest.raises(ArtifactError, match=f"not a compiled model: it has no {INDEX_FILE}"):
        inspect_model(tmp_path / "site")
    (tmp_path / "site" / INDEX_FILE).write_text('{"format": 1, "files": {"library": "x"}}')
    with pytest.raises(ArtifactError, match="unreadable"):
        verify_directory(tmp_path / "site")


def test_index_naming_a_path_outside_the_directory_is_refused(tmp_path):
    directory = compiled_dir(tmp_path / "m", tensors())
    document = read_json(directory / INDEX_FILE)
    document["files"]["library"]["path"] = "../m-build.wasm"
    (directory / INDEX_FILE).write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match="not a plain file name"):
        verify_directory(directory)


# --- inspect ------------------------------------------------------------------------------


def test_inspect_reports_the_numbers_of_a_known_model(tmp_path):
    params = [
        ("w.q_weight", np.zeros((256, 512), dtype=np.uint32)),  # 512 KiB, 256 x 4096 four-bit
        ("w.q_scale", np.ones((256, 128), dtype=np.float16)),  # 64 KiB
        ("norm", np.ones(1024, dtype=np.float32)),  # 4 KiB, 2 KiB as bf16
        ("big", np.arange(MIB // 2, dtype=np.float32)),  # 2 MiB, 1 MiB as bf16
    ]
    logical = 256 * 4096 + 256 * 128 + 1024 + MIB // 2
    directory = compiled_dir(tmp_path / "m", params, shard_mb=1, bf16=True, param_count=logical)
    report = inspect_model(directory, verify=True)
    assert report.param_count == logical
    assert report.tensor_count == 4
    assert report.bytes_by_dtype == {
        "float32 as bf16": MIB + 2048,
        "uint32": 512 * 1024,
        "float16": 64 * 1024,
    }
    assert (report.shards.count, report.shards.min_bytes, report.shards.max_bytes) == (
        2,
        512 * 1024 + 64 * 1024 + 2048,
        MIB,
    )
    assert report.shards.total_bytes == 512 * 1024 + 64 * 1024 + 2048 + MIB
    assert report.bits_per_param == pytest.approx(report.shards.total_bytes * 8 / logical)
    assert report.required_features == ["shader-f16"]
    assert (report.model, report.quantization) == ("tiny", "q4f16_1")
    assert report.problems == []
    text = format_report(report)
    print("\n" + text)
    assert f"{logical:,} in 4 tensors" in text
    assert "2: smallest 578.0 KiB, largest 1.0 MiB" in text
    assert "shader-f16" in text and re.search(r"^Verification +OK", text, re.M)


def test_report_lists_problems_and_unverified_state(tmp_path):
    directory = compiled_dir(tmp_path / "m", tensors(), features=())
    assert "not run" in format_report(inspect_model(directory))
    victim = next(directory.glob("params-*.bin"))
    victim.unlink()
    text = format_report(inspect_model(directory, verify=True))
    assert "FAILED, 1 problem(s)" in text and f"  - {victim.name}: missing" in text
    assert "none beyond core WebGPU" in text


# --- what bf16 storage costs --------------------------------------------------------------


def test_bf16_weights_change_mlp_logits_little(tmp_path):
    """Logits of a 2-layer MLP with f32 weights vs the same weights stored as bf16 (measured)."""
    rng = np.random.default_rng(0)
    d, hidden, vocab, batch = 512, 2048, 8192, 64
    weights = {
        "w1": (rng.standard_normal((d, hidden)) / np.sqrt(d)).astype(np.float32),
        "w2": (rng.standard_normal((hidden, vocab)) / np.sqrt(hidden)).astype(np.float32),
    }
    write_weights(weights.items(), tmp_path, bf16=True)
    stored = load_with_tvmjs(tmp_path)
    x = rng.standard_normal((batch, d)).astype(np.float32)

    def logits(w):
        return np.maximum(x @ w["w1"], 0) @ w["w2"]

    exact, rounded = logits(weights), logits(stored)
    abs_err = np.abs(rounded - exact)
    rel = np.linalg.norm(rounded - exact) / np.linalg.norm(exact)
    top1 = np.mean(exact.argmax(-1) == rounded.argmax(-1))
    print(
        f"\nbf16 vs f32 weights, MLP {d}->{hidden}->{vocab}, {batch} inputs: logit std {exact.std():.3f}, "
        f"max |diff| {abs_err.max():.4f}, mean |diff| {abs_err.mean():.5f}, relative L2 {rel:.2e}, "
        f"top-1 agreement {top1:.1%}"
    )
    assert rel < 1e-2
