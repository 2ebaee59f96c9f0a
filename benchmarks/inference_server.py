"""Serving overhead: the same generation run in-process, over SSE and over the WebSocket.

Builds one synthetic BitNet b1.58 model (random ternary weights, TQ2_0, no end-of-generation
token so every run produces exactly ``--tokens``), starts the real server (Connexion on the
Tornado bridge, loopback port) and measures, per path, the time to the first token and the
generation rate, with the HTTP and WebSocket clients in a separate process. The baseline is ``Model.generate`` in this process, measured in the same run;
ratios are against it (the machine is shared and noisy: compare ratios, not absolute numbers).

    python benchmarks/inference_server.py                     # numpy backend, 200 tokens
    python benchmarks/inference_server.py --backend llvm --tokens 400 --d-model 1024
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PROMPT = "The quick brown fox jumps over the lazy dog"


def build(directory: Path, d_model: int) -> Path:
    from gguf import GGUFValueType

    from bitnet_sdk.testing.synthetic import build_model, tiny_bpe_vocab

    types = [1] * len(tiny_bpe_vocab().tokens)
    return build_model(directory / "bench.gguf", n_layers=4, d_model=d_model, d_ff=2 * d_model,
                       n_heads=8, n_kv_heads=4, context_length=4096, metadata_overrides={
                           "tokenizer.ggml.eos_token_id": None,
                           "tokenizer.ggml.eot_token_id": None,
                           "tokenizer.ggml.token_type": (types, GGUFValueType.ARRAY)})


def direct(path: Path, backend: str, tokens: int) -> Callable[[], tuple[float, float]]:
    import bitnet_sdk

    model = bitnet_sdk.load(path, backend=backend)

    def run() -> tuple[float, float]:
        t0 = time.perf_counter()
        first = None
        for _step in model.generate(PROMPT, max_tokens=tokens, temperature=0):
            first = first or time.perf_counter()
        assert first is not None
        return first - t0, time.perf_counter() - t0

    return run


def sse(url: str, headers: dict[str, str], body: dict) -> Callable[[], tuple[float, float]]:
    import httpx

    def run() -> tuple[float, float]:
        t0 = time.perf_counter()
        first = None
        with httpx.stream("POST", url + "/v1/inference/stream", json=body, headers=headers,
                          timeout=600) as r:
            for line in r.iter_lines():
                if line == "event: token" and first is None:
                    first = time.perf_counter()
        assert first is not None
        return first - t0, time.perf_counter() - t0

    return run


def websocket(url: str, token: str, body: dict) -> Callable[[], tuple[float, float]]:
    from websockets.sync.client import connect

    def run() -> tuple[float, float]:
        with connect(url + "/v1/inference/ws", subprotocols=["bearer", token]) as ws:
            json.loads(ws.recv())
            t0 = time.perf_counter()
            ws.send(json.dumps({"type": "generate", "request_id": "b", "request": body}))
            first = None
            while True:
                message = json.loads(ws.recv())
                first = first or time.perf_counter()
                if message["type"] != "token":
                    return first - t0, time.perf_counter() - t0

    return run


def measure(run: Callable[[], tuple[float, float]], repeats: int) -> tuple[float, float]:
    run()  # warm-up (loads the model into the server's cache)
    results = [run() for _ in range(repeats)]
    return (statistics.median(r[0] for r in results), statistics.median(r[1] for r in results))


def client(kind: str, url: str, credential: dict[str, str], body: dict,
           repeats: int) -> tuple[float, float]:
    """Measure from a separate process, so the client does not share the server's GIL."""
    if kind == "sse":
        return measure(sse(url, credential, body), repeats)
    return measure(websocket(url, credential["token"], body), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from bitnet_sdk.config import Settings
    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.testing import ServerThread
    from bitnet_sdk.server.run import websocket_routes
    from tests.conftest import make_account
    from tests.support.inference import register_model

    with tempfile.TemporaryDirectory() as tmp:
        path = build(Path(tmp), args.d_model)
        settings = Settings(data_dir=Path(tmp) / "data", demo_model=False, backend=args.backend)
        app = create_app(settings)
        with ServerThread(app, websocket_routes=websocket_routes(app)) as server:
            account = make_account(settings, "bench@example.com", tier="enterprise")
            model_id = register_model(settings, path, owner_id=account.user_id, name="bench")
            body = {"model": model_id, "prompt": PROMPT, "max_tokens": args.tokens,
                    "temperature": 0}
            results = {"in-process Model.generate":
                       measure(direct(path, args.backend, args.tokens), args.repeats)}
            spawn = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
                results["SSE POST /v1/inference/stream"] = pool.submit(
                    client, "sse", server.url, account.headers, body, args.repeats).result()
                results["WebSocket /v1/inference/ws"] = pool.submit(
                    client, "ws", server.ws_url(""), {"token": account.token}, body,
                    args.repeats).result()
    base_first, base_total = results["in-process Model.generate"]
    base_rate = args.tokens / base_total
    print(f"backend {args.backend}, d_model {args.d_model}, {args.tokens} tokens, "
          f"median of {args.repeats}")
    print(f"{'path':34} {'first token ms':>15} {'tokens/s':>10} {'rate vs in-process':>19}")
    for name, (first, total) in results.items():
        rate = args.tokens / total
        print(f"{name:34} {first * 1000:15.1f} {rate:10.1f} {rate / base_rate:18.2f}x")
    print(f"(first-token baseline {base_first * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
