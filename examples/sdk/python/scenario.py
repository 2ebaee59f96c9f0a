"""A tour of the generated Python SDK against a running server, one JSON line per step.

    bitnet sdk generate --lang python --out sdk
    PYTHONPATH=sdk BITNET_URL=http://127.0.0.1:8080 BITNET_EMAIL=... BITNET_PASSWORD=... \
        BITNET_MODEL_FILE=model-f32.gguf python scenario.py

Optional: ``BITNET_LIMITED_TOKEN``, the token of an account on a tier with a small hourly
budget, to show the 429 error. The test suite runs this file (tests/generators/test_conformance.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import sys
from pathlib import Path

from bitnet_client import (
    ApiConnectionError,
    AsyncBitNetClient,
    BitNetClient,
    File,
    NotFoundError,
    RateLimitError,
    RetryPolicy,
)
from bitnet_client.models import (
    ApiKeyCreate,
    InferenceRequest,
    LoginRequest,
    ModelCreate,
    ModelUploadForm,
    QuantizeRequest,
    QuantizeResult,
)


def say(step: str, **fields: object) -> None:
    print(json.dumps({"step": step, **fields}), flush=True)


async def _socket_tour(url: str, token: str, request: InferenceRequest) -> dict[str, object]:
    """The same generation over the asyncio WebSocket client."""
    async with AsyncBitNetClient(url, token=token) as client, await client.connect_inference_socket() as socket:
        messages = [m async for m in socket.generate(request)]
    return {"joined": "".join(m["text"] for m in messages if m["type"] == "token"), "last": messages[-1]["type"]}


def main() -> int:
    url, model_file = os.environ["BITNET_URL"], Path(os.environ["BITNET_MODEL_FILE"])
    with BitNetClient(url) as client:
        # A plain dict is accepted wherever a body model is.
        tokens = client.login(body={"email": os.environ["BITNET_EMAIL"], "password": os.environ["BITNET_PASSWORD"]})
        client.set_tokens(tokens.access_token, tokens.refresh_token)
        me = client.get_current_user()
        say("login", email=me.email, credential=me.credential_type)

        key = client.create_api_key(body=ApiKeyCreate(name="sdk-tour"))
        os.environ["BITNET_BASE_URL"], os.environ["BITNET_API_KEY"] = url, key.key
        with BitNetClient() as by_key:  # configured from BITNET_BASE_URL and BITNET_API_KEY
            say("api_key", prefix=key.prefix, credential=by_key.get_current_user().credential_type)

        with model_file.open("rb") as f:
            form = ModelUploadForm(file=File(payload=f, file_name=model_file.name), name="tour-multipart")
            small = client.create_model(body=form)
        say("upload_multipart", id=small.id, status=small.status)

        record = client.create_model(body=ModelCreate(name="tour-f32"))
        digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
        with model_file.open("rb") as f:  # streamed from the file, never read whole
            model = client.upload_model_file(record.id, body=File(payload=f), x_content_sha256=digest)
        say("upload_raw", id=model.id, status=model.status, size=model.size_bytes)

        # Resumable upload: an earlier attempt stopped half-way (here: the first half sent as
        # one piece); upload_model_resumable asks the server's offset and sends the rest.
        data = model_file.read_bytes()
        half = len(data) // 2
        pending = client.create_model(body=ModelCreate(name="tour-resumable"))
        client.upload_model_piece(pending.id, body=File(payload=io.BytesIO(data[:half])),
                                  content_range=f"bytes 0-{half - 1}/{len(data)}")
        held = client.get_model_upload(pending.id).offset
        positions: list[int] = []
        done = client.upload_model_resumable(pending.id, model_file, piece_size=65536,
                                             progress=lambda sent, total: positions.append(sent))
        assert done.model is not None
        say("upload_resumable", status=done.model.status, held=held, first_sent=positions[0],
            size=done.model.size_bytes, sha256=done.model.sha256)
        client.delete_model(pending.id)

        names = [m.name for m in client.list_models_all(limit=1)]  # one model per page
        say("list", names=sorted(names))

        job = client.quantize_model(body=QuantizeRequest(model_id=model.id, qtype="tq2_0", mode="async"))
        job = client.wait_for_quantize_job(job.id, timeout=300)
        quantized = job.result.model_id if isinstance(job.result, QuantizeResult) else None
        say("quantize", status=job.status, model_id=quantized)

        request = InferenceRequest(model=str(quantized), prompt="Hello", max_tokens=8, temperature=0.0)
        answer = client.run_inference(body=request)
        say("inference", text=answer.text, tokens=answer.usage.completion_tokens)

        pieces, done = [], None
        with client.stream_inference(body=request) as events:
            for event in events:
                if event.event == "token":
                    pieces.append(event.data.text)
                else:
                    done = event.data
        say("stream", tokens=len(pieces), joined="".join(pieces), done_text=done.text if done else None)

        with client.connect_inference_socket() as socket:  # the same generation over the WebSocket
            messages = list(socket.generate(request))
        say("websocket", joined="".join(m["text"] for m in messages if m["type"] == "token"),
            last=messages[-1]["type"], user=socket.ready["user_id"])
        say("websocket_async", **asyncio.run(_socket_tour(url, tokens.access_token, request)))

        usage = client.get_account_usage(group_by="operation")
        say("usage", requests=usage.totals.requests, operations=sorted(b.key for b in usage.buckets))

        try:
            client.with_options(timeout=10, headers={"X-Tour": "1"}).get_model("mdl_0000000000missing")
        except NotFoundError as err:
            say("not_found", status=err.status, title=err.title, request_id=err.request_id, kind=type(err).__name__)

        limited = os.environ.get("BITNET_LIMITED_TOKEN")
        if limited:
            with BitNetClient(url, token=limited, retry=RetryPolicy(max_retry_after=5)) as small_tier:
                for calls in range(1, 50):
                    try:
                        small_tier.get_current_user()
                    except RateLimitError as err:
                        say("rate_limited", status=err.status, calls=calls, retry_after=err.retry_after,
                            kind=type(err).__name__)
                        break

        try:
            BitNetClient("http://127.0.0.1:9", retry=RetryPolicy(max_retries=0)).get_version()
        except ApiConnectionError as err:
            say("connection_error", kind="ConnectionError", cause=type(err.__cause__).__name__)

        fresh = client.login(body=LoginRequest(email=os.environ["BITNET_EMAIL"], password=os.environ["BITNET_PASSWORD"]))
        renewed: list[str] = []
        with BitNetClient(url, token="expired-or-revoked", refresh_token=fresh.refresh_token,
                          on_tokens=lambda t: renewed.append(t.access_token)) as stale:
            user = stale.get_current_user()
        say("refresh", email=user.email, refreshed=len(renewed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
