"""Compile an ``llvmlite.ir`` module once, cache the object code on disk, load it into a JIT.

The cache key is a SHA-256 of everything that determines the machine code:
the IR text, target triple, CPU and features of the variant, the optimisation
level, the llvmlite and LLVM versions, and the host CPU name and features
(the key is host-specific as a precaution, even though each variant's code
is not). A second process with the same key skips parsing, optimisation and
code generation and only links the object file into an MCJIT engine
(``ExecutionEngine.add_object_file``) — the same loading path a cold start
takes after writing the file, so both paths are always exercised.

Cache location: ``$BITNET_CACHE_DIR/kernels``, else
``$XDG_CACHE_HOME/bitnet_sdk/kernels``, else ``~/.cache/bitnet_sdk/kernels``.
Each file is the object followed by its SHA-256, checked on load (a damaged
entry is recompiled, never linked). Writes are atomic (temporary file in the
same directory, then ``os.replace``);
a cache directory that cannot be written only costs recompiling next time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import llvmlite
from llvmlite import ir

from bitnet_kernels.isa import Isa, host_cpu, host_features

if TYPE_CHECKING:
    import llvmlite.binding as llvm_binding

__all__ = [
    "CACHE_ENV",
    "CompileStats",
    "JitModule",
    "cache_dir",
    "emit_object",
    "jit_module",
]

log = logging.getLogger(__name__)

CACHE_ENV = "BITNET_CACHE_DIR"
#: Bump when the meaning of cached objects changes without the IR changing.
_CACHE_FORMAT = "1"
_OPT_LEVEL = 3
_init_lock = threading.Lock()
_initialised = False


def _llvm() -> llvm_binding:
    """``llvmlite.binding``, imported on first use (loading LLVM takes a few tenths of a second)
    and with every target LLVM was built with registered (needed for cross objects)."""
    global _initialised
    import llvmlite.binding as llvm

    with _init_lock:
        if not _initialised:
            llvm.initialize_all_targets()
            llvm.initialize_all_asmprinters()
            _initialised = True
    return llvm


def cache_dir() -> Path:
    """Directory of cached kernel objects (not created here)."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root) / "kernels"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "bitnet_sdk" / "kernels"


@dataclass
class CompileStats:
    """How a module was obtained, for logs and the start-up benchmark."""

    key: str
    cache_hit: bool
    seconds: float
    path: Path | None = None
    notes: list[str] = field(default_factory=list)


def _target_machine(isa: Isa, triple: str, *, jit: bool) -> llvm_binding.TargetMachine:
    llvm = _llvm()
    target = llvm.Target.from_triple(triple)
    return target.create_target_machine(
        cpu=isa.codegen_cpu(),
        features=isa.codegen_features(),
        opt=_OPT_LEVEL,
        reloc="default" if jit else "pic",
        codemodel="jitdefault" if jit else "default",
        jit=jit,
    )


def _optimise(mod: llvm_binding.ModuleRef, tm: llvm_binding.TargetMachine) -> None:
    llvm = _llvm()
    if not hasattr(llvm, "create_pass_builder"):  # llvmlite < 0.44 has only the legacy manager
        raise RuntimeError(f"llvmlite {llvmlite.__version__} is too old: need >= 0.44")
    pto = llvm.create_pipeline_tuning_options(speed_level=_OPT_LEVEL)
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)


def emit_object(module: ir.Module, isa: Isa, triple: str | None = None, *, jit: bool = False) -> bytes:
    """Optimise ``module`` and return an object file for ``isa`` (``triple`` defaults to the ISA's).

    ``jit=False`` gives position-independent code with the default code model,
    suitable for linking into an ordinary program (the NEON cross test).
    """
    triple = triple or isa.triple()
    tm = _target_machine(isa, triple, jit=jit)
    module.triple = triple
    module.data_layout = str(tm.target_data)
    mod = _llvm().parse_assembly(str(module))
    mod.verify()
    _optimise(mod, tm)
    return bytes(tm.emit_object(mod))


def _cache_key(ir_text: str, isa: Isa, triple: str) -> str:
    h = hashlib.sha256()
    for part in (
        _CACHE_FORMAT, ir_text, triple, isa.codegen_cpu(), isa.codegen_features(), str(_OPT_LEVEL),
        llvmlite.__version__, ".".join(map(str, _llvm().llvm_version_info)),
        host_cpu(), ",".join(sorted(host_features())),
    ):  # fmt: skip
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cached(path: Path, stats: CompileStats) -> bytes | None:
    """The cached object if its trailing SHA-256 matches, else ``None`` (recompile)."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        stats.notes.append(f"cache read failed: {exc}")
        return None
    obj, digest = blob[:-32], blob[-32:]
    if len(blob) <= 32 or hashlib.sha256(obj).digest() != digest:
        stats.notes.append("cache entry corrupt; recompiling")
        log.warning("corrupt kernel cache entry ignored", extra={"path": str(path)})
        return None
    stats.cache_hit = True
    return obj


class JitModule:
    """Object code linked into its own MCJIT engine; keeps the code alive while referenced."""

    def __init__(self, obj: bytes, isa: Isa, stats: CompileStats) -> None:
        tm = _target_machine(isa, isa.triple(), jit=True)
        llvm = _llvm()
        self._engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
        self._obj = llvm.ObjectFileRef.from_data(obj)
        self._engine.add_object_file(self._obj)
        self._engine.finalize_object()
        self.stats = stats

    def address(self, name: str) -> int:
        """Entry address of function ``name``; ``KeyError`` if the object lacks it."""
        addr = self._engine.get_function_address(name)
        if not addr:
            raise KeyError(f"no function {name!r} in the compiled kernels")
        return int(addr)


def jit_module(module: ir.Module, isa: Isa, *, use_cache: bool = True) -> JitModule:
    """Compile ``module`` for ``isa`` on this host (or load it from the cache) and link it."""
    start = time.perf_counter()
    triple = isa.triple()
    module.triple = triple
    text = str(module)
    key = _cache_key(text, isa, triple)
    path = cache_dir() / f"{isa.name}-{key[:32]}.o" if use_cache else None
    stats = CompileStats(key=key, cache_hit=False, seconds=0.0, path=path)
    obj: bytes | None = None
    if path is not None and path.is_file():
        obj = _read_cached(path, stats)
    if obj is None:
        obj = emit_object(module, isa, triple, jit=True)
        if path is not None:
            try:
                _write_atomic(path, obj + hashlib.sha256(obj).digest())
            except OSError as exc:  # read-only home, full disk: run uncached
                stats.notes.append(f"cache write failed: {exc}")
                log.warning("kernel cache not written", extra={"path": str(path), "error": str(exc)})
    jm = JitModule(obj, isa, stats)
    stats.seconds = time.perf_counter() - start
    log.info(
        "kernels ready",
        extra={"isa": isa.name, "cache_hit": stats.cache_hit, "seconds": round(stats.seconds, 4)},
    )
    return jm
