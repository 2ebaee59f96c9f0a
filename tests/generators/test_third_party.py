"""Third-party client generators on ``openapi/bitnet.yaml``, with their default options.

Most integrators feed the spec to the generator they already use, so each of these must
produce code that compiles and whose calls work against a live server: openapi-generator
(python, typescript-fetch, go), oapi-codegen, and openapi-typescript with openapi-fetch.
Each client is generated once per session, built with its real toolchain, and driven by a
small program (``third_party/``) that logs in (JSON body, no credential), makes an
authenticated call (``Authorization: Bearer``), streams an inference (``text/event-stream``
handed over as text) and meets a 404. Every program prints one JSON line per step. Each
test also reads the generated code: a job's ``result`` must come out as the typed union of
the result models, not as ``object``, ``interface{}`` or ``any``.

The generators are fetched on first use and cached: the openapi-generator jar from Maven
Central (``mvn dependency:get``, into ``~/.m2``), oapi-codegen through the Go module proxy
(built into ``~/.cache/bitnet-sdk-tests/bin``), openapi-typescript and openapi-fetch pinned
in ``generators/toolchain``. A test is skipped, saying why, only when a toolchain (Java with
Maven, Go, Node) is not installed.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bitnet_sdk.config import Settings
from tests.conftest import make_account

from ._toolchain import ROOT, node_modules, run

OPENAPI_GENERATOR = "7.17.0"
OAPI_CODEGEN = "v2.8.2"
SPEC = ROOT / "openapi" / "bitnet.yaml"
DRIVERS = Path(__file__).resolve().parent / "third_party"
CACHE = Path(os.environ.get("BITNET_SDK_TEST_CACHE") or Path.home() / ".cache" / "bitnet-sdk-tests")
MISSING_MODEL = "mdl_00000000000000000000000000"
# Module downloads through the Go proxy are allowed here (the generated clients need their
# dependencies); no workspace, no toolchain switch.
GO_ENV = {"GOFLAGS": "-mod=mod -buildvcs=false", "GOWORK": "off", "GOTOOLCHAIN": "local"}

pytestmark = pytest.mark.slow


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: cannot run this third-party generator")


class _CacheLock:
    """One process at a time fetches into the cache (parallel test runs share it)."""

    def __enter__(self) -> None:
        CACHE.mkdir(parents=True, exist_ok=True)
        self._fh = open(CACHE / ".lock", "w")
        fcntl.flock(self._fh, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


def openapi_generator(generator: str, out: Path) -> Path:
    """Run openapi-generator ``generator`` (default options) on the spec into ``out``."""
    _need("java", "mvn")
    jar = (Path.home() / ".m2" / "repository" / "org" / "openapitools" / "openapi-generator-cli"
           / OPENAPI_GENERATOR / f"openapi-generator-cli-{OPENAPI_GENERATOR}.jar")
    with _CacheLock():
        if not jar.exists():
            run(["mvn", "-q", "dependency:get",
                 f"-Dartifact=org.openapitools:openapi-generator-cli:{OPENAPI_GENERATOR}"], CACHE, timeout=900)
    run(["java", "-jar", str(jar), "generate", "-i", str(SPEC), "-g", generator, "-o", str(out)], out.parent)
    return out


def oapi_codegen() -> Path:
    """The oapi-codegen binary, built once through the Go module proxy into the cache."""
    _need("go")
    binary = CACHE / "bin" / f"oapi-codegen-{OAPI_CODEGEN}"
    with _CacheLock():
        if not binary.exists():
            build = CACHE / "bin" / f".build-{OAPI_CODEGEN}"
            run(["go", "install", f"github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@{OAPI_CODEGEN}"],
                CACHE, env={**GO_ENV, "GOBIN": str(build)}, timeout=900)
            (build / "oapi-codegen").rename(binary)
            shutil.rmtree(build)
    return binary


@dataclass(frozen=True)
class Live:
    url: str
    email: str
    password: str
    model: str

    @property
    def argv(self) -> list[str]:
        return [self.url, self.email, self.password, self.model]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One server for the module, with a user and the demo model (public, tiny)."""
    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.testing import ServerThread
    from bitnet_sdk.service.registry.demo import ensure_demo_model

    settings = Settings(data_dir=tmp_path_factory.mktemp("third-party") / "data", demo_model=False)
    with ServerThread(create_app(settings)) as server:
        account = make_account(settings, "gen@example.com")
        model = ensure_demo_model(settings)
        assert model is not None
        yield Live(server.url, account.email, account.password, model)


def sse_events(body: str) -> list[tuple[str, str]]:
    """``(event, data)`` of each event of a Server-Sent Events body (LF line ends)."""
    events = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, list[str]] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields.setdefault(name, []).append(value.removeprefix(" "))
        if "data" in fields:
            events.append(((fields.get("event") or ["message"])[0], "\n".join(fields["data"])))
    return events


def check(output: str, live: Live) -> None:
    """The steps every driver prints: login, an authenticated call, a stream, a 404."""
    steps = {}
    for line in output.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            steps[record.pop("step")] = record
    assert set(steps) == {"login", "me", "stream", "not_found"}, output
    assert steps["login"]["token_type"] == "Bearer"
    assert steps["me"]["email"] == live.email
    events = sse_events(steps["stream"]["body"])
    tokens = [json.loads(data) for name, data in events if name == "token"]
    done = [json.loads(data) for name, data in events if name == "done"]
    assert tokens and len(done) == 1, events
    assert done[0]["text"] == "".join(t["text"] for t in tokens)
    assert done[0]["usage"]["completion_tokens"] == len(tokens)
    assert steps["not_found"]["status"] == 404


def check_typed_result(job: str, field: str, union: str, member: str) -> None:
    """The generated ``Job`` has a ``result`` field of the generated ``JobResult`` type
    (``field``, a pattern of its declaration), and ``JobResult`` names each result model
    (``member``, a pattern with ``NAME`` for the model): typed, not a bag of anything."""
    assert re.search(field, job, re.M), f"the generated Job has no `result` of type JobResult ({field})"
    for name in ("QuantizeResult", "InferenceBatchResult"):
        pattern = member.replace("NAME", name)
        assert re.search(pattern, union, re.M), f"the generated JobResult does not name {name} ({pattern})"


def test_openapi_generator_python(live: Live, tmp_path: Path) -> None:
    client = openapi_generator("python", tmp_path / "client")
    models = client / "openapi_client" / "models"
    check_typed_result((models / "job.py").read_text(), r"^\s+result: Optional\[JobResult\]",
                       (models / "job_result.py").read_text(), r"^\s+oneof_schema_\d+_validator: Optional\[NAME\]")
    output = run([sys.executable, str(DRIVERS / "openapi_generator_python.py"), *live.argv], tmp_path,
                 env={"PYTHONPATH": str(client)})
    check(output, live)


def test_openapi_generator_typescript_fetch(live: Live, tmp_path: Path) -> None:
    _need("node")
    modules = node_modules()
    client = openapi_generator("typescript-fetch", tmp_path / "client")
    check_typed_result((client / "models" / "Job.ts").read_text(), r"^\s+result\?: JobResult;",
                       (client / "models" / "JobResult.ts").read_text(), r"^export type JobResult = .*\bNAME\b")
    shutil.copy(DRIVERS / "openapi_generator_typescript_fetch.ts", tmp_path / "main.ts")
    # The generated imports have no file extensions: compile to CommonJS, as a bundler would.
    _tsconfig(tmp_path, modules, {"module": "commonjs", "moduleResolution": "node"}, ["main.ts", "client/**/*.ts"])
    run([str(modules / ".bin" / "tsc"), "-p", "."], tmp_path)
    check(run(["node", "out/main.js", *live.argv], tmp_path), live)


def test_openapi_generator_go(live: Live, tmp_path: Path) -> None:
    client = openapi_generator("go", tmp_path / "client")
    check_typed_result((client / "model_job.go").read_text(), r"^\s+Result \*JobResult\b",
                       (client / "model_job_result.go").read_text(), r"^\s+NAME \*NAME$")
    driver = tmp_path / "driver"
    driver.mkdir()
    shutil.copy(DRIVERS / "openapi_generator_go" / "main.go", driver / "main.go")
    module = "github.com/GIT_USER_ID/GIT_REPO_ID"  # the generator's default module path
    (driver / "go.mod").write_text(f"module bitnet.test/driver\n\ngo 1.23\n\nrequire {module} v0.0.0\n\n"
                                   f"replace {module} => {client}\n")
    _go_build(driver)
    check(run([str(driver / "driver"), *live.argv], tmp_path), live)


def test_oapi_codegen(live: Live, tmp_path: Path) -> None:
    binary = oapi_codegen()
    (tmp_path / "bitnet").mkdir()
    code = run([str(binary), "-generate", "types,client", "-package", "bitnet", str(SPEC)], tmp_path)
    check_typed_result(code, r"^\s+Result\s+\*JobResult\s", code, r"^func \(t JobResult\) AsNAME\(\) \(NAME, error\)")
    (tmp_path / "bitnet" / "client.gen.go").write_text(code)
    shutil.copy(DRIVERS / "oapi_codegen" / "main.go", tmp_path / "main.go")
    (tmp_path / "go.mod").write_text("module bitnet.test/oapi\n\ngo 1.23\n")
    _go_build(tmp_path)
    check(run([str(tmp_path / "driver"), *live.argv], tmp_path), live)


def test_oapi_codegen_default_output_compiles(tmp_path: Path) -> None:
    """Everything oapi-codegen generates by default (types, client, Echo server, embedded spec)."""
    binary = oapi_codegen()
    code = run([str(binary), "-package", "bitnet", str(SPEC)], tmp_path)
    (tmp_path / "bitnet.gen.go").write_text(code)
    (tmp_path / "go.mod").write_text("module bitnet.test/oapi\n\ngo 1.23\n")
    run(["go", "mod", "tidy"], tmp_path, env=GO_ENV, timeout=900)
    run(["go", "vet", "./..."], tmp_path, env=GO_ENV, timeout=900)


def test_openapi_typescript_with_openapi_fetch(live: Live, tmp_path: Path) -> None:
    _need("node")
    modules = node_modules()
    # Default options: the spec keeps request fields' defaults in referenced components, since
    # openapi-typescript 7 makes an inline property with a `default` required (its issue #2012).
    run([str(modules / ".bin" / "openapi-typescript"), str(SPEC), "-o", "schema.d.ts"], tmp_path)
    schema = (tmp_path / "schema.d.ts").read_text()
    check_typed_result(schema, r'^\s+result\?: components\["schemas"\]\["JobResult"\];',
                       schema, r'^\s+JobResult: .*components\["schemas"\]\["NAME"\]')
    shutil.copy(DRIVERS / "openapi_fetch.mts", tmp_path / "main.mts")
    (tmp_path / "node_modules").symlink_to(modules)
    _tsconfig(tmp_path, modules, {"module": "nodenext", "moduleResolution": "nodenext"}, ["main.mts", "schema.d.ts"])
    run([str(modules / ".bin" / "tsc"), "-p", "."], tmp_path)
    check(run(["node", "out/main.mjs", *live.argv], tmp_path), live)


def _tsconfig(folder: Path, modules: Path, module: dict[str, str], include: list[str]) -> None:
    options = {"target": "ES2022", **module, "strict": True, "outDir": "out", "lib": ["ES2022", "DOM"],
               "types": ["node"], "typeRoots": [str(modules / "@types")]}
    (folder / "tsconfig.json").write_text(json.dumps({"compilerOptions": options, "include": include}))


def _go_build(module: Path) -> None:
    _need("go")
    run(["go", "mod", "tidy"], module, env=GO_ENV, timeout=900)
    run(["go", "build", "-o", "driver", "."], module, env=GO_ENV, timeout=900)
