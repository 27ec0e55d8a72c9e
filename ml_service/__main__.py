"""``python -m ml_service``: run the feature service, the gateway, or a traffic scenario.

Commands (each calls one library function):

* ``features --port P [--host 127.0.0.1] [--seed 0] [--delay-s 0] [--error-rate 0]``
* ``gateway --port P --feature-url URL [--host 127.0.0.1] [--seed 0] [--feature-timeout-s 5]``
* ``traffic --gateway URL [--scenario steady] [--rate 20] [--concurrency 4] [--duration-s 10 |
  --requests N] [--seed 0] [--gpu-url URL] [--json]`` — prints the ground truth.
"""

from __future__ import annotations

import json
import sys

import click
import uvicorn

from ml_service.errors import MLServiceError

HOST = "127.0.0.1"


@click.group()
def main() -> None:
    """Run the ML service under observation."""


@main.command()
@click.option("--host", default=HOST, show_default=True)
@click.option("--port", type=int, required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--delay-s", type=float, default=0.0, show_default=True, help="extra latency per lookup"
)
@click.option(
    "--error-rate", type=float, default=0.0, show_default=True, help="share of lookups that fail"
)
def features(host: str, port: int, seed: int, delay_s: float, error_rate: float) -> None:
    """Serve the feature service."""
    from ml_service.features_app import FeatureControl, create_app

    app = create_app(control=FeatureControl(delay_s=delay_s, error_rate=error_rate), seed=seed)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@main.command()
@click.option("--host", default=HOST, show_default=True)
@click.option("--port", type=int, required=True)
@click.option("--feature-url", required=True, help="base URL of the feature service")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--feature-timeout-s", type=float, default=5.0, show_default=True)
def gateway(host: str, port: int, feature_url: str, seed: int, feature_timeout_s: float) -> None:
    """Serve the prediction gateway (uninstrumented)."""
    from ml_service.gateway_app import create_app

    app = create_app(feature_url=feature_url, seed=seed, feature_timeout_s=feature_timeout_s)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@main.command()
@click.option("--gateway", "gateway_url", required=True, help="gateway base URL (loopback only)")
@click.option("--scenario", default="steady", show_default=True)
@click.option("--rate", type=float, default=20.0, show_default=True, help="requests per second")
@click.option("--concurrency", type=int, default=16, show_default=True)
@click.option("--duration-s", type=float, default=None)
@click.option("--requests", "n_requests", type=int, default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--gpu-url", default=None, help="GPU source to drive (load, leak)")
@click.option("--json", "as_json", is_flag=True, help="print the full ground truth as JSON")
def traffic(
    gateway_url: str,
    scenario: str,
    rate: float,
    concurrency: int,
    duration_s: float | None,
    n_requests: int | None,
    seed: int,
    gpu_url: str | None,
    as_json: bool,
) -> None:
    """Drive the gateway with a scenario and print its ground truth."""
    from ml_service.traffic import run_traffic

    try:
        truth = run_traffic(
            gateway_url,
            scenario=scenario,
            rate=rate,
            concurrency=concurrency,
            duration_s=duration_s,
            requests=n_requests,
            seed=seed,
            gpu_url=gpu_url,
        )
    except MLServiceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(truth.to_dict(), indent=2))
    else:
        click.echo(truth.summary())


if __name__ == "__main__":
    main()
