"""ModelCache loads per key: one slow load holds up only the requests for that model (issue 16)."""

from __future__ import annotations

import threading
import time

import pytest

from iadbe.inference.loading import ModelCache


def test_a_slow_load_does_not_stall_other_models() -> None:
    cache = ModelCache(4)
    ready = object()
    assert cache.get_or_load(("ready",), lambda: ready) is ready
    release, started, loads = threading.Event(), threading.Event(), []
    cold = object()

    def slow_load() -> object:
        loads.append(1)
        started.set()
        assert release.wait(30)
        return cold

    results: dict[str, object] = {}
    first = threading.Thread(target=lambda: results.setdefault("first", cache.get_or_load(("cold",), slow_load)))
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=lambda: results.setdefault("second", cache.get_or_load(("cold",), slow_load)))
    second.start()
    answered = []
    other = threading.Thread(target=lambda: answered.append(cache.get_or_load(("ready",), lambda: None)))
    began = time.perf_counter()
    other.start()
    other.join(5)
    waited = time.perf_counter() - began
    try:
        assert answered == [ready] and waited < 5, "a lookup of a loaded model waited for another model's load"
        assert "second" not in results  # the same model's second request waits for the load in progress
    finally:
        release.set()
        first.join(30)
        second.join(30)
    assert results == {"first": cold, "second": cold} and loads == [1]  # loaded once, shared
    assert cache.get_or_load(("cold",), slow_load) is cold and loads == [1]


def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    cache = ModelCache(2)
    release, started = threading.Event(), threading.Event()

    def failing() -> object:
        started.set()
        assert release.wait(30)
        raise ValueError("corrupt weights")

    errors: list[BaseException] = []

    def ask() -> None:
        try:
            cache.get_or_load(("bad",), failing)
        except ValueError as error:
            errors.append(error)

    threads = [threading.Thread(target=ask)]
    threads[0].start()
    assert started.wait(30)
    threads.append(threading.Thread(target=ask))
    threads[1].start()
    time.sleep(0.1)
    release.set()
    for thread in threads:
        thread.join(30)
    assert [str(e) for e in errors] == ["corrupt weights"] * 2
    assert cache.get_or_load(("bad",), lambda: "fixed") == "fixed"  # the failure was not cached


def test_the_lru_keeps_its_size() -> None:
    cache = ModelCache(2)
    for name in "abc":
        cache.get_or_load((name,), lambda name=name: name)
    assert cache.get_or_load(("a",), lambda: "reloaded") == "reloaded"
    assert (cache.hits, cache.misses) == (0, 4)
    with pytest.raises(KeyError):
        cache.get_or_load(("x",), lambda: {}["missing"])
