"""Problems found in a spec, reported all together.

A generator that stops at the first unsupported construct makes the spec author
run it once per problem. Every check appends a :class:`SpecProblem` (with the
JSON pointer of the offending node) to a :class:`ProblemCollector`; at the end of
a phase :meth:`ProblemCollector.raise_if_any` raises one :class:`SpecError`
listing them all, sorted by pointer so the report is stable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ProblemCollector", "SpecError", "SpecProblem", "pointer"]


def pointer(*parts: object) -> str:
    """A JSON pointer (RFC 6901) in URI-fragment form: ``pointer("paths", "/models")`` → ``#/paths/~1models``."""
    escaped = (str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    return "#/" + "/".join(escaped) if parts else "#"


@dataclass(frozen=True, order=True)
class SpecProblem:
    """One unsupported or invalid construct: where it is and what is wrong with it."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer}: {self.message}"


class SpecError(ValueError):
    """The spec cannot be turned into an SDK; ``problems`` lists every reason found."""

    def __init__(self, problems: list[SpecProblem], *, source: str = "spec") -> None:
        self.problems = sorted(set(problems))
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        super().__init__(f"{source}: {count} unsupported construct{'s' if count != 1 else ''}:\n{lines}")


@dataclass
class ProblemCollector:
    """Accumulates problems during one pass over a spec."""

    source: str = "spec"
    problems: list[SpecProblem] = field(default_factory=list)

    def add(self, where: str, message: str) -> None:
        self.problems.append(SpecProblem(where, message))

    def raise_if_any(self) -> None:
        if self.problems:
            raise SpecError(self.problems, source=self.source)
