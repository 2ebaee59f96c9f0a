"""Running inference requests: one path for REST, SSE, the WebSocket and job workers.

A request (the API's ``InferenceRequest`` as a dict) goes through three steps:

1. **Plan** (:func:`~bitnet_sdk.service.inference.plan.plan_request`, in a
   thread): model lookup and access, input rules, backend, quota.
2. **Lease** (:class:`~bitnet_sdk.service.inference.model_cache.ModelCache`): a slot on
   the loaded model (one of ``max_batch_size``), after the fair queue and a
   load shared with other requests.
3. **Compute**, never on the event loop. A language model's generation joins
   the model's batching scheduler (:mod:`bitnet_sdk.service.inference.batching`),
   which decodes every running sequence of the model in one step; its tokens are
   handed to the loop as they are sampled (``call_soon_threadsafe`` into an
   ``asyncio.Queue``), so :meth:`stream` yields each one while the next is
   computed. Dense models run in the cache's compute threads.

Transport-neutral results: :meth:`InferenceService.stream` yields
``("token", StreamTokenEvent)`` items and one final ``("done", StreamDoneEvent)``;
:meth:`InferenceService.run` returns an ``InferenceResponse``; problems are
raised as :class:`~bitnet_sdk.service.errors.ApiError`. Each
transport renders them its own way.

Stopping: abandoning the stream (closing the generator, cancelling the task:
a client that went away) sets the lease's cancel flag, which the scheduler
checks before every step; the sequence then leaves the batch and its slot and
KV-cache memory are freed at once. The optional ``cancel`` event ends a generation *with* a ``done``
event whose ``finish_reason`` is ``cancelled`` (the WebSocket's ``cancel``
message). ``Settings.request_timeout_s`` bounds the whole request (queue,
load and compute): :class:`ApiError` 504.

Quotas: once its prompt is tokenized, and before it is handed to the
scheduler, a generation reserves its worst case (``prompt tokens +
max_tokens``, bounded by the context, and the compute units that implies)
against the user's monthly quotas (:mod:`bitnet_sdk.service.accounting.reservations`);
a reservation that does not fit ends it with a 429 ``quota-exceeded``. When
the generation ends, however it ends, the reservation is settled to the
actual usage. A dense request reserves its compute units before it waits for
the model (one unit of work per sample of its batch, known from ``inputs``).

Usage is recorded (``bitnet_sdk.service.accounting.usage.record_usage``) for every request
that computed something, before its ``done`` event is sent, with status 200,
499 (client gone or cancelled) or 504 (timed out); with a transport's
``on_usage`` hook the transport's record carries it, and the reservation
(shrunk to the actual usage) is handed over with it: the transport deletes it
when it writes that record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from bitnet_sdk.auth.principal import Principal
from bitnet_sdk.config import Settings
from bitnet_sdk.model.generate import GenerationStep, new_decoder
from bitnet_sdk.service.accounting import open_usage, reservations, usage
from bitnet_sdk.service.accounting.reservations import Reservation
from bitnet_sdk.service.errors import ApiError
from bitnet_sdk.service.inference import dense_io
from bitnet_sdk.service.inference.batching import Group, Sequence
from bitnet_sdk.service.inference.cancellation import board
from bitnet_sdk.service.inference.model_cache import (
    CacheError,
    Lease,
    ModelCache,
    ModelSpec,
    WaitCancelled,
    WaitTimeout,
)
from bitnet_sdk.service.inference.plan import (
    Plan,
    compute_units,
    plan_request,
    quota_error,
    unprocessable,
)
from bitnet_sdk.service.telemetry import NO_TELEMETRY, Telemetry, report

__all__ = ["InferenceService", "StreamEvent"]

log = logging.getLogger(__name__)

#: ``("token", StreamTokenEvent)`` or ``("done", StreamDoneEvent)``, as JSON-ready dicts.
StreamEvent = tuple[str, dict[str, Any]]
_Emit = Callable[[tuple[str, Any]], None]
#: ``on_usage(tokens_in, tokens_out, compute_units, reservation_id)``: where a transport
#: meters a request. ``reservation_id`` (or None) names the request's quota reservation,
#: already shrunk to this usage: the transport deletes it with the record it writes
#: (``bitnet_sdk.service.accounting.reservations.release``).
UsageHook = Callable[[int, int, float, str | None], None]

#: Runtime finish reasons → the API's ``FinishReason``.
_FINISH = {"eos": "stop", "stop": "stop", "length": "length"}
_CANCEL_POLL_S = 0.2


class _QuotaGroup:
    """The quota reservation of a batching ``Group``'s members (OpenAI's ``n`` choices): they
    reserve together, all or none; the first to be tokenized reserves ``size`` times its
    worst case."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.reservation: Reservation | None = None
        #: What each member holds of ``reservation``: the first member's worst case.
        self.share: tuple[int, float] = (0, 0.0)
        self.refused: ApiError | None = None


class _Run:
    """One language-model generation: filled by the compute thread, read after its end."""

    def __init__(self, plan: Plan, caller: Principal, request_id: str, started: float,
                 cancel: threading.Event | None, on_usage: UsageHook | None) -> None:
        self.plan, self.caller, self.request_id = plan, caller, request_id
        self.started = started
        self.external_cancel = cancel
        self.on_usage = on_usage
        # A meter that keeps an open usage record reads this run's usage while it runs.
        progress = getattr(on_usage, "progress", None)
        self.stop_progress: Callable[[], None] | None = (
            progress(self.usage_so_far) if progress is not None else None)
        #: The usage record kept open while it runs, when the service writes it itself.
        self.open_record: open_usage.OpenRecord | None = None
        #: True once a compute thread owns the run (it then reports the end itself).
        self.worker_started = False
        self.settled: threading.Event | None = None
        self.lease: Lease | None = None
        self.reservation: Reservation | None = None
        #: Tokens and compute units this run holds of ``reservation``.
        self.held: tuple[int, float] = (0, 0.0)
        self.prompt_tokens = self.completion_tokens = 0
        self.text: list[str] = []
        self.finish = "cancelled"
        self.work_start = self.first_at = self.end_at = 0.0
        self.timings: Any = None
        #: Usage status when the generation is stopped from outside (499 or 504).
        self.stop_status = 499
        #: The choices this one joins the batch with (``Group``), and whether it got there.
        self.group: Group | None = None
        self.submitted = False

    def cancelled(self) -> bool:
        lease_cancel = self.lease is not None and self.lease.cancel.is_set()
        return lease_cancel or (self.external_cancel is not None and self.external_cancel.is_set())

    def usage(self) -> dict[str, Any]:
        total = self.prompt_tokens + self.completion_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": total,
                "compute_units": compute_units(total, self.plan.model.parameters)}

    def usage_so_far(self) -> tuple[int, int, float]:
        """(tokens in, tokens out, compute units) so far; read from another thread."""
        total = self.prompt_tokens + self.completion_tokens
        return (self.prompt_tokens, self.completion_tokens,
                compute_units(total, self.plan.model.parameters))

    def timing(self) -> dict[str, Any]:
        if self.timings is not None:
            prompt_s, gen_s = self.timings.prompt_s, self.timings.generate_s
        elif self.first_at:
            prompt_s, gen_s = self.first_at - self.work_start, self.end_at - self.first_at
        else:
            prompt_s = gen_s = 0.0
        lease = self.lease
        return _timing(lease.queue_s if lease else time.monotonic() - self.started,
                       lease.load_s if lease else 0.0, prompt_s, gen_s, self.started,
                       self.prompt_tokens, self.completion_tokens)

    def done_event(self) -> dict[str, Any]:
        return {"id": self.request_id, "model": self.plan.model.id, "finish_reason": self.finish,
                "text": "".join(self.text), "usage": self.usage(), "timing": self.timing()}


def _timing(queue_s: float, load_s: float, prompt_s: float, gen_s: float, started: float,
            prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    def ms(seconds: float) -> float:
        return round(max(0.0, seconds) * 1000, 3)

    return {
        "queue_ms": ms(queue_s), "load_ms": ms(load_s), "prompt_ms": ms(prompt_s),
        "generation_ms": ms(gen_s), "total_ms": ms(time.monotonic() - started),
        "prompt_tokens_per_second": round(prompt_tokens / prompt_s, 3) if prompt_s > 0 else None,
        "tokens_per_second": round(completion_tokens / gen_s, 3) if gen_s > 0 else None,
    }


def token_event(step: Any, return_probabilities: bool) -> dict[str, Any]:
    """A runtime ``GenerationStep`` as the API's ``StreamTokenEvent``."""
    top = None
    if return_probabilities:
        top = [{"token_id": t.token_id, "text": t.text, "logprob": t.logprob}
               for t in step.top_logprobs]
    return {"index": step.index, "token_id": step.token_id, "text": step.text,
            "logprob": step.logprob if return_probabilities else None, "top_logprobs": top}


class InferenceService:
    """Runs requests against models held by ``cache``; see the module docstring."""

    def __init__(self, settings: Settings, cache: ModelCache,
                 telemetry: Telemetry = NO_TELEMETRY) -> None:
        self.settings = settings
        self.cache = cache
        self.telemetry = telemetry
        self._quota_groups: weakref.WeakKeyDictionary[Group, _QuotaGroup] = (
            weakref.WeakKeyDictionary())
        self._groups_lock = threading.Lock()

    # -- public API ----------------------------------------------------------------

    async def stream(self, caller: Principal, request: dict[str, Any], *, request_id: str,
                     cancel: threading.Event | None = None, on_usage: UsageHook | None = None,
                     settled: threading.Event | None = None,
                     group: Group | None = None) -> AsyncGenerator[StreamEvent, None]:
        """Generate with a language model, yielding tokens as they come, then ``done``.

        ``on_usage`` (see :data:`UsageHook`) receives the usage instead of a usage
        record being written (the HTTP middleware writes one per request).
        ``settled`` is set once no computation of this request runs any more and its
        usage was reported, however it ended (a transport that meters the request
        waits for it before closing the request's books). ``group``: the generations
        that join the model's batch together with this one (an OpenAI request's
        choices; ``batching.Group``); they also reserve their quota together, all or none.
        """
        run: _Run | None = None
        try:
            started = time.monotonic()
            plan = await asyncio.to_thread(plan_request, caller, request, self.settings,
                                           streaming=True)
            run = _Run(plan, caller, request_id, started, cancel, on_usage)
            run.settled, run.group = settled, group
            self._open_record(run)
            # Cancellable by request id from any process (POST /inference/requests/…/cancel).
            with (board(self.settings.redis_url).watch(caller.user_id, request_id, cancel)
                  if cancel is not None else contextlib.nullcontext()):
                async for event in self._stream_plan(run):
                    yield event
        finally:
            _settle_early(run, settled, group)
            if run is not None and run.open_record is not None:
                open_usage.discard(run.open_record)

    async def run(self, caller: Principal, request: dict[str, Any], *, request_id: str,
                  cancel: threading.Event | None = None, on_usage: UsageHook | None = None,
                  settled: threading.Event | None = None,
                  group: Group | None = None) -> dict[str, Any]:
        """Run one request to the end and return the ``InferenceResponse`` (see :meth:`stream`)."""
        run: _Run | None = None
        try:
            started = time.monotonic()
            plan = await asyncio.to_thread(plan_request, caller, request, self.settings)
            run = _Run(plan, caller, request_id, started, cancel, on_usage)
            if plan.model.kind == "dense":
                return await self._run_dense(run)
            run.settled, run.group = settled, group
            self._open_record(run)
            tokens, done = [], None
            async for kind, data in self._stream_plan(run):
                if kind == "token":
                    tokens.append({k: v for k, v in data.items() if k != "index"})
                else:
                    done = data
            assert done is not None
            return _llm_response(plan, done, tokens)
        finally:
            _settle_early(run, settled, group)
            if run is not None and run.open_record is not None:
                open_usage.discard(run.open_record)

    def run_sync(self, caller: Principal, request: dict[str, Any], *, request_id: str,
                 cancel: threading.Event | None = None) -> dict[str, Any]:
        """Blocking :meth:`run` for worker threads (batch jobs); waits in the calling thread
        while the model's scheduler computes (in the same batches as every other request)."""
        started = time.monotonic()
        plan = plan_request(caller, request, self.settings)
        if plan.model.kind == "dense":
            run = _Run(plan, caller, request_id, started, cancel, None)
            self._reserve_dense(run)
            try:
                return self._run_dense_sync(run)
            finally:
                self._drop_reservation(run)
        deadline = started + self.settings.request_timeout_s
        try:
            lease = self.cache.acquire_sync(
                _spec(plan), user=caller.subject, cancel=cancel, timeout=_remaining(deadline))
        except Exception as exc:
            raise _acquire_problem(exc, self.settings) from exc
        run = _Run(plan, caller, request_id, started, cancel, None)
        run.lease = lease
        items: list[tuple[str, Any]] = []
        ended = threading.Event()

        def emit(item: tuple[str, Any]) -> None:
            items.append(item)
            if item[0] != "step":
                ended.set()

        run.worker_started = True
        self._submit(run, emit)
        if not ended.wait(_remaining(deadline)):
            run.stop_status = 504
            lease.cancel.set()
            ended.wait()
            raise _timeout(self.settings)
        tokens = []
        for kind, value in items:
            if kind == "error":
                raise value
            if kind == "step":
                event = token_event(value, plan.params.return_probabilities)
                tokens.append({k: v for k, v in event.items() if k != "index"})
        return _llm_response(plan, run.done_event(), tokens)

    # -- language models ---------------------------------------------------------------

    async def _stream_plan(self, run: _Run) -> AsyncIterator[StreamEvent]:
        plan = run.plan
        deadline = run.started + self.settings.request_timeout_s
        lease = await self._acquire(plan, run.caller, deadline, run.external_cancel)
        if lease is None:  # cancelled while waiting: nothing computed
            yield "done", run.done_event()
            return
        run.lease = lease
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def emit(item: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody listens any more
                lease.cancel.set()

        finished = False
        try:
            run.worker_started = True
            await asyncio.to_thread(self._submit, run, emit)
            while True:
                try:
                    kind, value = await asyncio.wait_for(queue.get(), _remaining(deadline))
                except TimeoutError:
                    run.stop_status = 504
                    raise _timeout(self.settings) from None
                if kind == "step":
                    yield "token", token_event(value, plan.params.return_probabilities)
                elif kind == "error":
                    finished = True
                    raise value
                else:
                    finished = True
                    yield "done", run.done_event()
                    return
        finally:
            if not finished:
                lease.cancel.set()

    def _submit(self, run: _Run, emit: _Emit) -> None:
        """Tokenize and hand the generation to the model's batching scheduler (blocking).

        From here the run reports its own end: ``emit`` gets each ``step``, then
        ``end`` or ``error``; the lease is released when the sequence leaves the
        scheduler, and usage is metered before ``end``.
        """
        lease, params = run.lease, run.plan.params
        assert lease is not None
        run.work_start = time.perf_counter()
        try:
            model = lease.model
            decoder = new_decoder(
                model, _prompt_ids(model, run.plan, run.cancelled), max_tokens=params.max_tokens,
                sampling=params.sampling, stop=params.stop, logprobs=params.logprobs)
        except ValueError as exc:  # prompt too long, empty, bad chat template, ...
            self._end(run, emit, "error", _prompt_problem(exc))
            return
        positions = min(model.context_length, len(decoder.ids) + params.max_tokens)
        try:
            self._reserve(run, positions)
        except ApiError as exc:
            self._end(run, emit, "error", exc)
            return

        def on_step(step: GenerationStep) -> None:
            if step.index == 0:
                run.first_at, run.prompt_tokens = time.perf_counter(), len(decoder.ids)
            run.completion_tokens += 1
            run.text.append(step.text)
            if step.finish_reason is not None:
                run.finish = _FINISH.get(step.finish_reason, "stop")
                run.timings = step.timings
            emit(("step", step))

        def on_exit(reason: str, error: BaseException | None) -> None:
            # The cache is dropped already; the slot and its memory are released
            # once the usage is recorded (a free slot means a settled request).
            try:
                self.cache.submit(self._end, run, emit, reason, error)
            except Exception:  # stopped: end here
                self._end(run, emit, reason, error)

        seq = Sequence(decoder.ids, decoder, positions, on_step=on_step, on_exit=on_exit,
                       cancelled=run.cancelled, reserve=lease.reserve,
                       unreserve=lease.unreserve, group=run.group,
                       reproducible=params.sampling.reproducible)
        try:
            lease.scheduler.submit(seq)
            run.submitted = True
        except Exception as exc:  # the cache or scheduler is stopping
            self._end(run, emit, "error", exc)

    def _reserve(self, run: _Run, positions: int) -> None:
        """Reserve the run's worst case (every position it may fill is a metered token), or
        its group's; :class:`ApiError` 429 when it does not fit the month's quota."""
        run.held = (positions, compute_units(positions, run.plan.model.parameters))
        group = None if run.group is None else self._quota_group(run.group)
        count = 1 if group is None else group.size

        def reserve() -> Reservation:
            try:
                return reservations.reserve(run.caller.subject, run.plan.tier,
                                            run.held[0] * count, run.held[1] * count,
                                            self.settings, request_id=run.request_id)
            except usage.QuotaExceeded as exc:
                raise quota_error(exc) from None

        if group is None:
            run.reservation = reserve()
            return
        with group.lock:
            if group.refused is None and group.reservation is None:
                try:
                    group.reservation, group.share = reserve(), run.held
                except ApiError as exc:
                    group.refused = exc
            if group.refused is not None:
                raise group.refused
            run.reservation = group.reservation
        assert run.reservation is not None
        more = (run.held[0] - group.share[0], run.held[1] - group.share[1])
        if more[0] <= 0 and more[1] <= 0:  # within its share: it holds the share
            run.held = group.share
            return
        try:  # a longer prompt than the first member's (a list of prompts)
            reservations.extend(run.reservation, run.plan.tier, max(0, more[0]),
                                max(0.0, more[1]), self.settings)
        except usage.QuotaExceeded as exc:
            run.held = group.share
            raise quota_error(exc) from None
        run.held = (max(run.held[0], group.share[0]), max(run.held[1], group.share[1]))

    def _quota_group(self, group: Group) -> _QuotaGroup:
        """The quota reservation shared by ``group``'s members (made by the first of them)."""
        with self._groups_lock:
            quota = self._quota_groups.get(group)
            if quota is None:
                quota = self._quota_groups[group] = _QuotaGroup(group.size)
            return quota

    def _end(self, run: _Run, emit: _Emit, reason: str, error: BaseException | None) -> None:
        """A generation ended (``finished``, ``cancelled`` or ``error``): meter, release, tell."""
        try:
            run.end_at = time.perf_counter()
            failure: BaseException | None = None
            if isinstance(error, ApiError):
                failure = error
            elif isinstance(error, CacheError):
                failure = _acquire_problem(error, self.settings)
            elif error is not None:
                log.error("generation failed", exc_info=error,
                          extra={"model_id": run.plan.model.id})
                failure = ApiError(500, "Internal Server Error",
                                   f"Generation failed: {error}", slug="internal")
            if reason == "cancelled":
                run.finish = "cancelled"
            status = 500 if failure else 200 if run.finish != "cancelled" else run.stop_status
            if run.prompt_tokens:
                self._observe(run)
                used = run.usage()
                self._meter(run, used["prompt_tokens"], used["completion_tokens"],
                            used["compute_units"], status)
            elif run.reservation is not None:  # nothing computed: nothing to record
                self._settle(run, lambda: None)
            run.reservation = None
        finally:
            if run.lease is not None:
                run.lease.release()
            if run.settled is not None:
                run.settled.set()
        emit(("error", failure) if failure else ("end", None))

    async def _acquire(self, plan: Plan, caller: Principal, deadline: float,
                       cancel: threading.Event | None) -> Lease | None:
        """A lease, or None when ``cancel`` was set while waiting."""
        task = asyncio.ensure_future(self.cache.acquire(
            _spec(plan), user=caller.subject, timeout=_remaining(deadline)))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=_CANCEL_POLL_S)
                if done:
                    return task.result()
                if cancel is not None and cancel.is_set():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, CacheError):
                        (await task).release()
                    return None
        except asyncio.CancelledError:
            task.cancel()
            raise
        except Exception as exc:  # queue full, timeout, a file that does not load, ...
            raise _acquire_problem(exc, self.settings) from exc

    # -- dense models -----------------------------------------------------------------

    async def _run_dense(self, run: _Run) -> dict[str, Any]:
        """Reserve the request's worst case, compute, settle; a reservation left unsettled
        (refused, timed out, failed, client gone) is dropped: nothing was metered."""
        await asyncio.to_thread(self._reserve_dense, run)
        try:
            return await self._compute_dense(run)
        finally:
            if run.reservation is not None:  # not awaited: a cancelled task ends here too
                asyncio.get_running_loop().run_in_executor(None, self._drop_reservation, run)

    async def _compute_dense(self, run: _Run) -> dict[str, Any]:
        plan = run.plan
        deadline = run.started + self.settings.request_timeout_s
        lease = await self._acquire(plan, run.caller, deadline, None)
        assert lease is not None
        run.lease = lease
        t0 = time.monotonic()
        try:
            outputs = await asyncio.wait_for(lease.run(_predict, lease.model, plan.inputs),
                                             _remaining(deadline))
        except TimeoutError:
            lease.cancel.set()
            raise _timeout(self.settings) from None
        except CacheError as exc:
            raise _acquire_problem(exc, self.settings) from exc
        return await asyncio.to_thread(self._dense_done, run, outputs, time.monotonic() - t0)

    def _run_dense_sync(self, run: _Run) -> dict[str, Any]:
        """:meth:`_compute_dense` in the calling thread (batch jobs)."""
        deadline = run.started + self.settings.request_timeout_s
        try:
            lease = self.cache.acquire_sync(_spec(run.plan), user=run.caller.subject,
                                            cancel=run.external_cancel,
                                            timeout=_remaining(deadline))
        except Exception as exc:
            raise _acquire_problem(exc, self.settings) from exc
        run.lease = lease
        try:
            t0 = time.monotonic()
            outputs = _predict(lease.model, run.plan.inputs)
            return self._dense_done(run, outputs, time.monotonic() - t0)
        finally:
            lease.release()

    def _reserve_dense(self, run: _Run) -> None:
        """Reserve a dense request's worst case (blocking), or raise the 429.

        A dense request is metered ``compute_units(samples, parameters)``, one unit of work
        per sample of the batch (:meth:`_dense_done`); the samples are the first axis of
        ``inputs``, known before anything runs, and the settled amount never exceeds this.
        """
        units = compute_units(_dense_samples(run.plan.inputs), run.plan.model.parameters)
        try:
            run.reservation = reservations.reserve(run.caller.subject, run.plan.tier, 0, units,
                                                   self.settings, request_id=run.request_id)
        except usage.QuotaExceeded as exc:
            raise quota_error(exc) from None
        run.held = (0, units)

    def _drop_reservation(self, run: _Run) -> None:
        """Delete the run's reservation if nothing settled it (blocking; never raises)."""
        held, run.reservation = run.reservation, None
        if held is not None:
            try:
                reservations.release(held.user_id, [held.id])
            except Exception:  # it expires on its own
                log.exception("could not release a reservation",
                              extra={"request_id": run.request_id})

    def _dense_done(self, run: _Run, outputs: Any, compute_s: float) -> dict[str, Any]:
        plan, lease = run.plan, run.lease
        assert lease is not None
        body = dense_io.response_fields(outputs, plan.params.return_probabilities)
        units = min(compute_units(len(body["outputs"]), plan.model.parameters), run.held[1])
        self._meter(run, 0, 0, units, 200)
        run.reservation = None  # settled (or handed to the transport's record)
        used = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
                "compute_units": units}
        timing = _timing(lease.queue_s, lease.load_s, compute_s, 0.0, run.started, 0, 0)
        return {"id": run.request_id, "model": plan.model.id, "kind": "dense",
                "created_at": plan.created_at, **body, "usage": used, "timing": timing}

    # -- usage and telemetry -------------------------------------------------------------

    def _observe(self, run: _Run) -> None:
        """Report a finished generation: tokens, time to first token, decode speed."""
        t = run.timing()
        ttft = ((t["queue_ms"] + t["load_ms"] + t["prompt_ms"]) / 1000
                if run.completion_tokens else None)
        report(self.telemetry, "generation_finished", run.plan.model.id, run.prompt_tokens,
               run.completion_tokens, ttft, t["tokens_per_second"])

    def _meter(self, run: _Run, tokens_in: int, tokens_out: int, units: float,
               status: int) -> None:
        """Hand usage to the transport's meter, or record it as work (``OP_INFERENCE``);
        either way the request's reservation is settled to it."""
        try:
            if run.on_usage is not None:
                held = run.reservation
                if held is not None:  # the transport's record settles the rest
                    reservations.give_back(held, run.held[0] - tokens_in - tokens_out,
                                           run.held[1] - units)
                run.on_usage(tokens_in, tokens_out, units, held.id if held else None)
                stop, run.stop_progress = run.stop_progress, None
                if stop is not None:
                    stop()
            else:
                self._settle(run, lambda: self._record(run, tokens_in, tokens_out, units,
                                                       status))
        except Exception:  # metering must not fail the answer; it is logged loudly
            log.exception("could not record usage", extra={"request_id": run.request_id})

    def _open_record(self, run: _Run) -> None:
        """Without a transport's meter, keep the run's usage record open while it runs
        (:mod:`bitnet_sdk.service.accounting.open_usage`): a killed process leaves it."""
        if run.on_usage is None:
            run.open_record = open_usage.keeper(self.settings.usage_checkpoint_s).open(
                open_usage.OpenRecord(run.caller.subject, usage.OP_INFERENCE, run.request_id,
                                      run.usage_so_far))

    @staticmethod
    def _record(run: _Run, tokens_in: int, tokens_out: int, units: float, status: int) -> None:
        """The run's own usage record: its open one closed, else a new one."""
        amounts = (tokens_in, tokens_out, units)
        if run.open_record is None or not open_usage.close(run.open_record, status, amounts):
            usage.record_usage(run.caller.subject, usage.OP_INFERENCE, tokens_in=tokens_in,
                               tokens_out=tokens_out, compute_units=units, status_code=status,
                               request_id=run.request_id)

    def _settle(self, run: _Run, record: Callable[[], object]) -> None:
        """Write ``record`` and give the run's hold of its reservation back, atomically."""
        held = run.reservation
        if held is None:
            reservations.release(run.caller.subject, [], record)
            return
        try:
            reservations.settle(held, *run.held, record)
        except Exception:  # it expires on its own; the answer must not fail for it
            log.exception("could not settle usage", extra={"request_id": run.request_id})


def _settle_early(run: _Run | None, settled: threading.Event | None,
                  group: Group | None) -> None:
    """A request ends: if it never reached the scheduler, set ``settled`` (nothing runs)
    and withdraw it from its ``group`` (the other choices stop waiting for it)."""
    if settled is not None and (run is None or not run.worker_started):
        settled.set()
    if group is not None and (run is None or not run.submitted):
        group.withdraw()


def _dense_samples(inputs: Any) -> int:
    """The batch size of a dense request's ``inputs`` (its first axis; at least 1)."""
    return max(1, len(inputs)) if isinstance(inputs, list) else 1


def _spec(plan: Plan) -> ModelSpec:
    return ModelSpec(plan.model, plan.backend)


def _prompt_ids(model: Any, plan: Plan, cancel: Callable[[], bool]) -> list[int]:
    if plan.messages is not None:  # the file's template: bounded, and stopped by ``cancel``
        from bitnet_sdk.model.chat import chat_prompt_ids

        return chat_prompt_ids(model.tokenizer, plan.messages, cancel=cancel)
    return model.tokenize(plan.prompt or "")


def _prompt_problem(exc: ValueError) -> ApiError:
    """422 for a prompt the model cannot take; 503 when no chat template worker was free."""
    from bitnet_sdk.model.chat import ChatTemplateBusy

    if isinstance(exc, ChatTemplateBusy):
        return ApiError(503, "Service Unavailable", str(exc), slug="busy",
                        headers={"Retry-After": "1"})
    return unprocessable(str(exc))


def _predict(model: Any, inputs: Any) -> Any:
    predict = getattr(model, "predict", None)
    if predict is None:
        raise unprocessable("This model file cannot run tensor inputs.")
    return dense_io.predict(predict, inputs)


def _llm_response(plan: Plan, done: dict[str, Any], tokens: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": done["id"], "model": plan.model.id, "kind": "llm",
            "created_at": plan.created_at, "text": done["text"], "tokens": tokens,
            "finish_reason": done["finish_reason"], "usage": done["usage"],
            "timing": done["timing"]}


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _timeout(settings: Settings) -> ApiError:
    return ApiError(504, "Gateway Timeout",
                    f"The request did not finish within {settings.request_timeout_s:g} s.",
                    slug="timeout")


def _acquire_problem(exc: Exception, settings: Settings) -> ApiError:
    """Cache and load failures as problems (503 busy, 504 timeout, 422/409 unusable file)."""
    from bitnet_sdk.backends import BackendError

    if isinstance(exc, WaitTimeout):
        return _timeout(settings)
    if isinstance(exc, WaitCancelled):
        return ApiError(499, "Client Closed Request", str(exc), slug="cancelled")
    if isinstance(exc, CacheError):
        headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
        title = "Service Unavailable" if exc.status == 503 else "Unprocessable Content"
        return ApiError(exc.status, title, str(exc), slug="model-unavailable",
                        headers=headers)
    if isinstance(exc, FileNotFoundError):
        return ApiError(409, "Conflict", "The model's file is not available.",
                        slug="model-not-ready")
    if isinstance(exc, (ValueError, BackendError)):
        return unprocessable(f"The model could not be loaded: {exc}")
    raise exc
