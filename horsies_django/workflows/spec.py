"""Declaring a workflow: `TaskNode`s, `app.workflow(...)` (or a `WorkflowDefinition`), `spec.start()`.

Everything about a workflow that can be wrong is checked by `start()` before it writes anything:
the graph (unknown nodes, cycles), each node's arguments against its task's signature, and the
types flowing along `args_from`. A bad workflow is `Err(VALIDATION_FAILED)` and no row exists.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    TypedDict,
    TypeVar,
    cast,
    get_args,
    get_origin,
    get_type_hints,
)

from asgiref.sync import sync_to_async
from django.utils import timezone

from ..conf import SettingsError, get_settings
from ..types.codec import dumps
from ..types.results import Err, Ok, Result, TaskResult
from .enums import Join, OnError

if TYPE_CHECKING:
    from ..app import Horsies, TaskFunction
    from ..broker.workflows import NewNode, NewWorkflow
    from .handle import WorkflowHandle

logger = logging.getLogger("horsies_django")

T = TypeVar("T")

MAX_NAME_LENGTH = 255


class WorkflowStartErrorCode(StrEnum):
    VALIDATION_FAILED = "VALIDATION_FAILED"
    ENQUEUE_FAILED = "ENQUEUE_FAILED"
    INTERNAL_FAILED = "INTERNAL_FAILED"
    ASYNC_CONTEXT = "ASYNC_CONTEXT"


@dataclass(frozen=True, slots=True)
class WorkflowStartError:
    """Why `start()` wrote nothing. `retryable`: starting again may succeed (a database error)."""

    code: WorkflowStartErrorCode
    message: str
    retryable: bool = False
    workflow_name: str | None = None
    workflow_id: str | None = None


WorkflowStartResult = Ok["WorkflowHandle[T]"] | Err[WorkflowStartError]


class TaskNode(Generic[T]):
    """One task in a workflow.

    `args_from={"param": node}` passes `node`'s whole `TaskResult` to `param`, which must be
    annotated `TaskResult[U, TaskError]` with U the upstream task's ok type; `node` must be in
    `waits_for`. `join`: "all" runs once every dependency ended (skipped if one failed, unless
    `allow_failed_deps`), "any" once one succeeded, "quorum" once `min_success` did.
    """

    def __init__(
        self,
        fn: TaskFunction[Any, T],
        kwargs: Mapping[str, Any] | None = None,
        waits_for: Sequence[TaskNode[Any]] | None = None,
        args_from: Mapping[str, TaskNode[Any]] | None = None,
        workflow_ctx_from: Sequence[TaskNode[Any]] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        allow_failed_deps: bool = False,
        join: str = "all",
        min_success: int | None = None,
        good_until: datetime | None = None,
        node_id: str | None = None,
    ) -> None:
        # Nothing is checked here: `start()` checks it all and answers with a value, not an exception.
        self.fn = fn
        self.kwargs = kwargs if kwargs is not None else {}
        self.waits_for = list(waits_for) if isinstance(waits_for, (list, tuple)) else waits_for or []
        self.args_from = args_from if args_from is not None else {}
        wired = _wired(self.kwargs)
        if wired and isinstance(self.kwargs, Mapping) and isinstance(self.waits_for, list):
            # `from_node(upstream)` as a keyword argument: the upstream's result flows into that
            # parameter (`args_from`), and this node waits for it (`waits_for`), in one step.
            self.kwargs = {name: value for name, value in self.kwargs.items() if name not in wired}
            self.args_from = {**dict(self.args_from), **wired} if isinstance(self.args_from, Mapping) else wired
            self.waits_for += [node for node in wired.values() if all(node is not w for w in self.waits_for)]
        self.workflow_ctx_from = workflow_ctx_from
        self.queue = queue
        self.priority = priority
        self.allow_failed_deps = allow_failed_deps
        self.join = join
        self.min_success = min_success
        self.good_until = good_until
        self.node_id = node_id

    @property
    def task(self) -> TaskFunction[Any, T]:
        return self.fn

    def __repr__(self) -> str:
        name = getattr(self.fn, "name", self.fn)
        return f"TaskNode({_safe(name)}{f', node_id={_safe(self.node_id)}' if self.node_id else ''})"


class NodeOptions(TypedDict, total=False):
    """`TaskNode`'s options after its task and arguments, as `task.node(**options)` takes them: one
    list of them, so that `node()` passes on whatever `TaskNode` takes, with `TaskNode`'s defaults.
    A key `TaskNode` does not take is a type error at that call."""

    waits_for: Sequence[TaskNode[Any]] | None
    args_from: Mapping[str, TaskNode[Any]] | None
    workflow_ctx_from: Sequence[TaskNode[Any]] | None
    queue: str | None
    priority: int | None
    allow_failed_deps: bool
    join: str
    min_success: int | None
    good_until: datetime | None
    node_id: str | None


@dataclass(frozen=True)
class FromNode:
    """A keyword argument of a node that takes an upstream node's `TaskResult` (see `from_node`)."""

    node: TaskNode[Any]


def from_node(node: TaskNode[Any]) -> Any:
    """Pass `node`'s whole `TaskResult` to this parameter and wait for it, as horsies' `from_node`:
    `process = process_data.node()(raw=from_node(fetch))` is
    `TaskNode(process_data, waits_for=[fetch], args_from={"raw": fetch})`."""
    return FromNode(node)


def _wired(kwargs: object) -> dict[str, TaskNode[Any]]:
    if not isinstance(kwargs, Mapping):
        return {}
    try:
        return {name: value.node for name, value in kwargs.items() if isinstance(value, FromNode)}
    except Exception:  # a hostile mapping: `start()` reports it as VALIDATION_FAILED
        return {}


@dataclass(frozen=True)
class SuccessCase:
    """The workflow succeeds if every node in `required` completed."""

    required: Sequence[TaskNode[Any]]


@dataclass(frozen=True)
class SuccessPolicy:
    """The workflow COMPLETED if any case's required nodes all completed, whatever else failed;
    FAILED with `WORKFLOW_SUCCESS_CASE_NOT_MET` otherwise. `optional` nodes may fail freely."""

    cases: Sequence[SuccessCase]
    optional: Sequence[TaskNode[Any]] | None = None


class _InvalidError(Exception):
    """A reason the workflow cannot start; becomes VALIDATION_FAILED."""


def _safe(value: object) -> str:
    """`repr(value)`, even for an object whose `__repr__` raises."""
    try:
        return repr(value)[:200]
    except Exception:
        return f"<{type(value).__name__}>"


def _message(exc: BaseException) -> str:
    try:
        return str(exc)[:500]
    except Exception:
        return type(exc).__name__


class WorkflowSpec(Generic[T]):
    """A workflow ready to start; `start()` any number of times, each a new workflow."""

    def __init__(
        self,
        app: Horsies,
        name: str,
        tasks: Sequence[TaskNode[Any]],
        *,
        on_error: OnError | str = OnError.FAIL,
        output: TaskNode[T] | None = None,
        success_policy: SuccessPolicy | None = None,
        definition_key: str | None = None,
    ) -> None:
        self.app = app
        self.name = name
        self.tasks = list(tasks) if isinstance(tasks, (list, tuple)) else tasks
        self.on_error = on_error
        self.output = output
        self.success_policy = success_policy
        self.definition_key = definition_key

    def __repr__(self) -> str:
        return f"WorkflowSpec({_safe(self.name)}, {len(self.tasks) if isinstance(self.tasks, list) else '?'} nodes)"

    # -- checking ---------------------------------------------------------------------------

    def node_ids(self) -> dict[int, str]:
        """Each node's id by its position: its `node_id`, else its task's name, made unique with
        `#<index>` when several nodes run the same task."""
        nodes = cast(list[TaskNode[Any]], self.tasks)
        names = [getattr(node.fn, "name", "?") for node in nodes]
        return {
            i: node.node_id or (names[i] if names.count(names[i]) == 1 else f"{names[i]}#{i}")
            for i, node in enumerate(nodes)
        }

    def _compile(self, workflow_id: uuid.UUID, now: datetime) -> NewWorkflow:
        from ..app import TaskFunction
        from ..broker.workflows import CTX_PARAM, META_PARAM, NewNode, NewWorkflow
        from ..models import MAX_PRIORITY, MIN_PRIORITY

        if not isinstance(self.name, str) or not 0 < len(self.name) <= MAX_NAME_LENGTH:
            raise _InvalidError(f"the workflow name must be a string of 1 to {MAX_NAME_LENGTH} characters")
        key = self.definition_key
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_NAME_LENGTH):
            raise _InvalidError(f"definition_key must be a string of 1 to {MAX_NAME_LENGTH} characters")
        if not isinstance(self.tasks, list) or not self.tasks:
            raise _InvalidError("tasks must be a non-empty list of TaskNode")
        try:
            on_error = OnError(self.on_error)
        except ValueError:
            raise _InvalidError(f"on_error must be OnError.FAIL or OnError.PAUSE, got {_safe(self.on_error)}") from None
        nodes: list[TaskNode[Any]] = self.tasks
        position: dict[int, int] = {}
        for i, node in enumerate(nodes):
            if not isinstance(node, TaskNode):
                raise _InvalidError(f"tasks[{i}] is {_safe(node)}, not a TaskNode")
            if id(node) in position:
                raise _InvalidError(f"tasks[{i}] is the same TaskNode as tasks[{position[id(node)]}]")
            position[id(node)] = i
            if not isinstance(node.fn, TaskFunction):
                raise _InvalidError(f"tasks[{i}]: fn must be a registered task (@app.task), got {_safe(node.fn)}")
        ids = self.node_ids()
        seen: dict[str, int] = {}
        for i, node_id in ids.items():
            if not isinstance(node_id, str) or not 0 < len(node_id) <= MAX_NAME_LENGTH:
                raise _InvalidError(f"tasks[{i}]: node_id must be a string of 1 to {MAX_NAME_LENGTH} characters")
            if node_id in seen:
                raise _InvalidError(f"tasks[{i}] and tasks[{seen[node_id]}] share the node_id {node_id!r}")
            seen[node_id] = i

        def index_of(ref: object, where: str) -> int:
            if not isinstance(ref, TaskNode) or id(ref) not in position:
                raise _InvalidError(f"{where}: {_safe(ref)} is not one of this workflow's tasks")
            return position[id(ref)]

        try:
            settings = get_settings()
        except SettingsError as exc:
            raise _InvalidError(f"HORSIES setting: {exc} ({exc.hint})") from None
        waits: list[list[int]] = []
        compiled: list[dict[str, Any]] = []
        for i, node in enumerate(nodes):
            where = f"node {ids[i]!r}"
            task = node.fn
            if not isinstance(node.waits_for, list):
                raise _InvalidError(f"{where}: waits_for must be a list of TaskNode")
            deps = [index_of(ref, f"{where}: waits_for") for ref in node.waits_for]
            if len(set(deps)) != len(deps):
                raise _InvalidError(f"{where}: waits_for names a node twice")
            if i in deps:
                raise _InvalidError(f"{where} waits for itself")
            waits.append(deps)
            try:
                join = Join(node.join)
            except ValueError:
                raise _InvalidError(f"{where}: join must be 'all', 'any' or 'quorum', got {_safe(node.join)}") from None
            min_success = node.min_success
            if join == Join.QUORUM:
                if isinstance(min_success, bool) or not isinstance(min_success, int):
                    raise _InvalidError(f"{where}: join='quorum' needs min_success, a whole number")
                if not 1 <= min_success <= len(deps):
                    raise _InvalidError(f"{where}: min_success must be from 1 to {len(deps)} (its dependencies)")
            elif min_success is not None:
                raise _InvalidError(f"{where}: min_success only applies to join='quorum'")
            if join != Join.ALL and not deps:
                raise _InvalidError(f"{where}: join={join.value!r} needs dependencies in waits_for")
            if not isinstance(node.allow_failed_deps, bool):
                raise _InvalidError(f"{where}: allow_failed_deps must be True or False")
            hints = _hints(task)
            parameters = task.signature.parameters
            if not isinstance(node.args_from, Mapping):
                raise _InvalidError(f"{where}: args_from must be a dict of parameter name to TaskNode")
            args_from: dict[str, int] = {}
            for param, ref in node.args_from.items():
                upstream = index_of(ref, f"{where}: args_from[{_safe(param)}]")
                if upstream not in deps:
                    raise _InvalidError(
                        f"{where}: args_from[{param!r}] is {ids[upstream]!r}, which is not in its waits_for"
                    )
                if param not in parameters:
                    raise _InvalidError(f"{where}: task {task.name!r} has no parameter {_safe(param)}")
                _check_flow(where, param, hints.get(param), nodes[upstream].fn, ids[upstream])
                args_from[param] = upstream
            ctx_from: list[int] | None = None
            if CTX_PARAM in parameters:
                refs = node.workflow_ctx_from or []
                if not isinstance(refs, (list, tuple)):
                    raise _InvalidError(f"{where}: workflow_ctx_from must be a list of TaskNode")
                ctx_from = [index_of(ref, f"{where}: workflow_ctx_from") for ref in refs]
                stray = [ids[c] for c in ctx_from if c not in deps]
                if stray:
                    raise _InvalidError(f"{where}: workflow_ctx_from names {stray}, which are not in its waits_for")
            elif node.workflow_ctx_from:
                raise _InvalidError(
                    f"{where}: workflow_ctx_from is set but task {task.name!r} has no '{CTX_PARAM}: WorkflowContext' "
                    "parameter to receive it"
                )
            kwargs = _encode_kwargs(where, task, node.kwargs, set(args_from))
            provided = set(kwargs) | set(args_from) | {CTX_PARAM, META_PARAM}
            missing = [
                name for name, p in parameters.items() if p.default is p.empty and name not in provided
            ]  # fmt: skip
            if missing:
                raise _InvalidError(f"{where}: task {task.name!r} needs {missing}; give them in kwargs or args_from")
            queue = node.queue or task.options.queue_name or task.queue_name
            unknown = settings.unknown_queue(queue) if isinstance(queue, str) else "queue must be a string"
            if unknown:
                raise _InvalidError(f"{where}: {unknown}")
            priority = node.priority if node.priority is not None else task.options.priority
            if priority is None:
                priority = settings.queue_priority(queue)
            if (
                isinstance(priority, bool)
                or not isinstance(priority, int)
                or not MIN_PRIORITY <= priority <= MAX_PRIORITY
            ):
                raise _InvalidError(f"{where}: priority must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY}")
            good_until = node.good_until if node.good_until is not None else task.options.good_until
            if good_until is not None and (not isinstance(good_until, datetime) or timezone.is_naive(good_until)):
                raise _InvalidError(f"{where}: good_until must be a timezone-aware datetime")
            compiled.append(
                {
                    "index": i, "node_id": ids[i], "task_name": task.name, "queue_name": queue, "priority": priority,
                    "good_until": good_until, "max_retries": task.retry_policy.max_retries if task.retry_policy else 0,
                    "kwargs": kwargs, "args_from": args_from, "ctx_from": ctx_from,
                    "wants_meta": META_PARAM in parameters, "waits_for": deps, "join": join.value,
                    "min_success": min_success, "allow_failed_deps": node.allow_failed_deps,
                }
            )  # fmt: skip
        cycle = _find_cycle(waits)
        if cycle:
            raise _InvalidError(f"the workflow has a cycle: {' -> '.join(ids[i] for i in cycle)}")
        dependents: list[list[int]] = [[] for _ in nodes]
        for i, deps in enumerate(waits):
            for d in deps:
                dependents[d].append(i)
        output_index = None if self.output is None else index_of(self.output, "output")
        policy: dict[str, Any] | None = None
        if self.success_policy is not None:
            if not isinstance(self.success_policy, SuccessPolicy) or not self.success_policy.cases:
                raise _InvalidError("success_policy must be a SuccessPolicy with at least one SuccessCase")
            cases = []
            for n, case in enumerate(self.success_policy.cases):
                if not isinstance(case, SuccessCase) or not case.required:
                    raise _InvalidError(f"success_policy.cases[{n}] must be a SuccessCase with required nodes")
                cases.append([index_of(ref, f"success_policy.cases[{n}]") for ref in case.required])
            optional = [index_of(ref, "success_policy.optional") for ref in self.success_policy.optional or []]
            policy = {"cases": cases, "optional": optional}
        node_rows: list[NewNode] = [NewNode(**row, dependents=dependents[row["index"]]) for row in compiled]
        return NewWorkflow(
            id=workflow_id,
            name=self.name,
            definition_key=key,
            on_error=on_error.value,
            output_index=output_index,
            success_policy=policy,
            created_at=now,
            nodes=node_rows,
        )

    # -- starting ---------------------------------------------------------------------------

    def start(self) -> Result[WorkflowHandle[T], WorkflowStartError]:
        """Check the workflow and store it, with the tasks of its first nodes, in one transaction
        (the caller's, if one is open, like `send()`). `Ok(WorkflowHandle)` or
        `Err(WorkflowStartError)`; nothing is written on error. Never raises."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._start()
        return self._error(
            WorkflowStartErrorCode.ASYNC_CONTEXT,
            "start() blocks on the database; inside an event loop use 'await spec.start_async()'",
        )

    async def start_async(self) -> Result[WorkflowHandle[T], WorkflowStartError]:
        return await sync_to_async(self._start, thread_sensitive=True)()

    def _error(self, code: WorkflowStartErrorCode, message: str, **extra: Any) -> Err[WorkflowStartError]:
        name = self.name if isinstance(self.name, str) else None
        return Err(WorkflowStartError(code=code, message=message, workflow_name=name, **extra))

    def _start(self) -> Result[WorkflowHandle[T], WorkflowStartError]:
        from ..broker import get_broker
        from ..broker.workflows import WorkflowSql
        from .handle import WorkflowHandle

        workflow_id = uuid.uuid4()
        try:
            workflow = self._compile(workflow_id, timezone.now())
        except _InvalidError as exc:
            return self._error(WorkflowStartErrorCode.VALIDATION_FAILED, f"workflow {_safe(self.name)}: {exc}")
        except Exception as exc:  # a bug here must not escape a never-raising call; it is logged
            logger.exception("workflow start failed while checking it name=%s", _safe(self.name))
            return self._error(WorkflowStartErrorCode.INTERNAL_FAILED, f"checking the workflow failed: {_message(exc)}")
        try:
            WorkflowSql(get_broker()).start(workflow)
        except Exception as exc:
            logger.warning("workflow start failed name=%s: %s", self.name, _message(exc))
            return self._error(
                WorkflowStartErrorCode.ENQUEUE_FAILED,
                f"workflow {self.name!r}: database error: {_message(exc)}",
                retryable=True,
                workflow_id=str(workflow_id),
            )
        return Ok(WorkflowHandle(str(workflow_id), app=self.app, spec=self))


def _hints(task: TaskFunction[Any, Any]) -> dict[str, Any]:
    try:
        return get_type_hints(task.fn)
    except Exception:  # registration resolved them once; a module changed since is the user's to fix
        return {}


def _check_flow(where: str, param: str, hint: Any, upstream: TaskFunction[Any, Any], upstream_id: str) -> None:
    """`param` receives `upstream`'s TaskResult: it must be annotated TaskResult[U, TaskError]
    with U the upstream task's ok type (Any on either side matches anything)."""
    if get_origin(hint) is not TaskResult:
        raise _InvalidError(
            f"{where}: parameter {param!r} receives {upstream_id!r}'s TaskResult, so it must be annotated "
            f"TaskResult[T, TaskError], not {_safe(hint)}"
        )
    wanted = get_args(hint)[0] if get_args(hint) else Any
    returns = _hints(upstream).get("return")
    produced = get_args(returns)[0] if get_args(returns) else Any
    if wanted is not Any and produced is not Any and wanted != produced:
        raise _InvalidError(
            f"{where}: parameter {param!r} expects TaskResult[{_type_name(wanted)}, TaskError] but {upstream_id!r} "
            f"(task {upstream.name!r}) returns TaskResult[{_type_name(produced)}, TaskError]"
        )


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or _safe(hint)


def _encode_kwargs(where: str, task: TaskFunction[Any, Any], kwargs: object, wired: set[str]) -> dict[str, Any]:
    """Each static argument checked and encoded by its parameter's type, as `send()` does."""
    if not isinstance(kwargs, Mapping):
        raise _InvalidError(f"{where}: kwargs must be a dict, got {_safe(kwargs)}")
    adapters = task.signature.argument_adapters
    encoded: dict[str, Any] = {}
    for name, value in kwargs.items():
        if not isinstance(name, str) or name not in adapters:
            raise _InvalidError(f"{where}: task {task.name!r} has no parameter {_safe(name)}")
        if name in wired:
            raise _InvalidError(f"{where}: {name!r} is given both in kwargs and in args_from")
        adapter = adapters[name]
        try:
            encoded[name] = adapter.dump_python(adapter.validate_python(value), mode="json")
            dumps(encoded[name])
        except Exception as exc:
            raise _InvalidError(f"{where}: argument {name!r} does not fit its type: {_message(exc)}") from None
    return encoded


def _find_cycle(waits: list[list[int]]) -> list[int] | None:
    """A cycle in the dependency lists, as node positions, or None."""
    state = [0] * len(waits)  # 0 unvisited, 1 on the current path, 2 done
    for start in range(len(waits)):
        if state[start]:
            continue
        path: list[int] = []
        stack: list[tuple[int, int]] = [(start, 0)]
        while stack:
            node, edge = stack.pop()
            if edge == 0:
                state[node] = 1
                path.append(node)
            if edge < len(waits[node]):
                stack.append((node, edge + 1))
                nxt = waits[node][edge]
                if state[nxt] == 1:
                    return [*path[path.index(nxt) :], nxt]
                if state[nxt] == 0:
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                path.pop()
    return None


class WorkflowDefinition(Generic[T]):
    """A workflow written as a class: node attributes (their ids are the attribute names), a
    `name`, and an optional `class Meta` with `output` (a node attribute's name, since a nested
    class body cannot see its outer class's names), `on_error` and `success_policy`.

        class Etl(WorkflowDefinition[Saved]):
            name = "etl"
            fetch = TaskNode(fn=fetch_data, kwargs={"url": URL})
            save = TaskNode(fn=save_result, waits_for=[fetch], args_from={"raw": fetch})

            class Meta:
                output = "save"

        Etl.build(app).start()
    """

    name: ClassVar[str]
    definition_key: ClassVar[str | None] = None

    @classmethod
    def nodes(cls) -> list[tuple[str, TaskNode[Any]]]:
        found: dict[str, TaskNode[Any]] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, TaskNode):
                    found[attr] = value
        return list(found.items())

    @classmethod
    def build(cls, app: Horsies) -> WorkflowSpec[T]:
        """The spec of this class's workflow. Nodes are copied, so building twice is safe."""
        copies: dict[int, TaskNode[Any]] = {}
        for attr, node in cls.nodes():
            clone = copy.copy(node)
            clone.node_id = node.node_id or attr
            copies[id(node)] = clone

        def remap(ref: Any) -> Any:
            return copies.get(id(ref), ref)

        for clone in copies.values():
            if isinstance(clone.waits_for, list):
                clone.waits_for = [remap(ref) for ref in clone.waits_for]
            if isinstance(clone.args_from, Mapping):
                clone.args_from = {param: remap(ref) for param, ref in clone.args_from.items()}
            if isinstance(clone.workflow_ctx_from, (list, tuple)):
                clone.workflow_ctx_from = [remap(ref) for ref in clone.workflow_ctx_from]
        meta = getattr(cls, "Meta", None)
        policy: SuccessPolicy | None = getattr(meta, "success_policy", None)
        if isinstance(policy, SuccessPolicy):
            policy = SuccessPolicy(
                cases=[SuccessCase(required=[remap(r) for r in case.required]) for case in policy.cases],
                optional=None if policy.optional is None else [remap(r) for r in policy.optional],
            )
        output = getattr(meta, "output", None)
        if isinstance(output, str):  # a class body cannot name its sibling attributes from `Meta`
            output = dict(cls.nodes()).get(output, output)
        return WorkflowSpec(
            app,
            getattr(cls, "name", ""),
            list(copies.values()),
            on_error=getattr(meta, "on_error", OnError.FAIL),
            output=None if output is None else remap(output),
            success_policy=policy,
            definition_key=cls.definition_key,
        )

    @classmethod
    def build_with(cls, app: Horsies, **params: Any) -> WorkflowSpec[T]:
        """Build with run-time parameters: override to apply `params` to the nodes (for example
        `cls.fetch.kwargs = {"url": params["url"]}` on a copy); by default they are ignored."""
        return cls.build(app)


__all__ = [
    "OnError",
    "SuccessCase",
    "SuccessPolicy",
    "TaskNode",
    "WorkflowDefinition",
    "WorkflowSpec",
    "WorkflowStartError",
    "WorkflowStartErrorCode",
    "WorkflowStartResult",
]
