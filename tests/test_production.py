"""The production shape, without Docker: docker-compose.yml and the Dockerfile checked against
the code they run (the settings class, the `kassa` commands, the search attributes, the routes),
so the two cannot drift apart; and the commands' answer to a bad setting."""

import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.routing import APIRoute

from acquirer.app import create_app as create_acquirer
from activities.providers import make_provider
from activities.providers.protocol import NewPayment
from api.routers import health
from cli.main import _parser
from kassa.settings import SECRET_NAMES, Settings
from tests.servers import listening_socket, serving
from workflows.checkout import SEARCH_ATTRIBUTES

ROOT = Path(__file__).parent.parent
KASSA_SERVICES = {"migrate": "migrate", "api": "api", "worker": "worker", "acquirer": "acquirer"}
# ${NAME:?message} must be given; ${NAME:-default} may be.
REQUIRED = re.compile(r"^\$\{(\w+):\?[^}]*\}$")
OPTIONAL = re.compile(r"\$\{(\w+):-([^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in service["environment"].items()}


def _as_deployed(value: str) -> str:
    """The value compose would give with an .env that sets the required ones and nothing else."""
    if REQUIRED.match(value):
        return "x" * 40
    return OPTIONAL.sub(lambda found: found.group(2), value)


def test_compose_runs_every_part_from_one_image_with_the_right_commands(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == {
        "postgres",
        "temporal",
        "temporal-init",
        "temporal-ui",
        *KASSA_SERVICES,
    }
    for name, command in KASSA_SERVICES.items():
        service = services[name]
        assert (service["image"], service["build"]) == ("kassa:latest", "."), name
        assert service["command"] == [command]
        _parser().parse_args(
            service["command"]
        )  # a `kassa` command (argparse exits on an unknown one)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["kassa"]' in dockerfile
    # The image carries no dev-only parts: a plain install, without the dev extra.
    assert re.search(r"pip install \.\s*$", dockerfile, re.MULTILINE) and "[dev" not in dockerfile


def test_compose_environment_is_exactly_settings_that_exist_and_parse(
    compose: dict[str, Any],
) -> None:
    fields = set(Settings.model_fields)
    for name in KASSA_SERVICES:
        environment = _environment(compose["services"][name])
        kassa = {
            key.removeprefix("KASSA_").lower(): value
            for key, value in environment.items()
            if key.startswith("KASSA_")
        }
        assert set(kassa) <= fields, f"{name}: not settings: {set(kassa) - fields}"
        # Compose's strings, given to Settings to parse as it parses the environment's.
        deployed = {key: _as_deployed(value) for key, value in kassa.items()}
        settings = Settings(**deployed)  # type: ignore[arg-type]
        assert settings.env == "production" and settings.host == "0.0.0.0"
        # Secrets come from the environment and are required: compose refuses to start without them.
        for secret in SECRET_NAMES:
            assert REQUIRED.match(environment[f"KASSA_{secret.upper()}"]), secret
        # Servers reach each other by service name; browsers get published addresses.
        assert settings.temporal_target == "temporal:7233"
        assert settings.acquirer_base_url == f"http://acquirer:{settings.acquirer_port}"
        assert settings.webhook_url == f"http://api:{settings.api_port}/webhooks/sandbox"
        assert settings.acquirer_pages_url.startswith("http://localhost:")
        assert settings.return_url.startswith("http://localhost:")
        assert settings.database_url and "@postgres:5432/" in settings.database_url


def test_compose_ports_and_health_checks_match_the_settings_and_routes(
    compose: dict[str, Any],
) -> None:
    services, defaults = compose["services"], Settings()
    assert services["api"]["ports"] == [f"{defaults.api_port}:{defaults.api_port}"]
    assert services["acquirer"]["ports"] == [f"{defaults.acquirer_port}:{defaults.acquirer_port}"]
    routes = {route.path for route in health.router.routes if isinstance(route, APIRoute)}
    checks = {
        "api": f"http://127.0.0.1:{defaults.api_port}/readyz",
        "acquirer": f"http://127.0.0.1:{defaults.acquirer_port}/healthz",
        "worker": f"http://127.0.0.1:{_environment(services['worker'])['KASSA_WORKER_METRICS_PORT']}/metrics",
    }
    for name, url in checks.items():
        assert url in " ".join(services[name]["healthcheck"]["test"]), name
    assert {"/readyz", "/healthz", "/metrics"} <= routes
    for name in ("postgres", "temporal"):
        assert services[name]["healthcheck"]["test"]


def test_compose_starts_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]

    def waits_for(name: str) -> dict[str, str]:
        return {
            dependency: how["condition"] for dependency, how in services[name]["depends_on"].items()
        }

    assert waits_for("temporal") == {"postgres": "service_healthy"}
    assert waits_for("temporal-init") == {"temporal": "service_healthy"}
    assert waits_for("migrate") == {"postgres": "service_healthy"}
    for name in ("api", "worker"):
        assert waits_for(name) == {
            "migrate": "service_completed_successfully",
            "temporal-init": "service_completed_successfully",
        }
    assert _environment(services["temporal"])["DB"].startswith(
        "postgres"
    )  # Temporal persists to PostgreSQL


def test_compose_registers_every_search_attribute_the_workflow_upserts(
    compose: dict[str, Any],
) -> None:
    script = compose["services"]["temporal-init"]["command"][0]
    registered = re.search(r"for attribute in ([^;]+);", script)
    assert registered
    expected = {f"{key.name}={key.indexed_value_type.name.title()}" for key in SEARCH_ATTRIBUTES}
    assert set(registered.group(1).split()) == expected


async def test_browsers_get_public_addresses_and_servers_internal_ones(tmp_path: Path) -> None:
    sock = listening_socket()
    internal = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        env="test",
        data_dir=tmp_path,
        acquirer_api_key="k",
        acquirer_webhook_secret="s",
        acquirer_url=internal,
        acquirer_public_url="https://bank.example.com",
        public_url="https://shop.example.com",
        api_internal_url="http://api:8000",
    )
    assert (
        settings.return_url == "https://shop.example.com/checkout/return"
    )  # the shopper's browser
    assert settings.webhook_url == "http://api:8000/webhooks/sandbox"  # the acquirer's server
    bank = make_provider(settings)
    async with serving(create_acquirer(settings), sock):
        intent = await bank.create_payment(
            NewPayment(
                order_id=uuid.uuid4(),
                amount=10_000,
                currency="RUB",
                idempotency_key="key-1",
                return_url=settings.return_url,
                capture=True,
                payment_method="tok_3ds",
                description="an order",
            )
        )
    await bank.aclose()
    assert intent.redirect_url is not None and intent.redirect_url.startswith(
        "https://bank.example.com/3ds/pi_"
    )


@pytest.mark.parametrize("command", ["worker", "acquirer"])
def test_a_bad_setting_stops_each_command_with_one_line(command: str) -> None:
    environment = {
        "PATH": "/usr/bin:/bin",
        "KASSA_API_PORT": "eighty",
        "KASSA_DATA_DIR": "/tmp/kassa-never-made",
    }
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", command],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        (
            "kassa: KASSA_API_PORT: Input should be a valid integer,"
            " unable to parse string as an integer — fix the setting"
        )
    ]
