"""The model registry: stored model files, their records, who sees them and who may change them.

Rules, in one place for every caller (HTTP handlers, the quantizer, the demo):

* **Visibility.** A user sees their own models and public ones; an admin sees
  all. A model the caller may not see does not exist for them
  (:class:`ModelNotFound`, never a hint that it exists).
* **Writes.** Only the owner or an admin may update, delete or upload; others
  who can see a model (it is public) get :class:`PermissionDenied`. Models
  owned by the server (``owner`` NULL, the demo model) are admin-only.
* **Names** are unique per owner (:class:`ModelConflict`), and a name never
  reaches across accounts (:func:`resolve_model`, the one resolver of every
  API that takes a model id or name): the caller's own model, then the
  operator's (owned by the server or an administrator, public), and another
  customer's public model only by its id; ambiguity is
  :class:`AmbiguousModelName`, never a silent pick.
* **Files first.** A file is written to a partial, validated, published into
  the model storage (:mod:`~bitnet_sdk.service.registry.storage`: the
  ``models`` folder or an S3 bucket) and only then does the row say ``ready``: the row follows the
  file, never the reverse. An upload that fails validation leaves no file and
  sets the row ``invalid`` with the report, so the client can see why and
  upload again.
* **Storage quota.** Storing a file (an upload, a quantizer's output) is
  refused with :class:`~bitnet_sdk.service.accounting.storage_quota.StorageQuotaExceeded`
  when it would take the owner past their tier's storage limit; the check is in
  the transaction that stores the row (:mod:`bitnet_sdk.service.accounting.storage_quota`).
* **Deletion** is refused while a queued or running job names the model in its
  ``params``. The row goes ``deleting`` first, then the file, then the row;
  :func:`recover` finishes deletions a crash interrupted.

Concurrent writers of one model (two uploads, an upload and a delete, a job
being queued) serialise on :func:`lock_model` inside a
:func:`~bitnet_sdk.store.write_transaction`. Every function here blocks
(database, file system, validation): call them from worker threads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peewee

from bitnet_sdk.auth.principal import Principal
from bitnet_sdk.config import Settings
from bitnet_sdk.service.accounting import storage_quota
from bitnet_sdk.service.pagination import DEFAULT_LIMIT, Page, paginate
from bitnet_sdk.service.registry import resumable, storage, uploads
from bitnet_sdk.service.registry.files import MODEL_QTYPES, FileReport, inspect_file
from bitnet_sdk.store import Job, ModelRecord, User, advisory_lock, write_transaction
from bitnet_sdk.store.fields import utcnow
from bitnet_sdk.store.ids import new_id

__all__ = [
    "ACTIVE_JOB_STATUSES",
    "MODEL_QTYPES",
    "UPLOADABLE_STATUSES",
    "AmbiguousModelName",
    "FileReport",
    "InvalidModelFile",
    "ModelConflict",
    "ModelNotFound",
    "PermissionDenied",
    "RegistryError",
    "UnknownModelName",
    "attach_file",
    "check_upload",
    "create_model",
    "delete_model",
    "get_model",
    "inspect_file",
    "jobs_using",
    "list_models",
    "lock_model",
    "model_path",
    "record_invalid",
    "recover",
    "register_file",
    "resolve_model",
    "runnable_models",
    "update_model",
]

log = logging.getLogger(__name__)

#: Statuses in which a file may be (re-)uploaded.
UPLOADABLE_STATUSES = ("pending_upload", "invalid")
#: Job statuses that keep the models they name from being deleted.
ACTIVE_JOB_STATUSES = ("queued", "running")
_UPDATABLE = frozenset({"name", "description", "tags", "public"})


class RegistryError(Exception):
    """Base of the registry's refusals; the message is fit to show the caller."""


class ModelNotFound(RegistryError):
    def __init__(self, model_id: str) -> None:
        super().__init__(f"Model {model_id!r} does not exist.")
        self.model_id = model_id


class PermissionDenied(RegistryError):
    pass


class ModelConflict(RegistryError):
    pass


class AmbiguousModelName(RegistryError):
    """A name several operator models share; ``candidates`` are their ids (answered 409)."""

    def __init__(self, name: str, candidates: list[str]) -> None:
        super().__init__(f"The name {name!r} matches several models ({', '.join(candidates)}); "
                         "give one of their ids.")
        self.name = name
        self.candidates = candidates


class UnknownModelName(ModelNotFound):
    """No model of the caller's or the operator's has this name (404).

    ``public_ids``: other accounts' public models of that name, usable by id only.
    """

    def __init__(self, name: str, public_ids: list[str]) -> None:
        super().__init__(name)
        if public_ids:
            self.args = (f"Model {name!r} does not exist among your models or the operator's; "
                         f"public models of other accounts are used by id: "
                         f"{', '.join(public_ids)}.",)
        self.public_ids = public_ids


class InvalidModelFile(RegistryError):
    """The file failed validation; ``report`` is the stored validation report."""

    def __init__(self, report: dict[str, Any]) -> None:
        codes = ", ".join(sorted({p["code"] for p in report["problems"]})) or "unknown"
        super().__init__(f"The file is not a usable model ({codes}).")
        self.report = report


# -- reading ---------------------------------------------------------------------------


def _visible(actor: Principal) -> Any:
    if actor.is_admin:
        return peewee.SQL("1 = 1")
    return (ModelRecord.public == True) | (ModelRecord.owner == actor.user_id)  # noqa: E712


def get_model(actor: Principal, model_id: str) -> ModelRecord:
    """The model if ``actor`` may see it, else :class:`ModelNotFound`."""
    record = ModelRecord.get_or_none((ModelRecord.id == model_id) & _visible(actor))
    if record is None:
        raise ModelNotFound(model_id)
    return record


#: Most candidate ids an ambiguity or not-found message lists.
_MAX_CANDIDATES = 10


def _operator_owned() -> Any:
    """Models of the operator: owned by the server (NULL) or by an administrator."""
    admins = User.select(User.id).where(User.is_admin == True)  # noqa: E712
    return ModelRecord.owner.is_null() | ModelRecord.owner.in_(admins)


def resolve_model(actor: Principal, ident: str) -> ModelRecord:
    """The model ``ident`` names for ``actor``: the one rule for names (module docstring).

    1. an id of a model ``actor`` may see is that model;
    2. a name is ``actor``'s own model of that name (names are unique per owner);
    3. else the public operator model of that name (:func:`_operator_owned`);
       several are :class:`AmbiguousModelName`;
    4. else :class:`UnknownModelName` (listing other accounts' public models of
       that name by id: they are public, and used by id only).

    Any kind and status: callers check that the model can do what they ask.
    """
    if ident.startswith("mdl_"):
        record = ModelRecord.get_or_none((ModelRecord.id == ident) & _visible(actor))
        if record is not None:
            return record
    if actor.user_id is not None:
        own = ModelRecord.get_or_none((ModelRecord.owner == actor.user_id)
                                      & (ModelRecord.name == ident))
        if own is not None:
            return own
    named = ModelRecord.select().where(ModelRecord.name == ident,
                                       ModelRecord.public == True)  # noqa: E712
    operator = list(named.where(_operator_owned()).order_by(ModelRecord.created_at.desc(),
                                                            ModelRecord.id)
                    .limit(_MAX_CANDIDATES))
    if len(operator) == 1:
        return operator[0]
    if operator:
        raise AmbiguousModelName(ident, [r.id for r in operator])
    public = named.order_by(ModelRecord.created_at.desc()).limit(_MAX_CANDIDATES)
    raise UnknownModelName(ident, [r.id for r in public])


def runnable_models(actor: Principal, *, kind: str = "llm") -> list[ModelRecord]:
    """Ready models of ``kind`` ``actor`` may run, in the resolver's order of precedence.

    The caller's own first, then the operator's, then other accounts' public
    ones (each newest first), so a client that takes the first match of a name
    in this list takes what :func:`resolve_model` would.
    """
    query = (ModelRecord.select().where(_visible(actor), ModelRecord.kind == kind,
                                        ModelRecord.status == "ready")
             .order_by(ModelRecord.created_at.desc(), ModelRecord.id.desc()))
    records = list(query)
    operator_ids = {r.id for r in query.where(_operator_owned())}

    def rank(record: ModelRecord) -> int:
        if actor.user_id is not None and record.owner_id == actor.user_id:
            return 0
        return 1 if record.id in operator_ids else 2

    return sorted(records, key=rank)  # stable: newest first within each rank


def list_models(
    actor: Principal,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
    kind: str | None = None,
    qtype: str | None = None,
    status: str | None = None,
    name_prefix: str | None = None,
) -> Page[ModelRecord]:
    """One page of the models ``actor`` sees, newest first, filtered.

    ``name_prefix`` is case-sensitive on every database. Raises
    :class:`~bitnet_sdk.service.pagination.InvalidCursor` for a bad cursor.
    """
    query = ModelRecord.select().where(_visible(actor))
    if kind is not None:
        query = query.where(ModelRecord.kind == kind)
    if qtype is not None:
        query = query.where(ModelRecord.qtype == qtype)
    if status is not None:
        query = query.where(ModelRecord.status == status)
    if name_prefix:
        query = query.where(peewee.fn.SUBSTR(ModelRecord.name, 1, len(name_prefix)) == name_prefix)
    return paginate(query, ModelRecord, cursor=cursor, limit=limit)


def model_path(settings: Settings, record: ModelRecord) -> Path | None:
    """A local file with the model's bytes, or None while it has none.

    With object storage this is the process's cached copy, fetched on first
    use (blocking; ``FileNotFoundError`` when the object is missing).
    """
    if not record.file_path:
        return None
    return storage.for_settings(settings).local_path(record.file_path)


def jobs_using(model_id: str) -> list[str]:
    """Ids of queued or running jobs whose ``params`` name ``model_id`` anywhere."""
    # The substring match narrows the scan in SQL; the exact check reads the JSON.
    candidates = (Job.select(Job.id, Job.params)
                  .where(Job.status.in_(ACTIVE_JOB_STATUSES), Job.params.contains(model_id))
                  .order_by(Job.created_at))
    return [job.id for job in candidates if _names(job.params, model_id)]


def _names(value: Any, model_id: str) -> bool:
    if isinstance(value, str):
        return value == model_id
    if isinstance(value, dict):
        return any(_names(v, model_id) for v in value.values())
    if isinstance(value, list):
        return any(_names(v, model_id) for v in value)
    return False


# -- writing records -------------------------------------------------------------------


def lock_model(model_id: str) -> None:
    """Serialise with other writers of ``model_id`` until the transaction ends.

    Call inside :func:`~bitnet_sdk.store.write_transaction`. Code that queues a
    job on a model takes this lock and checks the model is ``ready``, so a job
    cannot slip in between a deletion's check and its ``deleting`` mark.
    """
    advisory_lock(f"model:{model_id}")


def _writable(actor: Principal, model_id: str) -> ModelRecord:
    record = get_model(actor, model_id)
    if not (actor.is_admin or (record.owner_id is not None and record.owner_id == actor.user_id)):
        raise PermissionDenied(f"Only the owner of model {model_id!r} may change it.")
    return record


def _check_name_free(owner_id: str | None, name: str, exclude: str | None = None, *,
                     lock: bool = True) -> None:
    """ModelConflict when the owner has another model called ``name``.

    With ``lock`` (inside a write transaction) the answer holds until the
    transaction ends; without, it is a cheap early refusal.
    """
    if lock:
        advisory_lock(f"model-names:{owner_id}")
    owner = ModelRecord.owner.is_null() if owner_id is None else ModelRecord.owner == owner_id
    query = ModelRecord.select(ModelRecord.id).where(owner, ModelRecord.name == name)
    if exclude is not None:
        query = query.where(ModelRecord.id != exclude)
    if query.exists():
        raise ModelConflict(f"You already have a model named {name!r}.")


def create_model(
    actor: Principal,
    *,
    name: str,
    description: str | None = "",
    tags: Iterable[str] = (),
    public: bool = False,
) -> ModelRecord:
    """A record without a file (``pending_upload``), owned by ``actor``."""
    with write_transaction():
        _check_name_free(actor.user_id, name)
        return ModelRecord.create(owner=actor.user_id, name=name, description=description or "",
                                  tags=list(tags), public=bool(public), status="pending_upload")


def update_model(actor: Principal, model_id: str, changes: dict[str, Any]) -> ModelRecord:
    """Change ``name``, ``description``, ``tags`` or ``public``; other keys are a ValueError."""
    unknown = set(changes) - _UPDATABLE
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)}")
    with write_transaction():
        lock_model(model_id)
        record = _writable(actor, model_id)
        if record.status == "deleting":
            raise ModelConflict(f"Model {model_id!r} is being deleted.")
        if "name" in changes and changes["name"] != record.name:
            _check_name_free(record.owner_id, changes["name"], exclude=model_id)
            record.name = changes["name"]
        if "description" in changes:
            record.description = changes["description"] or ""
        if "tags" in changes:
            record.tags = list(changes["tags"])
        if "public" in changes:
            record.public = bool(changes["public"])
        record.updated_at = utcnow()
        record.save()
        return record


def delete_model(actor: Principal, model_id: str, settings: Settings) -> None:
    """Delete the model's file and record; :class:`ModelConflict` while jobs use it."""
    with write_transaction():
        lock_model(model_id)
        record = _writable(actor, model_id)
        active = jobs_using(model_id)
        if active:
            more = f" and {len(active) - 1} more" if len(active) > 1 else ""
            raise ModelConflict(f"Model {model_id!r} is used by job {active[0]}{more}.")
        record.status = "deleting"
        record.updated_at = utcnow()
        record.save()
    _finish_delete(settings, record)


def _finish_delete(settings: Settings, record: ModelRecord) -> None:
    store = storage.for_settings(settings)
    for key in {record.file_path, _standard_key(record.id)}:
        if key:
            store.delete(key)
    resumable.forget(settings.uploads_dir, record.id)
    ModelRecord.delete().where(ModelRecord.id == record.id).execute()
    log.info("deleted model %s", record.id, extra={"model_id": record.id})


def _standard_key(model_id: str) -> str:
    """The storage key of a model's file (relative to ``data_dir`` in the local folder)."""
    return f"models/{model_id}.gguf"


@contextmanager
def _row_follows(settings: Settings, key: str) -> Iterator[Callable[[storage.Staged], None]]:
    """A ``publish(staged)`` for use inside a write transaction, with the object's clean-up.

    Enter it *before* the transaction: whatever fails after the object exists
    (the row, the commit) takes the object back, so no reader ever finds a row
    whose file is missing and no object stays without its row. A process killed
    in between leaves an object no row names: harmless, and replaced by the
    next publish of that key.
    """
    store = storage.for_settings(settings)
    published: list[str] = []

    def publish(staged: storage.Staged) -> None:
        store.publish(staged, key)
        published.append(key)

    try:
        yield publish
    except BaseException:
        if published:
            store.delete(key)
        raise


# -- files -----------------------------------------------------------------------------


def check_upload(actor: Principal, model_id: str) -> ModelRecord:
    """The model if ``actor`` may upload its file now (404 / 403 / 409 errors otherwise)."""
    record = _writable(actor, model_id)
    if record.status not in UPLOADABLE_STATUSES:
        raise ModelConflict(
            f"Model {model_id!r} is {record.status}; only models in status "
            f"{' or '.join(UPLOADABLE_STATUSES)} take a file.")
    return record


def attach_file(
    actor: Principal,
    model_id: str,
    partial: uploads.PartialFile,
    report: FileReport,
    settings: Settings,
) -> ModelRecord:
    """Publish a validated, completed partial as the model's file; the row becomes ``ready``."""
    if not report.ok:
        raise InvalidModelFile(report.validation)
    key = _standard_key(model_id)
    with _row_follows(settings, key) as publish, write_transaction():
        lock_model(model_id)
        record = check_upload(actor, model_id)  # again, under the lock: another upload may have won
        storage_quota.reserve(record.owner_id, partial.size, settings)
        publish(partial)
        _set_file(record, key, partial, report)
        record.save()
    log.info("model %s ready (%d bytes)", model_id, partial.size, extra={"model_id": model_id})
    return record


def record_invalid(actor: Principal, model_id: str, report: FileReport) -> ModelRecord:
    """Note a failed upload: the row becomes ``invalid`` with the report (no file is kept)."""
    with write_transaction():
        lock_model(model_id)
        record = check_upload(actor, model_id)
        record.status = "invalid"
        record.validation_report = report.validation
        record.updated_at = utcnow()
        record.save()
    return record


def _set_file(record: ModelRecord, key: str,
              staged: uploads.PartialFile | _StagedPath, report: FileReport) -> None:
    record.status = "ready"
    record.file_path = key
    record.size_bytes = staged.size
    record.sha256 = staged.sha256
    record.metadata = report.metadata or {}
    record.validation_report = report.validation
    record.kind = report.kind or "llm"
    record.qtype = report.qtype
    record.updated_at = utcnow()


@dataclass
class _StagedPath:
    """A finished file outside the upload machinery (the demo model, a quantizer's output)."""

    path: Path
    size: int
    sha256: str

    def publish(self, target: Path) -> None:
        uploads.publish(self.path, target)
        self.path = target

    def discard(self) -> None:
        pass


def register_file(
    settings: Settings,
    source: uploads.PartialFile | Path,
    *,
    owner_id: str | None,
    name: str,
    description: str | None = "",
    tags: Iterable[str] = (),
    public: bool = False,
    source_model_id: str | None = None,
    quantization_report: dict[str, Any] | None = None,
    report: FileReport | None = None,
) -> ModelRecord:
    """Create a ``ready`` model from a finished file, which is published into the storage.

    ``source`` is a completed :class:`~bitnet_sdk.service.registry.uploads.PartialFile`
    or the path of a file on the data directory's file system (it is renamed,
    not copied). ``report`` skips a second :func:`inspect_file` when the caller
    already has one. Raises :class:`InvalidModelFile` (the file is left where it
    was), :class:`ModelConflict` for a taken name or
    :class:`~bitnet_sdk.service.accounting.storage_quota.StorageQuotaExceeded`.
    """
    _check_name_free(owner_id, name, lock=False)  # before reading a large file for nothing
    size = source.stat().st_size if isinstance(source, Path) else source.size
    storage_quota.check(owner_id, size, settings)  # early, unlocked: reserve() below decides
    staged = (_StagedPath(source, size, uploads.sha256_file(source))
              if isinstance(source, Path) else source)
    report = report or inspect_file(staged.path)
    if not report.ok:
        raise InvalidModelFile(report.validation)
    model_id = new_id("mdl")
    key = _standard_key(model_id)
    if owner_id is not None and User.get_or_none(User.id == owner_id) is None:
        raise ValueError(f"no user {owner_id!r}")
    with _row_follows(settings, key) as publish, write_transaction():
        _check_name_free(owner_id, name)
        storage_quota.reserve(owner_id, staged.size, settings)
        publish(staged)
        record = ModelRecord(id=model_id, owner=owner_id, name=name,
                             description=description or "", tags=list(tags),
                             public=bool(public), source_model=source_model_id,
                             quantization_report=quantization_report)
        _set_file(record, key, staged, report)
        record.save(force_insert=True)
    log.info("registered model %s (%s)", model_id, name, extra={"model_id": model_id})
    return record


# -- start-up --------------------------------------------------------------------------


#: Model objects without a row are removed once this old (seconds): younger ones may
#: belong to a publish whose transaction has not committed yet (S3 dates a multipart
#: object by the start of its upload).
ORPHAN_AGE_S = 24 * 3600.0


def recover(settings: Settings, *, now: float | None = None) -> dict[str, int]:
    """Repair what a crash can leave: abandoned partial uploads, resumable uploads untouched
    for :data:`~resumable.MAX_AGE_S` (younger ones stay: clients resume them), interrupted
    deletions, model files no row names (a process killed between a publish and its commit).

    Run at server start (the store must be bound). Returns what was done.
    """
    partials = uploads.clean_partials(settings.uploads_dir)
    stale = resumable.clean_stale(settings.uploads_dir)
    stuck = list(ModelRecord.select().where(ModelRecord.status == "deleting"))
    for record in stuck:
        _finish_delete(settings, record)
    return {"partials_removed": partials, "resumable_removed": stale,
            "deletions_finished": len(stuck),
            "orphans_removed": remove_orphans(settings, now=now)}


def remove_orphans(settings: Settings, *, now: float | None = None) -> int:
    """Delete model files older than :data:`ORPHAN_AGE_S` that no row names; returns how many."""
    store = storage.for_settings(settings)
    cutoff = (time.time() if now is None else now) - ORPHAN_AGE_S
    old = [key for key, modified in store.listing("models/") if modified < cutoff]
    named: set[str] = set()
    for i in range(0, len(old), 500):  # bounded IN lists
        chunk = old[i:i + 500]
        named.update(r.file_path for r in ModelRecord.select(ModelRecord.file_path)
                     .where(ModelRecord.file_path.in_(chunk)))
    orphans = [key for key in old if key not in named]
    for key in orphans:
        store.delete(key)
        log.info("removed model file %s: no model names it", key)
    return len(orphans)
