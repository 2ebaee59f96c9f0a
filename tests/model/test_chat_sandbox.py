"""The bounded template sandbox and its worker processes, without a server: each ring on its
own (operator bounds in-process, the worker's memory limit, the parent's kill on time and on
cancel), and that a worker pool keeps serving after its workers were killed."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from bitnet_sdk.model.chat_sandbox import (
    ChatTemplateError,
    ChatTemplateLimitError,
    ChatTemplateRefused,
    RenderLimits,
    TemplateRenderer,
    render_in_process,
)

CONTEXT = {"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": True,
           "bos_token": "", "eos_token": ""}
LIMITS = RenderLimits()
#: Nested loops over a 30 000-character text: about a minute of work, never finished here.
LOOPS = "{% set s = 'x' * 30000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}"


@pytest.fixture
def renderer() -> Iterator[TemplateRenderer]:
    pool = TemplateRenderer(RenderLimits(timeout_s=1.0), max_workers=2)
    yield pool
    pool.close()


@pytest.mark.parametrize(("template", "why"), [
    ("{{ 9 ** (9 ** 9) }}", "power too large"),  # Jinja's ** is left-associative
    ("{{ (2 ** 30000) * (2 ** 30000) * (2 ** 30000) }}", "multiplied integers too large"),
    ("{{ 'ab' * 10 ** 8 }}", "repeated a value"),
    ("{{ [1] * 10 ** 8 }}", "repeated a value"),
    ("{% set s = 'x' * 4000000 %}{{ (s + s) | length }}", "concatenated"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "loops over"),
    ("{{ 'x' | center(10 ** 7) }}", "built a value"),
    ("{% for i in range(100) %}{{ 'y' * 100000 }}{% endfor %}", "rendered more than"),
])
def test_operators_range_filters_and_output_are_bounded_before_the_work(template: str, why: str) -> None:
    with pytest.raises(ChatTemplateLimitError, match=why):
        render_in_process(template, CONTEXT, LIMITS)


def test_within_bounds_templates_render_as_jinja_does() -> None:
    template = ("{{ 2 ** 10 }} {{ 'ab' * 3 }} {{ [1, 2] + [3] }} {{ '%05d' % 42 }} "
                "{% for i in range(3) %}{{ i }}{% endfor %} {{ messages | tojson }}")
    assert render_in_process(template, CONTEXT, LIMITS) == (
        '1024 ababab [1, 2, 3] 00042 012 [{"role": "user", "content": "hi"}]')


def test_the_iteration_budget_is_per_render() -> None:
    template = "{% for i in range(600000) %}{% endfor %}ok"
    for _ in range(3):  # 1.8 million items over three renders, 600 000 each
        assert render_in_process(template, CONTEXT, LIMITS) == "ok"


def test_a_worker_renders_and_reports_errors_by_kind(renderer: TemplateRenderer) -> None:
    assert renderer.render("{{ messages[0].content }}!", CONTEXT) == "hi!"
    with pytest.raises(ChatTemplateRefused, match="no thanks"):
        renderer.render("{{ raise_exception('no thanks') }}", CONTEXT)
    with pytest.raises(ChatTemplateError, match="does not compile"):
        renderer.render("{% if %}", CONTEXT)
    with pytest.raises(ChatTemplateLimitError, match="power too large"):
        renderer.render("{{ 9 ** (9 ** 9) }}", CONTEXT)
    assert renderer.stats() == {"busy": 0, "idle": 1}  # one worker did all of it


def test_past_the_time_limit_the_worker_is_killed_and_replaced(renderer: TemplateRenderer) -> None:
    with pytest.raises(ChatTemplateLimitError, match="past its limits"):
        renderer.render(LOOPS, CONTEXT)
    assert renderer.stats() == {"busy": 0, "idle": 0}
    assert renderer.render("{{ 1 + 1 }}", CONTEXT) == "2"


def test_cancel_kills_the_render_at_once(renderer: TemplateRenderer) -> None:
    stop = threading.Event()
    limits = RenderLimits(timeout_s=300)
    errors: list[Exception] = []

    def render() -> None:
        try:
            renderer.render(LOOPS, CONTEXT, cancel=stop.is_set, limits=limits)
        except ChatTemplateError as exc:
            errors.append(exc)

    worker = threading.Thread(target=render)
    worker.start()
    stop.set()
    worker.join(30)
    assert not worker.is_alive()
    assert len(errors) == 1 and "cancelled" in str(errors[0])
    assert renderer.stats()["busy"] == 0


def test_memory_is_capped_in_the_worker_which_is_then_retired(renderer: TemplateRenderer) -> None:
    doubling = ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                "{% endfor %}{{ ns.s | length }}")
    limits = RenderLimits(timeout_s=30, memory_bytes=64 * 1024**2)
    with pytest.raises(ChatTemplateLimitError):
        renderer.render(doubling, CONTEXT, limits=limits)
    assert renderer.stats()["idle"] == 0
    assert renderer.render("{{ 'fine' }}", CONTEXT) == "fine"


def test_renders_from_many_threads_share_the_workers(renderer: TemplateRenderer) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def render(i: int) -> None:
        text = renderer.render("{{ messages[0].content }}", {**CONTEXT, "messages": [
            {"role": "user", "content": str(i)}]})
        with lock:
            results.append(text)

    threads = [threading.Thread(target=render, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results, key=int) == [str(i) for i in range(8)]
    assert renderer.stats()["idle"] <= 2
