"""Container metadata from OCI bundles (containerd, CRI-O, Kata) and local reports.

A bundle is a directory with ``config.json``; it is matched to a CSM
container by its init pid (containerd's ``init.pid``, CRI-O's ``pidfile``,
or ``state.json``) or by its rootfs being the process's root.
"""

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_BUNDLE_ROOTS = (
    Path("/run/containerd/io.containerd.runtime.v2.task"),
    Path("/run/containers/storage/overlay-containers"),
    Path("/run/kata-containers/shared/containers"),
)
PID_FILES = ("init.pid", "pidfile", "userdata/pidfile")
MAX_BUNDLE_DEPTH = 3
MAX_CONFIG_BYTES = 4 << 20
MAX_LABELS = 64
MAX_FIELD_BYTES = 1024

# Annotation names by runtime, in order of preference.
POD_NAMESPACE_KEYS = (
    "io.kubernetes.cri.sandbox-namespace",
    "io.kubernetes.pod.namespace",
)
POD_NAME_KEYS = ("io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name")
CONTAINER_NAME_KEYS = (
    "io.kubernetes.cri.container-name",
    "io.kubernetes.container.name",
)
IMAGE_KEYS = (
    "io.kubernetes.cri.image-name",
    "io.kubernetes.cri-o.ImageName",
    "io.kubernetes.cri-o.Image",
)
CRIO_LABELS_KEY = "io.kubernetes.cri-o.Labels"


@dataclass(slots=True)
class ContainerMetadata:
    """Who a container is, as the runtime or a local reporter describes it."""

    pod_namespace: str = ""
    pod_name: str = ""
    container_name: str = ""
    image: str = ""
    labels: list[str] = field(default_factory=list)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> "ContainerMetadata":
        """Build from a report; unknown keys are ignored, sizes are capped."""

        def text(key: str) -> str:
            value = data.get(key, "")
            return str(value)[:MAX_FIELD_BYTES] if value is not None else ""

        raw_labels = data.get("labels", [])
        if isinstance(raw_labels, dict):
            raw_labels = [f"{key}={value}" for key, value in raw_labels.items()]
        labels = [
            str(label)[:MAX_FIELD_BYTES] for label in list(raw_labels)[:MAX_LABELS]
        ]
        return cls(
            pod_namespace=text("pod_namespace"),
            pod_name=text("pod_name"),
            container_name=text("container_name"),
            image=text("image"),
            labels=labels,
        )


def _first(annotations: dict[str, str], keys: tuple[str, ...]) -> str:
    for key in keys:
        if annotations.get(key):
            return str(annotations[key])[:MAX_FIELD_BYTES]
    return ""


def metadata_from_config(config: dict[str, Any]) -> ContainerMetadata:
    """Read the Kubernetes annotations of an OCI ``config.json``."""
    annotations = config.get("annotations") or {}
    labels: list[str] = []
    crio_labels = annotations.get(CRIO_LABELS_KEY)
    if crio_labels:
        try:
            parsed = json.loads(crio_labels)
            labels = [f"{key}={value}" for key, value in parsed.items()]
        except (ValueError, AttributeError):
            logger.debug("unreadable CRI-O labels annotation")
    return ContainerMetadata(
        pod_namespace=_first(annotations, POD_NAMESPACE_KEYS),
        pod_name=_first(annotations, POD_NAME_KEYS),
        container_name=_first(annotations, CONTAINER_NAME_KEYS),
        image=_first(annotations, IMAGE_KEYS),
        labels=labels[:MAX_LABELS],
    )


def _bundle_pid(bundle: Path) -> int:
    for name in PID_FILES:
        try:
            return int((bundle / name).read_text().strip())
        except (OSError, ValueError):
            continue
    try:
        state = json.loads((bundle / "state.json").read_text())
        return int(state.get("pid", 0))
    except (OSError, ValueError, AttributeError):
        return 0


def _bundle_rootfs(bundle: Path, config: dict[str, Any]) -> str:
    root = (config.get("root") or {}).get("path", "rootfs")
    path = Path(root) if os.path.isabs(root) else bundle / root
    return os.path.realpath(path)


class BundleIndex:
    """Finds the OCI bundle of a container by its init pid or root directory."""

    def __init__(self, roots: tuple[Path, ...] = DEFAULT_BUNDLE_ROOTS) -> None:
        self.roots = roots

    def _bundles(self) -> list[Path]:
        found = []
        for root in self.roots:
            for dirpath, dirnames, filenames in os.walk(root):
                depth = len(Path(dirpath).relative_to(root).parts)
                if "config.json" in filenames:
                    found.append(Path(dirpath))
                    dirnames.clear()
                elif depth >= MAX_BUNDLE_DEPTH:
                    dirnames.clear()
        return found

    def lookup(self, pids: set[int], root_dir: str) -> ContainerMetadata | None:
        """Metadata of the bundle whose init pid or rootfs matches the container."""
        for bundle in self._bundles():
            config = self._config(bundle)
            if config is None:
                continue
            matches = _bundle_pid(bundle) in pids
            matches = matches or _bundle_rootfs(bundle, config) == root_dir
            if matches:
                logger.info("container metadata from OCI bundle %s", bundle)
                return metadata_from_config(config)
        return None

    @staticmethod
    def _config(bundle: Path) -> dict[str, Any] | None:
        path = bundle / "config.json"
        try:
            if path.stat().st_size > MAX_CONFIG_BYTES:
                return None
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None
