"""The running system's sections of params.yaml: serving, replay, monitoring, the Prefect deployments and the stack.

No DVC stage reads these but `reference`, for the monitoring reference and calibration it attaches to the registered
model (dvc.yaml lists which keys).
Each key is documented here once (`python -m pipelines params --explain KEY` prints it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from pipelines.config.types import (
    NAME_PATTERN,
    AtLeast1,
    Fraction,
    NonNegative,
    Port,
    Section,
    UTCDatetime,
    doc,
    ordered,
    rule,
)


class PredictionLogParams(Section):
    """The service's append-only JSONL prediction log in paths.prediction_log_dir, read by monitoring."""

    rotate_hourly: bool = doc("A new file every UTC hour (the file name carries the hour).")
    rotate_bytes: Annotated[int, Field(ge=1024)] = doc("... or once a file reaches this size.")
    max_total_bytes: Annotated[int, Field(ge=2048)] = doc(
        "Cap on the folder's size: the oldest closed files go first, listed with their rows and time spans in "
        "dropped.json (read by monitoring); at least 2 x serve.workers x rotate_bytes.")
    caller_bytes_per_hour: Annotated[int, Field(ge=1024)] | None = doc(
        "Bytes of records one caller (its API key, else its peer address) may add per UTC hour, shared evenly by "
        "the workers; past it the answers are still served but not logged, and the rows and bytes left out are "
        "counted per caller (over-budget-<pid>.json beside the log). One caller at full budget alone takes "
        "max_total_bytes / caller_bytes_per_hour hours to push the others' rows out. null: no budget.")


class ServeParams(Section):
    """The Bento service (services/service.py): it serves the registry's champion and follows promotions."""

    host: str = doc("Bind address: loopback by default; put a reverse proxy in front to expose it.")
    port: Port = doc("The service's port.")
    workers: AtLeast1 = doc("Worker processes (one per core); each loads the champion and writes its own "
                            "prediction-log file.")
    max_batch_size: AtLeast1 = doc("Most rows per /predict_batch request; an empty or larger batch is a 400.")
    max_body_bytes: Annotated[int, Field(ge=1024)] = doc("Bodies above this get a 413 before they are parsed.")
    discard_body_bytes: Annotated[int, Field(ge=1024)] = doc(
        "A too-large body is still read (and dropped) up to this before the 413, so a client that does not wait "
        "for 100-continue sees the 413, not a reset; above this: 413 at once.")
    body_timeout_s: Annotated[float, Field(gt=0, le=3600)] = doc(
        "The whole body must arrive within this many seconds of the request head, else 408 and the connection "
        "closes.")
    idle_timeout_s: Annotated[float, Field(gt=0, le=3600)] = doc(
        "A connection with no complete request head this long after it opened or after its last answer is closed.")
    adaptive_max_latency_ms: AtLeast1 = doc(
        "/predict_many's adaptive-batching latency budget: BentoML answers 503 to requests it predicts cannot be "
        "served within it; keep it well above a worker's longest pause (docs/serving.md).")
    reload_check_seconds: NonNegative = doc("How often a background task checks the champion pointer (0: on every "
                                            "request); POST /reload checks at once.")
    gc_threshold: Annotated[tuple[int, int, int], rule(lambda t: min(t) >= 1, "{key} must be three integers >= 1")] = (
        doc("Python's collector thresholds in each worker, after start-up objects are frozen (docs/serving.md)."))
    access_log: bool = doc("BentoML's access log, one line per request (costs ~12% of requests/s; every prediction "
                           "is in the prediction log and every status in /metrics anyway).")
    predictor: Literal["compiled", "lightgbm"] = doc(
        "compiled: the champion's trees compiled by lleaves and used once they give the booster's predictions on "
        "probe rows; lightgbm: Booster.predict. A failed compile is served by the booster (reason in /metadata).")
    artifact: Literal["full", "trees", "features", "pruned", "leaves", "ordinal", "onnx", "quantised"] = doc(
        "What answers: the full champion, or that variant of it, which the `variant` DVC stage makes from the "
        "candidate (paths.served_dir; served only when made from this champion and its parity check passes, else "
        "the full champion, reason in /metadata). The gate checks the same before a promotion and refuses a "
        "challenger whose variant is missing, made from another model or beyond its bound. onnx and quantised "
        "need onnxruntime, which the Bento's serve group does not hold.")
    bundled_champion_file: Path = doc("Written by `python -m deploy.package` and packed into the Bento: a built Bento "
                                      "serves the model it was built with where there is no registry.")
    prediction_log: PredictionLogParams = doc("The prediction log's rotation and cap.")
    max_errors: Annotated[int, Field(ge=1, le=1000)] = doc(
        "Errors listed in a refused request's answer, the rest counted: a 400's `detail`, a batch's `rejected`. "
        "Checking a row stops with its fields, so the answer to any body is a few KB.")
    max_concurrency: AtLeast1 = doc(
        "Requests one worker handles at once (API and admin routes); more get 503 with Retry-After before their "
        "body is read.")
    max_buffered_bytes: Annotated[int, Field(ge=1024)] = doc(
        "Request-body bytes one worker holds at once (bodies being received or served); a body that would go past "
        "it gets 503 with Retry-After, and the heap is handed back after a flood. At least max_body_bytes.")
    retry_after_s: Annotated[int, Field(ge=1, le=3600)] = doc("The Retry-After (seconds) of every 503.")
    worker_user: Annotated[str, Field(min_length=1)] = doc(
        "The unprivileged user `bentoml serve` started as root runs its workers as (the image runs as its own "
        "non-root user); prediction_log_dir and compiled_dir are made theirs, and what they read must be "
        "readable by it. Ignored when not started as root.")
    api_keys: list[Annotated[str, rule(lambda v: re.fullmatch(NAME_PATTERN, v) is not None,
                                       "{key} names must be lowercase letters, digits, '-', '_' or '.'")]] = doc(
        "Names of the callers of /predict*, each with its own bearer key generated once into "
        "<paths.stack_dir>/credentials/api-keys/<name> (0600). Empty: /predict* are open to whoever reaches the "
        "port and callers are told apart by peer address; the admin routes always need the admin token.")

    @model_validator(mode="after")
    def _limits_fit(self) -> ServeParams:
        problems = []
        if self.discard_body_bytes < self.max_body_bytes:
            problems.append(f"serve.discard_body_bytes ({self.discard_body_bytes}) must be >= serve.max_body_bytes "
                            f"({self.max_body_bytes})")
        if self.max_buffered_bytes < self.max_body_bytes:
            problems.append(f"serve.max_buffered_bytes ({self.max_buffered_bytes}) must be >= serve.max_body_bytes "
                            f"({self.max_body_bytes}): one largest body must fit")
        if len(set(self.api_keys)) != len(self.api_keys):
            problems.append(f"serve.api_keys names must be unique, got {self.api_keys}")
        # Open files (one per worker, up to rotate_bytes each) are never deleted: they must leave room under the cap.
        needed = 2 * self.workers * self.prediction_log.rotate_bytes
        if self.prediction_log.max_total_bytes < needed:
            problems.append(f"serve.prediction_log.max_total_bytes must be >= 2 x workers x rotate_bytes ({needed}), "
                            f"got {self.prediction_log.max_total_bytes}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ReplayParams(Section):
    """Traffic replay (`python -m pipelines replay --url ...`): later rows sent in time order, outcomes later."""

    start: UTCDatetime = doc("First replayed instant on source.time_column, inclusive.")
    end: UTCDatetime = doc("End of the replay, exclusive.")
    rate: Annotated[float, Field(gt=0)] = doc("Rows per second sent to the service.")
    batch_size: AtLeast1 = doc("Rows per POST /predict_batch.")
    label_delay_hours: NonNegative = doc("An outcome is delivered once the replay is this many hours of scheduled "
                                         "time past its row.")
    timeout_s: Annotated[float, Field(gt=0)] = doc("Per HTTP request.")
    api_key: str | None = doc("The serve.api_keys name whose key the replay sends (read from "
                              "<paths.stack_dir>/credentials/api-keys/<name>); null: none.")

    _check_order = ordered("replay")


class MonitorParams(Section):
    """Monitoring (flows/monitoring.py): each window of logged traffic against the champion's training data."""

    window_days: AtLeast1 | Literal["auto"] = doc(
        "Window length on source.time_column in days, aligned to Mondays. auto: the shortest of 7, 14 or 28 days "
        "whose typical window in the champion's reference period holds enough rows for the calibrated tests "
        "(pipelines/monitor/calibration.py, size_windows: 200 rows and 10 of the rarer label); said by the "
        "reference stage (dvc repro) and at loop start, stored in the champion's calibration.")
    min_window_rows: AtLeast1 | Literal["auto"] = doc(
        "Smaller windows are not analysed (too noisy to act on). auto: half the reference period's typical window "
        "at window_days (a clipped first or last window is left out), at least 100.")
    reference_rows: AtLeast1 = doc("Seeded sample of the training split kept as the reference.")
    seed: int = doc("Seed of the reference and window samples.")
    calibration_quantile: Annotated[float, Field(gt=0, lt=1)] = doc(
        "A live window alarms only beyond this split-conformal quantile of the same statistic over the reference "
        "period's own windows (docs/monitoring.md, 'Calibrated drift').")
    alarm_quantile: Annotated[float, Field(gt=0, lt=1)] = doc(
        "The level of the alarms a retrain answers (the drift index, prediction drift) and of the label check: "
        "their threshold is the prediction bound of the reference windows' values at this level (beyond the "
        "largest when the windows are few and spread), so a window like them passes it about 1 - this of the time.")
    calibration_windows: Annotated[int, Field(ge=2)] | None = doc(
        "Thresholds come from the reference period's latest this many full windows (null: all).")
    calibration_resamples: AtLeast1 = doc(
        "Draws of each reference window's rows its distances are computed on (the live-sized sample, then "
        "bootstrap draws); a window's value is their prediction bound, so no reference window passes a threshold "
        "learned from itself by drawing its rows again (1: one draw, the sample alone).")
    window_sample_rows: AtLeast1 = doc("Reference and live windows are sampled to at most this many rows, so both "
                                       "sides have the same sampling noise.")
    quality_factor: Annotated[float, Field(ge=1)] = doc(
        "A data-quality limit is this x the calibrated threshold, never below the surge floors below.")
    missing_surge: Fraction = doc("Floor: rise of a column's missing share vs the reference.")
    new_category_surge: Fraction = doc("Floor: share of rows whose category is outside the champion's vocabulary.")
    out_of_range_surge: Fraction = doc("Floor: share of rows beyond the reference's [min, max] by more than "
                                       "unit_margin sd (and of rows beyond the observed range).")
    refused_surge: Fraction = doc("Past this share of a window's rows refused by the service (a request the "
                                  "reference period could not have sent), the window alarms as data quality.")
    prediction_mismatch_share: Fraction = doc(
        "Past this share of rows whose served probability differs (> 1e-3) from the champion's re-score of the "
        "logged inputs, another model or feature pipeline is serving.")
    unit_margin: NonNegative = doc("A unit change: the window mean beyond the reference windows' mean range by more "
                                   "than this many sd (also widens the range for out_of_range_surge).")
    consistency_r2: Annotated[float, Field(gt=0, le=1)] = doc(
        "A numeric column the others explain to this R^2 is checked for its mean residual from that relation.")
    auc_drop: NonNegative = doc("Performance decay: live ROC AUC below the champion's test AUC by more than this "
                                "(or the calibrated bound, if larger).")
    min_labelled_share: Fraction = doc("Live quality is computed once this share of a window's outcomes arrived.")
    cooldown_days: NonNegative = doc("No second retrain within this many days of traffic after one started.")
    retrain_backoff: Annotated[float, Field(ge=1)] = doc(
        "After each retrain the gate refused for the same kind of alarm, the cooldown is multiplied by this (1: "
        "no back-off); a promotion resets it.")
    retrain_backoff_max_days: NonNegative = doc("The backed-off cooldown never exceeds this many days of traffic.")
    retrain_window_days: AtLeast1 | None = doc(
        "A retrain learns from the latest this many days up to the drifted window's end (null: from collect.start, "
        "growing).", default=None)
    window_grace_hours: NonNegative = doc("A window is judged once the monitor's clock passed its end plus this.")
    late_rows_share: Fraction = doc("Rows arriving for an analysed window past this share of its rows re-analyse it.")
    retraining_deployment: Annotated[str, rule(lambda name: name.count("/") == 1,
                                               "{key} must be '<flow name>/<deployment name>'")] = doc(
        "The deployment the drift Automation runs (deployment names equal flow names: retraining/retraining).")
    key_features: list[str] = doc("Raw feature columns with a drift line of their own on the Evidently dashboard "
                                  "([] for none); must be features.")


class TrainingDeploymentParams(Section):
    """The training deployment: the DAG on the window in params, weekly; Quick run from the UI."""

    cron: Annotated[str, rule(lambda cron: len(cron.split()) == 5,
                              "{key}: must be a 5-field cron expression like '0 3 * * 1'")] = doc(
        "The training deployment's schedule (deployments.timezone).")
    paused: bool = doc("Registered paused (the operator's pause in the UI is kept on redeploy either way).")


class MonitoringDeploymentParams(Section):
    """The monitoring deployment: every ready window of logged traffic."""

    interval_minutes: Annotated[float, Field(gt=0)] = doc("How often the monitoring deployment runs.")
    paused: bool = doc("Registered paused.")


class RetrainingDeploymentParams(Section):
    """The retraining deployment has no schedule: the Automation 'flightops: retrain on drift' runs it."""

    concurrency_limit: AtLeast1 = doc("Retrains at once (the server enforces it, whoever starts the run).")
    collision_strategy: Literal["CANCEL_NEW", "ENQUEUE"] = doc("A retrain asked for while one runs: cancelled "
                                                               "(visible in the UI) or run after.")
    automation_enabled: bool = doc("The drift Automation's state when first created; afterwards the operator's "
                                   "pause/resume in the UI is kept.")


class DeploymentsParams(Section):
    """The Prefect deployments (`python -m flows.deployments`, started by the stack)."""

    timezone: str = doc("Timezone of the schedules.")
    tags: list[str] = doc("Tags on every deployment (and the crash Automations' filter).")
    limit: AtLeast1 = doc("Flow runs at once per serving process or worker.")
    training: TrainingDeploymentParams = doc("The training deployment.")
    monitoring: MonitoringDeploymentParams = doc("The monitoring deployment.")
    retraining: RetrainingDeploymentParams = doc("The retraining deployment.")


class StackParams(Section):
    """The local stack: `python -m ops.stack up|down|status`; every server binds to `host` only."""

    host: str = doc("Bind address of every server the stack starts.")
    prefect_port: Port = doc("Prefect server and UI.")
    evidently_port: Port = doc("Evidently UI.")
    start_timeout_s: Annotated[float, Field(gt=0)] = doc("Wait for each server's health check (also the readiness "
                                                         "bound of prefect.toml's ephemeral server).")
    stop_timeout_s: Annotated[float, Field(gt=0)] = doc("Wait for a stopped process to exit before SIGKILL.")
    log_max_bytes: Annotated[int, Field(ge=1024)] = doc(
        "Each log the stack writes (<stack_dir>/logs/<name>.log: every server's stdout and stderr) is rotated at "
        "this size to <name>.log.1 .. .<log_backups>.")
    log_backups: AtLeast1 = doc("Rotated files kept per log; older ones are deleted.")
    evidently_behind_auth_proxy: bool = doc(
        "The Evidently UI has no login: it listens on 127.0.0.1 whatever `host` is, unless this is true because a "
        "reverse proxy that authenticates users fronts it (docs/operations.md).")


class PrefectParams(Section):
    """Where the Prefect server keeps its state and which processes run the flow runs (docs/scale-out.md)."""

    database: Literal["sqlite", "postgres"] = doc("sqlite: a file under paths.stack_dir; postgres: Debian's "
                                                  "PostgreSQL started by the stack in its own folder.")
    runner: Literal["serve", "workers"] = doc("serve: one process registers and runs the deployments; workers: "
                                              "the work pool's `prefect worker` processes run them.")
    code_source: Literal["checkout", "git"] = doc(
        "checkout: flow runs run in this checkout (its path and params file; one machine, or the same path on a "
        "shared volume). git: each flow run clones versioning.git_remote at the commit the deployments were "
        "registered from into its own working directory, pulls its stages' data from the DVC remote and pushes "
        "what it made (runner: workers, versioning.git_remote and versioning.registry_remote set).")
    database_host: str = doc("PostgreSQL's listen address (database: postgres): loopback unless set on purpose; the "
                             "Prefect server, beside it, connects there.")
    database_clients: list[str] = doc(
        "Networks (CIDR, e.g. 10.0.0.0/24) besides loopback whose hosts may log in to PostgreSQL with its password "
        "(scram-sha-256 lines in its pg_hba.conf); []: loopback only, every other host is refused.")
    work_pool: Annotated[str, rule(lambda v: re.fullmatch(NAME_PATTERN, v) is not None,
                                   "{key} must be lowercase letters, digits, '-', '_' or '.'")] = doc(
        "The process work pool the deployments go to with runner: workers.")
    workers: AtLeast1 = doc("`prefect worker` processes the stack starts (others may join from other machines).")
    heartbeat_s: Annotated[int, Field(ge=30)] = doc("Each flow run's heartbeat period (Prefect's minimum: 30 s).")
    crashed_after_s: Annotated[int, Field(gt=0)] = doc("A running flow run silent this long is marked Crashed.")
    crash_retries: Annotated[int, Field(ge=0)] = doc("Times a crashed deployment run is queued again (0: never).")

    @field_validator("database_clients")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        bad = []
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                bad.append(network)
        if bad:
            raise ValueError(f"prefect.database_clients must be networks in CIDR form (10.0.0.0/24, 192.168.1.7/32), "
                             f"got {bad}")
        return value

    @model_validator(mode="after")
    def _silence_longer_than_a_heartbeat(self) -> PrefectParams:
        if self.crashed_after_s <= self.heartbeat_s:
            raise ValueError(f"prefect.crashed_after_s ({self.crashed_after_s}) must be longer than "
                             f"prefect.heartbeat_s ({self.heartbeat_s}): a live run would be marked Crashed "
                             "between two of its heartbeats")
        return self


class VersioningParams(Section):
    """How every model is versioned (docs/versioning.md)."""

    git_remote: str | None = doc("The git remote that receives each experiment's ref (`dvc exp push`), so a fresh "
                                 "clone can rebuild any registered model; null: refs stay in this repository. With "
                                 "prefect.code_source: git, the remote the flow runs clone.")
    registry_remote: str | None = doc(
        "Where the champion pointer, the promotion journal and the models live for every machine: an fsspec URL "
        "(s3://bucket/prefix, credentials from the environment as for the DVC remote) or a folder standing for one. "
        "A promotion is a conditional write (create only if absent) of the journal's next record; models travel by "
        "BentoML export/import. null: paths.registry_dir and this machine's BentoML store (docs/scale-out.md).")
