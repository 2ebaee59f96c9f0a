# peewee is checked as an untyped library. Its wheel, built on some machines, ships partial
# stubs (peewee-stubs) without field descriptors (no `*_id` foreign-key attributes, queries
# typed as bare Model), so two identical installs disagreed; this stub, found first through
# mypy_path, makes every name in peewee `Any` everywhere.
from typing import Any

def __getattr__(name: str) -> Any: ...
