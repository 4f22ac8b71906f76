"""What an action is: an id, a description, a handler (whose signature names the input and output models) and examples.

An action is made by a factory in `actions_server/actions/`, which receives the
parts of the platform it uses and nothing else; its handler, `check` and
`input_schema` close over them. docs/architecture.md, "Adding an action", has
the worked example: a factory and its registration line.

The composition root (services.py, `built_in_actions`) calls each factory once,
with the parts named. The handler runs in a worker thread. It gets a small
context about the run alone: a logger whose lines stream to the run's event
stream, a private workspace directory, the run's secrets, its caller,
`output(name, value)` to publish an output before it returns, and `run_step()`
to run another action as a step. It returns the output model, or raises
`PltfError` with a message for the person who clicked "Create". `check`, when
given, validates input against the world (a template's own values schema, say)
before a run is started; `input_schema`, when given, is the listed input schema
(with each template's values, say) in place of the input model's.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, get_type_hints

import yaml
from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from .auth import Caller

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)


class RunCancelled(Exception):
    pass


class RunLogger:
    """Writes a run's log lines; each goes to storage, the event stream and the JSON log."""

    def __init__(self, sink: Callable[[str, str, dict[str, Any]], None], cancelled: threading.Event) -> None:
        self._sink = sink
        self._cancelled = cancelled
        self.step: str | None = None

    def _log(self, level: str, message: str, fields: dict[str, Any]) -> None:
        # Logging is where a long handler touches us, so it is where a cancel lands.
        if self._cancelled.is_set():
            raise RunCancelled()
        self._sink(level, message, fields)

    def info(self, message: str, **fields: Any) -> None:
        self._log("info", message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._log("warning", message, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._log("error", message, fields)


# How soon a run waiting for a turn at working notices that it was cancelled.
TURN_CANCEL_CHECK_SECONDS = 0.25


@dataclass
class RunContext:
    run_id: str
    caller: Caller
    logger: RunLogger
    workspace: Path
    secrets: Mapping[str, str]
    dry_run: bool
    cancelled: threading.Event = field(default_factory=threading.Event)
    publish: Callable[[str, Any], None] = field(default=lambda name, value: None, repr=False)
    # The actions a composite action may run as steps (the run engine's registry).
    actions: Mapping[str, Action[Any, Any]] = field(default_factory=dict, repr=False)
    # The run engine's turns at working (see Action.waits), for the steps of a handler that waits; None
    # under a handler that holds a turn already.
    work_turns: threading.Semaphore | None = field(default=None, repr=False)

    def output(self, name: str, value: Any) -> None:
        """Sets one output now, as Backstage's `ctx.output()` does: a caller following a run that
        is still going (after a 202) sees it. The returned output model has the last word."""
        self.publish(name, value)

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise RunCancelled()

    def run_step(self, step: str, action_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Runs another action as one step of this run, and returns its output as JSON.

        Composite actions (`service:create`) are made of steps; each step's log
        lines carry its id, and it gets a workspace of its own.
        """
        from .errors import invalid_input, pydantic_field_errors

        action = self.actions[action_id]
        try:
            model = action.input.model_validate(params)
        except ValidationError as exc:
            raise invalid_input(f"step {step}: invalid input", pydantic_field_errors(exc.errors(), step)) from None
        if action.check is not None:
            action.check(model)
        workspace = self.workspace / step
        workspace.mkdir(parents=True, exist_ok=True)
        previous, self.logger.step = self.logger.step, step
        try:
            with turn_at_working(self.work_turns, action, self.cancelled):
                # A step's own outputs are its return value, not outputs of the composite run.
                context = replace(
                    self,
                    workspace=workspace,
                    publish=lambda name, value: None,
                    work_turns=self.work_turns if action.waits else None,
                )
                output = action.handler(context, model)
        finally:
            self.logger.step = previous
        return dict(output.model_dump(mode="json", exclude_none=True))


@contextlib.contextmanager
def turn_at_working(
    turns: threading.Semaphore | None, action: Action[Any, Any], cancelled: threading.Event
) -> Iterator[None]:
    """Holds one of `turns` while `action`'s handler runs, unless it waits (Action.waits) or `turns` is None
    (one is held already). A run cancelled while it waits for its turn ends there."""
    if turns is None or action.waits:
        yield
        return
    while not turns.acquire(timeout=TURN_CANCEL_CHECK_SECONDS):
        if cancelled.is_set():
            raise RunCancelled()
    try:
        yield
    finally:
        turns.release()


@dataclass
class Example:
    description: str
    input: dict[str, Any]
    dry_run: bool = False


@dataclass
class Action(Generic[In, Out]):
    id: str
    description: str
    handler: Callable[[RunContext, In], Out]
    examples: list[Example] = field(default_factory=list)
    check: Callable[[In], None] | None = None
    input_schema: Callable[[], dict[str, Any]] | None = None
    # The input and output models are read from the handler's signature, as FastAPI reads a route's, so
    # they are named in one place. Given here only where the annotations cannot be resolved from the
    # handler's module (models declared inside a function, as a test does).
    input: type[In] = field(default=cast(Any, None))
    output: type[Out] = field(default=cast(Any, None))
    # Whether the handler mostly waits on something else (a preview getting ready, the steps of a composite
    # action): such a handler runs without a turn at working, which the others take (PLTF_MAX_WORKING_RUNS).
    waits: bool = False

    def __post_init__(self) -> None:
        if self.input is None or self.output is None:
            annotations = get_type_hints(self.handler)
            params = list(inspect.signature(self.handler).parameters)
            if len(params) != 2 or params[1] not in annotations or "return" not in annotations:
                raise TypeError(f"{self.id}: the handler must be annotated `(ctx, params: Input) -> Output`")
            self.input = self.input or annotations[params[1]]
            self.output = self.output or annotations["return"]

    def describe(self) -> dict[str, Any]:
        """The listing entry, in the shape of Backstage's `GET /api/scaffolder/v2/actions`."""
        schema = self.input_schema() if self.input_schema else self.input.model_json_schema()
        return {
            "id": self.id,
            "description": self.description,
            "schema": {"input": schema, "output": self.output.model_json_schema()},
            "examples": [
                {
                    "description": example.description,
                    "example": yaml.safe_dump(
                        {
                            "steps": [
                                {
                                    "id": f"example-{n}",
                                    "action": self.id,
                                    "name": example.description,
                                    "input": example.input,
                                }
                            ]
                        },
                        sort_keys=False,
                    ),
                }
                for n, example in enumerate(self.examples, start=1)
            ],
        }
