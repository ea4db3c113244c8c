"""The process pool: each task runs in a child process that can be killed on timeout or cancel.

Three kinds of process take part:

- the **supervisor** (the worker process) claims tasks, hands them to children in batches and
  reads their outcomes back in batches;
- the **template**, started once, with Django already set up and no database connection: it
  only forks children on request, so a new child is ready in milliseconds. It is a fork of the
  supervisor taken before the supervisor opens any connection (or, if the supervisor already
  runs other threads, a fresh interpreter). Either way no child ever re-executes the script
  that started the worker;
- the **children**, forked from the template. Each keeps a short queue of tasks and runs them
  one by one. Before it starts a task it writes one message that carries the outcome of the
  previous task and "started task N at T", so the supervisor always knows which task a child
  is running: that task alone is blamed if the child dies, and a timeout or cancel kills only
  that child. Tasks still queued in a dead child never started; they go to another child,
  uncounted.

Messages are pickles behind a 4-byte length, over plain pipes. The supervisor writes without
blocking (a child busy with a long task reads its pipe only between tasks) and reads whatever has
arrived in one go.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

from django.conf import settings
from django.db import connections

from ..broker import ClaimedTask
from .execute import Outcome
from .pools import BATCH_WINDOW_S, Completion, TaskStart, run_task

logger = logging.getLogger("horsies_django.worker")

_HEADER = struct.Struct("!I")
_READ_SIZE = 1 << 20
# A child is given tasks to queue only while the task it runs is younger than this: a child stuck
# in a long task gets no more work, so short tasks do not wait behind it.
YOUNG_TASK_S = 0.05
# How long to wait for a killed or stopped child to close its end of the pipe.
EXIT_WAIT_S = 5.0
TEMPLATE_START_TIMEOUT_S = 120.0
# At most this many tasks queued in a child behind the one it runs (`--prefetch`); fewer when its
# recent tasks were slow: about QUEUE_WINDOW_S of work, enough to keep it busy while the supervisor
# talks to the database.
DEFAULT_PREFETCH = 16
QUEUE_WINDOW_S = 0.05


def _frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


class _FrameReader:
    """Splits a byte stream into the messages written by `_frame`."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buffer += data
        messages = []
        start = 0
        end = len(self._buffer)
        while end - start >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer, start)
            if end - start - _HEADER.size < size:
                break
            body = start + _HEADER.size
            # Only our own processes write to these pipes.
            messages.append(pickle.loads(self._buffer[body : body + size]))  # noqa: S301
            start = body + size
        del self._buffer[:start]
        return messages


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _wall_datetime(wall: float) -> datetime:
    """A child's `time.time()` as the kind of datetime `timezone.now()` gives."""
    moment = datetime.fromtimestamp(wall, tz=UTC)
    return moment if settings.USE_TZ else datetime.fromtimestamp(wall)


# -- the child ----------------------------------------------------------------------------------


def _child_main(task_fd: int, result_fd: int, max_tasks: int) -> NoReturn:
    """Run the tasks the supervisor sends, in order, until told to stop or the supervisor is gone.

    Messages in: ("run", [(seq, task), ...]), ("skip", [seq, ...]), ("stop",).
    Messages out: (finished [(seq, outcome)], started (seq, wall, monotonic) | None).
    """
    from ..app import app

    queue: deque[tuple[int, ClaimedTask]] = deque()
    skipped: set[int] = set()
    finished: list[tuple[int, Outcome]] = []
    reader = _FrameReader()
    stopping = False
    done = 0
    os.set_blocking(task_fd, False)

    def read_messages(block: bool) -> bool:
        """Take in what the supervisor sent; False once it is gone."""
        nonlocal stopping
        while True:
            if block:
                select.select([task_fd], [], [])
            try:
                data = os.read(task_fd, _READ_SIZE)
            except BlockingIOError:
                return True
            if not data:
                return False
            for message in reader.feed(data):
                if message[0] == "run":
                    queue.extend(message[1])
                elif message[0] == "skip":
                    skipped.update(message[1])
                else:
                    stopping = True
            block = False

    try:
        while True:
            if not queue and finished:
                _write_all(result_fd, _frame((finished, None)))
                finished = []
            if not queue and stopping:
                break
            if not read_messages(block=not queue):
                break
            if not queue:
                continue
            seq, task = queue.popleft()
            if seq in skipped:
                skipped.discard(seq)
                continue
            wall, monotonic = time.time(), time.monotonic()
            # The outcome of the previous task travels with this start: one write per task, and
            # an outcome is in the pipe before the next task can crash the process.
            _write_all(result_fd, _frame((finished, (seq, wall, monotonic))))
            finished = [(seq, run_task(app, task))]
            done += 1
            if max_tasks and done >= max_tasks:
                _write_all(result_fd, _frame((finished, None)))
                break
    except BrokenPipeError:
        pass  # the supervisor is gone: nobody is left to take outcomes
    _exit(0)


def _exit(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


# -- the template -------------------------------------------------------------------------------


def _send_message(sock: socket.socket, message: Any, fds: list[int] | None = None) -> None:
    data = _frame(message)
    if fds:
        socket.send_fds(sock, [data[: _HEADER.size]], fds)
        sock.sendall(data[_HEADER.size :])
    else:
        sock.sendall(data)


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise EOFError("the other end closed the socket")
        chunks += chunk
    return bytes(chunks)


def _receive_message(sock: socket.socket) -> tuple[Any, list[int]]:
    header, fds, _, _ = socket.recv_fds(sock, _HEADER.size, 4)
    if not header:
        raise EOFError("the other end closed the socket")
    header += _receive_exactly(sock, _HEADER.size - len(header))
    (size,) = _HEADER.unpack(header)
    return pickle.loads(_receive_exactly(sock, size)), fds  # noqa: S301 (a socketpair of our own)


def _template_main(sock: socket.socket) -> NoReturn:
    """Fork a child for each ("spawn", max_tasks) request (with the child's two pipe ends
    attached), and collect a child's exit status on ("reap", pid). Exit when the supervisor
    closes the socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole process group
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        while True:
            try:
                message, fds = _receive_message(sock)
            except (EOFError, OSError):
                break
            if message[0] == "spawn":
                task_fd, result_fd = fds
                pid = os.fork()
                if pid == 0:
                    sock.close()
                    try:
                        _child_main(task_fd, result_fd, message[1])
                    except BaseException:
                        traceback.print_exc()
                        _exit(1)
                os.close(task_fd)
                os.close(result_fd)
                _send_message(sock, ("spawned", pid))
            elif message[0] == "reap":
                try:
                    _, status = os.waitpid(message[1], 0)
                    code = os.waitstatus_to_exitcode(status)
                except ChildProcessError:
                    code = None
                _send_message(sock, ("reaped", code))
    except BaseException:
        traceback.print_exc()
        _exit(1)
    _exit(0)


def spawned_template_main(fd: int, database_names: dict[str, Any] | None = None) -> NoReturn:
    """Entry point of a template started as a fresh interpreter (Django is set up already).

    `database_names`: each alias's database NAME in the supervisor, which may have been changed
    after its settings were read (a test runner's test database); the children use the same."""
    for alias, name in (database_names or {}).items():
        if alias in connections.settings:
            connections.settings[alias]["NAME"] = name
            connections[alias].settings_dict["NAME"] = name
    sock = socket.socket(fileno=fd)
    connections.close_all()
    _send_message(sock, ("ready",))
    _template_main(sock)


def _database_names() -> dict[str, Any]:
    """The NAME each database alias of this process uses now (plain values, for a `repr`)."""
    names = {alias: connections[alias].settings_dict.get("NAME") for alias in connections}
    return {alias: str(name) if isinstance(name, os.PathLike) else name for alias, name in names.items()}


class _Template:
    """The process children are forked from."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        if not hasattr(os, "fork") or not hasattr(socket, "send_fds"):
            raise RuntimeError("the process pool needs a POSIX system; use the thread pool (--pool threads)")
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with theirs:
            if self._may_fork():
                self.pid = self._fork(theirs)
            else:
                self.pid = self._spawn(theirs)

    @staticmethod
    def _may_fork() -> bool:
        """Fork the supervisor only while it is safe: one thread, and no database connection."""
        if threading.active_count() > 1:
            return False
        connections.close_all()
        return all(connections[alias].connection is None for alias in connections)

    def _fork(self, theirs: socket.socket) -> int:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        pid = os.fork()
        if pid == 0:
            self.sock.close()
            try:
                _template_main(theirs)
            except BaseException:
                traceback.print_exc()
            _exit(1)
        return pid

    def _spawn(self, theirs: socket.socket) -> int:
        # The supervisor runs other threads (or is inside a transaction): a fresh interpreter sets
        # Django up on its own. It runs no script, so the caller's __main__ is never re-executed.
        if not os.environ.get("DJANGO_SETTINGS_MODULE"):
            raise RuntimeError(
                "the process pool must start a fresh Python for its children (this process runs other "
                "threads), and that needs DJANGO_SETTINGS_MODULE in the environment; set it, start the "
                "worker before other threads, or use the thread pool (--pool threads)"
            )
        code = (
            f"import sys; sys.path[:] = {sys.path!r}; import django; django.setup(); "
            "from horsies_django.worker.procpool import spawned_template_main; "
            f"spawned_template_main({theirs.fileno()}, {_database_names()!r})"
        )
        flags: list[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
        self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and code)
            [sys.executable, *flags, "-c", code], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL
        )
        self.sock.settimeout(TEMPLATE_START_TIMEOUT_S)
        try:
            message, _ = _receive_message(self.sock)
        except (EOFError, OSError) as exc:
            self.process.kill()
            raise RuntimeError("the process pool's template process failed to start (see its error above)") from exc
        finally:
            self.sock.settimeout(None)
        assert message == ("ready",), message
        return self.process.pid

    def spawn(self, task_fd: int, result_fd: int, max_tasks: int) -> int:
        _send_message(self.sock, ("spawn", max_tasks), [task_fd, result_fd])
        message, _ = _receive_message(self.sock)
        return int(message[1])

    def reap(self, pid: int) -> int | None:
        _send_message(self.sock, ("reap", pid))
        message, _ = _receive_message(self.sock)
        return message[1]  # type: ignore[no-any-return]

    def close(self) -> None:
        self.sock.close()  # the template exits when it reads the end of the socket
        if self.process is not None:
            try:
                self.process.wait(timeout=EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            return
        deadline = time.monotonic() + EXIT_WAIT_S
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                return
            time.sleep(0.01)
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


# -- the supervisor's side ----------------------------------------------------------------------


@dataclass
class _Held:
    """A task the pool holds: queued in the pool, queued in a child, or running in it."""

    seq: int
    task: ClaimedTask
    child: _Child | None = None
    start: TaskStart | None = None


@dataclass(eq=False)
class _Child:
    pid: int
    task_fd: int  # we write tasks here
    result_fd: int  # and read outcomes here
    reader: _FrameReader = field(default_factory=_FrameReader)
    outbox: bytearray = field(default_factory=bytearray)
    queued: deque[int] = field(default_factory=deque)  # seqs handed over and not started
    running: int | None = None
    running_since: float = 0.0
    pace: float = 0.0  # recent seconds per task, smoothed (0: none run yet)
    assigned: int = 0  # every task ever handed over (for max_tasks_per_child)
    killed: bool = False
    dead: bool = False

    @property
    def outstanding(self) -> int:
        return len(self.queued) + (self.running is not None)


class ProcessTaskPool:
    """Children forked from a template; see the module's docstring. `prefetch` is how many tasks a
    child may hold queued behind the one it runs (only while that one is young)."""

    kind = "processes"

    def __init__(self, size: int, *, max_tasks_per_child: int = 0, prefetch: int = DEFAULT_PREFETCH) -> None:
        if prefetch < 0:
            raise ValueError(f"prefetch must be 0 or more, got {prefetch}")
        self.size = size
        self.max_tasks_per_child = max_tasks_per_child
        self.prefetch = prefetch
        self._seq = 0
        self._held: dict[str, _Held] = {}
        self._by_seq: dict[int, str] = {}
        self._backlog: deque[int] = deque()
        self._completed: list[Completion] = []
        self._closing = False
        self._template = _Template()
        self._children: list[_Child] = []
        try:
            for _ in range(size):
                self._children.append(self._start_child())
        except BaseException:
            self.close(kill=True)
            raise

    # -- children ---------------------------------------------------------------------------

    def _start_child(self) -> _Child:
        task_read, task_write = os.pipe()
        result_read, result_write = os.pipe()
        try:
            try:
                pid = self._template.spawn(task_read, result_write, self.max_tasks_per_child)
            except (OSError, EOFError) as exc:
                logger.error("the template process is gone (%s); starting a new one", exc)
                with contextlib.suppress(OSError, EOFError):
                    self._template.close()
                self._template = _Template()
                pid = self._template.spawn(task_read, result_write, self.max_tasks_per_child)
        finally:
            os.close(task_read)
            os.close(result_write)
        os.set_blocking(task_write, False)
        os.set_blocking(result_read, False)
        return _Child(pid=pid, task_fd=task_write, result_fd=result_read)

    def _send(self, child: _Child, message: Any) -> None:
        child.outbox += _frame(message)
        self._flush(child)

    def _flush(self, child: _Child) -> None:
        if child.dead or not child.outbox:
            return
        try:
            written = os.write(child.task_fd, child.outbox)
        except BlockingIOError:
            return  # the child is busy; the rest goes when its pipe has room
        except OSError:
            # Broken pipe: the child is gone. Its end of the result pipe tells the rest.
            child.outbox.clear()
            return
        del child.outbox[:written]

    def _kill(self, child: _Child) -> None:
        child.killed = True
        with contextlib.suppress(OSError):
            os.kill(child.pid, signal.SIGKILL)  # still our template's unreaped child: the pid is safe

    def _read(self, child: _Child) -> bool:
        """Take in what the child wrote; False once it has closed its end (it exited)."""
        while True:
            try:
                data = os.read(child.result_fd, _READ_SIZE)
            except BlockingIOError:
                return True
            if not data:
                return False
            for finished, started in child.reader.feed(data):
                if started is not None and finished and finished[-1][0] == child.running:
                    # Back to back (no idle wait between): how long the previous task took.
                    took = started[2] - child.running_since
                    child.pace = took if not child.pace else 0.8 * child.pace + 0.2 * took
                for seq, outcome in finished:
                    self._finished(child, seq, outcome)
                if started is not None:
                    self._started(child, *started)

    def _finished(self, child: _Child, seq: int, outcome: Outcome) -> None:
        if child.running == seq:
            child.running = None
        task_id = self._by_seq.pop(seq, None)
        if task_id is None:
            return  # stopped meanwhile: nobody waits for it
        held = self._held.pop(task_id)
        self._completed.append(Completion(task_id, outcome, started_at=held.start.at if held.start else None))

    def _started(self, child: _Child, seq: int, wall: float, monotonic: float) -> None:
        while child.queued and child.queued[0] != seq:
            child.queued.popleft()  # skipped on our word
        if child.queued:
            child.queued.popleft()
        child.running, child.running_since = seq, monotonic
        task_id = self._by_seq.get(seq)
        if task_id is None:
            # A task stopped before it started, whose "skip" came too late: stop it now.
            logger.warning("child pid=%d started a task that was stopped; killing the child", child.pid)
            self._kill(child)
            return
        self._held[task_id].start = TaskStart(at=_wall_datetime(wall), monotonic=monotonic)

    def _exited(self, child: _Child) -> None:
        """The child is gone: blame its running task, give its queued tasks to others, replace it."""
        child.dead = True
        if child.running is not None:
            task_id = self._by_seq.pop(child.running, None)
            if task_id is not None:
                held = self._held.pop(task_id)
                started_at = held.start.at if held.start else None
                if child.killed:
                    # Killed for another task that ended just before: this one is not to blame.
                    self._completed.append(Completion(task_id, None, started_at=started_at, released=True))
                else:
                    self._completed.append(Completion(task_id, None, started_at=started_at))
        queued = [seq for seq in child.queued if seq in self._by_seq]
        for seq in queued:
            self._held[self._by_seq[seq]].child = None
        self._backlog.extendleft(reversed(queued))
        with contextlib.suppress(OSError):
            os.kill(child.pid, signal.SIGKILL)
        os.close(child.task_fd)
        os.close(child.result_fd)
        code: int | None = None
        with contextlib.suppress(OSError, EOFError):  # the template is gone (init reaps its children)
            code = self._template.reap(child.pid)
        expected = (child.killed or self._closing) or (
            self.max_tasks_per_child and child.assigned >= self.max_tasks_per_child and child.running is None
        )
        if not expected:
            logger.error(
                "child process pid=%d died (exit code %s)%s",
                child.pid,
                code,
                f"; {len(queued)} queued task(s) go to other children" if queued else "",
            )
        if child in self._children:
            index = self._children.index(child)
            if self._closing:
                del self._children[index]
            else:
                self._children[index] = self._start_child()

    def _wait_for_exit(self, child: _Child) -> None:
        deadline = time.monotonic() + EXIT_WAIT_S
        while True:
            if not self._read(child):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            select.select([child.result_fd], [], [], remaining)
        self._exited(child)

    # -- handing out work -------------------------------------------------------------------

    def _room(self, child: _Child, now: float, *, refill: bool = False) -> int:
        """How many more tasks the child may hold now. With `refill`, none until its queue is down
        to half: a child is then topped up in one message instead of one task at a time."""
        if child.dead:
            return 0
        young = child.running is None or now - child.running_since < YOUNG_TASK_S
        depth = self.prefetch if not child.pace else min(self.prefetch, int(QUEUE_WINDOW_S / child.pace))
        capacity = 1 + depth if young else 1
        if refill and child.outstanding > 1 and child.outstanding * 2 > capacity:
            return 0
        room = capacity - child.outstanding
        if self.max_tasks_per_child:
            room = min(room, self.max_tasks_per_child - child.assigned)
        return max(room, 0)

    def _dispatch(self) -> None:
        if not self._backlog:
            return
        now = time.monotonic()
        batches: dict[int, list[tuple[int, ClaimedTask]]] = {}
        rooms = [self._room(child, now, refill=True) for child in self._children]
        while self._backlog:
            # The child with the most room: idle children first, so work spreads before it queues.
            best = max(range(len(rooms)), key=rooms.__getitem__, default=None)
            if best is None or rooms[best] <= 0:
                break
            seq = self._backlog.popleft()
            child = self._children[best]
            held = self._held[self._by_seq[seq]]
            held.child = child
            child.queued.append(seq)
            child.assigned += 1
            rooms[best] -= 1
            batches.setdefault(best, []).append((seq, held.task))
        for index, batch in batches.items():
            self._send(self._children[index], ("run", batch))

    # -- the TaskPool interface ---------------------------------------------------------------

    def free_slots(self) -> int:
        self._pump(0)  # notice children that exited meanwhile (and replace them) before counting
        now = time.monotonic()
        return max(sum(self._room(child, now) for child in self._children) - len(self._backlog), 0)

    def submit(self, task: ClaimedTask) -> None:
        self._seq += 1
        self._held[task.id] = _Held(seq=self._seq, task=task)
        self._by_seq[self._seq] = task.id
        self._backlog.append(self._seq)  # handed out in one message per child by the next wait()

    def start_of(self, task_id: str) -> TaskStart | None:
        held = self._held.get(task_id)
        return held.start if held else None

    def wait(self, timeout: float) -> list[Completion]:
        self._dispatch()
        self._pump(0)
        if not self._completed:
            self._pump(timeout)
        if self._completed and len(self._held) > 0:
            # Let the outcomes of tasks ending about now join this batch.
            self._pump(BATCH_WINDOW_S)
        completed, self._completed = self._completed, []
        return completed

    def _pump(self, timeout: float) -> None:
        """Wait up to `timeout` for children to write, then take in everything that arrived."""
        poller = select.poll()
        by_fd: dict[int, _Child] = {}
        for child in self._children:
            by_fd[child.result_fd] = child
            poller.register(child.result_fd, select.POLLIN)
            if child.outbox:
                by_fd[child.task_fd] = child
                poller.register(child.task_fd, select.POLLOUT)
        events = poller.poll(max(timeout, 0) * 1000)
        exited: list[_Child] = []
        for fd, _ in events:
            child = by_fd[fd]
            if fd == child.task_fd:
                self._flush(child)
            elif not self._read(child) and child not in exited:
                exited.append(child)
        for child in exited:
            self._exited(child)
        self._dispatch()

    def stop(self, task_id: str) -> bool:
        held = self._held.get(task_id)
        if held is None:
            return False
        child = held.child
        if child is not None and child.running == held.seq and not child.dead:
            self._read(child)  # it may have just finished
        if task_id not in self._held:
            return True  # it ended just now; its outcome is dropped as asked
        del self._held[task_id]
        del self._by_seq[held.seq]
        if child is None:
            self._backlog.remove(held.seq)
        elif child.running == held.seq:
            self._kill(child)
            child.running = None
            self._wait_for_exit(child)
        else:
            child.queued.remove(held.seq)
            self._send(child, ("skip", [held.seq]))
        return True

    def close(self, *, kill: bool) -> None:
        self._closing = True
        for child in list(self._children):
            if kill or child.outstanding:
                self._kill(child)
            else:
                self._send(child, ("stop",))
        for child in list(self._children):
            self._wait_for_exit(child)
        self._template.close()

    def kill_all(self) -> None:
        """Kill every child at once (from a signal handler: no waiting, no database)."""
        for pid in [child.pid for child in self._children] + [self._template.pid]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
