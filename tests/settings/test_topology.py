"""One example topology everywhere: the README's walkthrough, deploy/, docs/, the generated
deploy/maintenance.env.example and the Kubernetes example name the same services, ports and host names.

The README's env file (its walkthrough) is the reference; every other file is read against it, so a port
or a name changed in one place and not the others fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.readme_walkthrough import README, walkthrough
from tools.settings_doc import env_example

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ADDRESS = re.compile(r"127\.0\.0\.1:(\d+)")


def readme_env() -> list[str]:
    """The lines of /etc/maintenance-shim/maintenance.env as the README's walkthrough writes them."""
    for block in walkthrough(README.read_text()):
        match = re.search(r"<<'EOF'\n(.*?)\nEOF\n", block, re.S)
        if match and "maintenance.env" in block:
            return match[1].splitlines()
    raise AssertionError("the README's walkthrough writes no maintenance.env")


def topology() -> dict[str, dict[str, str]]:
    """service -> live port, shim port, host name: from the README's env file."""
    values = dict(line.split("=", 1) for line in readme_env())
    shim = {tag.split(":")[0]: addr.rsplit(":", 1)[1]
            for addr, _, tag in (item.partition("=") for item in values["MAINT_LISTEN"].split(","))}
    out = {}
    for name in ("studio", "video"):
        out[name] = {
            "live": ADDRESS.search(values[f"MAINT_SERVICE_{name}_HEALTH_URL"])[1],  # type: ignore[index]
            "shim": shim[name],
            "host": re.match(r"https?://([^/:]+)", values[f"MAINT_SERVICE_{name}_PROXY_URL"])[1],  # type: ignore[index]
        }
    return out


def _code(path: Path) -> str:
    """A config file without its comment lines."""
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))


def test_the_generated_example_is_the_readmes_env_file() -> None:
    block = env_example().split("# ==== An example")[1].split("\n\n")[0].splitlines()[1:]
    assert [line.removeprefix("#") for line in block] == readme_env()


def test_the_readme_names_its_topology_in_its_text() -> None:
    text = README.read_text()
    top = topology()
    assert f"image studio (port {top['studio']['live']}) and a video API (port {top['video']['live']})" in text
    for name in ("studio", "video"):
        assert f"`{name}.upstream.conf`: 127.0.0.1:{top[name]['live']}" in text
        assert top[name]["host"] in text


@pytest.mark.parametrize(
    "path",
    ["nginx/studio.upstream.conf", "nginx/video.upstream.conf", "caddy/studio.upstream.caddy",
     "caddy/video.upstream.caddy"],
)
def test_each_live_include_holds_its_services_port(path: str) -> None:
    service = Path(path).name.split(".")[0]
    assert ADDRESS.findall(_code(DEPLOY / path)) == [topology()[service]["live"]]


@pytest.mark.parametrize(
    "path",
    ["nginx/fallback-site.conf", "caddy/Caddyfile.fallback", "haproxy/haproxy.cfg", "traefik/dynamic/routers.yml"],
)
def test_each_fallback_config_pairs_the_services_with_the_shims_ports(path: str) -> None:
    top = topology()
    want = [top["studio"]["live"], top["studio"]["shim"], top["video"]["live"], top["video"]["shim"]]
    # The same address listed again in a row is one server (nginx lists the backup shim three times, so a
    # request cut by a restart of the shim is retried on it: deploy/nginx/fallback-site.conf).
    found = ADDRESS.findall(_code(DEPLOY / path))
    assert [port for i, port in enumerate(found) if i == 0 or found[i - 1] != port] == want


@pytest.mark.parametrize("path", ["nginx/maintenance-shim-site.conf", "nginx/fallback-site.conf"])
def test_the_nginx_sites_answer_for_the_readmes_names(path: str) -> None:
    names = re.findall(r"server_name ([^;]+);", _code(DEPLOY / path))
    assert names == [topology()["studio"]["host"], topology()["video"]["host"]]


def test_the_docs_and_comments_use_the_same_ports() -> None:
    """Every line naming a service and a loopback port, in docs/ and deploy/, uses that service's ports."""
    top = topology()
    files = [*ROOT.glob("docs/*.md"), *DEPLOY.rglob("*"), README]
    wrong = []
    for path in files:
        if not path.is_file() or path.name.startswith("benchmarks"):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for name, other in (("studio", "video"), ("video", "studio")):
                if name in line and other not in line:
                    ours = {top[name]["live"], top[name]["shim"]}
                    theirs = {top[other]["live"], top[other]["shim"]}
                    bad = [port for port in ADDRESS.findall(line) if port in theirs and port not in ours]
                    wrong += [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for _ in bad[:1]]
    assert not wrong, "\n".join(wrong)


def test_the_kubernetes_example_is_the_same_studio() -> None:
    studio = (DEPLOY / "kubernetes" / "studio.yaml").read_text()
    top = topology()["studio"]
    assert f"containerPort: {top['live']}" in studio
    assert f"host: {top['host']}" in studio
