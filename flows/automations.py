"""The Prefect Automations, declared in the repo next to the deployments and applied by `python -m flows.deployments`
(so by `python -m flows.stack up`): today one, "flightops: retrain on drift".

It reacts to each `flightops.drift.detected` event the monitoring flow emits by running the retraining deployment
with the window's end (`data_end`) and the reasons from the event's payload; the deployment's other parameters
(`params_file`) are its defaults. Why an Automation: an operator sees it in the UI's Automations page and can pause
it there (drift is still reported, nothing retrains), and anything else can subscribe to the same events (see
docs/monitoring.md for a notification). "Never two retrains at once" is the retraining deployment's own concurrency
limit (`deployments.retraining` in params.yaml), enforced by the Prefect server whoever starts the run.

Applying is idempotent: the Automation is found by name and updated in place (trigger, actions, description), and
its enabled/paused state is left as the operator set it; params' `automation_enabled` only applies on creation.
"""

from __future__ import annotations

from typing import Any

from pipelines.config import Params
from pipelines.monitor.bookkeeping import DRIFT_DETECTED, WINDOW_RESOURCE_PREFIX

RETRAIN_ON_DRIFT = "flightops: retrain on drift"


def _jinja(template: str) -> dict[str, str]:
    """A parameter rendered by the Prefect server from the triggering event (v2 template form)."""
    return {"__prefect_kind": "jinja", "template": template}


def retrain_on_drift(deployment_id: Any, params: Params) -> Any:
    """The Automation object (not yet applied): drift event -> a run of the retraining deployment."""
    from prefect.automations import Automation
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture

    return Automation(
        name=RETRAIN_ON_DRIFT,
        description=(f"Runs {params.monitor.retraining_deployment} on data up to the drifted window's end when the "
                     f"monitoring flow emits {DRIFT_DETECTED}. Pause it to stop automatic retraining; drift is "
                     "still reported. Declared in flows/automations.py."),
        enabled=params.deployments.retraining.automation_enabled,
        tags=list(params.deployments.tags),
        trigger=EventTrigger(
            expect={DRIFT_DETECTED},
            match={"prefect.resource.id": f"{WINDOW_RESOURCE_PREFIX}*"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[RunDeployment(
            source="selected",
            deployment_id=deployment_id,
            parameters={"data_end": _jinja("{{ event.payload.window_end }}"),
                        "reason": _jinja("{{ event.payload.reason }}")},
        )],
    )


def apply_automations(params: Params) -> Any:
    """Create the Automation, or update the one of the same name keeping its enabled state; returns it.

    The retraining deployment must be registered first (the action names it by id).
    """
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(params.monitor.retraining_deployment)
        except ObjectNotFound:
            raise RuntimeError(f"deployment {params.monitor.retraining_deployment!r} (monitor.retraining_deployment) "
                               "is not registered: apply the deployments first") from None
    wanted = retrain_on_drift(deployment.id, params)
    try:
        existing = Automation.read(name=RETRAIN_ON_DRIFT)
    except ValueError:  # Prefect's "Automation with name ... not found"
        return wanted.create()
    wanted.id = existing.id
    wanted.enabled = existing.enabled  # the operator's pause survives every redeploy
    wanted.update()
    return wanted
