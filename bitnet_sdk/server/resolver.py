"""Map operations to handler functions; unimplemented ones answer 501.

Convention (see ``openapi/bitnet.yaml``): each path item names its module in
``x-openapi-router-controller`` (``bitnet_sdk.api.<group>``) and the function is
the snake_case of the camelCase ``operationId``. An operation whose module or
function does not exist yet is routed to a stub answering ``501`` problem+json
naming the operation, so the spec can be complete before the code is; the list
of such operations is kept on the resolver (and checked by a test that only lets
it shrink). An ImportError raised *inside* an existing handler module is a bug
and propagates.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from connexion.resolver import Resolution, Resolver

from bitnet_sdk.service.errors import ApiError

__all__ = ["ControllerResolver", "snake_case"]

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(name: str) -> str:
    """``listApiKeys`` → ``list_api_keys``; ``getModelFile`` → ``get_model_file``."""
    return _CAMEL.sub("_", name).lower()


def _not_implemented(operation_id: str) -> Callable[..., Any]:
    def handler(*_args: Any, **_kwargs: Any) -> Any:
        raise ApiError(501, "Not Implemented",
                       f"Operation {operation_id} is specified but not implemented yet.",
                       slug="not-implemented")

    handler.__name__ = snake_case(operation_id)
    return handler


class ControllerResolver(Resolver):
    """Resolve ``router_controller`` + snake_case(operationId), else a 501 stub."""

    def __init__(self) -> None:
        super().__init__()
        self.not_implemented: list[str] = []

    def resolve(self, operation: Any) -> Resolution:
        operation_id = operation.operation_id
        controller = operation.router_controller
        if not controller:
            raise ValueError(f"operation {operation_id} has no x-openapi-router-controller")
        function = self._find(controller, snake_case(operation_id))
        if function is None:
            self.not_implemented.append(operation_id)
            function = _not_implemented(operation_id)
        return Resolution(function, operation_id)

    @staticmethod
    def _find(module_name: str, function_name: str) -> Callable[..., Any] | None:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        return getattr(module, function_name, None)
