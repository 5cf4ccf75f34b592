"""The Ray launcher: every node a Ray actor, on this machine or on a cluster (`ray start`).

    launched = launch(program, launch_type="ray")                      # a local Ray instance
    launched = launch(program, launch_type="ray", address="head:6379") # join a cluster

Each node (or colocation of nodes) runs in a `_NodeHost` Ray actor with the resources of its
label (`NodeResources`: CPUs, GPUs, memory, custom resources, restarts) and enough concurrency
(`max_concurrency`) that the node's `run()` loop never starves the calls it serves. A handle
becomes a `NodeProxy`: `h.method(x)` blocks on `ray.get`; `h.futures.method(x)` returns a
`concurrent.futures.Future`. A Reverb node's handle is its address, a `ReplayAddress` that clients
re-resolve after a transport error.

Parameter broadcast: for a node that is a variable source (`get_variables` and
`variables_version`), its host publishes `(version, variables)` as ONE object in Ray's object
store at most once per `broadcast_period_seconds`, and only when the version changed. Clients ask
for the latest version (a small call) and fetch the object only when it is newer than theirs, so
N actors cost one serialisation per version, not N.

Fault tolerance: actors and evaluators restart without limit; every other label (learner,
replay, counter) restarts at most `max_restarts` times. A restarted node is rebuilt by its
constructor, which restores from `run_dir` (learner and counter checkpoints; Reverb from its
checkpoint, on the port pinned in `run_dir/replay/port`); calls in flight are retried by Ray
(`max_task_retries=-1`), including the node's `run()`, so its loop starts again by itself. A node
that dies with no restarts left, or whose `run()` raises, stops the whole program with a message
naming it. Stopping (the step limit, `antiphon.launch.stop()`, Ctrl-C) asks every node to stop,
waits up to `termination_notice_seconds`, takes the final replay checkpoint, kills every actor,
and shuts down the Ray instance this launcher started (a joined cluster keeps running).

Security (see README, "Running on a cluster"): a local instance is started with Ray token
authentication (`RAY_AUTH_MODE=token`) and a token file readable by its owner only, and without
the dashboard. Ray 2.60's own servers listen on all interfaces (Ray has no setting to bind them
to loopback), so token authentication, not the bind address, is what keeps others out; Reverb
also listens on all interfaces, without authentication.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import secrets
import stat
import sys
import threading
import time
from typing import Any

from antiphon.launch import program as lp
from antiphon.launch import threads

log = logging.getLogger(__name__)

# Labels whose nodes restart without limit (stateless workers); all others are bounded.
UNLIMITED_RESTART_LABELS = frozenset({"actor", "evaluator"})


@dataclasses.dataclass
class NodeResources:
    """What one node of a label asks Ray for.

    `memory` is in bytes (Ray's unit). `resources` are custom resources, e.g. {"gpu_host": 0.01}
    to pin a label to hosts started with `ray start --resources='{"gpu_host": 1}'`.
    `max_restarts` None means the launcher's default for the label (unlimited for actors and
    evaluators, `max_restarts` for the rest).
    """

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory: int | None = None
    resources: dict[str, float] = dataclasses.field(default_factory=dict)
    max_restarts: int | None = None

    @classmethod
    def from_dict(cls, label: str, values: dict[str, Any]) -> NodeResources:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(
                f"resources for '{label}': unknown key(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(fields))})"
            )
        resources = cls(**values)
        for name in ("num_cpus", "num_gpus"):
            if float(getattr(resources, name)) < 0:
                raise ValueError(f"resources for '{label}': {name} must be >= 0")
        return resources


def default_resources() -> dict[str, NodeResources]:
    """One CPU for each process that computes; none for the counter (it only answers calls)."""
    return {
        "replay": NodeResources(num_cpus=1),
        "learner": NodeResources(num_cpus=1),
        "actor": NodeResources(num_cpus=1),
        "evaluator": NodeResources(num_cpus=0),
        "counter": NodeResources(num_cpus=0),
    }


# ------------------------------------------------------------------------------------------------
# Inside a node process


class _NodeContext:
    control: Any = None
    label: str | None = None


_context = _NodeContext()


def in_node() -> bool:
    """True inside a node process started by this launcher."""
    return _context.control is not None


def request_stop_from_node() -> None:
    """`antiphon.launch.stop()` inside a node: tell the driver to stop the program."""
    import ray

    ray.get(_context.control.request_stop.remote(f"requested by node '{_context.label}'"))


class _Publisher:
    """Publishes a variable source's variables as one object in Ray's store per new version."""

    def __init__(self, source: Any, period_seconds: float):
        self._source = source
        self._period = period_seconds
        self._lock = threading.Lock()
        self._names: tuple[str, ...] = ()
        self._version = -1
        self._ref: Any = None
        self._stop = threading.Event()
        self.publishes = 0
        self.publish_seconds = 0.0
        self._thread = threading.Thread(target=self._loop, name="publisher", daemon=True)
        self._thread.start()

    def _publish(self) -> None:
        import jax
        import ray

        start = time.perf_counter()
        version = int(self._source.variables_version())
        values = jax.device_get(list(self._source.get_variables(list(self._names))))
        self._ref = ray.put(dict(zip(self._names, values, strict=True)))
        self._version = version
        self.publishes += 1
        self.publish_seconds += time.perf_counter() - start

    def latest(self, names: tuple[str, ...]) -> tuple[int, list[Any]]:
        with self._lock:
            if not set(names) <= set(self._names):
                self._names = tuple(sorted(set(self._names) | set(names)))
                self._publish()
            elif self._ref is None:
                self._publish()
            return self._version, [self._ref]  # in a list: Ray must not resolve it on return

    def version(self) -> int:
        with self._lock:
            return self._version

    def _loop(self) -> None:
        while not self._stop.wait(self._period):
            with self._lock:
                if not self._names:
                    continue
                try:
                    if int(self._source.variables_version()) != self._version:
                        self._publish()
                except Exception as e:  # noqa: BLE001 - keep serving the last version
                    log.warning("publishing variables failed: %r", e)

    def stop(self) -> None:
        self._stop.set()


def _set_cpu_dispatch(specs: list[dict[str, Any]]) -> None:
    """Synchronous JAX CPU dispatch in a process that hosts only nodes asking for it (actors and
    evaluators: a small policy call per step, where async dispatch's hand-off to a worker thread
    costs more than the computation). Process-wide, which is why the threads launcher, whose
    actors share the learner's process, leaves it alone."""
    constructors = [spec.get("constructor") for spec in specs]
    if constructors and all(getattr(c, "cpu_sync_dispatch", False) for c in constructors):
        import jax

        jax.config.update("jax_cpu_enable_async_dispatch", False)


class _NodeHost:
    """The Ray actor that runs one node, or several colocated ones (one thread each)."""

    def __init__(self, label: str, specs_ref: list[Any], control: Any, options: dict):
        import ray

        # The specs travel as an object the driver owns and keeps for the program's lifetime,
        # so a restarted host can always read them again (ray-project/ray#53727).
        specs: list[dict[str, Any]] = ray.get(specs_ref[0])

        _context.control = control
        _context.label = label
        logging.basicConfig(level=logging.WARNING)
        self._label = label
        self._stop_event = threading.Event()
        self._instances: dict[str, Any] = {}
        self._functions: dict[str, Any] = {}
        self._publishers: dict[str, _Publisher] = {}
        self._address: str | None = None
        self._ip = ray.util.get_node_ip_address()
        _set_cpu_dispatch(specs)
        for spec in specs:
            node_label = spec["label"]
            kind = spec["kind"]
            if kind == "reverb":
                service = threads._ReverbService(spec["node"], self._stop_event)
                self._address = f"{self._ip}:{service.server.port}"
                self._instances[node_label] = service
            elif kind == "function":
                self._functions[node_label] = (spec["function"], spec["args"], spec["kwargs"])
            else:
                instance = spec["constructor"](*spec["args"], **spec["kwargs"])
                self._instances[node_label] = instance
                if callable(getattr(instance, "get_variables", None)) and callable(
                    getattr(instance, "variables_version", None)
                ):
                    self._publishers[node_label] = _Publisher(
                        instance, options["broadcast_period_seconds"]
                    )
        # Registered last: a node counts as (re)started once it is built.
        ray.get(control.register.remote(label, os.getpid(), self._ip))

    # ---- introspection
    def describe(self) -> dict[str, Any]:
        import ray

        return {
            "pid": os.getpid(),
            "ip": self._ip,
            "node_id": ray.get_runtime_context().get_node_id(),
            "address": self._address,
            "variable_sources": sorted(self._publishers),
        }

    def address(self) -> str | None:
        return self._address

    # ---- serving
    def call(self, node_label: str, method: str, args: tuple, kwargs: dict) -> Any:
        instance = self._instances[node_label]
        if method.startswith("_"):
            raise AttributeError(f"node '{node_label}' does not serve private method '{method}'")
        attribute = getattr(instance, method)
        return attribute(*args, **kwargs) if callable(attribute) else attribute

    def latest_variables(self, node_label: str, names: tuple[str, ...]) -> tuple[int, list[Any]]:
        return self._publishers[node_label].latest(tuple(names))

    def latest_version(self, node_label: str) -> int:
        publisher = self._publishers[node_label]
        version = publisher.version()
        if version < 0:  # nothing published yet: the source's own version
            return int(self._instances[node_label].variables_version())
        return version

    def broadcast_stats(self, node_label: str) -> dict[str, float]:
        publisher = self._publishers[node_label]
        return {"publishes": publisher.publishes, "publish_seconds": publisher.publish_seconds}

    # ---- running and stopping
    def run(self, node_label: str) -> str:
        """The node's main loop; then waits for the program to stop, so that the driver's call
        stays pending for as long as the host should live: a host that dies with no restarts
        left fails this call, which is how the driver notices (also for nodes with no loop)."""
        if node_label in self._functions:
            function, args, kwargs = self._functions[node_label]
            function(*args, **kwargs)
        else:
            run = getattr(self._instances[node_label], "run", None)
            if callable(run):
                run()
        self._stop_event.wait()
        return "done"

    def stop(self) -> None:
        self._stop_event.set()
        for publisher in self._publishers.values():
            publisher.stop()
        threads.call_on_nodes(self._instances, "stop")

    def close(self) -> None:
        threads.call_on_nodes(self._instances, "close")
        for instance in self._instances.values():
            if isinstance(instance, threads._ReverbService):
                instance.stop()  # final checkpoint, then the server goes away


# ------------------------------------------------------------------------------------------------
# Clients


# Methods called many times a second (variable polls, node calls). Ray's GCS keeps an event per
# task call until its buffer (100,000 tasks by default) is full: the 60-minute soak measured the
# GCS growing by 290 MiB over 28 minutes, then flat. These calls carry no events.
_HOT_METHODS = ("call", "latest_variables", "latest_version", "broadcast_stats", "address")


def _serving_host_class() -> type:
    import ray

    if not getattr(_NodeHost, "_hot_methods_quiet", False):
        for name in _HOT_METHODS:
            method = getattr(_NodeHost, name)
            setattr(_NodeHost, name, ray.method(enable_task_events=False)(method))
        _NodeHost._hot_methods_quiet = True
    return _NodeHost


class _ReplayResolver:
    """Asks the replay node's host for its current address (picklable)."""

    def __init__(self, host: Any):
        self._host = host

    def __call__(self) -> str:
        import ray

        return ray.get(self._host.address.remote(), timeout=60)


class _Futures:
    def __init__(self, proxy: NodeProxy):
        self._proxy = proxy

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)
        proxy = self._proxy

        def call(*args: Any, **kwargs: Any) -> concurrent.futures.Future:
            return proxy._host.call.remote(proxy._label, method, args, kwargs).future()

        return call


class NodeProxy:
    """A client of a node on Ray: `proxy.method(x)` blocks; `proxy.futures.method(x)` does not."""

    def __init__(self, host: Any, label: str):
        self._host = host
        self._label = label

    def __reduce__(self):
        return (type(self), (self._host, self._label))

    @property
    def futures(self) -> _Futures:
        return _Futures(self)

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)
        import ray

        host, label = self._host, self._label

        def call(*args: Any, **kwargs: Any) -> Any:
            return ray.get(host.call.remote(label, method, args, kwargs))

        return call

    def __repr__(self) -> str:
        return f"NodeProxy({self._label!r})"


class VariableSourceProxy(NodeProxy):
    """A variable source's client: versions by a small call, variables from the object store.

    If the source died (its objects went with it), the call is asked again: Ray holds it until
    the restarted source answers.
    """

    def variables_version(self) -> int:
        import ray

        return int(ray.get(self._host.latest_version.remote(self._label)))

    def get_variables(self, names):
        import ray

        names = tuple(names)
        deadline = time.monotonic() + 600
        while True:
            try:
                _, (ref,) = ray.get(self._host.latest_variables.remote(self._label, names))
                values = ray.get(ref)
                return [values[name] for name in names]
            except (ray.exceptions.ObjectLostError, ray.exceptions.OwnerDiedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def broadcast_stats(self) -> dict[str, float]:
        import ray

        return ray.get(self._host.broadcast_stats.remote(self._label))


# ------------------------------------------------------------------------------------------------
# The driver side


class _ProgramControl:
    """A small actor: nodes ask it to stop the program; it counts every node (re)start."""

    def __init__(self):
        self._stop_reason: str | None = None
        self._starts: dict[str, list[tuple[int, str]]] = {}

    def request_stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason

    def stop_reason(self) -> str | None:
        return self._stop_reason

    def register(self, label: str, pid: int, ip: str) -> int:
        self._starts.setdefault(label, []).append((pid, ip))
        return len(self._starts[label])

    def starts(self) -> dict[str, list[tuple[int, str]]]:
        return self._starts


def prepare_private_instance() -> None:
    """Before `ray.init()` of a private local instance: token authentication (a token file
    unless RAY_AUTH_TOKEN is set), with Ray's config re-read so that the driver and the servers
    it starts agree (Ray reads RAY_AUTH_MODE when first imported; Ray's own tests do the same)."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if os.environ.get("RAY_AUTH_MODE") == "token" and not os.environ.get("RAY_AUTH_TOKEN"):
        ensure_token_file()
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def ensure_token_file() -> str:
    """The Ray auth token file (Ray's default path, or `RAY_AUTH_TOKEN_PATH`), owner-only.

    Created with a fresh random token if missing; an existing one with group or other
    permissions is tightened to 0600.
    """
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(
        os.path.expanduser("~"), ".ray", "auth_token"
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        os.chmod(path, 0o600)
        log.warning("tightened permissions of %s from %o to 600", path, mode)
    return path


def _node_specs(node: lp.Node) -> list[dict[str, Any]]:
    if isinstance(node, lp.MultiThreadingColocation):
        return [spec for inner in node.nodes for spec in _node_specs(inner)]
    if isinstance(node, lp.ReverbNode):
        return [{"label": node.label, "kind": "reverb", "node": _detached_reverb_node(node)}]
    args = lp.dereference(node.args)
    kwargs = lp.dereference(node.kwargs)
    if isinstance(node, lp.PyNode):
        return [
            {
                "label": node.label,
                "kind": "function",
                "function": node.function,
                "args": args,
                "kwargs": kwargs,
            }
        ]
    return [
        {
            "label": node.label,
            "kind": "class",
            "constructor": node.constructor,
            "args": args,
            "kwargs": kwargs,
        }
    ]


def _detached_reverb_node(node: lp.ReverbNode) -> lp.ReverbNode:
    """A copy without the (unpicklable) handle, for shipping to the host."""
    copy = object.__new__(lp.ReverbNode)
    copy.__dict__.update({k: v for k, v in node.__dict__.items() if k != "handle"})
    copy.args, copy.kwargs = (), {}
    return copy


def _group_of(node: lp.Node, program: lp.Program) -> str:
    for group, nodes in program.groups.items():
        if any(n is node for n in nodes):
            return group
    raise KeyError(node.label)


class LaunchedRayProgram:
    """A program running on Ray: `.wait()`, `.shutdown()`, `.client(label)`, `.stop_requested`."""

    def __init__(
        self,
        program: lp.Program,
        address: str | None = None,
        resources: dict[str, NodeResources | dict] | None = None,
        max_restarts: int = 3,
        broadcast_period_seconds: float = 0.2,
        termination_notice_seconds: float = 30.0,
        max_concurrency: int = 32,
        local_num_cpus: int | None = None,
    ):
        self.program = program
        self._address = address
        self._resources = default_resources()
        for label, value in (resources or {}).items():
            self._resources[label] = (
                value if isinstance(value, NodeResources) else NodeResources.from_dict(label, value)
            )
        unknown = sorted(set(resources or {}) - set(program.groups))
        if unknown:
            raise ValueError(
                f"resources given for label(s) not in the program: {', '.join(unknown)} "
                f"(labels: {', '.join(program.groups)})"
            )
        self._max_restarts = max_restarts
        self._broadcast_period = broadcast_period_seconds
        self._termination_notice = termination_notice_seconds
        self._max_concurrency = max_concurrency
        self._local_num_cpus = local_num_cpus
        self._started_ray = False
        self._hosts: dict[str, Any] = {}  # host label -> actor handle
        self._spec_refs: list[Any] = []
        self._host_labels: dict[str, str] = {}  # node label -> host label
        self._clients: dict[str, Any] = {}
        self._run_refs: dict[Any, tuple[str, str]] = {}  # ObjectRef -> (host label, node label)
        self._restart_limits: dict[str, int] = {}  # host label -> Ray max_restarts (-1: none)
        self._errors: list[tuple[str, str]] = []
        self._stop_requested = threading.Event()
        self._shutdown_done = False
        self._control: Any = None
        self._monitor: threading.Thread | None = None
        self.restarts: dict[str, int] = {}

    # ---- starting
    def start(self) -> LaunchedRayProgram:
        import ray

        if not ray.is_initialized():
            self._init_ray()
        try:
            control_cls = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(
                _ProgramControl
            )
            self._control = control_cls.options(
                name=None, scheduling_strategy=self._driver_node_strategy()
            ).remote()
            for node in self.program.ordered_nodes():
                self._start_host(node)
            for host_label, host in self._hosts.items():
                for spec_label in self._labels_in_host(host_label):
                    ref = host.run.remote(spec_label)
                    self._run_refs[ref] = (host_label, spec_label)
        except BaseException:
            self.shutdown()
            raise
        self._monitor = threading.Thread(target=self._watch, name="ray-monitor", daemon=True)
        self._monitor.start()
        return self

    def _init_ray(self) -> None:
        import ray

        env_vars = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        if self._address is None:
            # A private instance: token authentication, no dashboard, this machine's cores
            # (oversubscribed if the program asks for more).
            prepare_private_instance()
            needed = sum(
                self._resources_for(group).num_cpus * len(nodes)
                for group, nodes in self.program.groups.items()
            )
            num_cpus = self._local_num_cpus or max(os.cpu_count() or 1, int(needed + 0.999))
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                namespace="antiphon",
                runtime_env={"env_vars": env_vars},
                log_to_driver=True,
                logging_level=logging.WARNING,
                # Without a dashboard nothing reads Ray's task events, but the GCS buffers up to
                # 100,000 of them (~300 MiB, the 60-minute soak's only growing process); keep a few.
                _system_config={"task_events_max_num_task_in_gcs": 2_000},
            )
            self._started_ray = True
        else:
            if os.environ.get("RAY_AUTH_MODE") != "token":
                log.warning(
                    "joining %s without RAY_AUTH_MODE=token: the cluster accepts anyone who "
                    "reaches its ports (see README, Running on a cluster)",
                    self._address,
                )
            ray.init(
                address=self._address,
                namespace="antiphon",
                runtime_env={"env_vars": env_vars},
                logging_level=logging.WARNING,
            )
            self._started_ray = True  # our connection (the cluster itself keeps running)

    def _driver_node_strategy(self):
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)

    def _resources_for(self, group: str) -> NodeResources:
        return self._resources.get(group, NodeResources())

    def _labels_in_host(self, host_label: str) -> list[str]:
        return [n for n, h in self._host_labels.items() if h == host_label]

    def _start_host(self, node: lp.Node) -> None:
        import ray

        group = _group_of(node, self.program)
        res = self._resources_for(group)
        restarts = self._max_restarts_for(group)
        self._restart_limits[node.label] = restarts
        env_vars = {"TF_CPP_MIN_LOG_LEVEL": "2"}
        if res.num_gpus <= 0:
            env_vars["JAX_PLATFORMS"] = "cpu"  # actors run JAX on CPU; TF is CPU-only anyway
            env_vars["CUDA_VISIBLE_DEVICES"] = ""
        options: dict[str, Any] = {
            "num_cpus": res.num_cpus,
            "num_gpus": res.num_gpus,
            "resources": dict(res.resources),
            "max_restarts": restarts,
            "max_task_retries": -1,
            "max_concurrency": self._max_concurrency,
            "runtime_env": {
                "env_vars": {
                    **env_vars,
                    "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
                }
            },
            "name": f"{self.program.name}/{node.label}/{os.getpid()}",
        }
        if res.memory:
            options["memory"] = res.memory
        host_cls = ray.remote(_serving_host_class())
        specs = _node_specs(node)
        specs_ref = ray.put(specs)
        self._spec_refs.append(specs_ref)
        host = host_cls.options(**options).remote(
            node.label,
            [specs_ref],  # in a list: Ray passes the reference, not the value
            self._control,
            {"broadcast_period_seconds": self._broadcast_period},
        )
        self._hosts[node.label] = host
        description = ray.get(host.describe.remote())
        for spec in specs:
            self._host_labels[spec["label"]] = node.label
        self._bind(node, host, description)

    def _bind(self, node: lp.Node, host: Any, description: dict[str, Any]) -> None:
        from antiphon.replay.clients import ReplayAddress

        if isinstance(node, lp.MultiThreadingColocation):
            for inner in node.nodes:
                self._bind(inner, host, description)
            node.handle._bind(None)
            return
        if isinstance(node, lp.ReverbNode):
            client: Any = ReplayAddress(description["address"], _ReplayResolver(host))
        elif isinstance(node, lp.PyNode):
            client = None
        elif node.label in description["variable_sources"]:
            client = VariableSourceProxy(host, node.label)
        else:
            client = NodeProxy(host, node.label)
        self._clients[node.label] = client
        node.handle._bind(client)

    # ---- watching
    def _watch(self) -> None:
        import ray

        while not self._stop_requested.is_set():
            pending = list(self._run_refs)
            if pending:
                ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0.5)
            else:
                ready = []
                time.sleep(0.5)
            for ref in ready:
                host_label, node_label = self._run_refs.pop(ref)
                try:
                    ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    if self._stop_requested.is_set():
                        return
                    limit = self._restart_limits[host_label]
                    budget = "unlimited" if limit < 0 else str(limit)
                    self._fail(
                        node_label,
                        f"died and cannot restart (restart budget {budget} spent): "
                        f"{str(e).splitlines()[0]}",
                    )
                except ray.exceptions.RayTaskError as e:
                    if self._stop_requested.is_set():
                        return
                    self._fail(node_label, f"raised {e.cause!r}" if e.cause else str(e))
            try:
                reason = ray.get(self._control.stop_reason.remote(), timeout=30)
                starts = ray.get(self._control.starts.remote(), timeout=30)
            except Exception as e:  # noqa: BLE001 - the control actor restarting
                log.warning("program control unreachable: %r", e)
                continue
            for label, entries in starts.items():
                restarts = len(entries) - 1
                if restarts > self.restarts.get(label, 0):
                    log.warning("node '%s' restarted (%d so far)", label, restarts)
                self.restarts[label] = restarts
            if reason is not None:
                self._stop_requested.set()

    def _max_restarts_for(self, group: str) -> int:
        """Ray's `max_restarts` for a label's nodes: its own setting, else -1 (no limit) for
        actors and evaluators, else the launcher's bound."""
        res = self._resources_for(group)
        if res.max_restarts is not None:
            return res.max_restarts
        return -1 if group in UNLIMITED_RESTART_LABELS else self._max_restarts

    def _fail(self, label: str, message: str) -> None:
        log.error("node '%s' %s", label, message)
        self._errors.append((label, message))
        self._stop_requested.set()

    # ---- the launched-program interface (same as the threads launcher)
    @property
    def stop_requested(self) -> bool:
        return self._stop_requested.is_set()

    def request_stop(self) -> None:
        self._stop_requested.set()

    def client(self, label: str) -> Any:
        return self._clients[label]

    @property
    def program_labels(self) -> list[str]:
        return list(self._host_labels)

    def describe(self, label: str) -> dict[str, Any]:
        """Where node `label` runs: pid, ip, Ray node id (and the address of a Reverb node)."""
        import ray

        return ray.get(self._hosts[self._host_labels[label]].describe.remote())

    def wait(self, timeout: float | None = None) -> None:
        """Block until the program stops (or `timeout`), then shut down; re-raise a failure."""
        self._stop_requested.wait(timeout)
        self.shutdown()
        if self._errors:
            label, message = self._errors[0]
            raise RuntimeError(f"node '{label}' {message}")

    def shutdown(self) -> None:
        import ray

        if self._shutdown_done:
            return
        self._shutdown_done = True
        self._stop_requested.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5)
        deadline = time.monotonic() + self._termination_notice
        replay_hosts = {
            self._host_labels[n.label]
            for n in self.program.nodes()
            if isinstance(n, lp.ReverbNode) and n.label in self._host_labels
        }
        others = {label: h for label, h in self._hosts.items() if label not in replay_hosts}
        # 1. Every node but the replay stops its loop (the learner saves its checkpoint).
        _wait_all([h.stop.remote() for h in others.values()], deadline)
        _wait_all([ref for ref in self._run_refs], deadline)
        _wait_all([h.close.remote() for h in others.values()], deadline)
        # 2. The replay takes its final checkpoint and stops.
        _wait_all([self._hosts[label].close.remote() for label in replay_hosts], deadline)
        # 3. Nothing is left running.
        for host in self._hosts.values():
            try:
                ray.kill(host, no_restart=True)
            except Exception:  # noqa: BLE001, S110 - already gone
                pass
        if self._control is not None:
            try:
                ray.kill(self._control, no_restart=True)
            except Exception:  # noqa: BLE001, S110
                pass
        if self._started_ray:
            ray.shutdown()


def _wait_all(refs: list[Any], deadline: float) -> None:
    import ray

    if not refs:
        return
    remaining = max(0.1, deadline - time.monotonic())
    ready, not_ready = ray.wait(refs, num_returns=len(refs), timeout=remaining)
    for ref in ready:
        try:
            ray.get(ref)
        except Exception as e:  # noqa: BLE001 - reported, not fatal, during shutdown
            log.debug("during shutdown: %r", e)
    if not_ready:
        log.warning("%d node call(s) did not finish within the termination notice", len(not_ready))


def launch(program: lp.Program, **kwargs: Any) -> LaunchedRayProgram:
    """Start every node of `program` as a Ray actor; see `LaunchedRayProgram` for options."""
    return LaunchedRayProgram(program, **kwargs).start()
