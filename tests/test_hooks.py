"""The hook protocol: one dispatcher calls every kind of callback by hook name."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import BatchCounter
from fashionmlp import Callback, InvalidArgumentError, StopTraining
from fashionmlp.callbacks import HOOKS, Hooks, state_key


class Recorder:
    """A callback of another library: plain methods, no base class."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def on_fit_start(self, run: object) -> None:
        self.calls.append(("start", run))

    def on_epoch_end(self, report: object) -> None:
        self.calls.append(("epoch", report))


def test_each_hook_reaches_the_callbacks_that_define_it_in_order() -> None:
    first, second, seen = Recorder(), Recorder(), []
    hooks = Hooks([first, seen.append, second])
    for name, argument in zip(HOOKS, ("run", "event", "report", "result", "error")):
        assert hooks.call(name, argument) is None
    assert first.calls == second.calls == [("start", "run"), ("epoch", "report")]
    assert seen == ["event"]  # a plain function is a batch callback
    assert hooks.wants("on_batch_end") and not hooks.wants("on_fit_end")


def test_inherited_no_op_hooks_are_never_called() -> None:
    class OnlyEpochs(Callback):
        def on_epoch_end(self, report: Any) -> None:
            pass

    hooks = Hooks([OnlyEpochs()])
    assert hooks.wants("on_epoch_end")
    assert not any(hooks.wants(name) for name in HOOKS if name != "on_epoch_end")


def test_a_stop_from_any_callback_is_returned_after_all_ran() -> None:
    seen: list[str] = []

    def stop(at: str) -> Any:
        def hook(event: object) -> None:
            seen.append(at)
            raise StopTraining(at=at)  # type: ignore[arg-type]

        return hook

    assert Hooks([stop("epoch"), stop("batch"), seen.append]).call("on_batch_end", "e") == "batch"
    assert seen == ["epoch", "batch", "e"]
    assert Hooks([stop("epoch")]).call("on_batch_end", "e") == "epoch"


def test_something_that_is_no_callback_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="has none of the hooks"):
        Hooks([42])


def test_states_are_saved_by_key_and_given_back() -> None:
    one, two = BatchCounter(), BatchCounter()
    two.batches = 5
    hooks = Hooks([one, two, lambda event: None])
    assert hooks.state_dict() == {"BatchCounter": {"batches": 0}, "BatchCounter#2": {"batches": 5}}
    again = [BatchCounter(), BatchCounter()]
    Hooks(again).load_state_dict({"BatchCounter#2": {"batches": 5}, "Gone": {"x": 1}})
    assert [c.batches for c in again] == [0, 5]  # a state nobody claims is left alone


def test_a_state_key_attribute_names_the_state() -> None:
    counter = BatchCounter()
    counter.state_key = "steps"  # type: ignore[attr-defined]
    assert state_key(counter) == "steps" and Hooks([counter]).state_dict() == {
        "steps": {"batches": 0}
    }
