"""Serving under load: N concurrent streaming clients against our server and llama-server.

Builds a synthetic BitNet b1.58 model (random ternary weights, TQ2_0, no end-of-generation
token, so every request streams exactly ``--tokens``), starts our server (Connexion on the
Tornado bridge, loopback port, in this process) and, for each N, runs N streaming requests at
once from a separate client process: aggregate generated tokens/s, time to first token
(p50/p95) and inter-token latency (p95). Then the same against llama.cpp's own
``llama-server -np N`` (continuous batching) on the same file and thread count, interleaved
per N. Requests refused with 503 + Retry-After are counted, not failed; anything else is a
failure.

llama-server is built once from the llama.cpp sources vendored in the llama-cpp-python
source distribution (``pip download --no-binary :all: --no-deps llama-cpp-python``, then
cmake's ``llama-server`` target) into ``~/.cache/bitnet-sdk-bench``; where that cannot be
done the comparison is skipped with the reason.

    python benchmarks/serving.py                           # 100M shape, N = 1,4,16,64
    python benchmarks/serving.py --ns 1,16 --tokens 32 --no-llama
    python benchmarks/serving.py --size 2b --ns 1,4        # BitNet 2B-4T's shape (~1.2 GB)
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path.home() / ".cache" / "bitnet-sdk-bench"
SIZES: dict[str, dict[str, int]] = {
    "100m": dict(n_layers=12, d_model=768, d_ff=2048, n_heads=12, n_kv_heads=4, vocab=32000),
    "2b": dict(n_layers=30, d_model=2560, d_ff=6912, n_heads=20, n_kv_heads=5, vocab=128256),
}
WORDS = ("the quick brown fox jumps over the lazy dog while a small cat sleeps near the warm "
         "fire and the old man reads a long book about ships sailing across the wide sea").split()


# -- the model file ------------------------------------------------------------------------


def model_file(size: str) -> Path:
    """The synthetic model of ``size``, built once into the cache folder."""
    path = CACHE / "models" / f"{size}-endless.gguf"
    if path.exists():
        return path
    from gguf import GGUFValueType

    from bitnet_sdk.testing.synthetic import build_model, tiny_bpe_vocab

    s = dict(SIZES[size])
    vocab = s.pop("vocab")
    types = [1] * len(tiny_bpe_vocab(vocab).tokens)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    build_model(tmp, qtype="tq2_0", vocab=vocab, hidden_act="relu2", context_length=4096,
                seed=0, metadata_overrides={
                    "tokenizer.ggml.eos_token_id": None, "tokenizer.ggml.eot_token_id": None,
                    "tokenizer.ggml.token_type": (types, GGUFValueType.ARRAY)}, **s)
    tmp.rename(path)
    return path


def prompts_of(path: Path, tokens: int, count: int) -> list[str]:
    """``count`` different text prompts of about ``tokens`` tokens under the model's tokenizer.

    Different (each starts at another word), so no server can compute one prompt for all
    streams: every stream's prompt is its own prefill, as with real users.
    """
    from bitnet_sdk.model.gguf_file import read_model
    from bitnet_sdk.model.tokenizer import Tokenizer, TokenizerSpec

    tok = Tokenizer.from_spec(TokenizerSpec.from_metadata(read_model(path).metadata))
    prompts = []
    for first in range(count):
        words: list[str] = []
        while len(tok.encode(" ".join(words))) < tokens:
            words.append(WORDS[(first + len(words)) % len(WORDS)])
        prompts.append(" ".join(words))
    return prompts


# -- the client process -----------------------------------------------------------------------


@dataclass
class Stream:
    """One request's outcome: ``status``, token arrival times (``perf_counter``)."""

    status: int = 0
    start: float = 0.0
    times: list[float] = field(default_factory=list)
    retry_after: str | None = None
    error: str = ""


async def _one(client: object, kind: str, url: str, headers: dict[str, str],
               body: dict) -> Stream:
    import httpx

    assert isinstance(client, httpx.AsyncClient)
    s = Stream(start=time.perf_counter())
    try:
        async with client.stream("POST", url, json=body, headers=headers) as r:
            s.status = r.status_code
            if r.status_code != 200:
                s.retry_after = r.headers.get("retry-after")
                await r.aread()
                return s
            async for line in r.aiter_lines():
                if kind == "ours" and line == "event: token":
                    s.times.append(time.perf_counter())
                elif kind == "llama" and line.startswith("data: "):
                    data = json.loads(line[6:])
                    if not data.get("stop"):
                        s.times.append(time.perf_counter())
    except Exception as exc:  # a failure, reported as such
        s.error = f"{type(exc).__name__}: {exc}"
    return s


def clients(kind: str, url: str, headers: dict[str, str], body: dict, n: int,
            prompts: list[str] | None = None) -> list[dict]:
    """In the client process: ``n`` concurrent streams (stream ``i`` sends ``prompts[i]``
    when given); their records as dicts."""
    import httpx

    async def main() -> list[Stream]:
        limits = httpx.Limits(max_connections=n + 4, max_keepalive_connections=n + 4)
        async with httpx.AsyncClient(timeout=600, limits=limits) as client:
            return await asyncio.gather(*(
                _one(client, kind, url, headers,
                     {**body, "prompt": prompts[i]} if prompts else body) for i in range(n)))

    return [s.__dict__ for s in asyncio.run(main())]


# -- figures ----------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Figures:
    n: int
    tok_s: float
    ttft_p50: float
    ttft_p95: float
    itl_p95: float
    ok: int
    refused: int
    failed: int


def figures(n: int, records: list[dict], tokens: int) -> Figures:
    done = [r for r in records if r["status"] == 200 and not r["error"]]
    refused = [r for r in records if r["status"] == 503 and r["retry_after"]]
    failed = n - len(done) - len(refused)
    failed += sum(1 for r in done if len(r["times"]) != tokens)
    start = min(r["start"] for r in records)
    end = max((r["times"][-1] for r in done if r["times"]), default=start)
    total = sum(len(r["times"]) for r in done)
    ttft = [r["times"][0] - r["start"] for r in done if r["times"]]
    gaps = [b - a for r in done for a, b in zip(r["times"], r["times"][1:], strict=False)]
    return Figures(n, total / (end - start) if end > start else 0.0, _pct(ttft, 0.5),
                   _pct(ttft, 0.95), _pct(gaps, 0.95), len(done), len(refused), failed)


# -- our server ---------------------------------------------------------------------------------


@contextlib.contextmanager
def our_server(path: Path, backend: str, threads: int, max_batch: int,
               queue: int) -> Iterator[tuple[str, dict[str, str], str]]:
    """Our server in this process: ``(stream URL, headers, model id)``."""
    os.environ["BITNET_NUM_THREADS"] = str(threads)
    from bitnet_sdk.config import Settings
    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.testing import ServerThread
    from bitnet_sdk.server.run import websocket_routes
    from tests.conftest import make_account
    from tests.support.inference import register_model

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", demo_model=False, backend=backend,
                            max_batch_size=max_batch, model_queue_size=queue,
                            model_cache_bytes=16 * 1024**3)
        app = create_app(settings)
        with ServerThread(app, websocket_routes=websocket_routes(app)) as server:
            account = make_account(settings, "bench@example.com", tier="enterprise")
            model_id = register_model(settings, path, owner_id=account.user_id, name="bench")
            yield server.url + "/v1/inference/stream", account.headers, model_id


# -- llama-server ---------------------------------------------------------------------------------


def llama_server_binary() -> tuple[Path | None, str]:
    """The cached ``llama-server``, built on first use; ``(None, why)`` when it cannot be."""
    binary = CACHE / "llama-build" / "bin" / "llama-server"
    if binary.exists():
        return binary, "cached build"
    if not (shutil.which("cmake") and (shutil.which("c++") or shutil.which("g++"))):
        return None, "cmake and a C++ compiler are needed to build llama-server"
    src = CACHE / "src"
    src.mkdir(parents=True, exist_ok=True)
    try:
        if not list(src.glob("llama_cpp_python-*.tar.gz")):
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:",
                            "--no-deps", "llama-cpp-python", "-d", str(src)],
                           check=True, capture_output=True, timeout=600)
        archive = sorted(src.glob("llama_cpp_python-*.tar.gz"))[-1]
        tree = src / archive.name.removesuffix(".tar.gz")
        if not tree.exists():
            shutil.unpack_archive(archive, src)
        llama = tree / "vendor" / "llama.cpp"
        print(f"building llama-server from {llama} (once) ...", flush=True)
        subprocess.run(["cmake", "-S", str(llama), "-B", str(CACHE / "llama-build"),
                        "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
                        "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                        "-DGGML_NATIVE=ON"], check=True, capture_output=True, timeout=600)
        subprocess.run(["cmake", "--build", str(CACHE / "llama-build"), "--target",
                        "llama-server", "-j", str(os.cpu_count() or 2)],
                       check=True, capture_output=True, timeout=3600)
    except (subprocess.SubprocessError, OSError, IndexError) as exc:
        return None, f"could not build llama-server: {exc}"
    return (binary, "built now") if binary.exists() else (None, "the build made no binary")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def llama_server(binary: Path, path: Path, threads: int, n: int,
                 context_per_slot: int) -> Iterator[str]:
    """``llama-server -np n`` on ``path``; yields its ``/completion`` URL."""
    import httpx

    port = _free_port()
    cmd = [str(binary), "-m", str(path), "-t", str(threads), "-tb", str(threads),
           "-np", str(n), "-c", str(n * context_per_slot), "--host", "127.0.0.1",
           "--port", str(port), "-cb", "--no-warmup"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server exited: {proc.stderr.read()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("llama-server did not become healthy")
            time.sleep(0.2)
        yield url + "/completion"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the run ------------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} logical cores, Python {sys.version.split()[0]}"


def show(name: str, f: Figures, base: float | None, peer: Figures | None) -> None:
    ratio = f" {f.tok_s / base:5.2f}x" if base else "      "
    vs = f"  {f.tok_s / peer.tok_s:5.2f}x" if peer and peer.tok_s else "       "
    print(f"  {name:13}{f.n:>4}{f.tok_s:>9.1f}{ratio}{vs}{f.ttft_p50 * 1000:>9.0f}"
          f"{f.ttft_p95 * 1000:>9.0f}{f.itl_p95 * 1000:>9.1f}{f.ok:>5}{f.refused:>5}{f.failed:>5}",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="100m", choices=sorted(SIZES))
    p.add_argument("--ns", default="1,4,16,64", help="concurrent streams, comma-separated")
    p.add_argument("--tokens", type=int, default=32, help="generated tokens per request")
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--backend", default="llvm")
    p.add_argument("--max-batch-size", type=int, default=64,
                   help="our server's max batch (default 64: the capacity of llama-server -np 64)")
    p.add_argument("--queue-size", type=int, default=16)
    p.add_argument("--no-llama", action="store_true", help="skip the llama-server comparison")
    args = p.parse_args(argv)
    ns = [int(n) for n in args.ns.split(",") if n]

    path = model_file(args.size)
    prompts = prompts_of(path, args.prompt_tokens, max(ns))
    prompt = prompts[0]
    binary, why = (None, "--no-llama") if args.no_llama else llama_server_binary()
    print(f"machine: {machine()}")
    print(f"model: {args.size} shape, TQ2_0, {path.stat().st_size / 2**20:.0f} MB; prompts "
          f"{args.prompt_tokens} tokens (a different one per stream), {args.tokens} generated per request, greedy; "
          f"{args.threads} threads; ours: {args.backend} backend, max batch "
          f"{args.max_batch_size}, queue {args.queue_size}")
    if binary is None:
        print(f"llama-server comparison skipped: {why}")
    print(f"  {'server':13}{'N':>4}{'tok/s':>9}{'vs N=1':>7}{'vs peer':>8}{'TTFT p50':>9}"
          f"{'p95 ms':>9}{'ITL p95':>9}{'ok':>5}{'503':>5}{'fail':>5}")
    ours_body = {"prompt": prompt, "max_tokens": args.tokens, "temperature": 0}
    llama_body = {"prompt": prompt, "n_predict": args.tokens, "temperature": 0,
                  "ignore_eos": True, "stream": True, "cache_prompt": False}
    spawn = multiprocessing.get_context("spawn")
    base: dict[str, float] = {}
    with our_server(path, args.backend, args.threads, args.max_batch_size,
                    args.queue_size) as (url, headers, model_id), \
            concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        body = {**ours_body, "model": model_id}
        pool.submit(clients, "ours", url, headers, {**body, "max_tokens": 2}, 1).result()  # load
        for n in ns:
            ours = figures(n, pool.submit(clients, "ours", url, headers, body, n,
                                          prompts).result(), args.tokens)
            peer = None
            if binary is not None:
                try:
                    with llama_server(binary, path, args.threads, n,
                                      args.prompt_tokens * 2 + args.tokens + 64) as lurl:
                        pool.submit(clients, "llama", lurl, {}, {**llama_body, "n_predict": 2},
                                    1).result()  # warm-up
                        peer = figures(n, pool.submit(clients, "llama", lurl, {}, llama_body,
                                                      n, prompts).result(), args.tokens)
                except RuntimeError as exc:
                    print(f"  llama-server N={n} skipped: {exc}")
            base.setdefault("ours", ours.tok_s)
            show("BitNet SDK", ours, base["ours"], peer)
            if peer is not None:
                base.setdefault("llama", peer.tok_s)
                show("llama-server", peer, base["llama"], None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
