"""The hook protocol: what a callback is, and the one dispatcher that calls callbacks.

A *callback* is any object that defines some of these methods; each is called at its
moment, for every callback in the order given, by :class:`Hooks`:

``on_fit_start(run)``
    :func:`~fashionmlp.fit` is about to train; ``run`` is its
    :class:`~fashionmlp.state.TrainState` (the settings in ``run.config``, the model, the
    epochs already done when resuming). Called after a resumed callback got its state back.
``on_batch_end(event)``
    A batch was trained: a :class:`~fashionmlp.BatchEvent`.
``on_epoch_end(report)``
    :func:`~fashionmlp.fit` trained and evaluated an epoch: an
    :class:`~fashionmlp.EpochReport`, before the epoch's checkpoint is written.
``on_fit_end(result)``
    :func:`~fashionmlp.fit` returns this :class:`~fashionmlp.FitResult` (finished, or
    stopped by a callback).
``on_exception(error)``
    :func:`~fashionmlp.fit` is leaving with ``error`` (a failure, or Ctrl-C twice).
``state_dict()`` / ``load_state_dict(state)``
    What the callback needs to continue a resumed run (a logger's run id, a counter): saved
    in every checkpoint, given back before ``on_fit_start`` when the run resumes. Tensors
    and plain values (numbers, strings, lists and dicts of them) only.

A plain function is a batch callback: it is called as ``on_batch_end``. Any hook may raise
:class:`StopTraining` to end the run cleanly (see there). Nothing else is needed: no base
class, no registration (Lightning Fabric's ``Fabric.call`` and minGPT's callbacks by event
name are the models); :class:`fashionmlp.callbacks.Callback` is a base class with every
hook as a no-op, for those who like to inherit their signatures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

from .errors import InvalidArgumentError
from .records import StopAt

__all__ = ["HOOKS", "Hooks", "StopTraining", "default_hook", "state_key"]

#: The hooks a callback may define, in the order of a run.
HOOKS: Final = ("on_fit_start", "on_batch_end", "on_epoch_end", "on_fit_end", "on_exception")

_Function = TypeVar("_Function", bound=Callable[..., Any])
_DEFAULT = "_fashionmlp_default_hook"


def default_hook(function: _Function) -> _Function:
    """Mark a base class's no-op hook: :class:`Hooks` does not call it, so a hook a
    callback leaves as inherited costs nothing, not even per batch."""
    setattr(function, _DEFAULT, True)
    return function


class StopTraining(Exception):
    """Raise from a callback to stop training cleanly, at a point it can be resumed from.

    Args:
        reason: Said in the exception's message.
        at: ``"batch"`` (the default) stops right after the current batch's optimizer step:
            :func:`~fashionmlp.train_epoch` returns early with ``stop="batch"`` in its
            :class:`~fashionmlp.EpochStats`, and :func:`~fashionmlp.fit` saves that very
            point, so resuming finishes the epoch from the next batch. ``"epoch"`` lets the
            epoch run to its end (in :func:`~fashionmlp.fit`: its evaluation and checkpoint
            too), then stops. Raised from ``on_epoch_end``, both mean "after this epoch",
            which is where the run already is.

    The callbacks after the one that raised still see the batch; the stop takes effect
    once all of them have run.

    Example:
        >>> def stop_when_low(event):
        ...     if event.batch % 100 == 0 and event.loss < 0.3:
        ...         raise StopTraining("loss below 0.3", at="epoch")
    """

    def __init__(self, reason: str = "", *, at: StopAt = "batch") -> None:
        if at not in ("batch", "epoch"):
            raise InvalidArgumentError(f"StopTraining at must be 'batch' or 'epoch', got {at!r}")
        super().__init__(reason or f"training stopped (at the end of this {at})")
        self.at: StopAt = at


def state_key(callback: object) -> str:
    """The name a callback's state is saved under: its ``state_key`` attribute if it has one
    (as Lightning's callbacks do), else its class's qualified name."""
    key = getattr(callback, "state_key", None)
    return key if isinstance(key, str) else type(callback).__qualname__


class Hooks:
    """The callbacks of one run, called by hook name: ``hooks.call("on_epoch_end", report)``.

    Each callback's hooks are looked up once, here, so calling them per batch costs a loop
    over the ones that have that hook.

    Raises:
        InvalidArgumentError: A callback defines no hook and is not callable.

    Example:
        >>> from fashionmlp.hooks import Hooks
        >>> seen = []
        >>> hooks = Hooks([seen.append])  # a plain function: a batch callback
        >>> hooks.call("on_batch_end", "an event")
        >>> seen
        ['an event']
    """

    def __init__(self, callbacks: Iterable[object] = ()) -> None:
        self.callbacks = list(callbacks)
        self._table: dict[str, list[Callable[[Any], object]]] = {name: [] for name in HOOKS}
        for callback in self.callbacks:
            found = {name: getattr(callback, name, None) for name in HOOKS}
            if not any(map(callable, found.values())) and not hasattr(callback, "state_dict"):
                if not callable(callback):
                    raise InvalidArgumentError(
                        f"callback {callback!r} is not callable and has none of the hooks "
                        f"{', '.join(HOOKS)} (see fashionmlp.hooks)"
                    )
                found["on_batch_end"] = callback  # a plain function: a batch callback
            for name, hook in found.items():
                if callable(hook) and not getattr(hook, _DEFAULT, False):
                    self._table[name].append(hook)
        self._keys = _unique_keys(self.callbacks)

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def wants(self, hook: str) -> bool:
        """Whether any callback defines ``hook``."""
        return bool(self._table[hook])

    def call(self, hook: str, argument: object) -> StopAt | None:
        """Call ``hook`` of every callback that has it, in order; return the stop asked for.

        A :class:`StopTraining` from one callback does not keep the others from the
        argument; the stop returned is ``"batch"`` if any asked for that, else ``"epoch"``
        if any asked, else ``None``.
        """
        stop: StopAt | None = None
        for function in self._table[hook]:
            try:
                function(argument)
            except StopTraining as request:
                stop = "batch" if "batch" in (stop, request.at) else "epoch"
        return stop

    def state_dict(self) -> dict[str, Any]:
        """Every stateful callback's ``state_dict()``, by its :func:`state_key`."""
        return {
            key: callback.state_dict()  # type: ignore[attr-defined]
            for key, callback in zip(self._keys, self.callbacks)
            if callable(getattr(callback, "state_dict", None))
        }

    def load_state_dict(self, states: dict[str, Any]) -> None:
        """Give each callback its saved state; one that saved none starts afresh.

        States of callbacks this run does not have are left alone (a run resumed without
        its TensorBoard logger, say).
        """
        for key, callback in zip(self._keys, self.callbacks):
            load = getattr(callback, "load_state_dict", None)
            if key in states and callable(load):
                load(states[key])


def _unique_keys(callbacks: list[object]) -> list[str]:
    """Each callback's :func:`state_key`, a second one of the same key numbered ``#2``."""
    seen: dict[str, int] = {}
    keys = []
    for callback in callbacks:
        key = state_key(callback)
        seen[key] = seen.get(key, 0) + 1
        keys.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return keys
