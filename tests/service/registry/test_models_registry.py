"""The model registry on both databases: visibility, ownership, names, files, deletion, recovery."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest

from bitnet_sdk.api.model_views import metadata_view
from bitnet_sdk.auth.principal import Principal
from bitnet_sdk.config import Settings
from bitnet_sdk.service.registry import models as registry
from bitnet_sdk.service.registry.demo import DEMO_MODEL_NAME, ensure_demo_model
from bitnet_sdk.service.registry.models import (
    InvalidModelFile,
    ModelConflict,
    ModelNotFound,
    PermissionDenied,
)
from bitnet_sdk.service.registry.uploads import PARTIAL_SUFFIX, PartialFile
from bitnet_sdk.store import Job, ModelRecord, User
from bitnet_sdk.store.testing import DATABASE_KINDS, postgres_test_url, temporary_database
from bitnet_sdk.testing.synthetic import build_model


@pytest.fixture(params=DATABASE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[peewee.Database]:
    if request.param == "postgres" and postgres_test_url() is None:
        pytest.skip("BITNET_TEST_POSTGRES_URL not set")
    with temporary_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return build_model(tmp_path_factory.mktemp("m") / "m.gguf", seed=7).read_bytes()


@pytest.fixture
def alice(db: peewee.Database) -> Principal:
    return Principal(User.create(email="alice@example.com").id)


@pytest.fixture
def bob(db: peewee.Database) -> Principal:
    return Principal(User.create(email="bob@example.com").id)


@pytest.fixture
def root(db: peewee.Database) -> Principal:
    return Principal(User.create(email="root@example.com", is_admin=True).id, is_admin=True)


def _staged(settings: Settings, data: bytes) -> PartialFile:
    partial = PartialFile(settings.uploads_dir, max_bytes=len(data))
    partial.write(data)
    partial.complete()
    return partial


def _upload(actor: Principal, model_id: str, settings: Settings, data: bytes) -> ModelRecord:
    with _staged(settings, data) as partial:
        report = registry.inspect_file(partial.path)
        if not report.ok:
            registry.record_invalid(actor, model_id, report)
            raise InvalidModelFile(report.validation)
        return registry.attach_file(actor, model_id, partial, report, settings)


def test_visibility_own_public_and_admin(alice: Principal, bob: Principal, root: Principal) -> None:
    mine = registry.create_model(alice, name="mine")
    shared = registry.create_model(alice, name="shared", public=True)
    theirs = registry.create_model(bob, name="theirs")
    assert registry.get_model(alice, mine.id).id == mine.id
    with pytest.raises(ModelNotFound):
        registry.get_model(bob, mine.id)
    assert registry.get_model(bob, shared.id).id == shared.id
    assert {r.id for r in registry.list_models(bob).items} == {shared.id, theirs.id}
    assert {r.id for r in registry.list_models(alice).items} == {mine.id, shared.id}
    assert {r.id for r in registry.list_models(root).items} == {mine.id, shared.id, theirs.id}
    assert registry.get_model(root, theirs.id).id == theirs.id
    with pytest.raises(ModelNotFound):
        registry.get_model(alice, "mdl_doesnotexist")


def test_only_owner_or_admin_writes(alice: Principal, bob: Principal, root: Principal, settings: Settings) -> None:
    shared = registry.create_model(alice, name="shared", public=True)
    private = registry.create_model(alice, name="private")
    with pytest.raises(PermissionDenied):
        registry.update_model(bob, shared.id, {"description": "mine now"})
    with pytest.raises(PermissionDenied):
        registry.delete_model(bob, shared.id, settings)
    with pytest.raises(PermissionDenied):
        registry.check_upload(bob, shared.id)
    with pytest.raises(ModelNotFound):  # cannot even learn that it exists
        registry.update_model(bob, private.id, {"description": "x"})
    updated = registry.update_model(root, shared.id, {"description": "by admin"})
    assert updated.description == "by admin"
    assert updated.updated_at >= shared.updated_at


def test_names_are_unique_per_owner(alice: Principal, bob: Principal) -> None:
    first = registry.create_model(alice, name="m")
    with pytest.raises(ModelConflict):
        registry.create_model(alice, name="m")
    registry.create_model(bob, name="m")  # another owner's namespace
    other = registry.create_model(alice, name="n")
    with pytest.raises(ModelConflict):
        registry.update_model(alice, other.id, {"name": "m"})
    assert registry.update_model(alice, first.id, {"name": "m", "tags": ["a"]}).tags == ["a"]
    with pytest.raises(ValueError):
        registry.update_model(alice, first.id, {"status": "ready"})


def test_filters(alice: Principal, settings: Settings, model_bytes: bytes) -> None:
    ready = registry.create_model(alice, name="Alpha_1")
    _upload(alice, ready.id, settings, model_bytes)
    registry.create_model(alice, name="alpha-2")
    registry.create_model(alice, name="AlphaX1")
    names = lambda **kw: sorted(r.name for r in registry.list_models(alice, **kw).items)  # noqa: E731
    assert names(status="ready") == ["Alpha_1"]
    assert names(status="pending_upload") == ["AlphaX1", "alpha-2"]
    assert names(qtype="tq2_0", kind="llm") == ["Alpha_1"]
    assert names(qtype="i2_s") == []
    assert names(name_prefix="Alpha") == ["AlphaX1", "Alpha_1"]  # case-sensitive
    assert names(name_prefix="Alpha_") == ["Alpha_1"]  # "_" is no wildcard


def test_upload_makes_ready_and_the_row_follows_the_file(
    alice: Principal, settings: Settings, model_bytes: bytes
) -> None:
    record = registry.create_model(alice, name="m")
    ready = _upload(alice, record.id, settings, model_bytes)
    path = registry.model_path(settings, ready)
    assert path == settings.models_dir / f"{record.id}.gguf"
    assert path.read_bytes() == model_bytes
    assert (ready.status, ready.kind, ready.qtype) == ("ready", "llm", "tq2_0")
    assert ready.sha256 == hashlib.sha256(model_bytes).hexdigest()
    assert ready.size_bytes == len(model_bytes)
    assert ready.metadata["architecture"] == "bitnet" and "path" not in ready.metadata
    assert ready.validation_report["ok"] is True
    assert list(settings.uploads_dir.iterdir()) == []
    with pytest.raises(ModelConflict):  # a ready model takes no second file
        _upload(alice, record.id, settings, model_bytes)
    assert list(settings.uploads_dir.iterdir()) == []


def test_invalid_upload_keeps_no_file_and_reports(
    alice: Principal, settings: Settings, model_bytes: bytes
) -> None:
    record = registry.create_model(alice, name="m")
    with pytest.raises(InvalidModelFile) as err:
        _upload(alice, record.id, settings, model_bytes[: len(model_bytes) // 2])
    assert err.value.report["problems"]
    row = registry.get_model(alice, record.id)
    assert row.status == "invalid" and row.file_path is None
    assert row.validation_report["ok"] is False
    assert not settings.models_dir.exists() or list(settings.models_dir.iterdir()) == []
    assert _upload(alice, record.id, settings, model_bytes).status == "ready"  # try again


@pytest.mark.parametrize("qtype", ["tq1_0", "i2_s"])
def test_kind_and_qtype_come_from_the_file(tmp_path: Path, qtype: str) -> None:
    report = registry.inspect_file(build_model(tmp_path / "m.gguf", qtype=qtype, seed=2))
    assert report.ok and (report.kind, report.qtype) == ("llm", qtype)


def test_register_file(alice: Principal, settings: Settings, model_bytes: bytes, tmp_path: Path) -> None:
    with _staged(settings, model_bytes) as partial:
        record = registry.register_file(settings, partial, owner_id=alice.user_id, name="r",
                                        tags=["t"], public=True)
    assert record.status == "ready" and record.public and record.owner_id == alice.user_id
    assert registry.model_path(settings, record).read_bytes() == model_bytes
    assert list(settings.uploads_dir.iterdir()) == []
    loose = tmp_path / "loose.gguf"
    loose.write_bytes(model_bytes)
    with pytest.raises(ModelConflict):  # the name is taken: nothing moved, no row
        registry.register_file(settings, loose, owner_id=alice.user_id, name="r")
    assert loose.exists() and ModelRecord.select().count() == 1
    derived = registry.register_file(settings, loose, owner_id=alice.user_id, name="r2",
                                     source_model_id=record.id)
    assert not loose.exists() and derived.source_model_id == record.id
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(InvalidModelFile):
        registry.register_file(settings, bad, owner_id=alice.user_id, name="bad")
    assert bad.exists() and ModelRecord.select().count() == 2


def test_delete_refused_while_a_job_uses_the_model(
    alice: Principal, settings: Settings, model_bytes: bytes
) -> None:
    record = registry.create_model(alice, name="m")
    _upload(alice, record.id, settings, model_bytes)
    other = registry.create_model(alice, name="other")
    job = Job.create(owner=alice.user_id, kind="quantize", status="queued",
                     params={"source_model_id": record.id, "output": {"name": "q"}})
    Job.create(owner=alice.user_id, kind="inference_batch", status="running",
               params={"items": [{"model_id": other.id}]})
    Job.create(owner=alice.user_id, kind="quantize", status="succeeded",
               params={"source_model_id": other.id + "x"})
    assert registry.jobs_using(record.id) == [job.id]
    with pytest.raises(ModelConflict, match=job.id):
        registry.delete_model(alice, record.id, settings)
    with pytest.raises(ModelConflict):  # named inside a list of items
        registry.delete_model(alice, other.id, settings)
    assert registry.get_model(alice, record.id).status == "ready"
    Job.update(status="succeeded").where(Job.id == job.id).execute()
    path = registry.model_path(settings, registry.get_model(alice, record.id))
    registry.delete_model(alice, record.id, settings)
    assert not path.exists()
    with pytest.raises(ModelNotFound):
        registry.get_model(alice, record.id)


def test_recover_finishes_deletions_and_removes_partials(
    alice: Principal, settings: Settings, model_bytes: bytes
) -> None:
    record = registry.create_model(alice, name="m")
    _upload(alice, record.id, settings, model_bytes)
    ModelRecord.update(status="deleting").where(ModelRecord.id == record.id).execute()
    kept = registry.create_model(alice, name="kept")
    (settings.uploads_dir / f"x{PARTIAL_SUFFIX}").write_bytes(b"half")
    assert registry.recover(settings) == {"partials_removed": 1, "resumable_removed": 0,
                                          "deletions_finished": 1, "orphans_removed": 0}
    assert list(settings.models_dir.iterdir()) == []
    assert [r.id for r in ModelRecord.select()] == [kept.id]


def test_recover_removes_old_model_files_no_row_names(
    alice: Principal, settings: Settings, model_bytes: bytes
) -> None:
    ready = _upload(alice, registry.create_model(alice, name="m").id, settings, model_bytes)
    orphan = settings.models_dir / "mdl_orphan.gguf"  # published, then its commit never came
    orphan.write_bytes(b"left by a crash")
    assert registry.recover(settings)["orphans_removed"] == 0  # young: may still be committing
    later = time.time() + registry.ORPHAN_AGE_S + 60
    assert registry.recover(settings, now=later)["orphans_removed"] == 1
    assert not orphan.exists()
    assert registry.model_path(settings, ready).read_bytes() == model_bytes


def test_demo_model_is_public_and_owned_by_the_server(
    db: peewee.Database, settings: Settings, bob: Principal
) -> None:
    model_id = ensure_demo_model(settings)
    assert model_id is not None
    demo = registry.get_model(bob, model_id)
    assert (demo.name, demo.owner_id, demo.public, demo.status) == (DEMO_MODEL_NAME, None, True, "ready")
    assert registry.model_path(settings, demo).is_file()
    assert ensure_demo_model(settings) is None
    with pytest.raises(PermissionDenied):
        registry.update_model(bob, model_id, {"public": False})
    assert list(settings.uploads_dir.iterdir()) == []


def _dense_model(tmp_path: Path) -> Path:
    """A two-layer MLP imported from ONNX and quantized (the dense models' only source)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from bitnet_sdk.quantization import quantize

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((16, 3)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])], [w1, w2])
    src, dst = tmp_path / "mlp.onnx", tmp_path / "mlp.gguf"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    quantize(src, dst, "tq2_0")
    return dst


def test_dense_models_are_registered_as_dense(alice: Principal, settings: Settings,
                                              tmp_path: Path) -> None:
    report = registry.inspect_file(_dense_model(tmp_path))
    assert report.ok, report.validation
    assert (report.kind, report.qtype) == ("dense", "tq2_0")
    assert (report.metadata["input_shape"], report.metadata["output_shape"]) == ([8], [3])
    record = registry.register_file(settings, tmp_path / "mlp.gguf", owner_id=alice.user_id,
                                    name="mlp", report=report)
    assert (record.kind, record.status) == ("dense", "ready")
    assert registry.list_models(alice, kind="dense").items[0].id == record.id
    view = metadata_view(record)  # what GET /models/{id}/metadata answers
    assert (view["kind"], view["architecture"], view["tokenizer"]) == ("dense", "bitnet-dense", None)
    assert (view["input_shape"], view["output_shape"], view["heads"]) == ([8], [3], None)
    assert view["memory"]["kv_cache_bytes_per_token"] == 0 and view["parameters"] > 0
