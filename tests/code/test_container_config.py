"""The parts of the Bento image tooling that need no buildah: the Debian mirror read from apt's sources, the params
the container serves with, the base image's name, and the stack's Bento component when it runs from an image.
(The image itself is built and run in tests/integration/test_container.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from deploy import container
from pipelines.config import parse_params
from support.params import params_dict


@pytest.mark.parametrize(("name", "text", "mirror"), [
    ("debian.sources", "Types: deb\nURIs: http://deb.example.org/debian\nSuites: bookworm bookworm-updates\n"
     "Components: main\n\nTypes: deb\nURIs: http://security.example.org/debian-security\n"
     "Suites: bookworm-security\n", "http://deb.example.org/debian"),
    ("mirror.list", "# a comment\ndeb-src http://src.example.org/debian bookworm main\n"
     "deb [arch=amd64 signed-by=/k.gpg] http://one.example.org/debian bookworm main\n",
     "http://one.example.org/debian"),
])
def test_the_debian_mirror_is_the_one_apt_uses(tmp_path: Path, name: str, text: str, mirror: str) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / name).write_text(text)
    (tmp_path / "sources.list.d" / "other.list.disabled").write_text("deb http://wrong.example.org bookworm main\n")
    assert container.apt_mirror(tmp_path) == mirror


def test_no_bookworm_source_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://deb.example.org/debian trixie main\n")
    with pytest.raises(container.ContainerError, match="no apt source for Debian bookworm .* pass --mirror"):
        container.apt_mirror(tmp_path)


@pytest.mark.parametrize("follow", [False, True])
def test_the_container_params_move_the_service_folders_to_mounts(tmp_path: Path, follow: bool) -> None:
    data = params_dict(tmp_path)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(data))
    served, mounts = container.container_params(params_file, follow_registry=follow)
    params = parse_params(served)  # still a valid params file
    root = container.MOUNT_ROOT
    assert params.paths.prediction_log_dir == root / "predictions"
    assert params.paths.compiled_dir == root / "compiled"
    assert params.paths.registry_dir == root / "registry"
    assert served["serve"] == data["serve"] and served["features"] == data["features"]
    assert params.validate_.suite == container.CONTAINER_PARAMS.parent / "suite.json"
    by_target = {mount.container: mount for mount in mounts}
    assert by_target[root / "predictions"].host == Path(data["paths"]["prediction_log_dir"])
    assert by_target[root / "predictions"].writable and by_target[root / "compiled"].writable
    # Without the registry the image serves its bundled champion; with it, read-only: the container never promotes.
    assert (root / "registry" in by_target) is follow
    if follow:
        assert by_target[root / "registry"].option().endswith(":ro")
    # The admin token's and API keys' digests, read-only; never a secret itself.
    verify = params.paths.stack_dir / "credentials" / "service-verify.json"
    assert by_target[verify].option().endswith(":ro") and not by_target[verify].directory
    assert by_target[verify].host == tmp_path / "var" / "stack" / "credentials" / "service-verify.json"
    assert not [m for m in mounts if "admin-token" in str(m.host) or "api-keys" in str(m.host)]
    assert yaml.safe_load(params_file.read_text()) == data  # the host's file is left as it was


def test_the_base_image_is_the_one_the_bentofile_names(tmp_path: Path) -> None:
    assert container.base_image_name().startswith("localhost/flightops-base:")
    bentofile = tmp_path / "bentofile.yaml"
    bentofile.write_text("service: x\n")
    with pytest.raises(container.ContainerError, match="names no docker.base_image"):
        container.base_image_name(bentofile)


def test_the_stack_serves_from_the_image_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ops.stack import plan
    from pipelines.release import registry

    params = parse_params(params_dict(tmp_path))
    monkeypatch.setattr(registry, "champion_tag", lambda registry_dir: "delay-classifier:abc")  # a champion exists
    params_file = tmp_path / "params.yaml"
    process = {c.name: c for c in plan(params, params_file)[0]}["bento"]
    image = {c.name: c for c in plan(params, params_file, bento_image="localhost/flight-delay:v1")[0]}["bento"]
    assert process.argv[1:3] == ["serve", "services.service:FlightDelay"]
    assert image.argv[1:5] == ["-m", "deploy.container", "run", "localhost/flight-delay:v1"]
    assert "--follow-registry" in image.argv and str(params_file) in image.argv
    assert image.health_url == process.health_url and image.port == process.port


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_writable_mounts_are_handed_to_the_image_user_with_what_the_host_left_in_them(tmp_path: Path) -> None:
    cache = tmp_path / "compiled"
    (cache / "sub").mkdir(parents=True)
    for path in (cache / "model.o.lock", cache / "model.o", cache / "sub" / "x"):
        path.write_text("host")
    read_only = tmp_path / "registry"
    read_only.mkdir()
    container._prepare_writable([container.Mount(cache, Path("/mnt/c"), True),
                                 container.Mount(read_only, Path("/mnt/r"), False)], 4242)
    owners = {path.relative_to(cache).as_posix(): path.stat().st_uid for path in [cache, *cache.rglob("*")]}
    assert owners == {".": 4242, "model.o.lock": 4242, "model.o": 4242, "sub": 4242, "sub/x": 4242}
    assert read_only.stat().st_uid == 0, "read-only mounts are left to their owner"
