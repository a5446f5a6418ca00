#!/usr/bin/env python3
"""Drives a running Kudos server with the official Trophy Python SDK (trophy==1.27.0).

Only the SDK's base URLs are switched; every call goes through the SDK's own request
building and response models, so a field Kudos names or types differently from Trophy shows
up here as a parse error, a missing value or an unknown extra field.

Environment:
    KUDOS_URL      e.g. http://127.0.0.1:8080 (no trailing /v1)
    KUDOS_API_KEY  an admin API key of that server

Prints "SDK CHECK OK" and exits 0 when every check passes; otherwise prints what failed
(with the request step) and exits 1. Run by tests/sdk_compat.rs.
"""

import datetime as dt
import os
import sys
import traceback

from trophy import (
    BatchMetricEvent,
    BatchMetricEventUser,
    CreateAttributeRequestItem,
    CreateMetricRequestItem,
    NotFoundError,
    TrophyApi,
    UnauthorizedError,
    UpsertedUser,
)
from trophy.core.api_error import ApiError
from trophy.environment import TrophyApiEnvironment

SDK_VERSION = "1.27.0"
USER = "sdk-user"
OTHER_USER = "sdk-user-2"
BATCH_USER = "sdk-batch-user"
METRIC_KEY = "lessons"


class CheckFailed(Exception):
    pass


_step = "start"


def step(name):
    global _step
    _step = name
    print(f"-- {name}", flush=True)


def check(cond, message):
    if not cond:
        raise CheckFailed(message)


def eq(actual, expected, what):
    check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


# Fields the Python SDK 1.27 models lack but other official SDKs require: the Node SDK
# (@trophyso/node 1.0.42) declares `MetricResponse.status` as required, so Kudos sends it.
ALLOWED_EXTRA = {"MetricResponse": {"status"}}


def no_extra_fields(model, where):
    """Fails when Kudos sent a field the SDK model does not know (SDK models allow extras,
    so a misspelled optional field would otherwise pass silently as `None`)."""
    if isinstance(model, (list, tuple)):
        for i, item in enumerate(model):
            no_extra_fields(item, f"{where}[{i}]")
        return
    if isinstance(model, dict):
        for k, v in model.items():
            no_extra_fields(v, f"{where}[{k!r}]")
        return
    extra = getattr(model, "model_extra", None)
    if extra is None:
        return
    allowed = ALLOWED_EXTRA.get(type(model).__name__, set())
    extra = {k: v for k, v in extra.items() if k not in allowed}
    check(
        not extra,
        f"{where}: Kudos sent fields unknown to the SDK model {type(model).__name__}: "
        f"{sorted(extra)}",
    )
    for name in type(model).model_fields:
        no_extra_fields(getattr(model, name), f"{where}.{name}")


def expect_api_error(status, what, fn, *classes):
    """Runs `fn`; it must raise an SDK ApiError with `status` (and be one of `classes`
    when given)."""
    try:
        result = fn()
    except ApiError as e:
        eq(e.status_code, status, f"{what}: status code")
        if classes:
            check(
                isinstance(e, classes),
                f"{what}: expected one of {[c.__name__ for c in classes]}, "
                f"got {type(e).__name__}",
            )
        body = e.body
        check(
            isinstance(body, dict) and isinstance(body.get("error"), str),
            f"{what}: error body should be {{'error': str}}, got {body!r}",
        )
        return e
    raise CheckFailed(f"{what}: expected an ApiError {status}, got success {result!r}")


def is_aware_datetime(v):
    return isinstance(v, dt.datetime) and v.tzinfo is not None


def run(url, api_key):
    env = TrophyApiEnvironment(api=f"{url}/v1", admin=f"{url}/admin/v1")
    client = TrophyApi(environment=env, sdk_version=SDK_VERSION, api_key=api_key, max_retries=0)

    # ---- admin: metrics -------------------------------------------------------------
    step("admin.metrics.create")
    raw = client.admin.metrics.with_raw_response.create(
        request=[CreateMetricRequestItem(name="Lessons", key=METRIC_KEY)]
    )
    eq(raw.status_code, 201, "create metrics: HTTP status")
    created = raw.data
    no_extra_fields(created, "CreateMetricsResponse")
    eq(len(created.created), 1, "create metrics: number created")
    eq(created.issues, [], "create metrics: issues")
    metric = created.created[0]
    eq(metric.key, METRIC_KEY, "created[0].key")
    eq(metric.name, "Lessons", "created[0].name")
    eq(metric.unit_type, "number", "created[0].unit_type (default)")
    check(isinstance(metric.units, str), f"created[0].units must be a string, got {metric.units!r}")
    check(isinstance(metric.id, str) and metric.id, f"created[0].id: {metric.id!r}")
    metric_id = metric.id

    step("admin.metrics.create duplicate key -> issue")
    dup = client.admin.metrics.create(
        request=[CreateMetricRequestItem(name="Lessons again", key=METRIC_KEY)]
    )
    no_extra_fields(dup, "CreateMetricsResponse(dup)")
    eq(dup.created, [], "duplicate metric: created")
    eq(len(dup.issues), 1, "duplicate metric: number of issues")
    eq(dup.issues[0].severity, "error", "duplicate metric: issue severity")
    check(isinstance(dup.issues[0].message, str), "duplicate metric: issue message")

    step("admin.metrics.list")
    listed = client.admin.metrics.list()
    no_extra_fields(listed, "ListMetricsResponse")
    check(
        any(m.id == metric_id and m.key == METRIC_KEY for m in listed),
        f"metrics.list does not contain {METRIC_KEY}: {listed!r}",
    )

    step("admin.metrics.get")
    got = client.admin.metrics.get(metric_id)
    no_extra_fields(got, "CreatedMetric")
    eq((got.id, got.key, got.name, got.unit_type), (metric_id, METRIC_KEY, "Lessons", "number"),
       "metrics.get(id)")

    step("admin.metrics.get unknown id -> 404")
    expect_api_error(404, "metrics.get(unknown)", lambda: client.admin.metrics.get("00000000-0000-4000-8000-000000000000"),
                     NotFoundError)

    # ---- admin: attributes ----------------------------------------------------------
    step("admin.attributes.create")
    attrs = client.admin.attributes.create(
        request=[
            CreateAttributeRequestItem(name="Plan", key="plan", type="user"),
            CreateAttributeRequestItem(name="Device", key="device", type="event"),
        ]
    )
    no_extra_fields(attrs, "CreateAttributesResponse")
    eq(attrs.issues, [], "create attributes: issues")
    eq(
        sorted((a.key, a.name, a.type) for a in attrs.created),
        [("device", "Device", "event"), ("plan", "Plan", "user")],
        "create attributes: created (key, name, type)",
    )
    plan_id = next(a.id for a in attrs.created if a.key == "plan")

    step("admin.attributes.list / get")
    attr_list = client.admin.attributes.list()
    no_extra_fields(attr_list, "ListAttributesResponse")
    eq(sorted(a.key for a in attr_list), ["device", "plan"], "attributes.list keys")
    plan = client.admin.attributes.get(plan_id)
    no_extra_fields(plan, "AdminAttribute")
    eq((plan.id, plan.key, plan.type), (plan_id, "plan", "user"), "attributes.get(plan)")

    # ---- users ----------------------------------------------------------------------
    step("users.identify")
    user = client.users.identify(
        USER,
        email="sdk@example.com",
        name="SDK User",
        tz="Europe/London",
        attributes={"plan": "pro"},
    )
    no_extra_fields(user, "User(identify)")
    eq(user.id, USER, "identify: id")
    eq(user.name, "SDK User", "identify: name")
    eq(user.email, "sdk@example.com", "identify: email")
    eq(user.tz, "Europe/London", "identify: tz")
    eq(user.attributes, {"plan": "pro"}, "identify: attributes")
    eq(user.control, False, "identify: control")
    check(isinstance(user.subscribe_to_emails, bool), "identify: subscribe_to_emails is a bool")
    check(is_aware_datetime(user.created), f"identify: created {user.created!r}")
    check(is_aware_datetime(user.updated), f"identify: updated {user.updated!r}")

    step("users.get")
    fetched = client.users.get(USER)
    no_extra_fields(fetched, "User(get)")
    eq((fetched.id, fetched.name, fetched.tz, fetched.attributes),
       (USER, "SDK User", "Europe/London", {"plan": "pro"}), "users.get")

    step("users.update")
    updated = client.users.update(USER, name="SDK User Renamed", attributes={"plan": "team"})
    no_extra_fields(updated, "User(update)")
    eq(updated.name, "SDK User Renamed", "update: name")
    eq(updated.attributes, {"plan": "team"}, "update: attributes")
    eq(updated.tz, "Europe/London", "update: tz kept")
    eq(updated.email, "sdk@example.com", "update: email kept")
    check(updated.updated >= user.updated, "update: updated did not move backwards")

    step("users.create")
    other = client.users.create(
        id=OTHER_USER,
        name="Second User",
        email="second@example.com",
        tz="America/New_York",
        sign_up_date="2024-01-15",
    )
    no_extra_fields(other, "User(create)")
    eq((other.id, other.name, other.email, other.tz, other.sign_up_date),
       (OTHER_USER, "Second User", "second@example.com", "America/New_York", "2024-01-15"),
       "users.create")
    eq(client.users.get(OTHER_USER).name, "Second User", "users.get(created user).name")

    # ---- metric events ----------------------------------------------------------------
    totals = []
    for i in range(2):
        step(f"metrics.event #{i + 1}")
        raw = client.metrics.with_raw_response.event(
            METRIC_KEY, user=UpsertedUser(id=USER), value=2, attributes={"device": "ios"}
        )
        eq(raw.status_code, 201, f"event #{i + 1}: HTTP status")
        ev = raw.data
        no_extra_fields(ev, "EventResponse")
        eq(ev.metric_id, metric_id, f"event #{i + 1}: metric_id")
        check(isinstance(ev.event_id, str) and ev.event_id, f"event #{i + 1}: event_id")
        eq(ev.achievements, [], f"event #{i + 1}: achievements")
        eq(ev.points, {}, f"event #{i + 1}: points")
        eq(ev.leaderboards, {}, f"event #{i + 1}: leaderboards")
        eq(ev.current_streak.length, 0, f"event #{i + 1}: current_streak.length")
        check(isinstance(ev.current_streak.extended, bool), "current_streak.extended is a bool")
        eq(ev.idempotency_key, None, f"event #{i + 1}: idempotency_key (none sent)")
        eq(ev.idempotent_replayed, None, f"event #{i + 1}: idempotent_replayed (none sent)")
        totals.append(ev.total)
    eq(totals, [2.0, 4.0], "event totals")

    step("metrics.event with idempotency_key (first)")
    first_raw = client.metrics.with_raw_response.event(
        METRIC_KEY, user=UpsertedUser(id=USER), value=2, idempotency_key="k1",
        attributes={"device": "ios"},
    )
    eq(first_raw.status_code, 201, "idempotent event (first): HTTP status")
    first = first_raw.data
    no_extra_fields(first, "EventResponse(idempotent first)")
    eq(first.total, 6.0, "idempotent event (first): total")
    eq(first.idempotency_key, "k1", "idempotent event (first): idempotency_key")
    eq(first.idempotent_replayed, False, "idempotent event (first): idempotent_replayed")

    step("metrics.event with idempotency_key (replay)")
    second_raw = client.metrics.with_raw_response.event(
        METRIC_KEY, user=UpsertedUser(id=USER), value=2, idempotency_key="k1",
        attributes={"device": "ios"},
    )
    check(200 <= second_raw.status_code < 300,
          f"idempotent replay: HTTP status {second_raw.status_code}")
    second = second_raw.data
    no_extra_fields(second, "EventResponse(idempotent replay)")
    eq(second.event_id, first.event_id, "idempotent replay: event_id")
    eq(second.total, 6.0, "idempotent replay: total unchanged")
    eq(second.idempotency_key, "k1", "idempotent replay: idempotency_key")
    eq(second.idempotent_replayed, True, "idempotent replay: idempotent_replayed")
    current_total = 6.0

    step("users.get after events (UpsertedUser(id) only must not clear the profile)")
    after = client.users.get(USER)
    eq((after.name, after.tz, after.email, after.attributes),
       ("SDK User Renamed", "Europe/London", "sdk@example.com", {"plan": "team"}),
       "profile after id-only events")

    # ---- metric reads -----------------------------------------------------------------
    step("users.all_metrics")
    all_metrics = client.users.all_metrics(USER)
    no_extra_fields(all_metrics, "List[MetricResponse]")
    mine = [m for m in all_metrics if m.key == METRIC_KEY]
    eq(len(mine), 1, "all_metrics: entries for lessons")
    eq((mine[0].id, mine[0].name, mine[0].current), (metric_id, "Lessons", current_total),
       "all_metrics: lessons")

    step("users.single_metric")
    single = client.users.single_metric(USER, METRIC_KEY)
    no_extra_fields(single, "MetricResponse")
    eq((single.id, single.key, single.name), (metric_id, METRIC_KEY, "Lessons"), "single_metric ids")
    eq(single.current, current_total, "single_metric: current == total")
    eq(single.achievements, [], "single_metric: achievements")

    step("users.metric_event_summary (daily)")
    today = dt.datetime.now(dt.timezone.utc).date()
    start = today - dt.timedelta(days=6)
    # One day past UTC today: the user's day (Europe/London) may already be tomorrow.
    end = today + dt.timedelta(days=1)
    summary = client.users.metric_event_summary(
        USER, METRIC_KEY, aggregation="daily", start_date=start.isoformat(), end_date=end.isoformat()
    )
    no_extra_fields(summary, "List[UsersMetricEventSummaryResponseItem]")
    check(len(summary) >= 7, f"summary: expected at least 7 daily rows, got {len(summary)}")
    eq(summary[0].date, start.isoformat(), "summary: first row date")
    eq(summary[-1].date, end.isoformat(), "summary: last row date")
    eq(summary[-1].total, current_total, "summary: last row total == current total")
    eq(sum(r.change for r in summary), current_total, "summary: sum of changes")

    step("users.metric_event_summary (monthly)")
    monthly = client.users.metric_event_summary(
        USER, METRIC_KEY, aggregation="monthly", start_date=start.isoformat(), end_date=end.isoformat()
    )
    check(monthly and monthly[-1].total == current_total, f"monthly summary: {monthly!r}")
    check(all(r.date.endswith("-01") for r in monthly), f"monthly rows start on the 1st: {monthly!r}")

    # ---- batch events -----------------------------------------------------------------
    step("admin.metrics.batch_events")
    batch_raw = client.admin.metrics.with_raw_response.batch_events(
        request=[
            BatchMetricEvent(
                key=METRIC_KEY,
                user=BatchMetricEventUser(id=BATCH_USER, name="Batch User", tz="UTC",
                                          attributes={"plan": "free"}),
                value=3.0,
                attributes={"device": "web"},
            ),
            BatchMetricEvent(
                key=METRIC_KEY,
                user=BatchMetricEventUser(id=BATCH_USER),
                value=4.5,
                idempotency_key="batch-1",
            ),
        ]
    )
    check(200 <= batch_raw.status_code < 300, f"batch_events: HTTP status {batch_raw.status_code}")
    batch = batch_raw.data
    no_extra_fields(batch, "BatchEventsResponse")
    eq(batch.accepted, 2, "batch_events: accepted")

    step("batch user's metric")
    batch_metric = client.users.single_metric(BATCH_USER, METRIC_KEY)
    eq(batch_metric.current, 7.5, "batch user: single_metric current")
    batch_user = client.users.get(BATCH_USER)
    eq((batch_user.name, batch_user.tz, batch_user.attributes),
       ("Batch User", "UTC", {"plan": "free"}), "batch user profile")

    step("batch_events replayed idempotency key is not counted twice")
    client.admin.metrics.batch_events(
        request=[BatchMetricEvent(key=METRIC_KEY, user=BatchMetricEventUser(id=BATCH_USER),
                                  value=4.5, idempotency_key="batch-1")]
    )
    eq(client.users.single_metric(BATCH_USER, METRIC_KEY).current, 7.5,
       "batch user after replayed batch item")

    # ---- errors -----------------------------------------------------------------------
    step("users.get unknown user -> 404")
    expect_api_error(404, "users.get(no-such-user)", lambda: client.users.get("no-such-user"))

    step("users.single_metric unknown user -> 404")
    expect_api_error(404, "users.single_metric(no-such-user)",
                     lambda: client.users.single_metric("no-such-user", METRIC_KEY), NotFoundError)

    step("metrics.event unknown metric key -> 404")
    expect_api_error(404, "metrics.event(no-such-metric)",
                     lambda: client.metrics.event("no-such-metric", user=UpsertedUser(id=USER), value=1))

    step("wrong API key -> 401")
    bad = TrophyApi(environment=env, sdk_version=SDK_VERSION,
                    api_key="sdkcheck.wrongwrongwrongwrong", max_retries=0)
    expect_api_error(401, "users.get with wrong key", lambda: bad.users.get(USER), UnauthorizedError)
    expect_api_error(401, "metrics.event with wrong key",
                     lambda: bad.metrics.event(METRIC_KEY, user=UpsertedUser(id=USER), value=1),
                     UnauthorizedError)
    expect_api_error(401, "admin.metrics.list with wrong key", lambda: bad.admin.metrics.list(),
                     UnauthorizedError)
    eq(client.users.single_metric(USER, METRIC_KEY).current, current_total,
       "total unchanged by rejected events")


def main():
    url = os.environ.get("KUDOS_URL", "").rstrip("/")
    api_key = os.environ.get("KUDOS_API_KEY", "")
    if not url or not api_key:
        print("SDK CHECK FAILED: set KUDOS_URL and KUDOS_API_KEY", file=sys.stderr)
        return 2
    try:
        run(url, api_key)
    except CheckFailed as e:
        print(f"SDK CHECK FAILED at step '{_step}': {e}", file=sys.stderr)
        return 1
    except Exception as e:  # SDK parse errors, unexpected API errors, connection errors
        traceback.print_exc()
        detail = ""
        if isinstance(e, ApiError):
            detail = f" (status {e.status_code}, body {e.body!r})"
        print(f"SDK CHECK FAILED at step '{_step}': {type(e).__name__}: {e}{detail}",
              file=sys.stderr)
        return 1
    print("SDK CHECK OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
