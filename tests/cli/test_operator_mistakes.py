"""The operator's mistakes, each run as a real ``bitnet`` process: one clear line, no traceback.

Every case checks the exit status and the message, and that no traceback was printed.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bitnet_sdk import __version__
from bitnet_sdk.quantization import quantize
from tests.quantization._support import build_onnx_mlp

REPO = Path(__file__).resolve().parents[2]


def bitnet(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bitnet_sdk.cli ARGV`` with this checkout first on the path."""
    return subprocess.run(
        [sys.executable, "-m", "bitnet_sdk.cli", *argv], capture_output=True, text=True,
        cwd=cwd, env=_env(env), timeout=timeout, stdin=subprocess.DEVNULL,
    )


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITNET_")}
    paths = [str(REPO), *(str(REPO / p) for p in ("plugins", "kernels", "generators"))]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")])
    env.update(extra or {})
    return env


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


@pytest.fixture(scope="module")
def dense_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dense")
    build_onnx_mlp(folder / "mlp.onnx")
    quantize(folder / "mlp.onnx", folder / "mlp.gguf", "tq2_0", backend="numpy")
    return folder / "mlp.gguf"


def test_version() -> None:
    result = bitnet("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"bitnet-sdk {__version__}"


def test_busy_port_is_reported_before_anything_is_created(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = bitnet("serve", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    no_traceback(result)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--port" in result.stderr
    assert "password" not in result.stdout + result.stderr
    assert not (tmp_path / "data").exists()


def test_broken_pipe_is_quiet() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "bitnet_sdk.cli", "backends", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away at once, as `| head -0` would
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_generate_on_a_dense_model_says_what_it_is(dense_model: Path) -> None:
    result = bitnet("generate", str(dense_model), "-p", "hello", "--backend", "numpy")
    no_traceback(result)
    assert result.returncode == 1
    assert "is a dense model" in result.stderr and "predict" in result.stderr


def test_inspect_describes_a_dense_model(dense_model: Path) -> None:
    result = bitnet("inspect", str(dense_model))
    no_traceback(result)
    assert result.returncode == 0, result.stdout
    assert "bitnet-dense" in result.stdout
    assert "dense network 3 linear layers" in result.stdout
    assert "(no KV cache)" in result.stdout and "error" not in result.stdout


def test_quantize_refuses_a_non_gguf_output(tmp_path: Path) -> None:
    build_onnx_mlp(tmp_path / "m.onnx")
    result = bitnet("quantize", str(tmp_path / "m.onnx"), str(tmp_path / "out.bin"))
    no_traceback(result)
    assert result.returncode == 2
    assert "must be a .gguf file" in result.stderr and "out.bin" in result.stderr
    assert not (tmp_path / "out.bin").exists()


def test_quantize_output_honours_the_umask(tmp_path: Path) -> None:
    build_onnx_mlp(tmp_path / "m.onnx")
    old = os.umask(0o022)
    try:
        result = bitnet("quantize", str(tmp_path / "m.onnx"), str(tmp_path / "m.gguf"),
                        "--backend", "numpy", "-q")
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((tmp_path / "m.gguf").stat().st_mode) == 0o644


def test_user_list_without_a_database_refuses(tmp_path: Path) -> None:
    result = bitnet("user", "list", cwd=tmp_path)
    no_traceback(result)
    assert result.returncode == 1
    assert "no database at" in result.stderr and "--data-dir" in result.stderr
    assert not (tmp_path / "data").exists()


def test_reset_password(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    assert bitnet("user", "create", "--email", "ops@example.com", "--data-dir", data).returncode == 0
    result = bitnet("user", "reset-password", "--email", "ops@example.com", "--data-dir", data)
    assert result.returncode == 0, result.stderr
    password = next(line.removeprefix("password: ") for line in result.stdout.splitlines()
                    if line.startswith("password: "))
    from bitnet_sdk.auth import authenticate
    from bitnet_sdk.store import connect

    db = connect(f"sqlite:///{tmp_path / 'data' / 'bitnet.db'}")
    try:
        assert authenticate("ops@example.com", password).email == "ops@example.com"
    finally:
        db.close()
    missing = bitnet("user", "reset-password", "--email", "nobody@example.com", "--data-dir", data)
    no_traceback(missing)
    assert missing.returncode == 1 and "no account with email" in missing.stderr
    short = bitnet("user", "reset-password", "--email", "ops@example.com", "--password", "x",
                   "--data-dir", data)
    no_traceback(short)
    assert short.returncode == 1 and "password must have" in short.stderr


def test_quiet_hides_info_logs() -> None:
    normal = bitnet("backends")
    assert " INFO " in normal.stderr  # the JIT backend says when its kernels are ready
    for argv in (("-q", "backends"), ("backends", "-q")):
        quiet = bitnet(*argv)
        assert quiet.returncode == normal.returncode
        assert " INFO " not in quiet.stderr and quiet.stdout == normal.stdout


def test_bad_log_format_variable_is_a_usage_error() -> None:
    result = bitnet("backends", env={"BITNET_LOG_FORMAT": "xml"})
    no_traceback(result)
    assert result.returncode == 2 and "BITNET_LOG_FORMAT" in result.stderr


def test_push_without_credentials_or_server(tmp_path: Path, dense_model: Path) -> None:
    result = bitnet("models", "push", str(dense_model), "--server", "http://127.0.0.1:1")
    no_traceback(result)
    assert result.returncode == 2 and "--api-key" in result.stderr
    result = bitnet("models", "push", str(dense_model), "--api-key", "k")
    assert result.returncode == 2 and "--server" in result.stderr
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = bitnet("models", "push", str(dense_model), "--api-key", "k",
                    "--server", f"http://127.0.0.1:{port}")
    no_traceback(result)
    assert result.returncode == 1 and "cannot reach" in result.stderr


def test_push_uploads_and_restarts_on_the_same_record(live_server, customer, tmp_path: Path,
                                                      dense_model: Path) -> None:
    import json

    import httpx

    env = {"BITNET_TOKEN": customer.token}
    result = bitnet("models", "push", str(dense_model), "--server", live_server.url, "--name", "mlp",
                    "--json", env=env)
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    assert model["status"] == "ready" and model["name"] == "mlp" and model["kind"] == "dense"
    assert model["size_bytes"] == dense_model.stat().st_size

    # A push that failed (here: a file the server rejects) leaves a record to push to again.
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    failed = bitnet("models", "push", str(junk), "--server", live_server.url, env=env)
    no_traceback(failed)
    assert failed.returncode == 1 and "answered 422" in failed.stderr
    assert "--model mdl_" in failed.stderr  # how to restart
    model_id = failed.stderr.split("--model ")[1].split()[0]
    again = bitnet("models", "push", str(dense_model), "--server", live_server.url,
                   "--model", model_id, env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"{model_id} junk ready")
    got = httpx.get(f"{live_server.url}/v1/models/{model_id}", headers=customer.headers)
    assert got.json()["status"] == "ready"

    wrong = bitnet("models", "push", str(dense_model), "--server", live_server.url,
                   env={"BITNET_API_KEY": "bk_wrong"})
    no_traceback(wrong)
    assert wrong.returncode == 1 and "answered 401" in wrong.stderr


def test_progress_bar_on_a_terminal_with_logs_written_around_it(tmp_path: Path) -> None:
    """On a terminal the quantize bar shows, and each log line starts on a line of its own."""
    import fcntl
    import pty
    import re
    import struct
    import termios

    build_onnx_mlp(tmp_path / "m.onnx")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bitnet_sdk.cli", "quantize", str(tmp_path / "m.onnx"),
         str(tmp_path / "m.gguf"), "--backend", "numpy", "-v"],
        stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL, env=_env())
    os.close(slave)
    screen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    assert proc.wait(timeout=120) == 0
    text = screen.decode("utf-8", "replace")
    assert "tensor/s" in text  # the bar was drawn
    logs = [seg for seg in re.split(r"[\r\n]", text) if " INFO " in seg or " DEBUG " in seg]
    assert logs
    for segment in logs:  # never glued to a bar fragment
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", segment), segment


@pytest.mark.parametrize("origin", ["ftp://example.com", "http://[::1", "http://example.com:99999",
                                    "example.com"])
def test_bad_cors_origin_is_a_usage_error(tmp_path: Path, origin: str) -> None:
    result = bitnet("serve", "--port", "0", "--data-dir", str(tmp_path / "data"),
                    "--cors-origin", origin)
    no_traceback(result)
    assert result.returncode == 2
    assert "CORS origin" in result.stderr and origin in result.stderr
    assert not (tmp_path / "data").exists()


def test_bad_cors_origins_variable_names_the_variable(tmp_path: Path) -> None:
    result = bitnet("serve", "--port", "0", "--data-dir", str(tmp_path / "data"),
                    env={"BITNET_CORS_ORIGINS": "https://ok.example,http://[bad"})
    no_traceback(result)
    assert result.returncode == 2 and "BITNET_CORS_ORIGINS" in result.stderr
