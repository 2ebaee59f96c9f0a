"""Untrusted chat templates rendered with bounded time, memory and output, off the caller.

A GGUF file's chat template is code written by whoever made the file. Jinja's
sandbox stops it from reaching Python internals but not from computing:
``(n + 8) ** (9 ** 8)`` is one CPython operation that holds the interpreter
lock for over a minute (every thread of the server stalls with it), nested
loops run for hours, and a filter chain can allocate gigabytes. So a template
is rendered in three rings:

1. :class:`BoundedSandbox`, the sandbox the template sees: operators refuse
   results larger than :class:`RenderLimits` allows *before* computing them
   (``**`` and ``*`` on numbers, ``*`` and ``+`` on strings and lists, ``%``
   formatting), ``range`` charges an iteration budget shared by the whole
   render, filter results and the rendered text are capped. Most bombs stop
   here at once, with a clear message.
2. A worker process (this module run as a program) with an address-space
   limit (``RLIMIT_AS``) and a kernel timer whose default action kills the
   process, so whatever the first ring misses ends there, even if the parent
   is gone.
3. :class:`TemplateRenderer` in the parent waits for the answer without
   holding the interpreter lock, up to the time limit and only while the
   caller's ``cancel`` stays false, and kills the worker (SIGKILL) otherwise;
   the next render starts a fresh one.

The parent talks to a worker over its stdin/stdout: one length-prefixed JSON
message each way per render. Workers get an environment holding nothing but
the import path. The trusted default template (ChatML, our own text) is
rendered in-process by :func:`render_in_process` with the same bounded
sandbox, which is cheap.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import IO, Any

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

__all__ = [
    "ChatTemplateBusy",
    "ChatTemplateError",
    "ChatTemplateLimitError",
    "ChatTemplateRefused",
    "RenderLimits",
    "TemplateRenderer",
    "default_renderer",
    "render_in_process",
]

log = logging.getLogger(__name__)

_LEN = struct.Struct("<I")
#: A JSON message larger than this is refused (requests and answers are prompt-sized).
_MAX_MESSAGE = 64 * 1024**2


class ChatTemplateError(ValueError):
    """The template could not be compiled or rendered for these messages."""


class ChatTemplateRefused(ChatTemplateError):
    """The template itself refused the messages (``raise_exception``): roles it does not
    support, turns out of order."""


class ChatTemplateLimitError(ChatTemplateError):
    """Rendering the template went past a limit of :class:`RenderLimits` (or was cancelled)."""

    def __init__(self, message: str, *, out_of_memory: bool = False) -> None:
        super().__init__(message)
        self.out_of_memory = out_of_memory


class ChatTemplateBusy(ChatTemplateLimitError):
    """No worker became free in time: the server is busy, the template is not at fault."""


@dataclass(frozen=True)
class RenderLimits:
    """What one render may use.

    ``timeout_s``: wall-clock time (the worker is killed after it);
    ``memory_bytes``: address space the worker may add to what it holds when
    idle; ``output_chars``: length of the rendered text and of any string or
    list the template builds; ``iterations``: items all ``range()`` calls of one
    render may produce together; ``int_bits``: size of any integer the
    template computes.
    """

    timeout_s: float = 2.0
    memory_bytes: int = 256 * 1024**2
    output_chars: int = 4 * 1024**2
    iterations: int = 1_000_000
    int_bits: int = 65_536

    def describe(self) -> str:
        return (f"{self.timeout_s:g} s, {self.memory_bytes // 1024**2} MiB of memory, "
                f"{self.output_chars} characters of output")


# -- ring 1: the bounded sandbox ------------------------------------------------------


def _raise_exception(message: str) -> None:
    raise ChatTemplateRefused(f"the chat template refused the messages: {message}")


def _tojson(value: Any, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False, ensure_ascii: bool = False) -> str:
    return json.dumps(value, indent=indent, separators=separators, sort_keys=sort_keys,
                      ensure_ascii=ensure_ascii)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _size(value: Any) -> int:
    """Length of a string or sequence, 0 for anything else."""
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else 0


def _int_bits(value: Any) -> int:
    return abs(value).bit_length() if isinstance(value, int) and not isinstance(value, bool) else 0


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox configured as ``transformers`` and llama.cpp render chat
    templates (``trim_blocks``, ``lstrip_blocks``, ``loopcontrols``, ``raise_exception``,
    ``tojson`` keeping non-ASCII text, ``strftime_now``), whose operators, ``range`` and
    filters refuse results past ``limits``.

    Limits and the iteration budget belong to one render in one thread: call
    :meth:`start_render` before each one (one compiled template serves many threads).
    """

    intercepted_binops = frozenset({"**", "*", "+", "%", "//"})

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols],
                         undefined=jinja2.Undefined, autoescape=False)
        self._state = threading.local()
        self.filters = {name: self._capped(f) for name, f in self.filters.items()}
        self.filters["tojson"] = self._capped(_tojson)
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now
        self.globals["range"] = self._range

    def start_render(self, limits: RenderLimits) -> None:
        self._state.limits = limits
        self._state.budget = limits.iterations

    @property
    def limits(self) -> RenderLimits:
        limits = getattr(self._state, "limits", None)
        return limits if limits is not None else RenderLimits()

    def _refuse(self, what: str) -> SecurityError:
        return SecurityError(f"the chat template {what}, past its limits ({self.limits.describe()})")

    def _range(self, *args: int) -> range:
        rng = range(*args)
        self._state.budget = getattr(self._state, "budget", self.limits.iterations) - len(rng)
        if self._state.budget < 0:
            raise self._refuse(f"loops over more than {self.limits.iterations} items")
        return rng

    def _capped(self, f: Callable[..., Any]) -> Callable[..., Any]:
        def checked(*args: Any, **kwargs: Any) -> Any:
            result = f(*args, **kwargs)
            if _size(result) > self.limits.output_chars:
                raise self._refuse(f"built a value of {_size(result)} items")
            return result

        for attr in ("jinja_pass_arg",):  # keep @pass_context / @pass_environment markers
            if hasattr(f, attr):
                setattr(checked, attr, getattr(f, attr))
        return checked

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self._check_binop(operator, left, right)
        result = super().call_binop(context, operator, left, right)
        if _size(result) > self.limits.output_chars:
            raise self._refuse(f"built a value of {_size(result)} items")
        if _int_bits(result) > self.limits.int_bits:
            raise self._refuse("computed an integer too large")
        return result

    def _check_binop(self, operator: str, left: Any, right: Any) -> None:
        """Refuse before computing what would be too large (computing it is the attack)."""
        bits, cap = self.limits.int_bits, self.limits.output_chars
        if operator == "**" and isinstance(right, int) and _int_bits(left) > 1:
            if right * _int_bits(left) > bits:
                raise self._refuse("raised a number to a power too large")
        elif operator == "*":
            if _int_bits(left) + _int_bits(right) > bits:
                raise self._refuse("multiplied integers too large")
            for seq, n in ((left, right), (right, left)):
                if _size(seq) and isinstance(n, int) and _size(seq) * n > cap:
                    raise self._refuse(f"repeated a value {n} times")
        elif operator == "+" and _size(left) + _size(right) > cap:
            raise self._refuse("concatenated values too long")
        elif operator == "%" and isinstance(left, str) and _size(left) > cap:
            raise self._refuse("formatted a string too long")


@dataclass(frozen=True)
class _Compiled:
    env: BoundedSandbox
    template: jinja2.Template


_compiled: dict[str, _Compiled] = {}
_compiled_lock = threading.Lock()


def _compile(source: str) -> _Compiled:
    """Compile once per template text (models of one family share a template)."""
    with _compiled_lock:
        found = _compiled.get(source)
    if found is None:
        env = BoundedSandbox()
        try:
            found = _Compiled(env, env.from_string(source))
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"the model's chat template does not compile: {exc}") from exc
        except RecursionError as exc:
            raise ChatTemplateError("the model's chat template is nested too deeply") from exc
        with _compiled_lock:
            if len(_compiled) >= 32:
                _compiled.pop(next(iter(_compiled)))
            _compiled[source] = found
    return found


def render_in_process(source: str, context: Mapping[str, Any], limits: RenderLimits) -> str:
    """Render in this process with :class:`BoundedSandbox` (ring 1 only: trusted templates).

    Raises :class:`ChatTemplateLimitError` past a limit, :class:`ChatTemplateError`
    for anything else the template does wrong.
    """
    compiled = _compile(source)
    compiled.env.start_render(limits)
    out: list[str] = []
    total = 0
    try:
        for chunk in compiled.template.generate(**context):
            total += len(chunk)
            if total > limits.output_chars:
                raise compiled.env._refuse(f"rendered more than {limits.output_chars} characters")
            out.append(chunk)
    except ChatTemplateError:
        raise
    except SecurityError as exc:
        raise ChatTemplateLimitError(str(exc)) from exc
    except MemoryError:
        raise ChatTemplateLimitError(f"the chat template ran out of memory ({limits.describe()})",
                                     out_of_memory=True) from None
    except RecursionError:
        raise ChatTemplateLimitError("the chat template recursed too deeply") from None
    except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError,
            ArithmeticError) as exc:
        raise ChatTemplateError(f"the model's chat template failed: {exc}") from exc
    return "".join(out)


# -- ring 2: the worker process ---------------------------------------------------------

_ERROR_CLASSES: dict[str, type[ChatTemplateError]] = {
    "limit": ChatTemplateLimitError, "refused": ChatTemplateRefused, "error": ChatTemplateError,
}
_ERROR_KINDS = {cls: kind for kind, cls in _ERROR_CLASSES.items()}


def _read_message(stream: IO[bytes]) -> Any:
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        return None
    (n,) = _LEN.unpack(head)
    return json.loads(stream.read(n).decode("utf-8"))


def _write_message(stream: IO[bytes], message: Any) -> None:
    data = json.dumps(message, ensure_ascii=False).encode("utf-8")
    stream.write(_LEN.pack(len(data)) + data)
    stream.flush()


def _limit_memory(extra: int) -> None:
    """Cap the address space at what the idle worker maps plus ``extra`` bytes (Linux).

    Only the soft limit is set, so a later request may set another (a template cannot
    reach ``resource``)."""
    import resource

    global _idle_size
    try:
        if _idle_size is None:
            with open("/proc/self/statm") as f:
                _idle_size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return  # no /proc: the parent's wall-clock kill still bounds the render
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    soft = _idle_size + extra
    resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


_idle_size: int | None = None


def serve(stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> None:
    """The worker's loop: one request in, one answer out, until stdin closes.

    A request is ``{"template", "context", "limits"}``; the answer ``{"ok": true,
    "text"}`` or ``{"ok": false, "kind": "limit" | "refused" | "error", "message"}``, with
    ``"retire": true`` when the worker exits after answering. Before the first request
    it sends ``{"ready": true}`` (its start-up, seconds on a busy machine, is not a
    render's time). A render past its time is ended by SIGALRM's default action (the
    process dies); after running out of memory the worker answers and exits, so no
    worker is reused in a damaged state.
    """
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    _write_message(stdout, {"ready": True})
    memory_limit = None
    while True:
        request = _read_message(stdin)
        if request is None:
            return
        limits = RenderLimits(**request["limits"])
        if limits.memory_bytes != memory_limit:
            _limit_memory(limits.memory_bytes)
            memory_limit = limits.memory_bytes
        signal.setitimer(signal.ITIMER_REAL, limits.timeout_s + 1.0)
        exhausted = False
        try:
            text = render_in_process(request["template"], request["context"], limits)
            answer: dict[str, Any] = {"ok": True, "text": text}
        except ChatTemplateError as exc:
            answer = {"ok": False, "kind": _ERROR_KINDS.get(type(exc), "error"), "message": str(exc)}
            exhausted = isinstance(exc, ChatTemplateLimitError) and exc.out_of_memory
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        answer["retire"] = exhausted  # the parent must not hand this worker another render
        _write_message(stdout, answer)
        if exhausted:
            return


# -- ring 3: the parent's side ------------------------------------------------------------


class _Killed(Exception):
    """The worker was killed (time limit or cancellation) or died."""


#: What a worker inherits from the server's environment (nothing secret: the import path is
#: set from ``sys.path``, and a Python built with a shared library may need its library path).
_PASSED_ENV = frozenset({"PATH", "LD_LIBRARY_PATH", "PYTHONDONTWRITEBYTECODE", "LANG", "LC_ALL"})


class _Worker:
    """One worker process and its pipes."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV}
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-c", "from bitnet_sdk.model.chat_sandbox import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.ready = False

    def wait_ready(self, deadline: float, cancel: Callable[[], bool] | None) -> None:
        """Wait for the worker's ``ready`` message (:class:`_Killed` past ``deadline``)."""
        if not self.ready:
            self._answer(deadline, cancel)
            self.ready = True

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        for stream in (self.stdin, self.stdout):
            try:
                stream.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def call(self, request: dict[str, Any], deadline: float, cancel: Callable[[], bool] | None) -> Any:
        """Send ``request``, wait for the answer; :class:`_Killed` past ``deadline`` or on cancel."""
        try:
            _write_message(self.stdin, request)
        except (BrokenPipeError, OSError) as exc:
            raise _Killed("the template worker is gone") from exc
        return self._answer(deadline, cancel)

    def _answer(self, deadline: float, cancel: Callable[[], bool] | None) -> Any:
        head = self._read(_LEN.size, deadline, cancel)
        (n,) = _LEN.unpack(head)
        if n > _MAX_MESSAGE:
            raise _Killed("the template worker answered too much")
        return json.loads(self._read(n, deadline, cancel).decode("utf-8"))

    def _read(self, n: int, deadline: float, cancel: Callable[[], bool] | None) -> bytes:
        fd = self.stdout.fileno()
        chunks: list[bytes] = []
        while n > 0:
            wait = min(0.05, deadline - time.monotonic())
            if wait <= 0:
                raise _Killed("time limit")
            if cancel is not None and cancel():
                raise _Killed("cancelled")
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                continue
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                raise _Killed("the template worker died")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)


class TemplateRenderer:
    """Renders untrusted templates in up to ``max_workers`` reusable worker processes
    (default: one per CPU, at least 2); a render waits up to ``queue_timeout_s`` for a free
    one (:class:`ChatTemplateBusy` after that), then has ``limits.timeout_s`` for itself.

    Thread-safe. :meth:`render` blocks the calling thread (never holding the
    interpreter lock while it waits) and returns the text, or raises
    :class:`ChatTemplateLimitError` when the render ran past ``limits`` or
    ``cancel()`` became true (the worker is killed at once), or
    :class:`ChatTemplateError` when the template failed.
    """

    def __init__(self, limits: RenderLimits | None = None, max_workers: int | None = None,
                 queue_timeout_s: float = 30.0) -> None:
        self.limits = limits or RenderLimits()
        self.max_workers = max_workers or max(2, os.cpu_count() or 1)
        self.queue_timeout_s = queue_timeout_s
        self._idle: list[_Worker] = []
        self._busy = 0
        self._cond = threading.Condition()
        self._closed = False

    def render(self, source: str, context: Mapping[str, Any], *,
               cancel: Callable[[], bool] | None = None, limits: RenderLimits | None = None) -> str:
        limits = limits or self.limits
        request = {"template": source, "context": dict(context), "limits": asdict(limits)}
        queue_deadline = time.monotonic() + self.queue_timeout_s
        worker = self._checkout(queue_deadline, cancel)
        try:
            worker.wait_ready(queue_deadline, cancel)
        except _Killed as exc:
            worker.kill()
            self._checkin(None)
            if str(exc) == "cancelled":
                raise ChatTemplateLimitError("rendering the chat template was cancelled") from None
            raise ChatTemplateBusy(f"no chat template worker started within {self.queue_timeout_s:g} s") from None
        deadline = time.monotonic() + limits.timeout_s  # the render's own time starts now
        try:
            answer = worker.call(request, deadline, cancel)
        except _Killed as exc:
            worker.kill()
            self._checkin(None)
            log.info("chat template worker stopped", extra={"reason": str(exc),
                                                             "returncode": worker.proc.returncode})
            reason = "was cancelled" if str(exc) == "cancelled" else f"went past its limits ({limits.describe()})"
            raise ChatTemplateLimitError(f"rendering the chat template {reason}") from None
        if answer.get("retire"):
            worker.kill()
            self._checkin(None)
        else:
            self._checkin(worker)
        if answer.get("ok"):
            return str(answer["text"])
        cls = _ERROR_CLASSES.get(str(answer.get("kind")), ChatTemplateError)
        raise cls(str(answer.get("message")))

    def _checkout(self, deadline: float, cancel: Callable[[], bool] | None) -> _Worker:
        with self._cond:
            while True:
                if self._closed:
                    raise ChatTemplateError("the template renderer is closed")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive:
                        self._busy += 1
                        return worker
                    worker.kill()
                if self._busy < self.max_workers:
                    self._busy += 1
                    break
                remaining = deadline - time.monotonic()
                if cancel is not None and cancel():
                    raise ChatTemplateLimitError("rendering the chat template was cancelled")
                if remaining <= 0:
                    raise ChatTemplateBusy(
                        f"no chat template worker became free within {self.queue_timeout_s:g} s")
                self._cond.wait(min(remaining, 0.05))
        try:
            return _Worker()
        except BaseException:
            self._checkin(None)
            raise

    def _checkin(self, worker: _Worker | None) -> None:
        with self._cond:
            self._busy -= 1
            if worker is not None:
                if self._closed:
                    worker.kill()
                else:
                    self._idle.append(worker)
            self._cond.notify()

    def stats(self) -> dict[str, int]:
        """Workers rendering now (``busy``) and waiting for work (``idle``)."""
        with self._cond:
            return {"busy": self._busy, "idle": sum(1 for w in self._idle if w.alive)}

    def close(self) -> None:
        """Stop every idle worker; busy ones are stopped when their render returns."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()


_default: TemplateRenderer | None = None
_default_lock = threading.Lock()


def default_renderer() -> TemplateRenderer:
    """The process-wide renderer (workers start on first use and stop at exit)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = TemplateRenderer()
            atexit.register(_default.close)
        return _default

