"""The Python SDK, through openapi-python-client (models, parameters, request encoding) with
our templates for everything around it.

``templates/python/`` holds the tool's settings (``openapi-python-client.yaml``), the
templates that replace its own one-to-one (``endpoint_module.py.jinja``, ``client.py.jinja``,
``errors.py.jinja``, ``package_init.py.jinja``, ``pyproject.toml.jinja``,
``README.md.jinja``), one template of ours rendered in the same environment
(``sdk.py.jinja``: the client classes with one method per operation) and the hand-written
``runtime/`` package copied to ``<package>/_runtime/``. The tool is driven through its
Python API so that the templates can read our intermediate representation
(pagination, streams, idempotency, job waiters: things the tool does not model).

The result is formatted with ruff (pinned options, no project configuration) and every file
gets the provenance header.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bitnet_generators.errors import SpecError, SpecProblem
from bitnet_generators.ir import Api, Operation
from bitnet_generators.render import TEMPLATES, provenance, static_files

__all__ = ["PyOptions", "render"]

log = logging.getLogger(__name__)

CONFIG = TEMPLATES / "python" / "openapi-python-client.yaml"
#: Attributes of the generated client classes that operations must not shadow.
FACADE_NAMES = frozenset({"client", "set_tokens", "close", "aclose"})
_COMMENT = {".py": "# {}", ".toml": "# {}", ".md": "<!-- {} -->", ".gitignore": "# {}", ".typed": "# {}"}


@dataclass(frozen=True)
class PyOptions:
    package_name: str = "bitnet_client"
    client_name: str = "BitNetClient"
    repository: str | None = None  # project.urls.Repository (omitted when None)


def render(api: Api, options: PyOptions | None = None) -> dict[str, str]:
    """Every file of the SDK, by relative path (``pyproject.toml``, ``<package>/...``)."""
    from openapi_python_client import Project
    from openapi_python_client.config import Config, ConfigFile, MetaType
    from openapi_python_client.parser import GeneratorData
    from openapi_python_client.parser.errors import GeneratorError

    options = options or PyOptions()
    header = provenance(api, tool=f"openapi-python-client {version('openapi-python-client')}")
    spec = _spec_for(api)
    with tempfile.TemporaryDirectory(prefix="bitnet-python-sdk-") as tmp:
        out = Path(tmp) / "sdk"
        config_file = ConfigFile.load_from_path(CONFIG)
        config_file.package_name_override = options.package_name
        config_file.project_name_override = options.package_name.replace("_", "-")
        config = Config.from_sources(config_file, MetaType.PDM, Path(api.spec_name), "utf-8", True, out)
        data = GeneratorData.from_dict(spec, config=config)
        if isinstance(data, GeneratorError):
            raise SpecError([SpecProblem("#", f"openapi-python-client: {data.header}: {data.detail}")],
                            source=api.spec_name)
        project = Project(openapi=data, config=config, custom_template_path=TEMPLATES / "python")
        project.env.globals["bitnet"] = _view(api, options, data, config.field_prefix)
        with contextlib.redirect_stdout(io.StringIO()):  # the tool prints its progress
            errors = project.build()
        _raise_tool_errors(errors, api.spec_name)
        package = out / options.package_name
        (package / "sdk.py").write_text(project.env.get_template("sdk.py.jinja").render(), encoding="utf-8")
        runtime = package / "_runtime"
        runtime.mkdir()
        for name, text in static_files("python").items():
            (runtime / name).write_text(text, encoding="utf-8")
        _format(out)  # first: it turns Union[...] into the X | Y form the widening reads
        if _widen_dict_bodies(package):
            _format(out)
        return {str(p.relative_to(out)): _with_header(p, header) for p in sorted(out.rglob("*")) if p.is_file()}


_DICT_BODY = re.compile(r"body = read_body\((\w+), body\)")


def _widen_dict_bodies(package: Path) -> bool:
    """Type ``body`` as ``Model | dict[str, Any]`` where the endpoint reads a dict as that model."""
    modules = list((package / "api").rglob("*.py"))
    models = {m for path in modules for m in _DICT_BODY.findall(path.read_text(encoding="utf-8"))}
    if not models:
        return False
    names = "|".join(sorted(models))
    annotation = re.compile(rf"\bbody: ((?:\w+ \| )*(?:{names})\b(?: \| \w+)*)")
    for path in [*modules, package / "sdk.py"]:
        text = path.read_text(encoding="utf-8")
        widened = annotation.sub(lambda m: f"body: {m.group(1)} | dict[str, Any]", text)
        if widened != text:
            path.write_text(widened, encoding="utf-8")
    return True


def _spec_for(api: Api) -> dict[str, Any]:
    """The parsed document the IR was built from (re-read: the IR does not keep the tree)."""
    tree = api.extras.get("tree")
    if tree is None:
        raise ValueError("render() needs the Api built by build_api() (extras['tree'])")
    return tree


def _view(api: Api, options: PyOptions, data: Any, prefix: str) -> dict[str, Any]:
    from openapi_python_client.strings import PythonIdentifier

    def ident(name: str) -> str:
        return str(PythonIdentifier(name, prefix))

    ops = {ident(op.id): _op_view(op, ident) for op in api.operations}
    names = set(ops) | {f"{n}_all" for n, v in ops.items() if v["pagination"]}
    names |= {v["waiter"]["name"] for v in ops.values() if v["waiter"]}
    clashes = sorted(names & FACADE_NAMES)
    if clashes:
        raise SpecError([SpecProblem(op.pointer, f"Python method {ident(op.id)!r} clashes with the client's own")
                         for op in api.operations if ident(op.id) in clashes], source=api.spec_name)
    imports: set[str] = set()
    for collection in data.endpoint_collections_by_tag.values():
        for endpoint in collection.endpoints:
            imports |= {"from ." + line[len("from ..."):] if line.startswith("from ...") else line
                        for line in endpoint.relative_imports}
    extra = {e.type.name for op in api.operations for e in op.result.events if not e.error and e.type.name}
    extra |= {op.pagination.item.name for op in api.operations if op.pagination and op.pagination.item.name}
    imported = {line.rsplit(" import ", 1)[-1] for line in imports}
    return {"extra_models": sorted(extra - imported), "title": api.title, "version": api.version,
            "license": api.license, "repository": options.repository, "package": options.package_name,
            "websocket_path": next(iter(_spec_for(api).get("x-websockets") or {}), None),
            "base_path": api.base_path, "api_key_header": api.auth.api_key_header,
            "refresh_path": api.auth.refresh_path, "client_name": options.client_name, "ops": ops,
            "model_imports": sorted(imports)}


def _op_view(op: Operation, ident: Any) -> dict[str, Any]:
    view: dict[str, Any] = {"secured": op.secured, "idempotency_header": op.idempotency_header,
                            "events": [], "error_events": [], "pagination": None, "waiter": None}
    for e in op.result.events:
        if e.error:
            view["error_events"].append(e.name)
        else:
            view["events"].append({"name": e.name, "type": e.type.name})
    if op.pagination:
        pg = op.pagination
        view["pagination"] = {"cursor": ident(pg.cursor_param), "items_field": ident(pg.items_field),
                              "next_field": ident(pg.next_field),
                              "item": pg.item.name if pg.item.kind == "named" else None}
    if op.waiter:
        stem = op.id[3:] if op.id.startswith("get") and len(op.id) > 3 else op.id
        view["waiter"] = {"name": ident("waitFor" + stem[:1].upper() + stem[1:]),
                          "terminal": list(op.waiter.terminal), "field": ident(op.waiter.status_field)}
    return view


def _raise_tool_errors(errors: Any, source: str) -> None:
    from openapi_python_client.parser.errors import ErrorLevel

    problems = [SpecProblem("#", f"openapi-python-client: {e.header}: {e.detail}")
                for e in errors if e.level == ErrorLevel.ERROR or "Skipping" not in str(e.header)]
    if problems:
        raise SpecError(problems, source=source)


def _format(root: Path) -> None:
    """ruff with pinned options (ignoring any project configuration): imports sorted, unused
    ones dropped, then formatted. Skipped, with a warning, when ruff is missing."""
    ruff = shutil.which("ruff") or (str(Path(sys.executable).with_name("ruff")) if Path(
        sys.executable).with_name("ruff").exists() else None)
    if ruff is None:
        log.warning("ruff not found: the Python SDK is written unformatted")
        return
    common = ["--isolated", "--no-cache", "--line-length", "110", "--target-version", "py311"]
    for command in (["check", *common, "--fix-only", "--select", "I,F401", "--exit-zero", "."],
                    ["format", *common, "."]):
        done = subprocess.run([ruff, *command], cwd=root, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"ruff {command[0]} failed on the generated SDK:\n{done.stderr}{done.stdout}")


def _with_header(path: Path, header: str) -> str:
    text = path.read_text(encoding="utf-8")
    style = _COMMENT.get(path.suffix or path.name)
    if style is None:
        return text
    return style.format(header) + "\n" + text
