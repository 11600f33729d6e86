"""The Prefect Automations, declared in the repo next to the deployments and applied by `python -m flows.deployments`
(so by `python -m ops.stack up`): today one, "flightops: retrain on drift".

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

from datetime import timedelta
from typing import Any

from pipelines.config import Params
from pipelines.monitor.bookkeeping import DRIFT_DETECTED, WINDOW_RESOURCE_PREFIX

RETRAIN_ON_DRIFT = "flightops: retrain on drift"
CRASH_SILENT = "flightops: crash silent flow runs"
RETRY_CRASHED = "flightops: retry crashed flow runs"


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


def _tags(params: Params) -> dict[str, Any]:
    """Related-resource filter: the flow run carries one of the project's deployment tags."""
    return {"prefect.resource.role": "tag",
            "prefect.resource.id": [f"prefect.tag.{tag}" for tag in params.deployments.tags]}


def crash_silent_runs(params: Params) -> Any:
    """Prefect's zombie-flow Automation: a running flow run with no event for `crashed_after_s` -> Crashed."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    return Automation(
        name=CRASH_SILENT,
        description=(f"A flow run of the flightops deployments sends a heartbeat every {params.prefect.heartbeat_s}s; "
                     f"silent for {params.prefect.crashed_after_s}s (its process died with its machine or worker), "
                     "it is marked Crashed. Declared in flows/automations.py (prefect.* in params.yaml)."),
        tags=list(params.deployments.tags),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            # Any event of the run (a heartbeat or a state change, whatever the state's name) shows it is alive.
            expect={"prefect.flow-run.*"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=_tags(params) if params.deployments.tags else {},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=params.prefect.crashed_after_s),
        ),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"No heartbeat for {params.prefect.crashed_after_s}s: the flow run's process is gone "
                    f"(Automation {CRASH_SILENT!r})")],
    )


def retry_crashed_runs(params: Params) -> Any:
    """A crashed deployment run back to Scheduled/AwaitingRetry (the UI's Retry), at most `crash_retries` times."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    attempts = [str(n) for n in range(1, params.prefect.crash_retries + 1)]
    return Automation(
        name=RETRY_CRASHED,
        description=(f"A crashed run of the flightops deployments is queued again (AwaitingRetry) for any worker, "
                     f"up to {params.prefect.crash_retries} time(s). Declared in flows/automations.py."),
        enabled=params.prefect.crash_retries > 0,
        tags=list(params.deployments.tags),
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed"},
            # The attempt that crashed: run-count 1 is the first attempt; attempts past crash_retries stay Crashed.
            match={"prefect.resource.id": "prefect.flow-run.*", "prefect.run-count": attempts or ["none"]},
            match_related=_tags(params) if params.deployments.tags else {},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[ChangeFlowRunState(
            state=StateType.SCHEDULED, name="AwaitingRetry",
            message=f"Crashed; queued again for any worker (Automation {RETRY_CRASHED!r})")],
    )


def _apply(wanted: Any, keep_enabled: bool = True) -> Any:
    from prefect.automations import Automation

    try:
        existing = Automation.read(name=wanted.name)
    except ValueError:  # Prefect's "Automation with name ... not found"
        return wanted.create()
    wanted.id = existing.id
    if keep_enabled:
        wanted.enabled = existing.enabled  # the operator's pause survives every redeploy
    wanted.update()
    return wanted


def apply_crash_automations(params: Params) -> list[Any]:
    """Create or update both Automations (idempotent); `crash_retries: 0` disables the retry one."""
    return [_apply(crash_silent_runs(params)),
            _apply(retry_crashed_runs(params), keep_enabled=params.prefect.crash_retries > 0)]
