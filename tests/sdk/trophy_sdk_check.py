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
import time
import traceback
import uuid
import warnings

from trophy import (
    BatchMetricEvent,
    BatchMetricEventUser,
    CreateAchievementRequestItem,
    CreateAchievementRequestItemBadge,
    CreateAchievementRequestItemEventAttributesItem,
    CreateAchievementRequestItemUserAttributesItem,
    CreateAttributeRequestItem,
    CreateLeaderboardRequestItem,
    CreateMetricRequestItem,
    CreatePointsBoostRequestItem,
    CreatePointsLevelRequestItem,
    CreatePointsLevelRequestItemBadge,
    CreatePointsSystemRequestItem,
    CreatePointsSystemRequestItemBadge,
    CreatePointsTriggerRequestItem,
    CreatePointsTriggerRequestItemEventAttributesItem,
    ForbiddenError,
    NotFoundError,
    NotificationPreferences,
    PatchPointsBoostsRequestItem,
    PatchPointsLevelsRequestItem,
    PatchPointsTriggersRequestItem,
    StreakMetricPreference,
    StreakPreferences,
    StreakSettingsMetric,
    TrophyApi,
    UnauthorizedError,
    UnprocessableEntityError,
    UpdateAchievementRequestItem,
    UpdateLeaderboardRequestItem,
    UpdatePointsSystemRequestItem,
    UpdateStreakSettingsFreezes,
    UpsertedUser,
)
from trophy.admin.streaks import ResetStreaksRequestUsersItem, RestoreStreaksRequestUsersItem
from trophy.admin.streaks.freezes import CreateStreakFreezesRequestFreezesItem
from trophy.admin.streaks.pauses import CreateStreakPausesRequestPausesItem
from trophy.core.api_error import ApiError
from trophy.core.parse_error import ParsingError
from trophy.environment import TrophyApiEnvironment

SDK_VERSION = "1.27.0"
USER = "sdk-user"
OTHER_USER = "sdk-user-2"
BATCH_USER = "sdk-batch-user"
STREAK_USER = "sdk-streak-user"
RESET_USER = "sdk-reset-user"
ACH_USER = "sdk-achiever"
NO_USER = "no-such-user"
POINTS_USER = "sdk-points-user"
POINTS_BOOST_USER = "sdk-points-boosted"
# Every user the script has created so far (`rarity` is a percentage of all users, and the
# points summaries count every user); the points steps add theirs when they create them.
ALL_USERS = {USER, OTHER_USER, BATCH_USER, STREAK_USER, RESET_USER, ACH_USER}
METRIC_KEY = "lessons"
API_ACHIEVEMENT_KEY = "onboarded"
UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"
POINTS_KEY = "sdk-xp"
POINTS_PLAIN_KEY = "sdk-coins"
POINTS_METRIC_KEY = "sdk-quizzes"
POINTS_ACHIEVEMENT_KEY = "points-champion"
LB_METRIC_KEY = "sdk-laps"
LB_ALICE = "sdk-lb-alice"
LB_BOB = "sdk-lb-bob"
LB_CAROL = "sdk-lb-carol"
LB_TOP = "sdk-top-two"
LB_WEEKLY = "sdk-weekly"
LB_STREAK = "sdk-streakers"
LB_BY_PLAN = "sdk-by-plan"
LB_DRAFT = "sdk-draft"
WRAPPED_METRIC_KEY = "sdk-wrapped-words"
WRAPPED_USER = "sdk-wrapped-user"
WRAPPED_OTHER = "sdk-wrapped-other"


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
ALLOWED_EXTRA = {
    "MetricResponse": {"status"},
    # @trophyso/node reads user-scoped admin issues as BulkInsertIssue {userId, level, reason}.
    "AdminIssue": {"level", "reason"},
    # Kudos extension (docs/leaderboards.md): `first-reached` (Trophy's rule) or `shared`.
    "AdminLeaderboard": {"tiePolicy"},
}


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
    device_id = next(a.id for a in attrs.created if a.key == "device")

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

    # The steps above expect no streak configuration (currentStreak.length == 0), so the
    # streak and achievement steps come last.
    run_streaks(client)
    run_preferences(client)
    run_achievements(client, metric_id=metric_id, plan_id=plan_id, device_id=device_id)
    run_fractional_streak_threshold(client)
    # Own users, metric, achievement and points systems: nothing above sees them.
    run_points(client, device_id=device_id)
    # Own metric, users and leaderboards: nothing above sees them.
    run_leaderboards(client, plan_id=plan_id)
    # Own metric and users; leaderboards above rank other metrics, so none show here.
    run_wrapped(client)
    # Settings last: a control ratio above 0 would change the users created after it.
    run_settings_and_application_keys(client, env)


def run_wrapped(client):
    from trophy import WrappedResponse

    avoid_utc_midnight()
    today = utc_today()
    step("wrapped: a user's year so far")
    client.admin.metrics.create(
        request=[CreateMetricRequestItem(name="Wrapped words", key=WRAPPED_METRIC_KEY,
                                         units="words")])
    for value, device in [(3, "ios"), (2, "web")]:
        client.metrics.event(WRAPPED_METRIC_KEY, user=UpsertedUser(id=WRAPPED_USER, tz="UTC"),
                             value=value, attributes={"device": device})
    client.metrics.event(WRAPPED_METRIC_KEY, user=UpsertedUser(id=WRAPPED_OTHER, tz="UTC"),
                         value=1)
    body = client.users.wrapped(WRAPPED_USER, year=today.year)
    check(isinstance(body, WrappedResponse), f"wrapped response type {type(body)}")
    no_extra_fields(body, "WrappedResponse")
    eq(body.user.id, WRAPPED_USER, "wrapped user")
    a = body.activity
    eq((a.days_active, a.weeks_active, a.months_active), (1, 1, 1), "active days/weeks/months")
    eq((a.most_active_day.date, a.most_active_month.month), (ymd(today), today.month - 1),
       "most active day and month (0-11)")
    check(a.most_active_week.start <= ymd(today) <= a.most_active_week.end,
          f"week {a.most_active_week.start}..{a.most_active_week.end} holds today")
    day = a.most_active_day.metrics[WRAPPED_METRIC_KEY]
    eq((day.name, day.units, day.current_total, day.change_this_period, day.percent_change,
        day.percentile_this_period),
       ("Wrapped words", "words", 5, 5, 100, None), "the day's metric (no percentile)")
    by_device = day.by_attribute["device"]
    eq((by_device["ios"].change_this_period, by_device["web"].change_this_period), (3, 2),
       "byAttribute changes")
    year = a.entire_year.metrics[WRAPPED_METRIC_KEY]
    # Nobody else has this metric but the other user, with less: at the top, and the other
    # one below it (an empty distribution would put both at 100).
    eq(year.percentile_this_period, 100, "year percentile")
    other = client.users.wrapped(WRAPPED_OTHER, year=today.year).activity.entire_year
    p = other.metrics[WRAPPED_METRIC_KEY].percentile_this_period
    check(p is not None and 0 < p < 100, f"the other user's year percentile {p!r}")
    eq(a.entire_year.longest_streak.length, 0, "no streak on this metric")
    eq(a.entire_year.longest_streak.period_start, None, "no streak: periodStart null")
    eq((a.entire_year.achievements, a.entire_year.leaderboards), ([], {}),
       "no achievements or boards on this metric")

    step("wrapped: a future year -> 422, an unknown user -> 404")
    expect_api_error(422, "users.wrapped(year=next year)",
                     lambda: client.users.wrapped(WRAPPED_USER, year=today.year + 1),
                     UnprocessableEntityError)
    expect_api_error(404, "users.wrapped(no-such-user)",
                     lambda: client.users.wrapped(NO_USER), NotFoundError)


def run_settings_and_application_keys(client, env):
    from trophy import (
        CreateApplicationKeyRequestItem,
        UpdateAdminSettingsBranding,
        UpdateAdminSettingsBrandingLogo,
        UpdateAdminSettingsExperimentation,
    )

    step("admin.settings.get (defaults)")
    settings = client.admin.settings.get()
    no_extra_fields(settings, "AdminSettings")
    eq((settings.experimentation.control_ratio, settings.aggregation_period, settings.branding.logo),
       (0, "weekly", None), "default settings")

    step("admin.settings.update (nested, partial)")
    updated = client.admin.settings.update(
        branding=UpdateAdminSettingsBranding(
            app_name="SDK check", brand_color="#0af",
            logo=UpdateAdminSettingsBrandingLogo(url="https://cdn.example.com/logo.png")),
        aggregation_period="monthly",
    )
    no_extra_fields(updated, "AdminSettings(updated)")
    eq((updated.branding.app_name, updated.branding.brand_color, updated.branding.logo.url,
        updated.branding.font, updated.aggregation_period),
       ("SDK check", "#0af", "https://cdn.example.com/logo.png", "MODERN_SANS", "monthly"),
       "updated settings")
    updated = client.admin.settings.update(
        experimentation=UpdateAdminSettingsExperimentation(control_ratio=100))
    eq((updated.experimentation.control_ratio, updated.branding.app_name), (100, "SDK check"),
       "a second partial update keeps the first")

    step("admin.settings.update invalid -> 422")
    expect_api_error(422, "settings.update(controlRatio=101)",
                     lambda: client.admin.settings.update(
                         experimentation=UpdateAdminSettingsExperimentation(control_ratio=101)),
                     UnprocessableEntityError)

    step("control cohort: a user created now is in control")
    user = client.users.create(id="sdk-control-user")
    eq(user.control, True, "control of a user created at controlRatio 100")
    client.admin.settings.update(
        experimentation=UpdateAdminSettingsExperimentation(control_ratio=0))

    step("admin.application_api_keys.create")
    created = client.admin.application_api_keys.create(
        request=[CreateApplicationKeyRequestItem(user_id="sdk-app-user"),
                 CreateApplicationKeyRequestItem(user_id="sdk-app-other")])
    no_extra_fields(created, "CreateApplicationKeysResponse")
    eq(len(created.created), 2, "keys created")
    mine = created.created[0]
    check(mine.key.startswith(mine.prefix + ".") and mine.prefix.startswith("app_"),
          f"key {mine.key!r} and prefix {mine.prefix!r}")
    eq(mine.user_id, "sdk-app-user", "key user")

    step("an application key in the SDK: its own user, not another's, not the admin API")
    app = TrophyApi(environment=env, sdk_version=SDK_VERSION, api_key=mine.key, max_retries=0)
    own = app.users.create(id="sdk-app-user")
    eq(own.id, "sdk-app-user", "the key creates its own user")
    eq(app.users.get("sdk-app-user").id, "sdk-app-user", "and reads it")
    check(isinstance(app.achievements.all_(), list), "account-level reads are allowed")
    # The SDK declares no 403 for users.get: a plain ApiError with the status and body.
    expect_api_error(403, "users.get(another user) with an application key",
                     lambda: app.users.get("sdk-control-user"))
    expect_api_error(401, "admin.metrics.list with an application key",
                     lambda: app.admin.metrics.list(), UnauthorizedError)

    step("admin.application_api_keys.delete")
    deleted = client.admin.application_api_keys.delete(ids=[mine.id, str(uuid.uuid4())])
    no_extra_fields(deleted, "DeleteApplicationKeysResponse")
    eq([d.id for d in deleted.deleted], [mine.id], "deleted")
    eq([i.message for i in deleted.issues], ["Application API key not found by ID"], "issues")
    expect_api_error(401, "users.get with a deleted key",
                     lambda: app.users.get("sdk-app-user"), UnauthorizedError)


def run_environments_and_tenants(client, env):
    from trophy import CreateTenantRequestItem, UpdateTenantRequestItem

    step("admin.environments.list")
    envs = client.admin.environments.list()
    for e in envs:
        no_extra_fields(e, "AdminEnvironment")
    eq([(e.key, e.priority) for e in envs], [("production", 1)], "environments")

    step("admin.tenants.create (one duplicate)")
    created = client.admin.tenants.create(request=[
        CreateTenantRequestItem(customer_id="sdk-acme", name="Acme"),
        CreateTenantRequestItem(customer_id="sdk-acme", name="Acme again"),
        CreateTenantRequestItem(customer_id="sdk-beta", name="Beta"),
    ])
    no_extra_fields(created, "CreateTenantsResponse")
    eq([t.customer_id for t in created.created], ["sdk-acme", "sdk-beta"], "created")
    eq([i.message for i in created.issues],
       ['Customer ID "sdk-acme" already exists in this environment'], "issues")
    acme, beta = created.created
    eq(acme.status, "active", "status")

    step("admin.tenants.list / get / update")
    eq([t.id for t in client.admin.tenants.list()], [acme.id, beta.id], "list")
    eq(client.admin.tenants.get(acme.id).name, "Acme", "get")
    updated = client.admin.tenants.update(request=[UpdateTenantRequestItem(id=beta.id, name="Beta Inc")])
    no_extra_fields(updated, "UpdateTenantsResponse")
    eq(updated.updated[0].name, "Beta Inc", "renamed")
    expect_api_error(404, "admin.tenants.get(unknown)",
                     lambda: client.admin.tenants.get(str(uuid.uuid4())))

    step("Tenant-ID now required; each tenant sees only its own data")
    expect_api_error(422, "users.get without Tenant-ID", lambda: client.users.get(USER))
    in_acme = TrophyApi(environment=env, sdk_version=SDK_VERSION, api_key=client._client_wrapper.api_key,
                        tenant_id="sdk-acme", max_retries=0)
    in_beta = TrophyApi(environment=env, sdk_version=SDK_VERSION, api_key=client._client_wrapper.api_key,
                        tenant_id="sdk-beta", max_retries=0)
    eq(in_acme.admin.metrics.list(), [], "a new tenant has no metrics")
    in_acme.admin.metrics.create(request=[CreateMetricRequestItem(name="Tenant words", key="words")])
    in_acme.metrics.event("words", user=UpsertedUser(id="same-user"), value=4)
    eq(in_acme.users.single_metric("same-user", "words").current, 4, "acme's total")
    # users.get declares no 404 in the SDK: a plain ApiError with the status.
    expect_api_error(404, "the same user in another tenant",
                     lambda: in_beta.users.get("same-user"))
    eq(in_beta.admin.metrics.list(), [], "beta sees none of acme's metrics")

    step("admin.tenants.delete archives")
    deleted = client.admin.tenants.delete(ids=[beta.id])
    no_extra_fields(deleted, "DeleteTenantsResponse")
    eq([d.id for d in deleted.deleted], [beta.id], "archived")
    eq(client.admin.tenants.get(beta.id).status, "archived", "status")
    expect_api_error(422, "an archived tenant's Tenant-ID", lambda: in_beta.admin.metrics.list())


# ---- helpers for the streak and achievement steps ---------------------------------------

def utc_today():
    return dt.datetime.now(dt.timezone.utc).date()


def avoid_utc_midnight(margin_seconds=60):
    """The streak steps run on the wall clock (no test clock) for users without a time zone
    (UTC): their expectations name today's UTC date. Waits out the last `margin_seconds`
    before UTC midnight so the date cannot change while they run."""
    now = dt.datetime.now(dt.timezone.utc)
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    left = (midnight - now).total_seconds()
    if left < margin_seconds:
        print(f"-- waiting {left + 1:.0f}s for UTC midnight to pass", flush=True)
        time.sleep(left + 1)


def issue_summary(issues):
    """`(user_id or id, severity)` of each issue, sorted; checks every issue's shape."""
    out = []
    for i in issues:
        check(isinstance(i.message, str) and i.message, f"issue without a message: {i!r}")
        out.append((i.user_id or i.id, i.severity))
    return sorted(out)


def ymd(d):
    return d.isoformat()


def expected_rarity(completions, users):
    return round(completions / users * 100, 2) if users else 0.0


def check_stats(item, where):
    """`completions` and `rarity` of an achievement with stats."""
    check(isinstance(item.completions, int) and item.completions >= 0,
          f"{where}: completions {item.completions!r}")
    eq(item.rarity, expected_rarity(item.completions, len(ALL_USERS)),
       f"{where}: rarity (% of {len(ALL_USERS)} users, 2 decimals)")


def wait_for(what, fn, timeout=15.0):
    """Polls `fn` until it returns a truthy value (background work such as backfills)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise CheckFailed(f"{what}: not true within {timeout}s (last value {value!r})")
        time.sleep(0.1)


# ---- streaks ---------------------------------------------------------------------------

def run_streaks(client):
    step("admin.streaks.settings.get (defaults)")
    settings = client.admin.streaks.settings.get()
    no_extra_fields(settings, "StreakSettings(defaults)")
    eq((settings.frequency, settings.evaluation_mode, settings.customization_enabled,
        settings.days_off, settings.metrics, settings.freezes),
       ("daily", "OR", False, [], [], None), "default streak settings")

    step("admin.streaks.settings.update maxCount < startCount -> 422")
    expect_api_error(
        422, "settings.update(maxCount < startCount)",
        lambda: client.admin.streaks.settings.update(
            freezes=UpdateStreakSettingsFreezes(start_count=3, max_count=1)),
        UnprocessableEntityError)

    step("admin.streaks.settings.update unknown metric key -> 422")
    expect_api_error(
        422, "settings.update(unknown metric)",
        lambda: client.admin.streaks.settings.update(
            metrics=[StreakSettingsMetric(key="no-such-metric", threshold=1)]),
        UnprocessableEntityError)

    step("admin.streaks.settings.update")
    settings = client.admin.streaks.settings.update(
        frequency="daily",
        evaluation_mode="OR",
        customization_enabled=True,
        days_off=[],
        metrics=[StreakSettingsMetric(key=METRIC_KEY, threshold=1)],
        freezes=UpdateStreakSettingsFreezes(start_count=1, max_count=3),
    )
    no_extra_fields(settings, "StreakSettings(update)")
    expected_settings = (
        "daily", "OR", True, [], [(METRIC_KEY, 1)], (1, 3, None, None),
    )

    def settings_tuple(st):
        f = st.freezes
        return (
            st.frequency, st.evaluation_mode, st.customization_enabled, st.days_off,
            [(m.key, m.threshold) for m in st.metrics],
            f and (f.start_count, f.max_count, f.auto_earn_interval, f.auto_earn_amount),
        )

    eq(settings_tuple(settings), expected_settings, "updated streak settings")
    check(all(isinstance(m.threshold, int) for m in settings.metrics),
          f"StreakSettingsMetric.threshold must parse as int: {settings.metrics!r}")

    step("admin.streaks.settings.get (after update)")
    got = client.admin.streaks.settings.get()
    no_extra_fields(got, "StreakSettings(get)")
    eq(settings_tuple(got), expected_settings, "streak settings read back")

    # Everything below names today's UTC date (the users have no time zone).
    avoid_utc_midnight()
    today = utc_today()
    tomorrow = today + dt.timedelta(days=1)

    step("metrics.event for a new user starts a streak")
    raw = client.metrics.with_raw_response.event(METRIC_KEY, user=UpsertedUser(id=STREAK_USER),
                                                 value=1)
    eq(raw.status_code, 201, "streak event: HTTP status")
    ev = raw.data
    no_extra_fields(ev, "EventResponse(streak)")
    cs = ev.current_streak
    eq((cs.length, cs.extended, cs.frequency), (1, True, "daily"),
       "first event: current_streak (length, extended, frequency)")
    eq((cs.started, cs.period_start, cs.period_end, cs.expires),
       (ymd(today), ymd(today), ymd(today), ymd(tomorrow)),
       "first event: current_streak (started, period_start, period_end, expires)")
    eq((cs.freezes, cs.max_freezes, cs.freeze_auto_earn_interval, cs.freeze_auto_earn_amount),
       (1, 3, None, None), "first event: current_streak freezes (startCount 1, maxCount 3)")
    eq(ev.total, 1.0, "first event: total")

    step("metrics.event again the same day does not extend the streak")
    ev2 = client.metrics.event(METRIC_KEY, user=UpsertedUser(id=STREAK_USER), value=1)
    no_extra_fields(ev2, "EventResponse(streak, same day)")
    eq((ev2.current_streak.length, ev2.current_streak.extended), (1, False),
       "second event: current_streak (length, extended)")
    eq(ev2.total, 2.0, "second event: total")

    step("users.streak (default history)")
    streak = client.users.streak(STREAK_USER)
    no_extra_fields(streak, "StreakResponse")
    eq((streak.length, streak.frequency, streak.started, streak.period_start, streak.period_end,
        streak.expires),
       (1, "daily", ymd(today), ymd(today), ymd(today), ymd(tomorrow)),
       "users.streak (length, frequency, started, period_start, period_end, expires)")
    eq((streak.freezes, streak.max_freezes), (1, 3), "users.streak (freezes, max_freezes)")
    check(is_aware_datetime(streak.extended),
          f"users.streak: extended must be a date-time, got {streak.extended!r}")
    eq(streak.pauses, [], "users.streak: pauses")
    history = streak.streak_history
    eq(len(history), 7, "users.streak: streak_history length (default 7)")
    eq([h.period_start for h in history],
       [ymd(today - dt.timedelta(days=6 - i)) for i in range(7)],
       "users.streak: streak_history period_start (ascending days)")
    check(all(h.period_start == h.period_end for h in history),
          f"daily history periods are single days: {history!r}")
    last = history[-1]
    eq((last.length, last.used_freeze, last.used_pause, last.reset_at), (1, False, False, None),
       "users.streak: last history item (length, used_freeze, used_pause, reset_at)")
    eq([h.length for h in history[:-1]], [0] * 6, "users.streak: earlier history lengths")

    step("users.streak history_periods=3")
    short = client.users.streak(STREAK_USER, history_periods=3)
    no_extra_fields(short, "StreakResponse(historyPeriods=3)")
    eq([h.period_start for h in short.streak_history],
       [ymd(today - dt.timedelta(days=2 - i)) for i in range(3)],
       "history_periods=3: period starts")

    step("users.streak errors")
    expect_api_error(404, "users.streak(no-such-user)", lambda: client.users.streak(NO_USER),
                     NotFoundError)
    expect_api_error(422, "users.streak(history_periods=0)",
                     lambda: client.users.streak(STREAK_USER, history_periods=0),
                     UnprocessableEntityError)

    step("streaks.list")
    listed = client.streaks.list(user_ids=[OTHER_USER, STREAK_USER, NO_USER])
    no_extra_fields(listed, "List[BulkStreakResponseItem]")
    eq([(i.user_id, i.streak_length) for i in listed], [(STREAK_USER, 1), (OTHER_USER, 0)],
       "streaks.list (user_id, streak_length), longest first, unknown users left out")
    check(isinstance(listed[0].extended, str)
          and is_aware_datetime(dt.datetime.fromisoformat(listed[0].extended.replace("Z", "+00:00"))),
          f"streaks.list: extended of {STREAK_USER} must be a date-time string: {listed[0].extended!r}")
    eq(listed[1].extended, None, f"streaks.list: extended of {OTHER_USER}")

    # ---- freezes ----
    step("admin.streaks.freezes.create")
    raw = client.admin.streaks.freezes.with_raw_response.create(freezes=[
        CreateStreakFreezesRequestFreezesItem(user_id=STREAK_USER),
        CreateStreakFreezesRequestFreezesItem(user_id=STREAK_USER),
        CreateStreakFreezesRequestFreezesItem(user_id=STREAK_USER),
        CreateStreakFreezesRequestFreezesItem(user_id=NO_USER),
    ])
    eq(raw.status_code, 201, "freezes.create: HTTP status (some granted)")
    frozen = raw.data
    no_extra_fields(frozen, "CreateStreakFreezesResponse")
    # 1 (startCount) + 2 granted = maxCount 3; the third is over the limit.
    eq(issue_summary(frozen.issues), [(NO_USER, "error"), (STREAK_USER, "warning")],
       "freezes.create: issues (unknown user, freeze over maxCount)")
    eq(client.users.streak(STREAK_USER).freezes, 3, "users.streak freezes after the grant")

    # ---- pauses ----
    step("admin.streaks.pauses.create")
    pause_end = tomorrow + dt.timedelta(days=2)
    yesterday = today - dt.timedelta(days=1)
    raw = client.admin.streaks.pauses.with_raw_response.create(pauses=[
        CreateStreakPausesRequestPausesItem(user_id=STREAK_USER, start=ymd(tomorrow),
                                            end=ymd(pause_end)),
        CreateStreakPausesRequestPausesItem(user_id=STREAK_USER, start=ymd(yesterday),
                                            end=ymd(yesterday)),
        CreateStreakPausesRequestPausesItem(user_id=NO_USER, start=ymd(tomorrow),
                                            end=ymd(tomorrow)),
    ])
    eq(raw.status_code, 201, "pauses.create: HTTP status")
    pauses = raw.data
    no_extra_fields(pauses, "CreateStreakPausesResponse")
    eq(len(pauses.created), 1, "pauses.create: number created")
    pause = pauses.created[0]
    check(isinstance(pause.id, str) and pause.id, f"pauses.create: id {pause.id!r}")
    eq((pause.user_id, pause.start, pause.end, pause.status),
       (STREAK_USER, ymd(tomorrow), ymd(pause_end), "active"), "pauses.create: created[0]")
    eq(issue_summary(pauses.issues), [(NO_USER, "error"), (STREAK_USER, "error")],
       "pauses.create: issues (unknown user, start in the past)")

    step("users.streak shows the pause")
    paused = client.users.streak(STREAK_USER)
    no_extra_fields(paused, "StreakResponse(paused)")
    eq([(p.id, p.start, p.end) for p in paused.pauses], [(pause.id, ymd(tomorrow), ymd(pause_end))],
       "users.streak: pauses")
    # Paused days are skipped: the streak must next be extended the day after the pause.
    eq(paused.expires, ymd(pause_end + dt.timedelta(days=1)), "users.streak: expires with pause")

    step("admin.streaks.pauses.delete")
    deleted = client.admin.streaks.pauses.delete(ids=[pause.id, UNKNOWN_UUID])
    no_extra_fields(deleted, "DeleteStreakPausesResponse")
    eq([d.id for d in deleted.deleted], [pause.id], "pauses.delete: deleted ids")
    eq(issue_summary(deleted.issues), [(UNKNOWN_UUID, "error")], "pauses.delete: issues")
    unpaused = client.users.streak(STREAK_USER)
    eq((unpaused.pauses, unpaused.expires), ([], ymd(tomorrow)),
       "users.streak after deleting the pause (pauses, expires)")

    # ---- restore / reset ----
    step("streak for the reset user")
    ev = client.metrics.event(METRIC_KEY, user=UpsertedUser(id=RESET_USER), value=1)
    eq((ev.current_streak.length, ev.current_streak.extended), (1, True),
       "reset user: first event streak (length, extended)")

    step("admin.streaks.restore (nothing longer to restore)")
    raw = client.admin.streaks.with_raw_response.restore(users=[
        RestoreStreaksRequestUsersItem(id=RESET_USER),
        RestoreStreaksRequestUsersItem(id=NO_USER),
    ])
    check(200 <= raw.status_code < 300, f"restore: HTTP status {raw.status_code}")
    restored = raw.data
    no_extra_fields(restored, "RestoreStreaksResponse")
    eq(restored.restored_users, [], "restore: restored_users")
    eq(issue_summary(restored.issues), [(NO_USER, "error"), (RESET_USER, "warning")],
       "restore: issues (unknown user, no longer streak in the window)")

    step("admin.streaks.reset")
    raw = client.admin.streaks.with_raw_response.reset(users=[
        ResetStreaksRequestUsersItem(id=RESET_USER),
        ResetStreaksRequestUsersItem(id=NO_USER),
    ])
    check(200 <= raw.status_code < 300, f"reset: HTTP status {raw.status_code}")
    reset = raw.data
    no_extra_fields(reset, "ResetStreaksResponse")
    eq(reset.reset_users, [RESET_USER], "reset: reset_users")
    eq(issue_summary(reset.issues), [(NO_USER, "error")], "reset: issues")

    step("users.streak after reset")
    after = client.users.streak(RESET_USER, history_periods=1)
    no_extra_fields(after, "StreakResponse(reset)")
    eq((after.length, after.started, after.period_start, after.period_end, after.expires,
        after.extended), (0, None, None, None, None, None),
       "after reset: (length, started, period_start, period_end, expires, extended)")
    eq(len(after.streak_history), 1, "after reset: history_periods=1")
    row = after.streak_history[0]
    eq((row.period_start, row.length), (ymd(today), 0), "after reset: today's history row")
    check(is_aware_datetime(row.reset_at), f"after reset: reset_at {row.reset_at!r}")
    eq([(i.user_id, i.streak_length) for i in client.streaks.list(user_ids=[RESET_USER])],
       [(RESET_USER, 0)], "streaks.list after reset")
    check(utc_today() == today, "the UTC date changed while the streak steps ran")


# ---- preferences -----------------------------------------------------------------------

def run_preferences(client):
    step("users.get_preferences (defaults)")
    prefs = client.users.get_preferences(OTHER_USER)
    no_extra_fields(prefs, "UserPreferencesResponse(defaults)")
    n = prefs.notifications
    eq((n.achievement_completed, n.recap, n.reactivation, n.streak_reminder),
       (None, None, None, None), "default notification preferences")
    eq(prefs.streak, None, "default streak preferences")

    step("users.update_preferences (notifications)")
    prefs = client.users.update_preferences(
        OTHER_USER,
        notifications=NotificationPreferences(achievement_completed=["email", "push"],
                                              streak_reminder=["push"]),
    )
    no_extra_fields(prefs, "UserPreferencesResponse(notifications)")
    n = prefs.notifications
    expected_notifications = (["email", "push"], None, None, ["push"])
    eq((n.achievement_completed, n.recap, n.reactivation, n.streak_reminder),
       expected_notifications, "notifications after update")
    eq(prefs.streak, None, "streak preferences untouched")

    step("users.update_preferences (streak, customization enabled)")
    prefs = client.users.update_preferences(
        OTHER_USER,
        streak=StreakPreferences(enabled=True, evaluation_mode="AND",
                                 metrics=[StreakMetricPreference(key=METRIC_KEY, threshold=2)],
                                 days_off=[6, 0]),
    )
    no_extra_fields(prefs, "UserPreferencesResponse(streak)")
    st = prefs.streak
    check(st is not None, "streak preferences missing after update")
    expected_streak = (True, "AND", [(METRIC_KEY, 2.0)], [0, 6])
    eq((st.enabled, st.evaluation_mode, [(m.key, m.threshold) for m in st.metrics], st.days_off),
       expected_streak, "streak preferences after update")
    n = prefs.notifications
    eq((n.achievement_completed, n.recap, n.reactivation, n.streak_reminder),
       expected_notifications, "notifications kept by a streak-only update")

    step("users.get_preferences (after updates)")
    prefs = client.users.get_preferences(OTHER_USER)
    no_extra_fields(prefs, "UserPreferencesResponse(get)")
    st, n = prefs.streak, prefs.notifications
    eq((st.enabled, st.evaluation_mode, [(m.key, m.threshold) for m in st.metrics], st.days_off),
       expected_streak, "streak preferences read back")
    eq((n.achievement_completed, n.recap, n.reactivation, n.streak_reminder),
       expected_notifications, "notifications read back")

    step("users.update_preferences errors")
    expect_api_error(422, "update_preferences(unknown channel)",
                     lambda: client.users.update_preferences(
                         OTHER_USER, notifications=NotificationPreferences(recap=["sms"])),
                     UnprocessableEntityError)
    expect_api_error(404, "update_preferences(no-such-user)",
                     lambda: client.users.update_preferences(
                         NO_USER, notifications=NotificationPreferences(recap=["email"])),
                     NotFoundError)
    expect_api_error(404, "get_preferences(no-such-user)",
                     lambda: client.users.get_preferences(NO_USER), NotFoundError)

    step("customization disabled -> streak preferences are 403")
    settings = client.admin.streaks.settings.update(customization_enabled=False)
    eq(settings.customization_enabled, False, "settings.update(customization_enabled=False)")
    eq([(m.key, m.threshold) for m in settings.metrics], [(METRIC_KEY, 1)],
       "settings.update keeps the fields it was not sent")
    expect_api_error(403, "update_preferences(streak) with customization disabled",
                     lambda: client.users.update_preferences(
                         OTHER_USER, streak=StreakPreferences(days_off=[1])),
                     ForbiddenError)


# ---- achievements ----------------------------------------------------------------------

def run_achievements(client, *, metric_id, plan_id, device_id):
    step("admin.achievements.create")
    raw = client.admin.achievements.with_raw_response.create(request=[
        CreateAchievementRequestItem(
            name="First iOS lesson", trigger="metric", status="active",
            description="Finish a lesson on iOS",
            badge=CreateAchievementRequestItemBadge(url="https://example.com/ios.png"),
            metric_id=metric_id, metric_value=1,
            event_attributes=[CreateAchievementRequestItemEventAttributesItem(
                attribute_id=device_id, attribute_value="ios")],
        ),
        CreateAchievementRequestItem(
            name="Onboarded", trigger="api", status="active", key=API_ACHIEVEMENT_KEY,
            user_attributes=[CreateAchievementRequestItemUserAttributesItem(
                attribute_id=plan_id, attribute_value="pro")],
        ),
        CreateAchievementRequestItem(name="One-day streak", trigger="streak", status="active",
                                     streak_length=1),
        CreateAchievementRequestItem(name="Broken", trigger="metric", status="active"),
    ])
    eq(raw.status_code, 201, "create achievements: HTTP status")
    created = raw.data
    no_extra_fields(created, "CreateAchievementsResponse")
    eq([a.name for a in created.created], ["First iOS lesson", "Onboarded", "One-day streak"],
       "create achievements: created names")
    eq([(i.index, i.severity) for i in created.issues], [(3, "error")],
       "create achievements: issues (metric trigger without metricId)")
    metric_ach, api_ach, streak_ach = created.created
    eq((metric_ach.trigger, metric_ach.status, metric_ach.metric_id, metric_ach.metric_value,
        metric_ach.description, metric_ach.badge and metric_ach.badge.url,
        [(f.attribute_id, f.attribute_value) for f in metric_ach.event_attributes or []],
        metric_ach.user_attributes),
       ("metric", "active", metric_id, 1.0, "Finish a lesson on iOS",
        "https://example.com/ios.png", [(device_id, "ios")], []),
       "created metric achievement")
    eq((api_ach.trigger, api_ach.status, api_ach.key, api_ach.badge,
        [(f.attribute_id, f.attribute_value) for f in api_ach.user_attributes]),
       ("api", "active", API_ACHIEVEMENT_KEY, None, [(plan_id, "pro")]),
       "created api achievement")
    eq((streak_ach.trigger, streak_ach.streak_length), ("streak", 1), "created streak achievement")

    step("admin.achievements.create (achievement trigger)")
    # Prerequisites an event can complete, so the composite shows up in an event response.
    combo_resp = client.admin.achievements.create(request=[CreateAchievementRequestItem(
        name="Overachiever", trigger="achievement", status="active",
        achievement_ids=[metric_ach.id, streak_ach.id],
    )])
    no_extra_fields(combo_resp, "CreateAchievementsResponse(achievement trigger)")
    eq(combo_resp.issues, [], "achievement-trigger create: issues")
    combo = combo_resp.created[0]
    eq((combo.trigger, combo.achievement_ids), ("achievement", [metric_ach.id, streak_ach.id]),
       "achievement-trigger achievement")
    all_ids = {metric_ach.id, api_ach.id, streak_ach.id, combo.id}

    step("admin.achievements.list / get")
    admin_list = client.admin.achievements.list()
    no_extra_fields(admin_list, "ListAchievementsResponse")
    eq([a.id for a in admin_list], [metric_ach.id, api_ach.id, streak_ach.id, combo.id],
       "admin achievements list (creation order)")
    one = client.admin.achievements.get(metric_ach.id)
    no_extra_fields(one, "AdminAchievement(get)")
    eq(one, metric_ach, "admin achievements get == created")
    expect_api_error(404, "admin.achievements.get(unknown)",
                     lambda: client.admin.achievements.get(UNKNOWN_UUID), NotFoundError)

    step("backfill completes the metric achievement for an existing user")
    # USER sent 6 lessons on ios before the achievement existed (silent backfill).
    done = wait_for(f"users.achievements({USER}) lists the backfilled achievement",
                    lambda: [a for a in client.users.achievements(USER) if a.id == metric_ach.id])
    check(is_aware_datetime(done[0].achieved_at), f"backfilled achieved_at {done[0].achieved_at!r}")

    step("metrics.event completes metric, streak and composite achievements")
    raw = client.metrics.with_raw_response.event(
        METRIC_KEY, user=UpsertedUser(id=ACH_USER, attributes={"plan": "pro"}), value=1,
        attributes={"device": "ios"},
    )
    eq(raw.status_code, 201, "achievement event: HTTP status")
    ev = raw.data
    no_extra_fields(ev, "EventResponse(achievements)")
    eq((ev.current_streak.length, ev.current_streak.extended), (1, True),
       "achievement event: current_streak (length, extended)")
    by_id = {a.id: a for a in ev.achievements}
    eq(sorted(by_id), sorted([metric_ach.id, streak_ach.id, combo.id]),
       "achievement event: completed achievements (metric, streak, composite)")
    m = by_id[metric_ach.id]
    eq((m.name, m.trigger, m.description, m.badge_url, m.metric_id, m.metric_value, m.metric_name,
        m.event_attribute and (m.event_attribute.key, m.event_attribute.value),
        [(f.key, f.value) for f in m.event_attributes or []], m.user_attributes, m.key),
       ("First iOS lesson", "metric", "Finish a lesson on iOS", "https://example.com/ios.png",
        metric_id, 1.0, "Lessons", ("device", "ios"), [("device", "ios")], [], None),
       "achievement event: metric achievement")
    s = by_id[streak_ach.id]
    eq((s.name, s.trigger, s.streak_length), ("One-day streak", "streak", 1),
       "achievement event: streak achievement")
    c = by_id[combo.id]
    eq((c.name, c.trigger, c.achievement_ids), ("Overachiever", "achievement",
                                               [metric_ach.id, streak_ach.id]),
       "achievement event: composite achievement")
    for a in ev.achievements:
        check(is_aware_datetime(a.achieved_at), f"event achievement achieved_at {a.achieved_at!r}")

    step("users.single_metric lists the metric's achievements")
    single = client.users.single_metric(ACH_USER, METRIC_KEY)
    no_extra_fields(single, "MetricResponse(achievements)")
    eq([(a.id, a.achieved_at is not None) for a in single.achievements], [(metric_ach.id, True)],
       "single_metric: achievements (id, achieved)")

    step("achievements.complete")
    raw = client.achievements.with_raw_response.complete(API_ACHIEVEMENT_KEY,
                                                         user=UpsertedUser(id=ACH_USER))
    eq(raw.status_code, 201, "achievements.complete: HTTP status")
    completion = raw.data
    no_extra_fields(completion, "AchievementCompletionResponse")
    check(isinstance(completion.completion_id, str) and completion.completion_id,
          f"complete: completion_id {completion.completion_id!r}")
    a = completion.achievement
    eq((a.id, a.name, a.trigger, a.key, [(f.key, f.value) for f in a.user_attributes]),
       (api_ach.id, "Onboarded", "api", API_ACHIEVEMENT_KEY, [("plan", "pro")]),
       "complete: achievement")
    check(is_aware_datetime(a.achieved_at), f"complete: achieved_at {a.achieved_at!r}")
    eq(completion.points, {}, "complete: points")

    step("achievements.complete again returns the same completion")
    again = client.achievements.complete(API_ACHIEVEMENT_KEY, user=UpsertedUser(id=ACH_USER))
    no_extra_fields(again, "AchievementCompletionResponse(again)")
    eq((again.completion_id, again.achievement.achieved_at),
       (completion.completion_id, a.achieved_at), "complete again: completion")

    step("achievements.complete errors")
    expect_api_error(404, "achievements.complete(unknown key)",
                     lambda: client.achievements.complete("no-such-achievement",
                                                          user=UpsertedUser(id=ACH_USER)),
                     NotFoundError)
    # OTHER_USER has no `plan: pro`, which the api achievement requires.
    expect_api_error(422, "achievements.complete(user not eligible)",
                     lambda: client.achievements.complete(API_ACHIEVEMENT_KEY,
                                                          user=UpsertedUser(id=OTHER_USER)),
                     UnprocessableEntityError)

    step("users.achievements (completed)")
    mine = client.users.achievements(ACH_USER)
    no_extra_fields(mine, "List[UserAchievementWithStatsResponse]")
    eq(sorted(x.id for x in mine), sorted(all_ids),
       "users.achievements: metric, streak, composite and api")
    for x in mine:
        check(is_aware_datetime(x.achieved_at), f"users.achievements {x.name}: achieved_at")
        check(x.completions >= 1, f"users.achievements {x.name}: completions {x.completions}")
        check_stats(x, f"users.achievements {x.name}")
    check([x.achieved_at for x in mine] == sorted(x.achieved_at for x in mine),
          "users.achievements: completion order")

    step("users.achievements include_incomplete")
    eq(client.users.achievements(OTHER_USER), [], "users.achievements(other): none completed")
    incomplete = client.users.achievements(OTHER_USER, include_incomplete="true")
    no_extra_fields(incomplete, "List[UserAchievementWithStatsResponse](incomplete)")
    # The api achievement needs `plan: pro`, so it is not offered to OTHER_USER.
    eq(sorted((x.id, x.achieved_at) for x in incomplete),
       sorted((i, None) for i in (metric_ach.id, streak_ach.id, combo.id)),
       "users.achievements(include_incomplete): (id, achieved_at)")
    expect_api_error(404, "users.achievements(no-such-user)",
                     lambda: client.users.achievements(NO_USER), NotFoundError)

    step("achievements.all")
    everything = client.achievements.all_()
    no_extra_fields(everything, "List[AchievementWithStatsResponse]")
    eq([x.id for x in everything], [metric_ach.id, api_ach.id, streak_ach.id, combo.id],
       "achievements.all: ids")
    stats = {x.id: x for x in everything}
    for x in everything:
        check_stats(x, f"achievements.all {x.name}")
    eq(stats[api_ach.id].completions, 1, "achievements.all: completions of the api achievement")
    check(stats[combo.id].completions >= 1,
          f"achievements.all: composite completions {stats[combo.id].completions}")
    eq((stats[api_ach.id].key, stats[streak_ach.id].streak_length,
        stats[combo.id].achievement_ids, stats[metric_ach.id].metric_name),
       (API_ACHIEVEMENT_KEY, 1, [metric_ach.id, streak_ach.id], "Lessons"),
       "achievements.all: trigger fields")
    # Backfill has run for USER; ACH_USER earned it by event: 2 users sent ios lessons.
    wait_for("achievements.all: metric achievement completions == 2",
             lambda: [x for x in client.achievements.all_()
                      if x.id == metric_ach.id and x.completions == 2])
    filtered = client.achievements.all_(user_attributes="plan:free")
    eq([x.id for x in filtered], [metric_ach.id, streak_ach.id, combo.id],
       "achievements.all(userAttributes=plan:free) hides the plan:pro achievement")

    step("admin.achievements.update")
    updated = client.admin.achievements.update(request=[
        UpdateAchievementRequestItem(id=api_ach.id, name="Onboarded!",
                                     description="Finished onboarding"),
        UpdateAchievementRequestItem(id=UNKNOWN_UUID, name="Nobody"),
    ])
    no_extra_fields(updated, "UpdateAchievementsResponse")
    eq([(u.id, u.name, u.description, u.key, u.trigger) for u in updated.updated],
       [(api_ach.id, "Onboarded!", "Finished onboarding", API_ACHIEVEMENT_KEY, "api")],
       "achievements.update: updated")
    eq(issue_summary(updated.issues), [(UNKNOWN_UUID, "error")], "achievements.update: issues")
    eq(client.admin.achievements.get(api_ach.id).name, "Onboarded!", "get after update: name")

    step("admin.achievements.delete")
    deleted = client.admin.achievements.delete(ids=[streak_ach.id, UNKNOWN_UUID])
    no_extra_fields(deleted, "DeleteAchievementsResponse")
    eq([d.id for d in deleted.deleted], [streak_ach.id], "achievements.delete: deleted")
    eq(issue_summary(deleted.issues), [(UNKNOWN_UUID, "error")], "achievements.delete: issues")
    expect_api_error(404, "admin.achievements.get(deleted)",
                     lambda: client.admin.achievements.get(streak_ach.id), NotFoundError)
    eq([x.id for x in client.admin.achievements.list()], [metric_ach.id, api_ach.id, combo.id],
       "admin achievements list after delete")
    eq([x.id for x in client.achievements.all_()], [metric_ach.id, api_ach.id, combo.id],
       "achievements.all after delete")


def run_fractional_streak_threshold(client):
    """`StreakSettingsMetric.threshold` is an `int` in the Python SDK
    (trophy/types/streak_settings_metric.py), but clients whose type is a plain number (the
    Node SDK, curl) can send 1.5. Kudos must then either reject it (422) or still answer
    `StreakSettings` this SDK can parse; otherwise `settings.get()` fails for every Python
    user of the org. The SDK validates its own request models, so the value is built with
    `model_construct` to send what such a client would send."""
    step("admin.streaks.settings.update fractional threshold -> 422 or SDK-parseable settings")
    fractional = StreakSettingsMetric.model_construct(key=METRIC_KEY, threshold=1.5)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydantic: "Expected `int`" while serializing
            accepted = client.admin.streaks.settings.update(metrics=[fractional])
    except UnprocessableEntityError:
        accepted = None
    except ParsingError as e:
        raise CheckFailed(
            "PATCH /admin/v1/streaks/settings with metrics[0].threshold = 1.5 was accepted "
            f"(HTTP {e.status_code}) and answered a body the SDK cannot parse as StreakSettings "
            "(metrics[].threshold is `int` in trophy/types/streak_settings_metric.py): "
            f"{e.body!r}. Kudos should reject a non-integer threshold with 422."
        ) from e
    if accepted is not None:
        no_extra_fields(accepted, "StreakSettings(fractional threshold)")
    got = client.admin.streaks.settings.get()
    no_extra_fields(got, "StreakSettings(after fractional threshold)")
    check(all(isinstance(m.threshold, int) for m in got.metrics),
          f"StreakSettings.metrics thresholds: {got.metrics!r}")


# ---- points ----------------------------------------------------------------------------

def admin_system_tuple(s):
    return (s.id, s.key, s.name, s.description, s.status, s.badge and s.badge.url, s.max_points)


def admin_level_tuple(lv):
    return (lv.id, lv.key, lv.name, lv.points, lv.description, lv.badge and lv.badge.url)


def app_level_tuple(lv):
    return lv and (lv.id, lv.key, lv.name, lv.points, lv.description, lv.badge_url)


def admin_boost_tuple(b):
    return (b.name, b.status, b.start, b.end, b.multiplier, b.rounding, b.user_id,
            b.user_attributes and [(f.attribute_id, f.attribute_value) for f in b.user_attributes])


def app_boost_tuple(b):
    return (b.id, b.name, b.status, b.start, b.end, b.multiplier, b.rounding)


def award_tuples(awards):
    """`(trigger id, awarded, total, sorted boost ids)` of each award; checks the rest of
    each award's shape."""
    out = []
    for a in awards:
        check(isinstance(a.id, str) and a.id, f"award without an id: {a!r}")
        check(isinstance(a.date, str)
              and is_aware_datetime(dt.datetime.fromisoformat(a.date.replace("Z", "+00:00"))),
              f"award date must be an ISO 8601 date-time: {a.date!r}")
        check(a.trigger is not None and a.boosts is not None, f"award trigger/boosts: {a!r}")
        out.append((a.trigger.id, a.awarded, a.total, sorted(b.id for b in a.boosts)))
    return out


def level_unchanged(p, where):
    """`level` is absent from a MetricEventPointsResponse whose level did not change."""
    check("level" not in p.model_fields_set,
          f"{where}: `level` must be absent when the level did not change, got {p.level!r}")


def run_points(client, *, device_id):
    today = utc_today()

    def day(n):
        return ymd(today + dt.timedelta(days=n))

    # ---- catalog ----
    step("points: users.create (target of a user-specific boost, before any points system)")
    boosted = client.users.create(id=POINTS_BOOST_USER, name="Boosted User", tz="UTC")
    ALL_USERS.add(POINTS_BOOST_USER)
    no_extra_fields(boosted, "User(points boost user)")

    step("points: admin.metrics.create / admin.achievements.create")
    created = client.admin.metrics.create(
        request=[CreateMetricRequestItem(name="Quizzes", key=POINTS_METRIC_KEY)])
    eq(created.issues, [], "create quizzes metric: issues")
    quiz_id = created.created[0].id
    created = client.admin.achievements.create(request=[CreateAchievementRequestItem(
        name="Points champion", trigger="api", status="active", key=POINTS_ACHIEVEMENT_KEY)])
    eq(created.issues, [], "create points achievement: issues")
    champion_id = created.created[0].id

    # ---- admin: systems ----
    step("admin.points.systems.create (nested levels, triggers and boosts; a bad item)")
    xp_badge = "https://example.com/xp.png"
    bronze_badge = "https://example.com/bronze.png"
    raw = client.admin.points.systems.with_raw_response.create(request=[
        CreatePointsSystemRequestItem(
            name="SDK XP", key=POINTS_KEY, description="Points for the SDK check",
            badge=CreatePointsSystemRequestItemBadge(url=xp_badge), max_points=1000,
            levels=[
                CreatePointsLevelRequestItem(
                    name="Bronze", key="bronze", points=10, description="First steps",
                    badge=CreatePointsLevelRequestItemBadge(url=bronze_badge)),
                CreatePointsLevelRequestItem(name="Silver", key="silver", points=50),
                CreatePointsLevelRequestItem(name="Gold", key="gold", points=200),
            ],
            triggers=[
                CreatePointsTriggerRequestItem(type="user_creation", points=10, status="active"),
                CreatePointsTriggerRequestItem(
                    type="metric", points=5, status="active", metric_id=quiz_id,
                    metric_threshold=2,
                    event_attributes=[CreatePointsTriggerRequestItemEventAttributesItem(
                        attribute_id=device_id, attribute_value="web")]),
            ],
            boosts=[CreatePointsBoostRequestItem(name="Last week", start=day(-10), end=day(-5),
                                                 multiplier=3)],
        ),
        CreatePointsSystemRequestItem(
            name="Broken", key="sdk-broken",
            triggers=[CreatePointsTriggerRequestItem(type="user_creation", points=0,
                                                     status="active")]),
        CreatePointsSystemRequestItem(name="Coins", key=POINTS_PLAIN_KEY),
    ])
    eq(raw.status_code, 201, "create points systems: HTTP status")
    created = raw.data
    no_extra_fields(created, "CreatePointsSystemsResponse")
    eq([(i.index, i.severity, i.message) for i in created.issues],
       [(1, "error", "triggers 0: Points must not be zero")],
       "create points systems: issues (nested trigger with points 0)")
    # The bad nested trigger is left out; its system is created without it.
    eq([s.key for s in created.created], [POINTS_KEY, "sdk-broken", POINTS_PLAIN_KEY],
       "create points systems: created keys")
    xp, broken, coins = created.created
    xp_id, broken_id, coins_id = xp.id, broken.id, coins.id
    eq((broken.triggers, broken.levels, broken.boosts), ([], None, None),
       "created sdk-broken: (triggers without the bad one, levels, boosts)")
    check(isinstance(xp_id, str) and xp_id, f"created system id {xp_id!r}")
    eq(admin_system_tuple(xp)[1:],
       (POINTS_KEY, "SDK XP", "Points for the SDK check", "active", xp_badge, 1000),
       "created xp (key, name, description, status, badge, maxPoints)")
    eq(admin_system_tuple(coins)[1:], (POINTS_PLAIN_KEY, "Coins", "", "active", None, None),
       "created coins (no description is \"\", no badge, no maxPoints)")
    eq((coins.levels, coins.boosts, coins.triggers), (None, None, None),
       "created coins: nested lists only when the request had them")
    eq([admin_level_tuple(lv)[1:] for lv in xp.levels],
       [("bronze", "Bronze", 10, "First steps", bronze_badge),
        ("silver", "Silver", 50, "", None), ("gold", "Gold", 200, "", None)],
       "created xp levels (key, name, points, description, badge)")
    bronze, silver, gold = xp.levels
    uc_trigger, metric_trigger = xp.triggers
    eq((uc_trigger.type, uc_trigger.points, uc_trigger.status, uc_trigger.user_attributes,
        uc_trigger.block_if_out_of_points, uc_trigger.metric_id),
       ("user_creation", 10, "active", [], False, None), "created user_creation trigger")
    eq((metric_trigger.type, metric_trigger.points, metric_trigger.status,
        metric_trigger.metric_id, metric_trigger.metric_threshold,
        [(f.attribute_id, f.attribute_value) for f in metric_trigger.event_attributes or []],
        metric_trigger.user_attributes, metric_trigger.block_if_out_of_points),
       ("metric", 5, "active", quiz_id, 2, [(device_id, "web")], [], False),
       "created metric trigger")
    eq([admin_boost_tuple(b) for b in xp.boosts],
       [("Last week", "finished", day(-10), day(-5), 3.0, "down", None, [])],
       "created xp boosts (name, status, start, end, multiplier, rounding default, userId, "
       "userAttributes)")
    finished_boost = xp.boosts[0]

    step("admin.points.systems.list / get")
    listed = client.admin.points.systems.list()
    no_extra_fields(listed, "ListPointsSystemsResponse")
    eq([admin_system_tuple(s) for s in listed],
       [admin_system_tuple(xp), admin_system_tuple(broken), admin_system_tuple(coins)],
       "points systems list (creation order)")
    got = client.admin.points.systems.get(xp_id)
    no_extra_fields(got, "AdminPointsSystem(get)")
    eq(admin_system_tuple(got), admin_system_tuple(xp), "points systems get == created")
    expect_api_error(404, "admin.points.systems.get(unknown)",
                     lambda: client.admin.points.systems.get(UNKNOWN_UUID), NotFoundError)

    step("admin.points.systems.update (maxPoints, description)")
    updated = client.admin.points.systems.update(request=[
        UpdatePointsSystemRequestItem(id=xp_id, max_points=110,
                                      description="XP for the SDK check"),
        UpdatePointsSystemRequestItem(id=UNKNOWN_UUID, name="Nobody"),
    ])
    no_extra_fields(updated, "UpdatePointsSystemsResponse")
    eq([admin_system_tuple(s) for s in updated.updated],
       [(xp_id, POINTS_KEY, "SDK XP", "XP for the SDK check", "active", xp_badge, 110)],
       "points systems update: updated")
    eq(issue_summary(updated.issues), [(UNKNOWN_UUID, "error")], "points systems update: issues")
    eq(client.admin.points.systems.get(xp_id).max_points, 110, "get after update: maxPoints")

    # ---- admin: triggers ----
    step("admin.points.triggers.create (streak, achievement, time, metric; a bad item)")
    raw = client.admin.points.triggers.with_raw_response.create(xp_id, request=[
        CreatePointsTriggerRequestItem(type="streak", points=20, status="active", streak_length=1),
        CreatePointsTriggerRequestItem(type="achievement", points=25, status="active",
                                       achievement_id=champion_id),
        CreatePointsTriggerRequestItem(type="time", points=1, status="active", time_unit="hours",
                                       time_interval=1),
        CreatePointsTriggerRequestItem(type="metric", points=1, status="active",
                                       metric_id=quiz_id, metric_threshold=1),
        CreatePointsTriggerRequestItem(type="metric", points=0, metric_id=quiz_id,
                                       metric_threshold=1),
    ])
    eq(raw.status_code, 201, "create points triggers: HTTP status")
    created = raw.data
    no_extra_fields(created, "CreatePointsTriggersResponse")
    eq([(i.index, i.severity, i.message) for i in created.issues],
       [(4, "error", "Points must not be zero")], "create points triggers: issues")
    streak_trigger, ach_trigger, time_trigger, doomed_trigger = created.created
    eq((streak_trigger.type, streak_trigger.points, streak_trigger.status,
        streak_trigger.streak_length, streak_trigger.metric_id, streak_trigger.event_attributes),
       ("streak", 20, "active", 1, None, None), "created streak trigger")
    eq((ach_trigger.type, ach_trigger.points, ach_trigger.achievement_id),
       ("achievement", 25, champion_id), "created achievement trigger")
    eq((time_trigger.type, time_trigger.time_unit, time_trigger.time_interval),
       ("time", "hours", 1), "created time trigger (admin spelling hours|days)")
    eq((doomed_trigger.type, doomed_trigger.metric_threshold, doomed_trigger.event_attributes),
       ("metric", 1, []), "created metric trigger without filters")

    step("admin.points.triggers.list / get")
    all_triggers = [uc_trigger, metric_trigger, streak_trigger, ach_trigger, time_trigger,
                    doomed_trigger]
    listed = client.admin.points.triggers.list(xp_id)
    no_extra_fields(listed, "ListPointsTriggersResponse")
    eq([t.id for t in listed], [t.id for t in all_triggers], "triggers list (creation order)")
    eq(listed[1], metric_trigger, "triggers list: nested metric trigger == created")
    got = client.admin.points.triggers.get(xp_id, streak_trigger.id)
    no_extra_fields(got, "AdminPointsTrigger(get)")
    eq(got, streak_trigger, "triggers get == created")
    expect_api_error(404, "admin.points.triggers.get(unknown)",
                     lambda: client.admin.points.triggers.get(xp_id, UNKNOWN_UUID), NotFoundError)
    expect_api_error(404, "admin.points.triggers.list(unknown system)",
                     lambda: client.admin.points.triggers.list(UNKNOWN_UUID), NotFoundError)

    step("admin.points.triggers.update")
    updated = client.admin.points.triggers.update(xp_id, request=[
        PatchPointsTriggersRequestItem(id=time_trigger.id, time_interval=2),
        PatchPointsTriggersRequestItem(id=metric_trigger.id, streak_length=3),
    ])
    no_extra_fields(updated, "PatchPointsTriggersResponse")
    eq([(t.id, t.time_unit, t.time_interval) for t in updated.updated],
       [(time_trigger.id, "hours", 2)], "triggers update: updated")
    eq([(i.id, i.severity, i.message) for i in updated.issues],
       [(metric_trigger.id, "error", "streakLength is only allowed on streak triggers")],
       "triggers update: issues")
    eq(client.admin.points.triggers.get(xp_id, metric_trigger.id), metric_trigger,
       "metric trigger unchanged by the rejected update")

    # ---- admin: levels ----
    step("admin.points.levels.create / list / get / update / delete")
    raw = client.admin.points.levels.with_raw_response.create(xp_id, request=[
        CreatePointsLevelRequestItem(name="Platinum", key="platinum", points=1000),
        CreatePointsLevelRequestItem(name="Gold again", key="gold", points=300),
    ])
    eq(raw.status_code, 201, "create levels: HTTP status")
    levels = raw.data
    no_extra_fields(levels, "CreatePointsLevelsResponse")
    eq([admin_level_tuple(lv)[1:] for lv in levels.created],
       [("platinum", "Platinum", 1000, "", None)], "create levels: created")
    eq([(i.index, i.severity, i.message) for i in levels.issues],
       [(1, "error", "Key already in use by another level")], "create levels: issues")
    platinum = levels.created[0]
    listed = client.admin.points.levels.list(xp_id)
    no_extra_fields(listed, "ListPointsLevelsResponse")
    eq([lv.key for lv in listed], ["bronze", "silver", "gold", "platinum"],
       "levels list (creation order)")
    got = client.admin.points.levels.get(xp_id, platinum.id)
    no_extra_fields(got, "AdminPointsLevel(get)")
    eq(got, platinum, "levels get == created")
    updated = client.admin.points.levels.update(xp_id, request=[
        PatchPointsLevelsRequestItem(id=platinum.id, name="Platinum!", points=900),
        PatchPointsLevelsRequestItem(id=UNKNOWN_UUID, name="Nobody"),
    ])
    no_extra_fields(updated, "PatchPointsLevelsResponse")
    eq([admin_level_tuple(lv) for lv in updated.updated],
       [(platinum.id, "platinum", "Platinum!", 900, "", None)], "levels update: updated")
    eq(issue_summary(updated.issues), [(UNKNOWN_UUID, "error")], "levels update: issues")
    deleted = client.admin.points.levels.delete(xp_id, ids=[platinum.id, UNKNOWN_UUID])
    no_extra_fields(deleted, "DeletePointsLevelsResponse")
    eq([d.id for d in deleted.deleted], [platinum.id], "levels delete: deleted")
    eq(issue_summary(deleted.issues), [(UNKNOWN_UUID, "error")], "levels delete: issues")
    eq([lv.key for lv in client.admin.points.levels.list(xp_id)], ["bronze", "silver", "gold"],
       "levels list after delete")
    expect_api_error(404, "admin.points.levels.get(deleted)",
                     lambda: client.admin.points.levels.get(xp_id, platinum.id), NotFoundError)

    # ---- admin: boosts ----
    step("admin.points.boosts.create (global, scheduled, user-specific; bad items)")
    raw = client.admin.points.boosts.with_raw_response.create(xp_id, request=[
        CreatePointsBoostRequestItem(name="Launch", start=day(-2), multiplier=1.5, rounding="up"),
        CreatePointsBoostRequestItem(name="Next month", start=day(10), end=day(20), multiplier=2),
        CreatePointsBoostRequestItem(name="VIP", user_id=POINTS_BOOST_USER, start=day(-2),
                                     multiplier=1.25, rounding="down"),
        CreatePointsBoostRequestItem(name="Temporary", start=day(30), multiplier=4),
        CreatePointsBoostRequestItem(name="Flat", start=day(-2), multiplier=1),
        CreatePointsBoostRequestItem(name="Ghost", user_id=NO_USER, start=day(-2), multiplier=2),
    ])
    eq(raw.status_code, 201, "create boosts: HTTP status")
    boosts = raw.data
    no_extra_fields(boosts, "CreatePointsBoostsResponse")
    eq([admin_boost_tuple(b) for b in boosts.created],
       [("Launch", "active", day(-2), None, 1.5, "up", None, []),
        ("Next month", "scheduled", day(10), day(20), 2.0, "down", None, []),
        ("VIP", "active", day(-2), None, 1.25, "down", POINTS_BOOST_USER, None),
        ("Temporary", "scheduled", day(30), None, 4.0, "down", None, [])],
       "create boosts: created (name, status, start, end, multiplier, rounding, userId, "
       "userAttributes)")
    eq([(i.index, i.severity, i.message) for i in boosts.issues],
       [(4, "error", "Multiplier must be greater than 0, less than 100 and not equal to 1"),
        (5, "error", "User does not exist")], "create boosts: issues")
    launch, next_month, vip, temporary = boosts.created

    step("admin.points.boosts.list / get / update / delete")
    listed = client.admin.points.boosts.list(xp_id)
    no_extra_fields(listed, "ListPointsBoostsResponse")
    eq([b.id for b in listed], [finished_boost.id, launch.id, next_month.id, vip.id, temporary.id],
       "boosts list (creation order)")
    got = client.admin.points.boosts.get(xp_id, vip.id)
    no_extra_fields(got, "AdminPointsBoost(get)")
    eq(got, vip, "boosts get == created")
    updated = client.admin.points.boosts.update(xp_id, request=[
        PatchPointsBoostsRequestItem(id=next_month.id, name="Next month!", end=day(25)),
        PatchPointsBoostsRequestItem(id=UNKNOWN_UUID, name="Nobody"),
    ])
    no_extra_fields(updated, "PatchPointsBoostsResponse")
    eq([admin_boost_tuple(b) for b in updated.updated],
       [("Next month!", "scheduled", day(10), day(25), 2.0, "down", None, [])],
       "boosts update: updated")
    eq(issue_summary(updated.issues), [(UNKNOWN_UUID, "error")], "boosts update: issues")
    deleted = client.admin.points.boosts.delete(xp_id, ids=[temporary.id, UNKNOWN_UUID])
    no_extra_fields(deleted, "DeletePointsBoostsResponse")
    eq([d.id for d in deleted.deleted], [temporary.id], "boosts delete: deleted")
    eq(issue_summary(deleted.issues), [(UNKNOWN_UUID, "error")], "boosts delete: issues")
    expect_api_error(404, "admin.points.boosts.get(deleted)",
                     lambda: client.admin.points.boosts.get(xp_id, temporary.id), NotFoundError)

    # ---- events ----
    # Only the "Launch" boost (x1.5, up) applies to POINTS_USER; "VIP" (x1.25) also to
    # POINTS_BOOST_USER, with rounding down since the two disagree.
    launch_only = [launch.id]

    def event(user, value, device, where):
        raw = client.metrics.with_raw_response.event(
            POINTS_METRIC_KEY, user=user, value=value, attributes={"device": device})
        eq(raw.status_code, 201, f"{where}: HTTP status")
        no_extra_fields(raw.data, f"EventResponse({where})")
        return raw.data

    def system_fields(p, where):
        eq((p.id, p.key, p.name, p.description, p.badge_url, p.max_points),
           (xp_id, POINTS_KEY, "SDK XP", "XP for the SDK check", xp_badge, 110),
           f"{where}: points system fields")

    step("metrics.event creating a user: user_creation and metric awards, level reached")
    ev = event(UpsertedUser(id=POINTS_USER, attributes={"plan": "pro"}), 3, "web", "points event #1")
    ALL_USERS.add(POINTS_USER)
    eq(list(ev.points), [POINTS_KEY], "points event #1: systems in points")
    p = ev.points[POINTS_KEY]
    system_fields(p, "points event #1")
    # user_creation 10 x1.5 = 15; metric 3 // 2 = 1 multiple of 5 x1.5 = 7.5 -> up 8;
    # the unfiltered threshold-1 trigger 3 x 1 x1.5 = 4.5 -> up 5.
    eq((p.total, p.added), (28, 28), "points event #1: (total, added)")
    eq(award_tuples(p.awards),
       [(uc_trigger.id, 15, 15, launch_only), (metric_trigger.id, 8, 23, launch_only),
        (doomed_trigger.id, 5, 28, launch_only)],
       "points event #1: awards (trigger, awarded, total, boosts)")
    eq(app_level_tuple(p.level),
       (bronze.id, "bronze", "Bronze", 10, "First steps", bronze_badge),
       "points event #1: level (changed from none to bronze)")
    t = p.awards[1].trigger
    eq((t.type, t.points, t.status, t.metric_id, t.metric_name, t.metric_threshold,
        [(f.key, f.value) for f in t.event_attributes or []],
        t.event_attribute and (t.event_attribute.key, t.event_attribute.value), t.user_attributes,
        t.streak_length_threshold, t.achievement_id),
       ("metric", 5, "active", quiz_id, "Quizzes", 2, [("device", "web")], ("device", "web"), [],
        None, None), "points event #1: metric award's trigger")
    check(is_aware_datetime(t.created) and is_aware_datetime(t.updated),
          f"award trigger created/updated: {t.created!r} {t.updated!r}")
    eq((p.awards[0].trigger.type, p.awards[0].trigger.event_attributes),
       ("user_creation", None), "points event #1: user_creation award's trigger")
    eq([app_boost_tuple(b) for b in p.awards[0].boosts],
       [(launch.id, "Launch", "active", day(-2), None, 1.5, "up")],
       "points event #1: award boosts")

    step("admin.points.triggers.delete (awards keep naming the trigger)")
    deleted = client.admin.points.triggers.delete(xp_id, ids=[doomed_trigger.id, UNKNOWN_UUID])
    no_extra_fields(deleted, "DeletePointsTriggersResponse")
    eq([d.id for d in deleted.deleted], [doomed_trigger.id], "triggers delete: deleted")
    eq(issue_summary(deleted.issues), [(UNKNOWN_UUID, "error")], "triggers delete: issues")
    eq([t.id for t in client.admin.points.triggers.list(xp_id)],
       [t.id for t in all_triggers[:-1]], "triggers list after delete")
    expect_api_error(404, "admin.points.triggers.get(deleted)",
                     lambda: client.admin.points.triggers.get(xp_id, doomed_trigger.id),
                     NotFoundError)

    step("metrics.event: second multiple of the metric trigger, level unchanged")
    ev = event(UpsertedUser(id=POINTS_USER), 1, "web", "points event #2")
    p = ev.points[POINTS_KEY]
    eq((p.total, p.added, award_tuples(p.awards)),
       (36, 8, [(metric_trigger.id, 8, 36, launch_only)]), "points event #2: (total, added, awards)")
    level_unchanged(p, "points event #2")

    step("metrics.event not matching the trigger's event attributes: no points")
    ev = event(UpsertedUser(id=POINTS_USER), 2, "ios", "points event #3")
    eq(ev.points, {}, "points event #3 (device ios): points")

    step("metrics.event extending a streak: streak award, level changed")
    raw = client.metrics.with_raw_response.event(METRIC_KEY, user=UpsertedUser(id=POINTS_USER),
                                                 value=1)
    eq(raw.status_code, 201, "streak points event: HTTP status")
    ev = raw.data
    no_extra_fields(ev, "EventResponse(streak points)")
    eq((ev.current_streak.length, ev.current_streak.extended, ev.achievements), (1, True, []),
       "streak points event: (streak length, extended, achievements)")
    p = ev.points[POINTS_KEY]
    # 20 x1.5 = 30.
    eq((p.total, p.added, award_tuples(p.awards)),
       (66, 30, [(streak_trigger.id, 30, 66, launch_only)]),
       "streak points event: (total, added, awards)")
    eq((p.awards[0].trigger.type, p.awards[0].trigger.streak_length_threshold), ("streak", 1),
       "streak points event: award trigger (type, streakLengthThreshold)")
    eq(app_level_tuple(p.level), (silver.id, "silver", "Silver", 50, "", None),
       "streak points event: level (bronze -> silver)")

    step("achievements.complete: achievement award in points")
    raw = client.achievements.with_raw_response.complete(POINTS_ACHIEVEMENT_KEY,
                                                         user=UpsertedUser(id=POINTS_USER))
    eq(raw.status_code, 201, "points achievement completion: HTTP status")
    completion = raw.data
    no_extra_fields(completion, "AchievementCompletionResponse(points)")
    eq(list(completion.points), [POINTS_KEY], "completion: systems in points")
    p = completion.points[POINTS_KEY]
    system_fields(p, "completion")
    # 25 x1.5 = 37.5 -> up 38.
    eq((p.total, p.added, award_tuples(p.awards)),
       (104, 38, [(ach_trigger.id, 38, 104, launch_only)]), "completion: (total, added, awards)")
    t = p.awards[0].trigger
    eq((t.type, t.achievement_id, t.achievement_name), ("achievement", champion_id,
                                                        "Points champion"),
       "completion: award trigger (type, achievementId, achievementName)")
    level_unchanged(p, "completion")

    step("metrics.event at maxPoints: the award is clamped")
    ev = event(UpsertedUser(id=POINTS_USER), 2, "web", "points event #4")
    p = ev.points[POINTS_KEY]
    # 8 would pass maxPoints 110: only 6 are awarded.
    eq((p.total, p.added, award_tuples(p.awards)),
       (110, 6, [(metric_trigger.id, 6, 110, launch_only)]), "points event #4: (total, added, awards)")
    level_unchanged(p, "points event #4")

    step("metrics.event with a global and a user-specific boost")
    ev = event(UpsertedUser(id=POINTS_BOOST_USER), 2, "web", "boosted points event")
    p = ev.points[POINTS_KEY]
    # 5 x1.5 x1.25 = 9.375; "up" and "down" disagree -> down 9.
    eq((p.total, p.added, award_tuples(p.awards)),
       (9, 9, [(metric_trigger.id, 9, 9, sorted([launch.id, vip.id]))]),
       "boosted points event: (total, added, awards)")
    level_unchanged(p, "boosted points event (still below every level)")

    # ---- application reads ----
    step("points.system (active triggers only, no key)")
    system = client.points.system(POINTS_KEY)
    no_extra_fields(system, "PointsSystemResponse")
    eq((system.id, system.name, system.description, system.badge_url, system.max_points),
       (xp_id, "SDK XP", "XP for the SDK check", xp_badge, 110),
       "points.system (id, name, description, badgeUrl, maxPoints)")
    eq([(t.id, t.type, t.points, t.status) for t in system.triggers],
       [(uc_trigger.id, "user_creation", 10, "active"), (metric_trigger.id, "metric", 5, "active"),
        (streak_trigger.id, "streak", 20, "active"), (ach_trigger.id, "achievement", 25, "active"),
        (time_trigger.id, "time", 1, "active")],
       "points.system triggers (id, type, points, status)")
    by_id = {t.id: t for t in system.triggers}
    eq((by_id[time_trigger.id].time_unit, by_id[time_trigger.id].time_interval), ("hour", 2),
       "points.system time trigger (application spelling hour|day)")
    eq((by_id[metric_trigger.id].metric_name, by_id[metric_trigger.id].metric_threshold,
        [(f.key, f.value) for f in by_id[metric_trigger.id].event_attributes]),
       ("Quizzes", 2, [("device", "web")]), "points.system metric trigger")
    for t in system.triggers:
        check(is_aware_datetime(t.created) and is_aware_datetime(t.updated),
              f"points.system trigger {t.id}: created/updated")

    step("points.boosts")
    listed = client.points.boosts(POINTS_KEY)
    no_extra_fields(listed, "List[PointsBoost]")
    eq([app_boost_tuple(b) for b in listed],
       [(launch.id, "Launch", "active", day(-2), None, 1.5, "up"),
        (next_month.id, "Next month!", "scheduled", day(10), day(25), 2.0, "down")],
       "points.boosts: global boosts by start, no finished, no user-specific")
    with_finished = client.points.boosts(POINTS_KEY, include_finished=True)
    no_extra_fields(with_finished, "List[PointsBoost](includeFinished)")
    eq([b.id for b in with_finished], [finished_boost.id, launch.id, next_month.id],
       "points.boosts(include_finished=True)")
    eq(with_finished[0].status, "finished", "points.boosts: finished boost status")

    step("points.levels / points.level_summary")
    levels = client.points.levels(POINTS_KEY)
    no_extra_fields(levels, "List[PointsLevel]")
    eq([app_level_tuple(lv) for lv in levels],
       [(bronze.id, "bronze", "Bronze", 10, "First steps", bronze_badge),
        (silver.id, "silver", "Silver", 50, "", None), (gold.id, "gold", "Gold", 200, "", None)],
       "points.levels (ascending by points)")
    level_summary = client.points.level_summary(POINTS_KEY)
    no_extra_fields(level_summary, "PointsLevelSummaryResponse")
    eq([(i.level.key, i.users) for i in level_summary], [("bronze", 0), ("silver", 1), ("gold", 0)],
       "points.level_summary (POINTS_USER at 110 is silver; 9 is below every level)")
    eq(level_summary[1].level, levels[1], "points.level_summary: level object")
    expect_api_error(422, "points.level_summary(system without levels)",
                     lambda: client.points.level_summary(POINTS_PLAIN_KEY),
                     UnprocessableEntityError)

    step("points.summary")
    users = len(ALL_USERS)

    def ranges(summary):
        return [(r.from_, r.to, r.users) for r in summary]

    summary = client.points.summary(POINTS_KEY)
    no_extra_fields(summary, "PointsSummaryResponse")
    # Highest total 110 -> ranges of 100 up to 1000; users without points count at 0.
    expected = [(0, 0, users - 2)] + [(i * 100 + 1, (i + 1) * 100, 0) for i in range(10)]
    expected[1] = (1, 100, 1)
    expected[2] = (101, 200, 1)
    eq(ranges(summary), expected, f"points.summary ({users} users)")
    pro = client.points.summary(POINTS_KEY, user_attributes="plan:pro")
    # plan:pro: ACH_USER (no points) and POINTS_USER (110).
    expected = [(0, 0, 1)] + [(i * 100 + 1, (i + 1) * 100, 0) for i in range(10)]
    expected[2] = (101, 200, 1)
    eq(ranges(pro), expected, "points.summary(userAttributes=plan:pro)")
    eq(ranges(client.points.summary(POINTS_PLAIN_KEY)),
       [(0, 0, users)] + [(i, i, 0) for i in range(1, 11)],
       "points.summary of a system nobody has points in (ranges of 1 up to 10)")

    step("users.points")
    mine = client.users.points(POINTS_USER, POINTS_KEY, awards=3)
    no_extra_fields(mine, "GetUserPointsResponse(awards=3)")
    eq((mine.id, mine.key, mine.name, mine.total), (xp_id, POINTS_KEY, "SDK XP", 110),
       "users.points (id, key, name, total)")
    eq(app_level_tuple(mine.level), app_level_tuple(levels[1]),
       "users.points: level")
    eq(award_tuples(mine.awards),
       [(metric_trigger.id, 6, 110, launch_only), (ach_trigger.id, 38, 104, launch_only),
        (streak_trigger.id, 30, 66, launch_only)], "users.points(awards=3): newest first")
    history = client.users.points(POINTS_USER, POINTS_KEY)
    no_extra_fields(history, "GetUserPointsResponse(default awards)")
    eq([(a.trigger.id, a.awarded, a.total) for a in history.awards],
       [(metric_trigger.id, 6, 110), (ach_trigger.id, 38, 104), (streak_trigger.id, 30, 66),
        (metric_trigger.id, 8, 36), (doomed_trigger.id, 5, 28), (metric_trigger.id, 8, 23),
        (uc_trigger.id, 15, 15)], "users.points: whole history newest first")
    eq(history.awards[4].trigger.status, "archived", "users.points: a deleted trigger is archived")
    boosted_points = client.users.points(POINTS_BOOST_USER, POINTS_KEY)
    no_extra_fields(boosted_points, "GetUserPointsResponse(boosted)")
    eq((boosted_points.total, boosted_points.level, award_tuples(boosted_points.awards)),
       (9, None, [(metric_trigger.id, 9, 9, sorted([launch.id, vip.id]))]),
       "users.points(boosted user): (total, level, awards)")
    nothing = client.users.points(OTHER_USER, POINTS_KEY)
    no_extra_fields(nothing, "GetUserPointsResponse(no activity)")
    eq((nothing.total, nothing.level, nothing.awards), (0, None, []),
       "users.points(user without points)")
    expect_api_error(422, "users.points(awards=0)",
                     lambda: client.users.points(POINTS_USER, POINTS_KEY, awards=0),
                     UnprocessableEntityError)
    expect_api_error(404, "users.points(no-such-user)",
                     lambda: client.users.points(NO_USER, POINTS_KEY), NotFoundError)

    step("users.points_boosts")
    own = client.users.points_boosts(POINTS_BOOST_USER, POINTS_KEY)
    no_extra_fields(own, "List[PointsBoost](user)")
    eq(sorted(app_boost_tuple(b) for b in own),
       sorted([(launch.id, "Launch", "active", day(-2), None, 1.5, "up"),
               (vip.id, "VIP", "active", day(-2), None, 1.25, "down")]),
       "users.points_boosts(boosted user): global and own")
    eq([b.id for b in client.users.points_boosts(POINTS_USER, POINTS_KEY)], [launch.id],
       "users.points_boosts(points user): global only")

    step("users.points_event_summary (daily)")
    rows = client.users.points_event_summary(
        POINTS_USER, POINTS_KEY, aggregation="daily", start_date=day(-6), end_date=day(1))
    no_extra_fields(rows, "List[UsersPointsEventSummaryResponseItem]")
    check(len(rows) >= 7, f"points event summary: expected at least 7 daily rows, got {rows!r}")
    eq((rows[0].date, rows[-1].date), (day(-6), day(1)), "points event summary: first and last dates")
    eq((rows[-1].total, sum(r.change for r in rows)), (110.0, 110.0),
       "points event summary: (last total, sum of changes)")
    expect_api_error(404, "users.points_event_summary(no-such-user)",
                     lambda: client.users.points_event_summary(
                         NO_USER, POINTS_KEY, aggregation="daily", start_date=day(-6),
                         end_date=day(1)), NotFoundError)

    step("unknown points system key -> 404")
    expect_api_error(404, "points.system(no-such-points)",
                     lambda: client.points.system("no-such-points"), NotFoundError)
    expect_api_error(404, "points.boosts(no-such-points)",
                     lambda: client.points.boosts("no-such-points"), NotFoundError)
    expect_api_error(404, "users.points(no-such-points)",
                     lambda: client.users.points(POINTS_USER, "no-such-points"), NotFoundError)

    step("admin.points.systems.delete")
    deleted = client.admin.points.systems.delete(ids=[coins_id, broken_id, UNKNOWN_UUID])
    no_extra_fields(deleted, "DeletePointsSystemsResponse")
    eq([d.id for d in deleted.deleted], [coins_id, broken_id], "points systems delete: deleted")
    eq(issue_summary(deleted.issues), [(UNKNOWN_UUID, "error")], "points systems delete: issues")
    expect_api_error(404, "points.system(deleted system)",
                     lambda: client.points.system(POINTS_PLAIN_KEY), NotFoundError)
    expect_api_error(404, "admin.points.triggers.list(deleted system)",
                     lambda: client.admin.points.triggers.list(coins_id), NotFoundError)
    eq(client.users.points(POINTS_USER, POINTS_KEY).total, 110, "other systems unaffected")


# ---- leaderboards ----------------------------------------------------------------------

def admin_leaderboard_tuple(lb):
    """Every field of an AdminLeaderboard but its id, with the `tiePolicy` extension."""
    return (lb.key, lb.name, lb.description, lb.status, lb.rank_by, lb.metric_id,
            lb.points_system_id, lb.max_participants, lb.start, lb.end, lb.start_time,
            lb.end_time, lb.breakdown_attributes, lb.run_unit, lb.run_interval,
            [(f.attribute_id, f.attribute_value) for f in lb.user_attributes],
            (lb.model_extra or {}).get("tiePolicy"))


def app_leaderboard_tuple(lb):
    """Every `LeaderboardResponse` field (with `status` where the model has it)."""
    return (lb.id, lb.key, lb.name, lb.description, getattr(lb, "status", None), lb.rank_by,
            lb.metric_key, lb.metric_name, lb.points_system_key, lb.points_system_name,
            lb.breakdown_attribute, lb.breakdown_attributes, lb.start, lb.end, lb.start_time,
            lb.end_time, lb.max_participants, lb.run_unit, lb.run_interval,
            [(f.key, f.value) for f in lb.user_attributes])


def event_leaderboard_tuple(e):
    """`(rank, previousRank, threshold, run start, run end, breakdown values)` of a
    MetricEventLeaderboardResponse."""
    return (e.rank, e.previous_rank, e.threshold, e.start, e.end,
            e.breakdown_attribute_value,
            e.breakdown_attribute_values
            and [(v.key, v.value) for v in e.breakdown_attribute_values])


def rankings_tuple(board):
    return [(r.user_id, r.user_name, r.rank, r.value) for r in board.rankings]


def run_leaderboards(client, *, plan_id):
    avoid_utc_midnight()
    today = utc_today()

    def day(n):
        return ymd(today + dt.timedelta(days=n))

    # ---- admin ----
    step("leaderboards: admin.metrics.create")
    created = client.admin.metrics.create(
        request=[CreateMetricRequestItem(name="Laps", key=LB_METRIC_KEY)])
    eq(created.issues, [], "create laps metric: issues")
    laps_id = created.created[0].id

    step("admin.leaderboards.create (metric, repeating, streak, breakdown, inactive; bad items)")
    raw = client.admin.leaderboards.with_raw_response.create(request=[
        CreateLeaderboardRequestItem(
            name="Top two", key=LB_TOP, description="Two places", status="active",
            rank_by="metric", metric_id=laps_id, max_participants=2, start=day(-1)),
        CreateLeaderboardRequestItem(
            name="Weekly laps", key=LB_WEEKLY, status="active", rank_by="metric",
            metric_id=laps_id, start=day(-8), start_time="00:00", run_unit="day",
            run_interval=7),
        CreateLeaderboardRequestItem(name="Streakers", key=LB_STREAK, status="active",
                                     rank_by="streak"),
        CreateLeaderboardRequestItem(
            name="Laps by plan", key=LB_BY_PLAN, status="active", rank_by="metric",
            metric_id=laps_id, start=day(0), breakdown_attributes=[plan_id]),
        CreateLeaderboardRequestItem(name="Draft", key=LB_DRAFT, rank_by="metric",
                                     metric_id=laps_id, end=day(30)),
        CreateLeaderboardRequestItem(name="Repeating streak", key="sdk-bad-streak",
                                     rank_by="streak", run_unit="day", run_interval=1),
        CreateLeaderboardRequestItem(name="Backwards", key="sdk-bad-times", rank_by="metric",
                                     metric_id=laps_id, start_time="10:00", end_time="09:30"),
    ])
    eq(raw.status_code, 201, "create leaderboards: HTTP status")
    created = raw.data
    no_extra_fields(created, "CreateLeaderboardsResponse")
    eq([(i.index, i.severity, i.message) for i in created.issues],
       [(5, "error", "Streak leaderboards cannot repeat (runUnit must be null)"),
        (6, "error", "startTime must be before endTime")],
       "create leaderboards: issues (streak board with runUnit, startTime >= endTime)")
    eq([lb.key for lb in created.created], [LB_TOP, LB_WEEKLY, LB_STREAK, LB_BY_PLAN, LB_DRAFT],
       "create leaderboards: created keys")
    top, weekly, streak, by_plan, draft = created.created
    for lb in created.created:
        check(isinstance(lb.id, str) and lb.id, f"created leaderboard id {lb.id!r}")
    expected_admin = {
        LB_TOP: (LB_TOP, "Top two", "Two places", "active", "metric", laps_id, None, 2,
                 day(-1), None, None, None, [], None, None, [], "first-reached"),
        LB_WEEKLY: (LB_WEEKLY, "Weekly laps", None, "active", "metric", laps_id, None, 1000,
                    day(-8), None, "00:00", None, [], "day", 7, [], "first-reached"),
        LB_STREAK: (LB_STREAK, "Streakers", None, "active", "streak", None, None, 1000,
                    day(0), None, None, None, [], None, None, [], "first-reached"),
        LB_BY_PLAN: (LB_BY_PLAN, "Laps by plan", None, "active", "metric", laps_id, None, 1000,
                     day(0), None, None, None, [plan_id], None, None, [], "first-reached"),
        LB_DRAFT: (LB_DRAFT, "Draft", None, "inactive", "metric", laps_id, None, 1000, day(0),
                   day(30), None, None, [], None, None, [], "first-reached"),
    }
    eq([admin_leaderboard_tuple(lb) for lb in created.created], list(expected_admin.values()),
       "created leaderboards (every field; status default inactive, start default today, "
       "maxParticipants default 1000)")

    step("admin.leaderboards.list / get")
    listed = client.admin.leaderboards.list()
    no_extra_fields(listed, "ListLeaderboardsResponse")
    eq([(lb.id, admin_leaderboard_tuple(lb)) for lb in listed],
       [(lb.id, admin_leaderboard_tuple(lb)) for lb in created.created],
       "admin.leaderboards.list (creation order)")
    eq([lb.key for lb in client.admin.leaderboards.list(limit=2, skip=1)], [LB_WEEKLY, LB_STREAK],
       "admin.leaderboards.list(limit=2, skip=1)")
    got = client.admin.leaderboards.get(weekly.id)
    no_extra_fields(got, "AdminLeaderboard")
    eq((got.id, admin_leaderboard_tuple(got)), (weekly.id, expected_admin[LB_WEEKLY]),
       "admin.leaderboards.get(weekly)")
    expect_api_error(404, "admin.leaderboards.get(unknown id)",
                     lambda: client.admin.leaderboards.get(UNKNOWN_UUID), NotFoundError)

    step("admin.leaderboards.update (name; unknown id and locked field -> issues)")
    updated = client.admin.leaderboards.update(request=[
        UpdateLeaderboardRequestItem(id=top.id, name="Top two (renamed)"),
        UpdateLeaderboardRequestItem(id=UNKNOWN_UUID, name="Nobody"),
        UpdateLeaderboardRequestItem(id=weekly.id, run_unit="month", run_interval=1),
    ])
    no_extra_fields(updated, "UpdateLeaderboardsResponse")
    expected_admin[LB_TOP] = (LB_TOP, "Top two (renamed)") + expected_admin[LB_TOP][2:]
    eq([(lb.id, admin_leaderboard_tuple(lb)) for lb in updated.updated],
       [(top.id, expected_admin[LB_TOP])], "leaderboards update: updated")
    eq([(i.id, i.severity, i.message) for i in updated.issues],
       [(UNKNOWN_UUID, "error", "Leaderboard not found by ID"),
        (weekly.id, "error", "runUnit can only be changed while the leaderboard is inactive")],
       "leaderboards update: issues")
    eq(admin_leaderboard_tuple(client.admin.leaderboards.get(weekly.id)),
       expected_admin[LB_WEEKLY], "weekly unchanged by the refused update")

    # ---- application reads before any activity ----
    app_common = {
        LB_TOP: (top.id, LB_TOP, "Top two (renamed)", "Two places", "active", "metric",
                 LB_METRIC_KEY, "Laps", None, None, None, [], day(-1), None, None, None, 2,
                 None, None, []),
        LB_WEEKLY: (weekly.id, LB_WEEKLY, "Weekly laps", None, "active", "metric",
                    LB_METRIC_KEY, "Laps", None, None, None, [], day(-8), None, "00:00", None,
                    1000, "day", 7, []),
        LB_STREAK: (streak.id, LB_STREAK, "Streakers", None, "active", "streak", None, None,
                    None, None, None, [], day(0), None, None, None, 1000, None, None, []),
        LB_BY_PLAN: (by_plan.id, LB_BY_PLAN, "Laps by plan", None, "active", "metric",
                     LB_METRIC_KEY, "Laps", None, None, "plan", ["plan"], day(0), None, None,
                     None, 1000, None, None, []),
    }

    step("leaderboards.all_ (inactive boards are left out)")
    boards = client.leaderboards.all_()
    no_extra_fields(boards, "List[LeaderboardsAllResponseItem]")
    eq([app_leaderboard_tuple(lb) for lb in boards], list(app_common.values()),
       "leaderboards.all_ (every field, creation order)")

    step("leaderboards.get before any activity")
    empty = client.leaderboards.get(LB_TOP)
    no_extra_fields(empty, "LeaderboardResponseWithRankings(empty)")
    eq((app_leaderboard_tuple(empty), empty.rankings), (app_common[LB_TOP], []),
       "leaderboards.get(top) with nobody ranked")

    # ---- events: SPEC §7.8 eviction on the two-place board ----
    people = {LB_ALICE: ("Alice", "pro"), LB_BOB: ("Bob", "pro"), LB_CAROL: ("Carol", "free")}

    def event(user_id, value, where):
        name, plan = people[user_id]
        raw = client.metrics.with_raw_response.event(
            LB_METRIC_KEY, value=value,
            user=UpsertedUser(id=user_id, name=name, tz="UTC", attributes={"plan": plan}))
        ALL_USERS.add(user_id)
        eq(raw.status_code, 201, f"{where}: HTTP status")
        no_extra_fields(raw.data, f"EventResponse({where})")
        boards = raw.data.leaderboards
        check(isinstance(boards, dict), f"{where}: leaderboards must be a map, got {boards!r}")
        for key, entry in boards.items():
            eq(entry.key, key, f"{where}: leaderboards[{key!r}].key")
            common = app_common[key]
            # The entry is a LeaderboardResponse without status, with the run's dates.
            eq((entry.id, entry.name, entry.description, entry.rank_by, entry.metric_key,
                entry.metric_name, entry.breakdown_attribute, entry.breakdown_attributes,
                entry.start_time, entry.end_time, entry.max_participants, entry.run_unit,
                entry.run_interval, [(f.key, f.value) for f in entry.user_attributes]),
               (common[0], common[2], common[3], common[5], common[6], common[7], common[10],
                common[11], common[14], common[15], common[16], common[17], common[18],
                common[19]),
               f"{where}: leaderboards[{key!r}] configuration fields")
        return {k: event_leaderboard_tuple(v) for k, v in boards.items()}

    # Perpetual boards report their configured dates; the weekly board's run 1 is
    # day(-1)..day(5) (run 0 was day(-8)..day(-2)).
    week = (day(-1), day(5))
    pro, free = ("pro", [("plan", "pro")]), ("free", [("plan", "free")])

    step("metrics.event #1 (Alice 10): rank 1 everywhere, threshold 0")
    eq(event(LB_ALICE, 10, "leaderboard event #1"), {
        LB_TOP: (1, None, 0, day(-1), None, None, None),
        LB_WEEKLY: (1, None, 0) + week + (None, None),
        LB_BY_PLAN: (1, None, 0, day(0), None) + pro,
    }, "leaderboard event #1: (rank, previousRank, threshold, start, end, breakdown)")

    step("metrics.event #2 (Bob 5): the two-place board is full, threshold 5")
    eq(event(LB_BOB, 5, "leaderboard event #2"), {
        LB_TOP: (2, None, 5, day(-1), None, None, None),
        LB_WEEKLY: (2, None, 0) + week + (None, None),
        LB_BY_PLAN: (2, None, 0, day(0), None) + pro,
    }, "leaderboard event #2")

    step("metrics.event #3 (Carol 5 = threshold): not ranked on the full board")
    eq(event(LB_CAROL, 5, "leaderboard event #3"), {
        LB_TOP: (None, None, 5, day(-1), None, None, None),
        LB_WEEKLY: (3, None, 0) + week + (None, None),
        LB_BY_PLAN: (1, None, 0, day(0), None) + free,
    }, "leaderboard event #3: equal to the threshold is not enough; ties keep who was first")

    step("metrics.event #4 (Carol +1 = 6 > 5): enters rank 2, Bob is evicted")
    eq(event(LB_CAROL, 1, "leaderboard event #4"), {
        LB_TOP: (2, None, 6, day(-1), None, None, None),
        LB_WEEKLY: (2, 3, 0) + week + (None, None),
        LB_BY_PLAN: (1, 1, 0, day(0), None) + free,
    }, "leaderboard event #4")

    def settled(key, expected, what, **params):
        """`rankings` of `leaderboards.get(key, **params)` once they equal `expected` (other
        users' reads see rankings applied asynchronously)."""
        last = []

        def read():
            board = client.leaderboards.get(key, **params)
            no_extra_fields(board, f"LeaderboardResponseWithRankings({what})")
            last[:] = [board]
            return rankings_tuple(board) == expected

        try:
            wait_for(what, read, timeout=5.0)
        except CheckFailed:
            pass
        eq(rankings_tuple(last[0]), expected, f"{what}: rankings (userId, userName, rank, value)")
        return last[0]

    step("leaderboards.get after the eviction")
    board = settled(LB_TOP, [(LB_ALICE, "Alice", 1, 10), (LB_CAROL, "Carol", 2, 6)],
                    "leaderboards.get(top)")
    eq(app_leaderboard_tuple(board), app_common[LB_TOP], "leaderboards.get(top): fields")
    settled(LB_TOP, [], "leaderboards.get(top, userId=evicted Bob)", user_id=LB_BOB)

    step("metrics.event #5 (Bob +2 = 7 > 6): Bob re-enters at rank 2, Carol is evicted")
    eq(event(LB_BOB, 2, "leaderboard event #5"), {
        LB_TOP: (2, None, 7, day(-1), None, None, None),
        LB_WEEKLY: (2, 3, 0) + week + (None, None),
        LB_BY_PLAN: (2, 2, 0, day(0), None) + pro,
    }, "leaderboard event #5")

    step("leaderboards.get (rankings, limit, offset, userId, run, userAttributes)")
    alice, bob, carol = (LB_ALICE, "Alice", 1, 10), (LB_BOB, "Bob", 2, 7), (LB_CAROL, "Carol", 3, 6)
    settled(LB_TOP, [alice, bob], "leaderboards.get(top) after re-entry")
    settled(LB_TOP, [bob], "leaderboards.get(top, limit=1, offset=1)", limit=1, offset=1)
    settled(LB_TOP, [], "leaderboards.get(top, userId=evicted Carol)", user_id=LB_CAROL)
    board = settled(LB_WEEKLY, [alice, bob, carol], "leaderboards.get(weekly)")
    eq(app_leaderboard_tuple(board), app_common[LB_WEEKLY], "leaderboards.get(weekly): fields")
    settled(LB_WEEKLY, [bob, carol], "leaderboards.get(weekly, userId=Carol, offset=-1, limit=2)",
            user_id=LB_CAROL, offset=-1, limit=2)
    settled(LB_WEEKLY, [alice, bob, carol], "leaderboards.get(weekly, run=today)", run=day(0))
    settled(LB_WEEKLY, [alice, bob, carol], "leaderboards.get(weekly, run=first day of run 1)",
            run=day(-1))
    settled(LB_WEEKLY, [], "leaderboards.get(weekly, run=run 0)", run=day(-8))
    board = settled(LB_BY_PLAN, [(LB_ALICE, "Alice", 1, 10), (LB_BOB, "Bob", 2, 7)],
                    "leaderboards.get(by-plan, userAttributes=plan:pro)",
                    user_attributes="plan:pro")
    eq(app_leaderboard_tuple(board), app_common[LB_BY_PLAN], "leaderboards.get(by-plan): fields")
    settled(LB_BY_PLAN, [(LB_CAROL, "Carol", 1, 6)],
            "leaderboards.get(by-plan, userAttributes=plan:free)", user_attributes="plan:free")
    # Users whose streak was running when the board was activated are on it from the start
    # (SPEC 7.5.3), ties in the order they were placed.
    streak_seeded = [(ACH_USER, None, 1, 1), (POINTS_USER, None, 2, 1),
                     (STREAK_USER, None, 3, 1)]
    settled(LB_STREAK, streak_seeded,
            "leaderboards.get(streak) (current streaks placed at activation)")

    step("metrics.event on the streak metric: the streak board ranks the streak length")
    raw = client.metrics.with_raw_response.event(METRIC_KEY, user=UpsertedUser(id=LB_ALICE),
                                                 value=1)
    no_extra_fields(raw.data, "EventResponse(streak leaderboard)")
    eq(raw.data.current_streak.length, 1, "streak leaderboard event: currentStreak.length")
    entries = raw.data.leaderboards
    eq({k: event_leaderboard_tuple(v) for k, v in entries.items()},
       {LB_STREAK: (4, None, 0, day(0), None, None, None)},
       "streak leaderboard event: (rank, previousRank, threshold, start, end, breakdown)")
    e = entries[LB_STREAK]
    eq((e.id, e.name, e.rank_by, e.metric_key, e.metric_name, e.breakdown_attributes,
        e.max_participants, e.run_unit, e.run_interval),
       (streak.id, "Streakers", "streak", None, None, [], 1000, None, None),
       "streak leaderboard event: configuration fields")
    streak_alice = streak_seeded + [(LB_ALICE, "Alice", 4, 1)]
    settled(LB_STREAK, streak_alice, "leaderboards.get(streak)")

    step("leaderboards.get errors")
    expect_api_error(404, "leaderboards.get(unknown key)",
                     lambda: client.leaderboards.get("no-such-board"), NotFoundError)
    expect_api_error(404, "leaderboards.get(inactive board)",
                     lambda: client.leaderboards.get(LB_DRAFT), NotFoundError)
    expect_api_error(422, "leaderboards.get(top, limit=3 > maxParticipants 2)",
                     lambda: client.leaderboards.get(LB_TOP, limit=3), UnprocessableEntityError)
    expect_api_error(422, "leaderboards.get(weekly, offset=-1 without userId)",
                     lambda: client.leaderboards.get(LB_WEEKLY, offset=-1),
                     UnprocessableEntityError)
    expect_api_error(422, "leaderboards.get(weekly, userAttributes on a board without breakdowns)",
                     lambda: client.leaderboards.get(LB_WEEKLY, user_attributes="plan:pro"),
                     UnprocessableEntityError)
    expect_api_error(422, "leaderboards.get(by-plan without userAttributes)",
                     lambda: client.leaderboards.get(LB_BY_PLAN), UnprocessableEntityError)
    expect_api_error(422, "leaderboards.get(weekly, run before the start)",
                     lambda: client.leaderboards.get(LB_WEEKLY, run=day(-9)),
                     UnprocessableEntityError)
    expect_api_error(422, "leaderboards.get(weekly, run after the current run)",
                     lambda: client.leaderboards.get(LB_WEEKLY, run=day(6)),
                     UnprocessableEntityError)

    # ---- finishing and deleting ----
    step("admin.leaderboards.update status finished (ends today)")
    updated = client.admin.leaderboards.update(
        request=[UpdateLeaderboardRequestItem(id=streak.id, status="finished")])
    no_extra_fields(updated, "UpdateLeaderboardsResponse(finish)")
    eq(updated.issues, [], "finish streak board: issues")
    expected_admin[LB_STREAK] = (expected_admin[LB_STREAK][:3] + ("finished",)
                                 + expected_admin[LB_STREAK][4:9] + (day(0),)
                                 + expected_admin[LB_STREAK][10:])
    eq([admin_leaderboard_tuple(lb) for lb in updated.updated], [expected_admin[LB_STREAK]],
       "finish streak board: updated (status finished, end today)")
    finished = (app_common[LB_STREAK][:4] + ("finished",) + app_common[LB_STREAK][5:13]
                + (day(0),) + app_common[LB_STREAK][14:])
    eq([lb.key for lb in client.leaderboards.all_()], [LB_TOP, LB_WEEKLY, LB_BY_PLAN],
       "leaderboards.all_ leaves finished boards out")
    boards = client.leaderboards.all_(include_finished=True)
    no_extra_fields(boards, "List[LeaderboardsAllResponseItem](includeFinished)")
    eq([app_leaderboard_tuple(lb) for lb in boards],
       [app_common[LB_TOP], app_common[LB_WEEKLY], finished, app_common[LB_BY_PLAN]],
       "leaderboards.all_(include_finished=True)")
    board = client.leaderboards.get(LB_STREAK)
    no_extra_fields(board, "LeaderboardResponseWithRankings(finished)")
    eq((app_leaderboard_tuple(board), rankings_tuple(board)), (finished, streak_alice),
       "leaderboards.get(finished streak board): its last run")

    step("admin.leaderboards.delete")
    deleted = client.admin.leaderboards.delete(ids=[streak.id, draft.id, UNKNOWN_UUID])
    no_extra_fields(deleted, "DeleteLeaderboardsResponse")
    eq([d.id for d in deleted.deleted], [streak.id, draft.id], "leaderboards delete: deleted")
    eq(issue_summary(deleted.issues), [(UNKNOWN_UUID, "error")], "leaderboards delete: issues")
    expect_api_error(404, "leaderboards.get(deleted board)",
                     lambda: client.leaderboards.get(LB_STREAK), NotFoundError)
    expect_api_error(404, "admin.leaderboards.get(deleted board)",
                     lambda: client.admin.leaderboards.get(draft.id), NotFoundError)
    eq([lb.key for lb in client.admin.leaderboards.list()], [LB_TOP, LB_WEEKLY, LB_BY_PLAN],
       "admin.leaderboards.list after delete")
    eq([lb.key for lb in client.leaderboards.all_(include_finished=True)],
       [LB_TOP, LB_WEEKLY, LB_BY_PLAN], "leaderboards.all_ after delete")
    settled(LB_TOP, [alice, bob], "rankings unaffected by deleting other boards")


def check_webhook_signatures(url, api_key):
    """A test send to a loopback receiver, verified as a consumer would: `webhook-signature`
    with the Standard Webhooks library, `X-Trophy-Signature` with hmac."""
    import base64
    import hashlib
    import hmac
    import http.server
    import json
    import threading
    import urllib.request

    import standardwebhooks

    step("webhooks: test send verified with the standardwebhooks library")
    got = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got.append((dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def admin(method, path, payload):
        req = urllib.request.Request(
            url + path, data=json.dumps(payload).encode(), method=method,
            headers={"X-API-KEY": api_key, "Content-Type": "application/json"})
        with urllib.request.urlopen(req) as resp:
            return json.loads(resp.read())

    created = admin("POST", "/admin/v1/webhooks",
                    [{"url": f"http://127.0.0.1:{server.server_port}/hooks",
                      "events": ["emails.recap_due"]}])["created"][0]
    attempt = admin("POST", f"/admin/v1/webhooks/{created['id']}/test", {"type": "streak.lost"})
    eq(attempt["statusCode"], 204, "test send status")
    server.shutdown()
    eq(len(got), 1, "requests received")
    headers, body = got[0]
    lower = {k.lower(): v for k, v in headers.items()}
    standardwebhooks.Webhook(created["secret"]).verify(body, lower)
    trophy = base64.b64encode(
        hmac.new(created["secret"].encode(), body, hashlib.sha256).digest()).decode()
    eq(lower["x-trophy-signature"], trophy, "X-Trophy-Signature")
    eq(json.loads(body)["type"], "streak.lost", "payload type")


def main():
    url = os.environ.get("KUDOS_URL", "").rstrip("/")
    api_key = os.environ.get("KUDOS_API_KEY", "")
    if not url or not api_key:
        print("SDK CHECK FAILED: set KUDOS_URL and KUDOS_API_KEY", file=sys.stderr)
        return 2
    try:
        run(url, api_key)
        check_webhook_signatures(url, api_key)
        # Tenants after everything: the first tenant makes every later call need a Tenant-ID.
        env = TrophyApiEnvironment(api=f"{url}/v1", admin=f"{url}/admin/v1")
        run_environments_and_tenants(
            TrophyApi(environment=env, sdk_version=SDK_VERSION, api_key=api_key, max_retries=0),
            env)
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
