"""The Bento as an OCI image, with no Docker daemon: `python -m deploy.container base|build|run|remove`.

- `base` builds the base image the bentofile names (`docker.base_image`) when it is not in buildah's store yet:
  `debootstrap --variant=minbase` of Debian 12 with its python3.11, from the Debian mirror apt uses on this machine
  (no image registry is needed), and this machine's CA bundle (so uv inside the build trusts the same TLS chain
  as the host: here PyPI is reached through an intercepting egress proxy).
- `build BENTO_TAG` runs BentoML's own containerize path, `bentoml containerize --backend buildah`: the Dockerfile
  BentoML generates from the bentofile (FROM the base image, uv venv, the Bento's requirements.txt, i.e. the `serve`
  group pinned from uv.lock, installed from the package index, `USER bentoml`). This machine's `uv` binary is
  bind-mounted into the build (BentoML's Dockerfile installs with uv, and would otherwise need pip to get it), so
  it is in no layer of the image.
- `run IMAGE` serves the image on a loopback port with `buildah run --isolation chroot`: a working container is
  created from the image, the prediction log and compiled-forest cache are bind-mounted from the host, and with
  `--follow-registry` the registry folder and the model store are mounted read-only so a promotion reaches the
  container exactly as it reaches `bentoml serve`. SIGTERM/SIGINT stop the server and remove the working container.
- `remove IMAGE...` removes images (and any working container left on them).

buildah runs with chroot isolation (no OCI runtime needed: podman's refuses this sandbox's rlimits) and the overlay
storage driver where it works, else vfs (`storage_driver()`); $FLIGHTOPS_STORAGE_DRIVER and $BUILDAH_ISOLATION
override them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines import io

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# What the service is (its bentofile and pinned requirements) lives with it in services/; this folder builds it.
BENTOFILE = PROJECT_ROOT / io.BENTOFILE
SUITE = "bookworm"                 # Debian 12: python3 is 3.11, as the Bento's python_version
BASE_PACKAGES = ("python3", "libgomp1")   # python3.11; LightGBM's OpenMP runtime. uv makes the venv: no pip
TRIMMED = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt",
           "var/lib/apt/lists", "var/log")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Where `run` mounts the host folders inside the container, and the params file it writes for them.
MOUNT_ROOT = Path("/var/lib/flightops")
CONTAINER_PARAMS = Path("/etc/flightops") / io.PARAMS_FILE
LABEL = "org.flightops.role"
RECIPE_LABEL = "org.flightops.base-recipe"   # what the base image was built from: a changed recipe rebuilds it


class ContainerError(RuntimeError):
    """A build or run step failed; the message carries the tool's own output."""


# --- buildah ------------------------------------------------------------------------------------------------------

GRAPH_ROOT = Path("/var/lib/containers/storage")


def storage_driver() -> str:
    """$FLIGHTOPS_STORAGE_DRIVER, else overlay where the kernel has it and the store is not itself on overlayfs (a
    container's root: overlay on overlay is refused), else vfs, which works everywhere but copies every layer in
    full (measured here: the image build ~14 min under load vs ~2.5 min with overlay; docs/operations.md)."""
    chosen = os.environ.get("FLIGHTOPS_STORAGE_DRIVER")
    if chosen:
        return chosen
    with contextlib.suppress(OSError):
        kernel_has_overlay = "\toverlay\n" in Path("/proc/filesystems").read_text()
        store = next((p for p in (GRAPH_ROOT, *GRAPH_ROOT.parents) if p.exists()), Path("/"))
        on_overlay = subprocess.run(["stat", "-f", "-c", "%T", str(store)], capture_output=True,
                                    text=True).stdout.strip() == "overlayfs"
        if kernel_has_overlay and not on_overlay:
            return "overlay"
    return "vfs"


def storage_conf() -> Path:
    """A containers-storage.conf selecting the storage driver (`storage_driver()`) for the default root-owned
    store. buildah 1.28 ignores $STORAGE_DRIVER, and `bentoml containerize` cannot pass buildah's global
    --storage-driver flag, so the driver is set through $CONTAINERS_STORAGE_CONF."""
    driver = storage_driver()
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flightops"
    path = folder / f"containers-storage-{driver}.conf"
    text = (f'[storage]\ndriver = "{driver}"\nrunroot = "/run/containers/storage"\n'
            f'graphroot = "{GRAPH_ROOT}"\n')
    if not path.exists() or path.read_text() != text:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def buildah_env() -> dict[str, str]:
    """The environment every buildah call gets, here and inside `bentoml containerize`."""
    env = dict(os.environ)
    if "CONTAINERS_STORAGE_CONF" not in env:
        env["CONTAINERS_STORAGE_CONF"] = str(storage_conf())
    env.setdefault("BUILDAH_ISOLATION", "chroot")
    env.setdefault("BUILDAH_LAYERS", "true")   # reuse unchanged layers: a rebuild with the same requirements is quick
    env.setdefault("BUILDAH_FORMAT", "oci")
    return env


def buildah(*args: str, check: bool = True) -> str:
    binary = shutil.which("buildah")
    if binary is None:
        raise ContainerError("buildah is not installed (Debian: apt-get install buildah debootstrap)")
    result = subprocess.run([binary, *args], env=buildah_env(), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise ContainerError(f"buildah {' '.join(args)} failed ({result.returncode}):\n{result.stderr.strip()}")
    return result.stdout.strip()


def image_exists(image: str) -> bool:
    return subprocess.run([shutil.which("buildah") or "buildah", "inspect", "--type", "image", image],
                          env=buildah_env(), capture_output=True).returncode == 0


_UNITS = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


def image_size(image: str) -> int:
    """Bytes of the image's layers (uncompressed, on disk), from `buildah images`' figure (3 significant digits)."""
    for entry in json.loads(buildah("images", "--json", image) or "[]"):
        number, unit = re.fullmatch(r"([\d.]+)\s*([kKMGT]?B)", str(entry["size"]).strip()).groups()
        return int(float(number) * _UNITS[unit])
    raise ContainerError(f"no image {image}")


def image_config(image: str) -> dict:
    """The OCI config of an image: User, WorkingDir, Env, Entrypoint."""
    return json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]


def remove_images(*images: str) -> None:
    """Remove images and any working container created from them; missing ones are not an error."""
    for image in images:
        if not image_exists(image):
            continue
        image_id = buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", image)
        for entry in json.loads(buildah("containers", "--all", "--json") or "[]") or []:
            if entry.get("imageid") == image_id or entry.get("imagename") == image:
                buildah("rm", entry["id"], check=False)
        buildah("rmi", "--force", image)


# --- the base image -----------------------------------------------------------------------------------------------

def base_image_name(bentofile: Path = BENTOFILE) -> str:
    """The base image the bentofile builds on (`docker.base_image`): one name for the build and the test."""
    import yaml

    name = (yaml.safe_load(bentofile.read_text()).get("docker") or {}).get("base_image")
    if not name:
        raise ContainerError(f"{bentofile} names no docker.base_image")
    return name


def apt_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt uses here (the first source serving the `SUITE` suite), deb822 or one-line format."""
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.+)$", stanza, flags=re.M))
                if "deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split():
                    return fields["URIs"].split()[0]
        elif path.suffix == ".list":
            for line in text.splitlines():
                parts = re.sub(r"\[[^]]*\]", "", line).split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                    return parts[1]
    raise ContainerError(f"no apt source for Debian {SUITE} in {apt_dir}: pass --mirror")


def _uv_binary() -> Path:
    """The uv executable itself (a pyenv shim or wrapper script would not run inside the image)."""
    # On PATH; beside the interpreter this venv was made from (where scripts/bootstrap.sh pip-installs uv, while
    # PATH may only offer a pyenv shim); or as the `uv` package's binary.
    candidates = [shutil.which("uv"), str(Path(sys.prefix) / "bin" / "uv"), str(Path(sys.base_prefix) / "bin" / "uv")]
    with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
        candidates.append(subprocess.run(["python3", "-c", "import uv; print(uv.find_uv_bin())"], check=True,
                                         capture_output=True, text=True).stdout.strip())
    for candidate in filter(None, candidates):
        path = Path(candidate).resolve()
        if path.is_file() and path.read_bytes()[:4] == b"\x7fELF":
            return path
    raise ContainerError("no uv executable found (scripts/bootstrap.sh installs it)")


@dataclass(frozen=True)
class BaseImageBuild:
    image: str
    seconds: float
    size_bytes: int


def build_base_image(image: str, *, mirror: str | None = None, work_dir: Path | None = None,
                     ca_bundle: Path = HOST_CA_BUNDLE) -> BaseImageBuild:
    """debootstrap a minimal Debian 12 + python3.11 and commit it as `image` (~1.5-4 min, ~120 MB)."""
    if shutil.which("debootstrap") is None:
        raise ContainerError("debootstrap is not installed (Debian: apt-get install debootstrap)")
    mirror = mirror or apt_mirror()
    begin = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flightops-base-", dir=work_dir) as temp:
        rootfs, archive = Path(temp) / "rootfs", Path(temp) / "rootfs.tar"
        result = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                                 SUITE, str(rootfs), mirror], capture_output=True, text=True)
        if result.returncode != 0:
            raise ContainerError(f"debootstrap {SUITE} from {mirror} failed:\n{result.stdout[-3000:]}"
                                 f"{result.stderr[-2000:]}")
        for relative in TRIMMED:  # documentation, locales and apt's caches: not needed to serve
            target = rootfs / relative
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir()
        if ca_bundle.is_file():
            (rootfs / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
            shutil.copy2(ca_bundle, rootfs / "etc/ssl/certs/ca-certificates.crt")
        with tarfile.open(archive, "w") as tar:  # numeric owners and modes kept; /dev, /proc, /sys left empty
            for entry in sorted(rootfs.iterdir()):
                tar.add(entry, arcname=entry.name,
                        filter=lambda info: None if re.match(r"(dev|proc|sys)/.", info.name) else info)
        container = buildah("from", "scratch")
        try:
            buildah("add", container, str(archive), "/")
            buildah("config", "--env", "LANG=C.UTF-8",
                    "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "--env", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                    "--env", "UV_PYTHON_DOWNLOADS=never", "--cmd", "python3",
                    "--label", f"{LABEL}=base", "--label", f"{RECIPE_LABEL}={base_recipe()}",
                    "--label", f"org.flightops.debian-mirror={mirror}", container)
            buildah("commit", "--rm", container, image)
        except ContainerError:
            buildah("rm", container, check=False)
            raise
    return BaseImageBuild(image, time.monotonic() - begin, image_size(image))


def base_recipe() -> str:
    """Suite, packages and trimmed folders of the base image, as one short label value."""
    import hashlib

    return hashlib.sha256(json.dumps([SUITE, BASE_PACKAGES, TRIMMED]).encode()).hexdigest()[:16]


def ensure_base_image(image: str | None = None, *, mirror: str | None = None) -> BaseImageBuild | None:
    """Build the base image when buildah's store lacks it or holds one built from another recipe; None when the
    stored one is current (the cache every later build and test run reuses)."""
    image = image or base_image_name()
    if image_exists(image):
        if (image_config(image).get("Labels") or {}).get(RECIPE_LABEL) == base_recipe():
            return None
        remove_images(image)
    return build_base_image(image, mirror=mirror)


# --- containerize -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageBuild:
    image: str
    seconds: float
    size_bytes: int
    base: BaseImageBuild | None


def default_image_name(bento_tag: str) -> str:
    return "localhost/" + bento_tag if "/" not in bento_tag else bento_tag


def containerize(bento_tag: str, image: str | None = None) -> ImageBuild:
    """`bentoml containerize --backend buildah` of a built Bento, from the bentofile's base image (built first
    when missing). The Python packages are installed inside the build from the Bento's env/python/requirements.txt."""
    base = ensure_base_image()
    image = image or default_image_name(bento_tag)
    begin = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flightops-containerize-") as context_root:
        # BentoML 1.4 copies the Bento to a temp build context and then refuses to read the bentofile's
        # dockerfile_template from there when that temp folder is outside the current directory: run it with both
        # the temp folder ($TMPDIR) and the current directory in one fresh folder.
        env = {**buildah_env(), "TMPDIR": context_root}
        result = subprocess.run([sys.executable, "-m", "bentoml", "containerize", "--backend", "buildah",
                                 "--image-tag", image, "--opt", f"volume={_uv_binary()}:/usr/local/bin/uv:ro",
                                 bento_tag], env=env, cwd=context_root, capture_output=True, text=True)
    seconds = time.monotonic() - begin
    # `bentoml containerize` logs a failed build and may still exit 0: the image existing is the proof.
    if result.returncode != 0 or not image_exists(image):
        raise ContainerError(f"bentoml containerize {bento_tag} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return ImageBuild(image, seconds, image_size(image), base)


# --- run ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mount:
    host: Path
    container: Path
    writable: bool
    directory: bool = True   # created on the host when missing (a bind mount needs its source)

    def option(self) -> str:
        return f"{self.host}:{self.container}:{'rw' if self.writable else 'ro'}"


def container_params(params_file: Path, follow_registry: bool) -> tuple[dict, list[Mount]]:
    """The params the container serves with: the host's file with the folders the service touches moved to mount
    points, and the mounts. Without `follow_registry` the registry is left out and the image serves the champion
    it was built with (its bundled tag)."""
    import yaml

    from pipelines.config import load_params

    params = load_params(params_file)
    if follow_registry and params.versioning.registry_remote:
        # The container follows a registry by mounting this machine's registry folder and model store read-only; a
        # remote registry would need its credentials and a writable store inside instead.
        raise ContainerError("versioning.registry_remote is set: the container cannot follow a remote registry; "
                             "serve its champion with `bentoml serve services.service:FlightDelay` on a machine that "
                             "reaches the remote, or bundle it (python -m deploy.package) and run the image without "
                             "following the registry")
    data = yaml.safe_load(Path(params_file).read_text())
    data.setdefault("versioning", {})["registry_remote"] = None  # the image serves its bundled champion
    mounts = [Mount(params.paths.prediction_log_dir.resolve(), MOUNT_ROOT / "predictions", True),
              Mount(params.paths.compiled_dir.resolve(), MOUNT_ROOT / "compiled", True)]
    data["paths"]["prediction_log_dir"] = str(MOUNT_ROOT / "predictions")
    data["paths"]["compiled_dir"] = str(MOUNT_ROOT / "compiled")
    data["paths"]["registry_dir"] = str(MOUNT_ROOT / "registry")   # absent unless mounted below
    # The validation suite gives the service its numeric request ranges: the host's, as the process would read it.
    suite = CONTAINER_PARAMS.parent / io.CONTAINER_SUITE_FILE
    mounts.append(Mount(params.validate_.suite.resolve(), suite, False, directory=False))
    data["validate"]["suite"] = str(suite)
    if follow_registry:
        mounts.append(Mount(params.paths.registry_dir.resolve(), MOUNT_ROOT / "registry", False))
    # The admin token's and API keys' digests (made on the host, the secrets staying there, 0600): what the
    # container's workers check bearer tokens against. Clients use the host's token files.
    from pipelines.credentials import FOLDER, VERIFY_FILE, ensure_service_credentials, verify_file

    ensure_service_credentials(params)
    data["paths"]["stack_dir"] = str(MOUNT_ROOT / "stack")
    mounts.append(Mount(verify_file(params).resolve(), MOUNT_ROOT / "stack" / FOLDER / VERIFY_FILE, False,
                        directory=False))
    return data, mounts


def params_registry_dir(params_file: Path) -> Path:
    from pipelines.config import load_params

    return load_params(params_file).paths.registry_dir.resolve()


def model_store_dir() -> Path:
    """The host's BentoML model store (the registry's champions live there)."""
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml").resolve() / "models"


def _prepare_writable(mounts: Sequence[Mount], uid: int) -> None:
    """Create the writable host folders and let the image's (non-root) user write them and everything in them:
    the host's own `bentoml serve` (root here) shares these folders, and a compile-cache lock or log file it left
    behind would otherwise stop the container's workers at start (PermissionError on the lock)."""
    for mount in mounts:
        if mount.directory:
            mount.host.mkdir(parents=True, exist_ok=True)
        if mount.writable and os.geteuid() == 0:
            os.chown(mount.host, uid, -1)
            if mount.directory:
                for folder, names, files in os.walk(mount.host):
                    for name in (*names, *files):
                        os.chown(Path(folder) / name, uid, -1, follow_symlinks=False)


@dataclass
class Running:
    container: str
    process: subprocess.Popen


def serve_command(host: str, port: int) -> list[str]:
    """The image's own entrypoint (BentoML's), serving the Bento on host:port."""
    from bentoml._internal.container.generate import BENTO_PATH

    return [f"{BENTO_PATH}/env/docker/entrypoint.sh", "serve", "--host", host, "--port", str(port)]


def start(image: str, *, host: str, port: int, params_file: Path, follow_registry: bool, state_dir: Path,
          log: Path | None = None) -> Running:
    """Create a working container from `image` and start serving in it (returns at once; poll /readyz)."""
    from bentoml._internal.container.generate import BENTO_PATH, BENTO_UID_GID

    data, mounts = container_params(params_file, follow_registry)
    if follow_registry:
        # The Bento's own model store ($BENTO_PATH/models) replaced by the host's: every promoted model is there.
        store = model_store_dir()
        mounts.append(Mount(store, Path(BENTO_PATH) / "models", False))
        # Models and pointers written before pipelines.release.registry made them readable (0700 model folders, a 0600
        # champion.json) are opened to the image's user: they are read there, never written.
        pointer = params_registry_dir(params_file) / io.CHAMPION_FILE
        for path in [*store.glob("*/*"), pointer]:
            with contextlib.suppress(OSError):
                status = path.stat()
                if not status.st_mode & 0o004 and os.geteuid() in (0, status.st_uid):
                    path.chmod(0o755 if path.is_dir() else 0o644)
    _prepare_writable(mounts, BENTO_UID_GID)
    state_dir.mkdir(parents=True, exist_ok=True)
    params_copy = state_dir / io.container_params_name(port)
    import yaml

    params_copy.write_text(yaml.safe_dump(data, sort_keys=False))
    params_copy.chmod(0o644)
    mounts.append(Mount(params_copy, CONTAINER_PARAMS, False, directory=False))
    name = f"flightops-{port}-{uuid.uuid4().hex[:8]}"
    container = buildah("from", "--name", name, "--pull-never", image)
    argv = ["buildah", "run", "--isolation", buildah_env()["BUILDAH_ISOLATION"],
            "--env", f"FLIGHTOPS_PARAMS={CONTAINER_PARAMS}", "--env", "BENTOML_DO_NOT_TRACK=true"]
    for mount in mounts:
        argv += ["--volume", mount.option()]
    argv += [container, "--", *serve_command(host, port)]
    output = open(log, "ab") if log else None  # noqa: SIM115 - handed to the child; None: this process's stdout
    try:
        process = subprocess.Popen(argv, env=buildah_env(), stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    except OSError:
        buildah("rm", container, check=False)
        raise
    finally:
        if log:
            output.close()
    return Running(container, process)


def stop(running: Running, timeout: float = 30) -> None:
    """SIGTERM the server (chroot isolation: its processes are this host's), SIGKILL after `timeout`, then remove
    the working container."""
    import psutil

    try:
        if running.process.poll() is None:
            tree = psutil.Process(running.process.pid).children(recursive=True)
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(running.process.pid, sig)
                for child in tree:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        child.send_signal(sig)
                _, alive = psutil.wait_procs(tree, timeout=wait)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    running.process.wait(timeout=1 if alive else wait)
                if not alive and running.process.poll() is not None:
                    break
    finally:
        buildah("rm", running.container, check=False)


@contextlib.contextmanager
def served(image: str, **options) -> Iterator[Running]:
    running = start(image, **options)
    try:
        yield running
    finally:
        stop(running)


def run(image: str, *, host: str, port: int, params_file: Path, follow_registry: bool, state_dir: Path) -> int:
    """Serve in the foreground until SIGTERM/SIGINT (what `ops.stack up --bento-image` starts)."""
    running = start(image, host=host, port=port, params_file=params_file, follow_registry=follow_registry,
                    state_dir=state_dir, log=None)
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stopping and running.process.poll() is None:
            time.sleep(0.2)
    finally:
        code = running.process.poll()
        stop(running)
    return 0 if stopping else (code or 1)


# --- CLI ----------------------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    from pipelines.config import DEFAULT_PARAMS_FILE, load_params

    parser = argparse.ArgumentParser(prog="python -m deploy.container", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    base = commands.add_parser("base", help="build the bentofile's base image if buildah's store lacks it")
    base.add_argument("--mirror", help="Debian mirror (default: the one apt uses here)")
    base.add_argument("--rebuild", action="store_true", help="remove and build it again")
    build = commands.add_parser("build", help="bentoml containerize --backend buildah BENTO_TAG")
    build.add_argument("bento_tag")
    build.add_argument("--image", help="image name (default localhost/<bento tag>)")
    run_cmd = commands.add_parser("run", help="serve IMAGE with buildah run on serve.host/serve.port")
    run_cmd.add_argument("image")
    run_cmd.add_argument("--params", type=Path,
                         default=Path(os.environ.get("FLIGHTOPS_PARAMS") or DEFAULT_PARAMS_FILE))
    run_cmd.add_argument("--port", type=int, help="default: serve.port")
    run_cmd.add_argument("--follow-registry", action="store_true",
                         help="mount the registry and the model store: promotions reach the container")
    remove = commands.add_parser("remove", help="remove images and their working containers")
    remove.add_argument("images", nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "base":
            name = base_image_name()
            if args.rebuild:
                remove_images(name)
            built = ensure_base_image(name, mirror=args.mirror)
            print(f"{name}: " + (f"built in {built.seconds:.0f}s, {built.size_bytes / 1e6:.0f} MB" if built
                                 else "already built"))
        elif args.command == "build":
            result = containerize(args.bento_tag, args.image)
            print(f"{result.image}: built in {result.seconds:.0f}s, {result.size_bytes / 1e6:.0f} MB")
        elif args.command == "run":
            params = load_params(args.params)
            return run(args.image, host=params.serve.host, port=args.port or params.serve.port,
                       params_file=args.params.resolve(), follow_registry=args.follow_registry,
                       state_dir=params.paths.stack_dir.resolve())
        else:
            remove_images(*args.images)
    except ContainerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
