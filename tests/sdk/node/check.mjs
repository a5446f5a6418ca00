// Drives a running Kudos server with the official Trophy Node SDK (@trophyso/node 1.0.42).
//
// Only the SDK's base URLs are switched; every call goes through the SDK's own request
// building and response validation (its Fern serialization schemas). A response shape the
// SDK rejects surfaces as a `ParseError` and is reported as a Kudos incompatibility, with the
// request and the exact JSON Kudos answered.
//
// The Node package has no admin metrics/attributes/achievements/settings/points/leaderboards
// clients, so the catalog (metric, attributes, streak settings, achievements, points systems,
// leaderboards) is created with plain `fetch` calls to the admin API; everything the SDK
// offers is then called through the SDK.
//
// Environment:
//   KUDOS_URL      e.g. http://127.0.0.1:8080 (no trailing /v1)
//   KUDOS_API_KEY  an admin API key of that server
//
// Prints "NODE SDK CHECK OK" and exits 0 when every check passes; otherwise prints every
// failed section (with its step) and exits 1. Run by tests/sdk_node_compat.rs from the
// directory the SDK is installed in (ES modules resolve packages next to the script).

import { createRequire } from "node:module";
import { inspect, isDeepStrictEqual } from "node:util";

const require = createRequire(import.meta.url);
const { TrophyApiClient, TrophyApi, TrophyApiError } = require("@trophyso/node");
const { serialization } = require("@trophyso/node/core");
const serializers = require("@trophyso/node/serialization");
const { ParseError, JsonError } = serialization;

const SDK_VERSION = "1.0.42";
const USER = "node-user";
const OTHER_USER = "node-user-2";
const STREAK_USER = "node-streak-user";
const ACH_USER = "node-achiever";
const NO_USER = "no-such-user";
const METRIC_KEY = "lessons";
const API_ACHIEVEMENT_KEY = "onboarded";
const WRONG_KEY = "sdkcheck.wrongwrongwrongwrong";
const POINTS_USER = "node-points-user";
const POINTS_BOOST_USER = "node-points-boosted";
const POINTS_KEY = "node-xp";
const POINTS_METRIC_KEY = "node-quizzes";
const POINTS_ACHIEVEMENT_KEY = "node-points-champion";
const LB_METRIC_KEY = "node-laps";
const LB_ALICE = "node-lb-alice";
const LB_BOB = "node-lb-bob";
const LB_CAROL = "node-lb-carol";
const LB_TOP = "node-top-two";
const LB_WEEKLY = "node-weekly";
const LB_STREAK = "node-streakers";
const LB_BY_PLAN = "node-by-plan";
const LB_DRAFT = "node-draft";
const UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000";

/** Every user the script has created so far (`rarity` is a percentage of all users). */
const knownUsers = new Set();

// ---- reporting ------------------------------------------------------------------------

class CheckFailed extends Error {}

let currentStep = "start";

function step(name) {
  currentStep = name;
  console.log(`-- ${name}`);
}

function show(v) {
  return inspect(v, { depth: 8, breakLength: Infinity });
}

function check(cond, message) {
  if (!cond) throw new CheckFailed(message);
}

function eq(actual, expected, what) {
  check(isDeepStrictEqual(actual, expected), `${what}: expected ${show(expected)}, got ${show(actual)}`);
}

function isDate(v) {
  return v instanceof Date && !Number.isNaN(v.getTime());
}

// Every HTTP exchange the SDK makes goes through the global `fetch` (Node >= 18); recording
// the last one lets a parse failure name the request and quote the JSON Kudos sent.
const realFetch = globalThis.fetch;
let lastExchange = null;
globalThis.fetch = async (url, init = {}) => {
  const response = await realFetch(url, init);
  lastExchange = {
    method: init.method ?? "GET",
    url: String(url),
    requestBody: typeof init.body === "string" ? init.body : undefined,
    status: response.status,
    responseBody: await response.clone().text(),
  };
  return response;
};

function describeExchange() {
  if (!lastExchange) return "(no HTTP exchange recorded)";
  const e = lastExchange;
  const path = e.url.replace(KUDOS_URL, "");
  return (
    `${e.method} ${path}` +
    (e.requestBody !== undefined ? ` with body ${e.requestBody}` : "") +
    ` -> HTTP ${e.status} ${e.responseBody}`
  );
}

/** A ParseError from the SDK's response validation: Kudos sent a shape the SDK rejects. */
function incompatibility(err) {
  const lines = (err.errors ?? []).map((e) => `    at ${(e.path ?? []).join(".") || "<root>"}: ${e.message}`);
  return new CheckFailed(
    `KUDOS INCOMPATIBILITY: the Node SDK rejected Kudos's response (ParseError):\n` +
      `${lines.join("\n")}\n    exchange: ${describeExchange()}`,
  );
}

/** Awaits an SDK call; a ParseError becomes a reported incompatibility. */
async function sdk(promise) {
  try {
    return await promise;
  } catch (err) {
    if (err instanceof ParseError) throw incompatibility(err);
    if (err instanceof JsonError) {
      throw new CheckFailed(`the SDK refused to serialize the request (JsonError): ${err.message}`);
    }
    throw err;
  }
}

/** The SDK call must fail with HTTP `status` (and `errorClass` when given), error body `{error}`. */
async function expectApiError(status, what, fn, errorClass) {
  let result;
  try {
    result = await fn();
  } catch (err) {
    if (err instanceof ParseError) throw incompatibility(err);
    check(
      err instanceof TrophyApiError,
      `${what}: expected a TrophyApiError ${status}, got ${err?.constructor?.name}: ${err?.message}`,
    );
    eq(err.statusCode, status, `${what}: statusCode`);
    if (errorClass) {
      check(
        err instanceof errorClass,
        `${what}: expected ${errorClass.name}, got ${err.constructor.name} (${describeExchange()})`,
      );
    }
    check(
      err.body !== null && typeof err.body === "object" && typeof err.body.error === "string",
      `${what}: error body should be {error: string}, got ${show(err.body)}`,
    );
    return err;
  }
  throw new CheckFailed(`${what}: expected HTTP ${status}, got success ${show(result)}`);
}

// Fields Kudos sends that the @trophyso/node 1.0.42 types do not declare. They come from the
// newer Trophy API the Python SDK 1.27 models (the Node SDK keeps unknown keys, so they are
// harmless); any other unknown key is most likely a misspelled optional field, which the SDK
// would silently turn into `undefined`.
const ACHIEVEMENT_EXTRA = ["eventAttributes", "achievementIds"];
// Python SDK 1.27 `PointsTrigger` fields the Node `PointsTrigger` (the trigger of an award)
// lacks, and the `level` and award `boosts` of its points responses.
const AWARD_TRIGGER_EXTRA = [
  "status",
  "metricId",
  "achievementId",
  "userAttributes",
  "eventAttribute",
  "eventAttributes",
  "created",
  "updated",
];
/** Extra fields of a points response (`GetUserPointsResponse`/`MetricEventPointsResponse`) at `at`. */
const pointsExtra = (at) => [
  `${at}level`,
  `${at}awards[].boosts`,
  ...AWARD_TRIGGER_EXTRA.map((k) => `${at}awards[].trigger.${k}`),
];
// Python SDK 1.27 `LeaderboardResponse` fields the Node `LeaderboardResponse` lacks, and the
// `breakdownAttributeValues` of its `MetricEventLeaderboardResponse` (event entries).
const LEADERBOARD_EXTRA = ["breakdownAttributes", "startTime", "endTime", "userAttributes"];
const eventLeaderboardExtra = [LB_TOP, LB_WEEKLY, LB_STREAK, LB_BY_PLAN].flatMap((key) =>
  [...LEADERBOARD_EXTRA, "breakdownAttributeValues"].map((k) => `leaderboards.${key}.${k}`),
);
const ALLOWED_EXTRA = {
  User: ["signUpDate"],
  // The User of the spec (1.27) has `signUpDate`; Node SDK 1.0.42's does not.
  WrappedResponse: ["user.signUpDate"],
  EventResponse: [
    ...ACHIEVEMENT_EXTRA.map((k) => `achievements[].${k}`),
    ...pointsExtra(`points.${POINTS_KEY}.`),
    ...eventLeaderboardExtra,
  ],
  "LeaderboardsAllResponseItem[]": LEADERBOARD_EXTRA.map((k) => `[].${k}`),
  LeaderboardResponseWithRankings: LEADERBOARD_EXTRA,
  AchievementCompletionResponse: pointsExtra(`points.${POINTS_KEY}.`),
  GetUserPointsResponse: pointsExtra(""),
  PointsSystemResponse: ["triggers[].eventAttributes"],
  MetricResponse: ACHIEVEMENT_EXTRA.map((k) => `achievements[].${k}`),
  "MetricResponse[]": ACHIEVEMENT_EXTRA.map((k) => `[].achievements[].${k}`),
  StreakResponse: ["extended", "pauses", "streakHistory[].usedPause"],
  "AchievementWithStatsResponse[]": ACHIEVEMENT_EXTRA.map((k) => `[].${k}`),
  "UserAchievementWithStatsResponse[]": ACHIEVEMENT_EXTRA.map((k) => `[].${k}`),
  // Python SDK 1.27 reads admin issues as AdminIssue {severity, message}; Kudos sends both
  // spellings on user-scoped issues.
  CreateStreakFreezesResponse: ["issues[].severity", "issues[].message"],
  RestoreStreaksResponse: ["issues[].severity", "issues[].message"],
};

function fieldPath(path) {
  let out = "";
  for (const part of path) {
    const s = String(part);
    if (/^\[\d+\]$/.test(s)) out += "[]";
    else out += out ? `.${s}` : s;
  }
  return out;
}

/** Fails on keys Kudos sent that the SDK schema `typeName` does not know (apart from the
 * allowed ones): re-serializes the SDK's parsed value with unknown keys forbidden. */
async function noUnknownFields(schema, value, typeName) {
  const res = await schema.json(value, {
    unrecognizedObjectKeys: "fail",
    allowUnrecognizedEnumValues: true,
    allowUnrecognizedUnionMembers: true,
  });
  if (res.ok) return;
  const allowed = new Set(ALLOWED_EXTRA[typeName] ?? []);
  const problems = [];
  for (const e of res.errors) {
    const m = /^Unexpected key "(.*)"$/.exec(e.message);
    const where = fieldPath(e.path ?? []);
    if (m) {
      if (!allowed.has(where)) problems.push(where);
    } else {
      problems.push(`${where || "<root>"}: ${e.message}`);
    }
  }
  check(
    problems.length === 0,
    `${typeName}: Kudos sent fields unknown to the Node SDK type: ${show([...new Set(problems)])} ` +
      `(${describeExchange()})`,
  );
}

const S = {
  User: serializers.User,
  EventResponse: serializers.EventResponse,
  MetricResponse: serializers.MetricResponse,
  "MetricResponse[]": serializers.users.allMetrics.Response,
  "UsersMetricEventSummaryResponseItem[]": serializers.users.metricEventSummary.Response,
  StreakResponse: serializers.StreakResponse,
  BulkStreakResponse: serializers.BulkStreakResponse,
  UserPreferencesResponse: serializers.UserPreferencesResponse,
  AchievementCompletionResponse: serializers.AchievementCompletionResponse,
  "AchievementWithStatsResponse[]": serializers.achievements.all.Response,
  "UserAchievementWithStatsResponse[]": serializers.users.achievements.Response,
  CreateStreakFreezesResponse: serializers.CreateStreakFreezesResponse,
  RestoreStreaksResponse: serializers.RestoreStreaksResponse,
  PointsSystemResponse: serializers.PointsSystemResponse,
  PointsSummaryResponse: serializers.PointsSummaryResponse,
  GetUserPointsResponse: serializers.GetUserPointsResponse,
  "UsersPointsEventSummaryResponseItem[]": serializers.users.pointsEventSummary.Response,
  "LeaderboardsAllResponseItem[]": serializers.leaderboards.all.Response,
  LeaderboardResponseWithRankings: serializers.LeaderboardResponseWithRankings,
  WrappedResponse: serializers.WrappedResponse,
};

async function strict(typeName, value) {
  const schema = S[typeName];
  check(schema, `internal: no schema for ${typeName}`);
  await noUnknownFields(schema, value, typeName);
  return value;
}

// ---- plain admin API calls (no Node SDK client for these) -----------------------------

let KUDOS_URL = "";
let API_KEY = "";

async function admin(method, path, body, okStatuses = [200, 201], extraHeaders = {}) {
  const url = `${KUDOS_URL}/admin/v1${path}`;
  const response = await realFetch(url, {
    method,
    headers: { "X-API-KEY": API_KEY, "Content-Type": "application/json", ...extraHeaders },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = text;
  }
  check(
    okStatuses.includes(response.status),
    `${method} /admin/v1${path}: HTTP ${response.status} ${text} (request ${JSON.stringify(body)})`,
  );
  return json;
}

// ---- dates ----------------------------------------------------------------------------

function ymd(d) {
  return d.toISOString().slice(0, 10);
}

function addDays(d, n) {
  return new Date(d.getTime() + n * 86_400_000);
}

function utcToday() {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
}

/** The streak steps name today's UTC date (users without a time zone); the whole script
 * takes seconds, so it waits out the last `marginSeconds` before UTC midnight. */
async function avoidUtcMidnight(marginSeconds = 120) {
  const left = (addDays(utcToday(), 1).getTime() - Date.now()) / 1000;
  if (left < marginSeconds) {
    console.log(`-- waiting ${Math.ceil(left + 1)}s for UTC midnight to pass`);
    await new Promise((r) => setTimeout(r, (left + 1) * 1000));
  }
}

function expectedRarity(completions) {
  const users = knownUsers.size;
  return users ? Math.round((completions / users) * 100 * 100) / 100 : 0;
}

function checkStats(item, where) {
  check(Number.isInteger(item.completions) && item.completions >= 0, `${where}: completions ${show(item.completions)}`);
  eq(item.rarity, expectedRarity(item.completions), `${where}: rarity (% of ${knownUsers.size} users, 2 decimals)`);
}

// ---- the checks -----------------------------------------------------------------------

const ctx = {};

async function setup() {
  step("admin (fetch): create metric");
  const metrics = await admin("POST", "/metrics", [{ name: "Lessons", key: METRIC_KEY }], [201]);
  eq(metrics.issues, [], "create metric: issues");
  ctx.metricId = metrics.created[0].id;
  check(typeof ctx.metricId === "string" && ctx.metricId, `metric id ${show(ctx.metricId)}`);

  step("admin (fetch): create attributes");
  const attrs = await admin(
    "POST",
    "/attributes",
    [
      { name: "Plan", key: "plan", type: "user" },
      { name: "Device", key: "device", type: "event" },
    ],
    [201],
  );
  eq(attrs.issues, [], "create attributes: issues");
  ctx.planId = attrs.created.find((a) => a.key === "plan").id;
  ctx.deviceId = attrs.created.find((a) => a.key === "device").id;

  step("admin (fetch): streak settings");
  const settings = await admin("PATCH", "/streaks/settings", {
    frequency: "daily",
    evaluationMode: "OR",
    metrics: [{ key: METRIC_KEY, threshold: 1 }],
    freezes: { startCount: 1, maxCount: 3 },
  });
  eq(
    [settings.frequency, settings.metrics, settings.freezes?.startCount, settings.freezes?.maxCount],
    ["daily", [{ key: METRIC_KEY, threshold: 1 }], 1, 3],
    "streak settings",
  );

  step("admin (fetch): create achievements");
  const created = await admin(
    "POST",
    "/achievements",
    [
      {
        name: "First iOS lesson",
        trigger: "metric",
        status: "active",
        description: "Finish a lesson on iOS",
        badge: { url: "https://example.com/ios.png" },
        metricId: ctx.metricId,
        metricValue: 1,
        eventAttributes: [{ attributeId: ctx.deviceId, attributeValue: "ios" }],
      },
      {
        name: "Five lessons",
        trigger: "metric",
        status: "active",
        metricId: ctx.metricId,
        metricValue: 5,
      },
      {
        name: "Onboarded",
        trigger: "api",
        status: "active",
        key: API_ACHIEVEMENT_KEY,
        userAttributes: [{ attributeId: ctx.planId, attributeValue: "pro" }],
      },
      { name: "One-day streak", trigger: "streak", status: "active", streakLength: 1 },
    ],
    [201],
  );
  eq(created.issues, [], "create achievements: issues");
  [ctx.iosAch, ctx.fiveAch, ctx.apiAch, ctx.streakAch] = created.created.map((a) => a.id);
  const combo = await admin(
    "POST",
    "/achievements",
    [{ name: "Overachiever", trigger: "achievement", status: "active", achievementIds: [ctx.iosAch, ctx.streakAch] }],
    [201],
  );
  eq(combo.issues, [], "create composite achievement: issues");
  ctx.comboAch = combo.created[0].id;
  ctx.allAchievements = [ctx.iosAch, ctx.fiveAch, ctx.apiAch, ctx.streakAch, ctx.comboAch];
}

/** Wrapped (SPEC §9.3) on its own metric and user: the year so far, then the errors. */
async function wrapped(client) {
  await avoidUtcMidnight();
  const today = utcToday();
  step("admin (fetch): the wrapped metric");
  await admin("POST", "/metrics", [{ name: "Node words", key: "node-wrapped-words", units: "words" }], [201]);
  step("metrics.event x2 for node-wrapped-user");
  for (const [value, device] of [[3, "ios"], [2, "web"]]) {
    await sdk(client.metrics.event("node-wrapped-words", { user: { id: "node-wrapped-user", tz: "UTC" }, value, attributes: { device } }));
  }
  await sdk(client.metrics.event("node-wrapped-words", { user: { id: "node-wrapped-other", tz: "UTC" }, value: 1 }));
  knownUsers.add("node-wrapped-user");
  knownUsers.add("node-wrapped-other");
  step("users.wrapped (this year)");
  const body = await strict("WrappedResponse", await sdk(client.users.wrapped("node-wrapped-user", { year: today.getUTCFullYear() })));
  const a = body.activity;
  eq([a.daysActive, a.weeksActive, a.monthsActive], [1, 1, 1], "active days, weeks, months");
  eq([a.mostActiveDay.date, a.mostActiveMonth.month], [ymd(today), today.getUTCMonth()], "most active day and month (0-11)");
  const day = a.mostActiveDay.metrics["node-wrapped-words"];
  eq(
    [day.name, day.units, day.currentTotal, day.changeThisPeriod, day.percentChange, day.percentileThisPeriod],
    ["Node words", "words", 5, 5, 100, undefined],
    "the day's metric (no percentile on days)",
  );
  eq([day.byAttribute.device.ios.changeThisPeriod, day.byAttribute.device.web.changeThisPeriod], [3, 2], "byAttribute");
  const week = a.mostActiveWeek;
  check(week.start <= ymd(today) && ymd(today) <= week.end, `the week ${week.start}..${week.end} holds today`);
  const p = week.metrics["node-wrapped-words"].percentileThisPeriod;
  eq(p, 100, "week percentile (above the only other user with this metric)");
  const other = await sdk(client.users.wrapped("node-wrapped-other", { year: today.getUTCFullYear() }));
  const q = other.activity.mostActiveWeek.metrics["node-wrapped-words"].percentileThisPeriod;
  // An empty distribution would put both users at 100.
  check(typeof q === "number" && q > 0 && q < 100, `the other user's week percentile ${show(q)}`);
  const streak = a.entireYear.longestStreak;
  // The SDK reads a JSON null as undefined.
  check(streak.length === 0 && streak.periodStart == null && streak.started == null, `no streak on this metric: ${show(streak)}`);

  step("users.wrapped: next year -> 422, unknown user -> 404");
  await expectApiError(422, "users.wrapped(next year)", () =>
    client.users.wrapped("node-wrapped-user", { year: today.getUTCFullYear() + 1 }),
  );
  await expectApiError(404, "users.wrapped(unknown user)", () => client.users.wrapped("node-nobody"));
}

/** An application key (created with fetch: the Node SDK 1.0.42 has no admin client for
 * keys or settings) used through the SDK: its own user, not another's. */
async function applicationKeys(client, url) {
  step("admin (fetch): application API key for node-app-user");
  const created = await admin("POST", "/application-api-keys", [{ userId: "node-app-user" }], [201]);
  const key = created.created[0];
  check(key.key.startsWith(`${key.prefix}.`) && key.prefix.startsWith("app_"), `key ${show(key)}`);
  const app = new TrophyApiClient({ apiKey: key.key, environment: { api: `${url}/v1`, admin: `${url}/admin/v1` } });

  step("users.identify with the application key (its own user)");
  const own = await strict("User", await sdk(app.users.identify("node-app-user", { name: "App user" })));
  knownUsers.add("node-app-user");
  eq([own.id, own.name], ["node-app-user", "App user"], "identify with the application key");

  step("users.get of another user with the application key -> 403");
  await expectApiError(403, "users.get(another user)", () => app.users.get(USER));

  step("metrics.event for another user with the application key -> 403");
  await expectApiError(403, "metrics.event(another user)", () =>
    app.metrics.event(METRIC_KEY, { user: { id: USER }, value: 1 }),
  );

  step("admin (fetch): delete the key; the SDK then gets 401");
  const deleted = await admin("DELETE", `/application-api-keys?ids=${key.id}`, undefined, [200]);
  eq(deleted.deleted, [{ id: key.id }], "deleted");
  await expectApiError(401, "users.get with a deleted key", () => app.users.get("node-app-user"));
}

/** Tenants (created with fetch: the Node SDK 1.0.42 has no tenants client and cannot send
 * `Tenant-ID`). An application key made with `Tenant-ID` works in its tenant, so the SDK
 * uses a tenant through it unchanged. Runs last: the first tenant makes every call without
 * `Tenant-ID` a 422. */
async function tenants(client, url) {
  step("admin (fetch): a tenant, its metric, and an application key in it");
  const created = await admin("POST", "/tenants", [{ customerId: "node-acme", name: "Acme" }], [201]);
  eq(created.created.map((t) => [t.customerId, t.status]), [["node-acme", "active"]], "tenant created");
  const inAcme = { "Tenant-ID": "node-acme" };
  await admin("POST", "/metrics", [{ name: "Tenant words", key: "tenant-words" }], [201], inAcme);
  const made = await admin("POST", "/application-api-keys", [{ userId: "node-tenant-user" }], [201], inAcme);
  const app = new TrophyApiClient({
    apiKey: made.created[0].key,
    environment: { api: `${url}/v1`, admin: `${url}/admin/v1` },
  });

  step("the SDK in the tenant through its application key");
  const user = await strict("User", await sdk(app.users.identify("node-tenant-user", { name: "In Acme" })));
  eq(user.id, "node-tenant-user", "identify in the tenant");
  const event = await strict(
    "EventResponse",
    await sdk(app.metrics.event("tenant-words", { user: { id: "node-tenant-user" }, value: 3 })),
  );
  eq(event.total, 3, "the tenant's total");

  step("without Tenant-ID the environment now answers 422");
  await expectApiError(422, "users.get without Tenant-ID", () => client.users.get("node-tenant-user"));
}

async function users(client) {
  step("users.identify");
  const user = await strict(
    "User",
    await sdk(
      client.users.identify(USER, {
        email: "node@example.com",
        name: "Node User",
        tz: "Europe/London",
        attributes: { plan: "pro" },
      }),
    ),
  );
  knownUsers.add(USER);
  eq(
    [user.id, user.name, user.email, user.tz, user.attributes, user.control],
    [USER, "Node User", "node@example.com", "Europe/London", { plan: "pro" }, false],
    "identify: (id, name, email, tz, attributes, control)",
  );
  check(typeof user.subscribeToEmails === "boolean", `identify: subscribeToEmails ${show(user.subscribeToEmails)}`);
  check(isDate(user.created) && isDate(user.updated), `identify: created/updated ${show([user.created, user.updated])}`);

  step("users.get");
  const got = await strict("User", await sdk(client.users.get(USER)));
  eq([got.id, got.name, got.tz, got.attributes], [USER, "Node User", "Europe/London", { plan: "pro" }], "users.get");

  step("users.update");
  const updated = await strict(
    "User",
    await sdk(client.users.update(USER, { name: "Node User Renamed", attributes: { plan: "team" } })),
  );
  eq(
    [updated.name, updated.attributes, updated.tz, updated.email],
    ["Node User Renamed", { plan: "team" }, "Europe/London", "node@example.com"],
    "update: (name, attributes, tz kept, email kept)",
  );
  check(updated.updated >= user.updated, "update: updated moved backwards");

  step("users.create");
  const other = await strict(
    "User",
    await sdk(
      client.users.create({
        id: OTHER_USER,
        name: "Second User",
        email: "second@example.com",
        tz: "America/New_York",
        deviceTokens: ["token-1"],
        subscribeToEmails: true,
      }),
    ),
  );
  knownUsers.add(OTHER_USER);
  eq(
    [other.id, other.name, other.email, other.tz, other.deviceTokens, other.subscribeToEmails],
    [OTHER_USER, "Second User", "second@example.com", "America/New_York", ["token-1"], true],
    "users.create",
  );
  eq((await sdk(client.users.get(OTHER_USER))).name, "Second User", "users.get(created user).name");
}

async function events(client) {
  const totals = [];
  for (let i = 1; i <= 2; i++) {
    step(`metrics.event #${i}`);
    const ev = await strict(
      "EventResponse",
      await sdk(client.metrics.event(METRIC_KEY, { user: { id: USER }, value: 2, attributes: { device: "android" } })),
    );
    eq(ev.metricId, ctx.metricId, `event #${i}: metricId`);
    check(typeof ev.eventId === "string" && ev.eventId, `event #${i}: eventId ${show(ev.eventId)}`);
    eq([ev.points, ev.leaderboards], [{}, {}], `event #${i}: (points, leaderboards)`);
    eq([ev.idempotencyKey, ev.idempotentReplayed], [undefined, undefined], `event #${i}: no idempotency fields`);
    const cs = ev.currentStreak;
    eq(
      [cs.length, cs.extended, cs.frequency, cs.freezes, cs.maxFreezes],
      [1, i === 1, "daily", 1, 3],
      `event #${i}: currentStreak (length, extended, frequency, freezes, maxFreezes)`,
    );
    check(
      cs.started === cs.periodStart && cs.periodStart === cs.periodEnd && /^\d{4}-\d{2}-\d{2}$/.test(cs.started ?? ""),
      `event #${i}: currentStreak dates ${show(cs)}`,
    );
    eq(cs.expires, ymd(addDays(new Date(`${cs.periodEnd}T00:00:00Z`), 1)), `event #${i}: currentStreak.expires`);
    // The one-day streak achievement completes with the first event (no device filter).
    eq(
      ev.achievements.map((a) => a.id),
      i === 1 ? [ctx.streakAch] : [],
      `event #${i}: completed achievements`,
    );
    totals.push(ev.total);
  }
  eq(totals, [2, 4], "event totals");

  step("metrics.event with idempotencyKey (first)");
  const first = await strict(
    "EventResponse",
    await sdk(
      client.metrics.event(METRIC_KEY, {
        idempotencyKey: "node-k1",
        user: { id: USER },
        value: 2,
        attributes: { device: "android" },
      }),
    ),
  );
  eq(
    [first.total, first.idempotencyKey, first.idempotentReplayed],
    [6, "node-k1", false],
    "idempotent event (first): (total, idempotencyKey, idempotentReplayed)",
  );
  // Total 6 passes the 5-lesson achievement.
  eq(first.achievements.map((a) => a.id), [ctx.fiveAch], "idempotent event (first): completed achievements");
  const five = first.achievements[0];
  eq(
    [five.name, five.trigger, five.metricId, five.metricValue, five.metricName],
    ["Five lessons", "metric", ctx.metricId, 5, "Lessons"],
    "idempotent event (first): achievement (name, trigger, metricId, metricValue, metricName)",
  );
  check(isDate(five.achievedAt), `idempotent event (first): achievedAt ${show(five.achievedAt)}`);

  step("metrics.event with idempotencyKey (replay)");
  const replay = await strict(
    "EventResponse",
    await sdk(
      client.metrics.event(METRIC_KEY, {
        idempotencyKey: "node-k1",
        user: { id: USER },
        value: 2,
        attributes: { device: "android" },
      }),
    ),
  );
  eq(
    [replay.eventId, replay.total, replay.idempotencyKey, replay.idempotentReplayed],
    [first.eventId, 6, "node-k1", true],
    "idempotent replay: (eventId, total, idempotencyKey, idempotentReplayed)",
  );

  step("users.get after id-only events keeps the profile");
  const after = await sdk(client.users.get(USER));
  eq(
    [after.name, after.tz, after.email, after.attributes],
    ["Node User Renamed", "Europe/London", "node@example.com", { plan: "team" }],
    "profile after id-only events",
  );
  ctx.userTotal = 6;
}

async function metricReads(client) {
  step("users.allMetrics");
  const all = await strict("MetricResponse[]", await sdk(client.users.allMetrics(USER)));
  const mine = all.filter((m) => m.key === METRIC_KEY);
  eq(mine.length, 1, "allMetrics: entries for lessons");
  eq(
    [mine[0].id, mine[0].name, mine[0].status, mine[0].current],
    [ctx.metricId, "Lessons", "active", ctx.userTotal],
    "allMetrics: lessons (id, name, status, current)",
  );

  step("users.singleMetric");
  const single = await strict("MetricResponse", await sdk(client.users.singleMetric(USER, METRIC_KEY)));
  eq(
    [single.id, single.key, single.name, single.status, single.current],
    [ctx.metricId, METRIC_KEY, "Lessons", "active", ctx.userTotal],
    "singleMetric: (id, key, name, status, current)",
  );
  const achieved = single.achievements.filter((a) => a.achievedAt !== undefined);
  eq(achieved.map((a) => a.id), [ctx.fiveAch], "singleMetric: achieved achievements of the metric");
  check(isDate(achieved[0].achievedAt), `singleMetric: achievedAt ${show(achieved[0].achievedAt)}`);

  step("users.metricEventSummary (daily)");
  const today = utcToday();
  const start = addDays(today, -6);
  // One day past UTC today: the user's day (Europe/London) may already be tomorrow.
  const end = addDays(today, 1);
  const daily = await strict(
    "UsersMetricEventSummaryResponseItem[]",
    await sdk(
      client.users.metricEventSummary(USER, METRIC_KEY, {
        aggregation: TrophyApi.UsersMetricEventSummaryRequestAggregation.Daily,
        startDate: ymd(start),
        endDate: ymd(end),
      }),
    ),
  );
  check(daily.length >= 7, `daily summary: expected at least 7 rows, got ${daily.length}`);
  eq([daily[0].date, daily.at(-1).date], [ymd(start), ymd(end)], "daily summary: first and last dates");
  eq(daily.at(-1).total, ctx.userTotal, "daily summary: last total");
  eq(
    daily.reduce((s, r) => s + r.change, 0),
    ctx.userTotal,
    "daily summary: sum of changes",
  );

  step("users.metricEventSummary (monthly)");
  const monthly = await sdk(
    client.users.metricEventSummary(USER, METRIC_KEY, {
      aggregation: TrophyApi.UsersMetricEventSummaryRequestAggregation.Monthly,
      startDate: ymd(start),
      endDate: ymd(end),
    }),
  );
  check(monthly.length >= 1 && monthly.at(-1).total === ctx.userTotal, `monthly summary: ${show(monthly)}`);
  check(monthly.every((r) => r.date.endsWith("-01")), `monthly rows start on the 1st: ${show(monthly)}`);
}

async function streaks(client) {
  await avoidUtcMidnight();
  const today = utcToday();
  const tomorrow = addDays(today, 1);
  ctx.streakDay = ymd(today);

  step("metrics.event for a user without a time zone starts a streak");
  const ev = await strict(
    "EventResponse",
    await sdk(client.metrics.event(METRIC_KEY, { user: { id: STREAK_USER }, value: 1 })),
  );
  knownUsers.add(STREAK_USER);
  const cs = ev.currentStreak;
  eq(
    [cs.length, cs.extended, cs.frequency, cs.started, cs.periodStart, cs.periodEnd, cs.expires],
    [1, true, "daily", ymd(today), ymd(today), ymd(today), ymd(tomorrow)],
    "currentStreak (length, extended, frequency, started, periodStart, periodEnd, expires)",
  );
  eq([cs.freezes, cs.maxFreezes, cs.freezeAutoEarnInterval, cs.freezeAutoEarnAmount], [1, 3, undefined, undefined], "currentStreak freezes");

  step("users.streak (default history)");
  const streak = await strict("StreakResponse", await sdk(client.users.streak(STREAK_USER)));
  eq(
    [streak.length, streak.frequency, streak.started, streak.periodStart, streak.periodEnd, streak.expires],
    [1, "daily", ymd(today), ymd(today), ymd(today), ymd(tomorrow)],
    "users.streak (length, frequency, started, periodStart, periodEnd, expires)",
  );
  eq([streak.freezes, streak.maxFreezes], [1, 3], "users.streak (freezes, maxFreezes)");
  const history = streak.streakHistory ?? [];
  eq(
    history.map((h) => [h.periodStart, h.periodEnd]),
    [6, 5, 4, 3, 2, 1, 0].map((n) => [ymd(addDays(today, -n)), ymd(addDays(today, -n))]),
    "users.streak: streakHistory periods (7 ascending days)",
  );
  eq(history.map((h) => h.length), [0, 0, 0, 0, 0, 0, 1], "users.streak: streakHistory lengths");
  eq(history.at(-1).usedFreeze, false, "users.streak: usedFreeze (freezes enabled)");

  step("users.streak historyPeriods=3");
  const short = await strict("StreakResponse", await sdk(client.users.streak(STREAK_USER, { historyPeriods: 3 })));
  eq(
    (short.streakHistory ?? []).map((h) => h.periodStart),
    [2, 1, 0].map((n) => ymd(addDays(today, -n))),
    "historyPeriods=3: period starts",
  );

  step("users.streak errors");
  await expectApiError(404, "users.streak(no-such-user)", () => client.users.streak(NO_USER), TrophyApi.NotFoundError);
  await expectApiError(
    422,
    "users.streak(historyPeriods=0)",
    () => client.users.streak(STREAK_USER, { historyPeriods: 0 }),
    TrophyApi.UnprocessableEntityError,
  );

  step("streaks.list");
  const listed = await strict(
    "BulkStreakResponse",
    await sdk(client.streaks.list({ userIds: [OTHER_USER, STREAK_USER, NO_USER] })),
  );
  eq(
    listed.map((i) => [i.userId, i.streakLength]),
    [
      [STREAK_USER, 1],
      [OTHER_USER, 0],
    ],
    "streaks.list (userId, streakLength): longest first, unknown users left out",
  );
  check(
    typeof listed[0].extended === "string" && !Number.isNaN(Date.parse(listed[0].extended)),
    `streaks.list: extended of ${STREAK_USER} must be a date-time string: ${show(listed[0].extended)}`,
  );
  eq(listed[1].extended, undefined, `streaks.list: extended of ${OTHER_USER}`);
  check(ymd(utcToday()) === ctx.streakDay, "the UTC date changed while the streak steps ran");
}

async function adminStreaks(client) {
  step("admin.streaks.freezes.create (within maxCount: no issues)");
  const granted = await strict(
    "CreateStreakFreezesResponse",
    await sdk(client.admin.streaks.freezes.create({ freezes: [{ userId: STREAK_USER }, { userId: STREAK_USER }] })),
  );
  eq(granted.issues, [], "freezes.create: issues");
  eq((await sdk(client.users.streak(STREAK_USER))).freezes, 3, "users.streak freezes after the grant (1 + 2)");
}

async function preferences(client) {
  step("users.getPreferences (defaults)");
  const defaults = await strict("UserPreferencesResponse", await sdk(client.users.getPreferences(OTHER_USER)));
  const n0 = defaults.notifications;
  eq(
    [n0.achievementCompleted, n0.recap, n0.reactivation, n0.streakReminder],
    [undefined, undefined, undefined, undefined],
    "default notification preferences",
  );

  step("users.updatePreferences (notifications)");
  const { Email, Push } = TrophyApi.NotificationChannel;
  const updated = await strict(
    "UserPreferencesResponse",
    await sdk(
      client.users.updatePreferences(OTHER_USER, {
        notifications: { achievementCompleted: [Email, Push], streakReminder: [Push] },
      }),
    ),
  );
  const expected = [["email", "push"], undefined, undefined, ["push"]];
  const n1 = updated.notifications;
  eq([n1.achievementCompleted, n1.recap, n1.reactivation, n1.streakReminder], expected, "notifications after update");

  step("users.getPreferences (after update)");
  const n2 = (await strict("UserPreferencesResponse", await sdk(client.users.getPreferences(OTHER_USER)))).notifications;
  eq([n2.achievementCompleted, n2.recap, n2.reactivation, n2.streakReminder], expected, "notifications read back");

  step("users.updatePreferences (recap only keeps the others)");
  const n3 = (await sdk(client.users.updatePreferences(OTHER_USER, { notifications: { recap: [Email] } }))).notifications;
  eq(
    [n3.achievementCompleted, n3.recap, n3.reactivation, n3.streakReminder],
    [["email", "push"], ["email"], undefined, ["push"]],
    "notifications after a recap-only update",
  );

  step("preferences errors");
  await expectApiError(
    404,
    "updatePreferences(no-such-user)",
    () => client.users.updatePreferences(NO_USER, { notifications: { recap: [Email] } }),
    TrophyApi.NotFoundError,
  );
  await expectApiError(404, "getPreferences(no-such-user)", () => client.users.getPreferences(NO_USER), TrophyApi.NotFoundError);
}

async function achievements(client) {
  step("metrics.event completes metric, streak and composite achievements");
  const ev = await strict(
    "EventResponse",
    await sdk(
      client.metrics.event(METRIC_KEY, {
        user: { id: ACH_USER, attributes: { plan: "pro" } },
        value: 1,
        attributes: { device: "ios" },
      }),
    ),
  );
  knownUsers.add(ACH_USER);
  const byId = Object.fromEntries(ev.achievements.map((a) => [a.id, a]));
  eq(
    Object.keys(byId).sort(),
    [ctx.iosAch, ctx.streakAch, ctx.comboAch].sort(),
    "achievement event: completed achievements (metric, streak, composite)",
  );
  const m = byId[ctx.iosAch];
  eq(
    [m.name, m.trigger, m.description, m.badgeUrl, m.metricId, m.metricValue, m.metricName, m.eventAttribute, m.userAttributes, m.key],
    [
      "First iOS lesson",
      "metric",
      "Finish a lesson on iOS",
      "https://example.com/ios.png",
      ctx.metricId,
      1,
      "Lessons",
      { key: "device", value: "ios" },
      [],
      undefined,
    ],
    "achievement event: metric achievement",
  );
  const s = byId[ctx.streakAch];
  eq([s.name, s.trigger, s.streakLength], ["One-day streak", "streak", 1], "achievement event: streak achievement");
  // `achievement` is not in the Node SDK's AchievementResponseTrigger enum (metric, streak,
  // api); the SDK accepts unknown enum values in responses.
  eq([byId[ctx.comboAch].name, byId[ctx.comboAch].trigger], ["Overachiever", "achievement"], "composite achievement");
  for (const a of ev.achievements) check(isDate(a.achievedAt), `event achievement achievedAt ${show(a.achievedAt)}`);

  step("users.singleMetric lists the metric's completed achievements");
  const single = await strict("MetricResponse", await sdk(client.users.singleMetric(ACH_USER, METRIC_KEY)));
  eq(
    single.achievements.filter((a) => a.achievedAt !== undefined).map((a) => a.id),
    [ctx.iosAch],
    "singleMetric(ACH_USER): achieved achievements",
  );

  step("achievements.complete");
  const completion = await strict(
    "AchievementCompletionResponse",
    await sdk(client.achievements.complete(API_ACHIEVEMENT_KEY, { user: { id: ACH_USER } })),
  );
  check(typeof completion.completionId === "string" && completion.completionId, `completionId ${show(completion.completionId)}`);
  const a = completion.achievement;
  eq(
    [a.id, a.name, a.trigger, a.key, a.userAttributes],
    [ctx.apiAch, "Onboarded", "api", API_ACHIEVEMENT_KEY, [{ key: "plan", value: "pro" }]],
    "complete: achievement (id, name, trigger, key, userAttributes)",
  );
  check(isDate(a.achievedAt), `complete: achievedAt ${show(a.achievedAt)}`);
  eq(completion.points, {}, "complete: points");

  step("achievements.complete again returns the same completion");
  const again = await sdk(client.achievements.complete(API_ACHIEVEMENT_KEY, { user: { id: ACH_USER } }));
  eq(
    [again.completionId, again.achievement.achievedAt],
    [completion.completionId, a.achievedAt],
    "complete again: (completionId, achievedAt)",
  );

  step("achievements.complete errors");
  await expectApiError(
    404,
    "achievements.complete(unknown key)",
    () => client.achievements.complete("no-such-achievement", { user: { id: ACH_USER } }),
    TrophyApi.NotFoundError,
  );
  // OTHER_USER has no `plan: pro`, which the api achievement requires.
  await expectApiError(
    422,
    "achievements.complete(user not eligible)",
    () => client.achievements.complete(API_ACHIEVEMENT_KEY, { user: { id: OTHER_USER } }),
    TrophyApi.UnprocessableEntityError,
  );

  step("users.achievements (completed)");
  const mine = await strict("UserAchievementWithStatsResponse[]", await sdk(client.users.achievements(ACH_USER)));
  eq(
    mine.map((x) => x.id).sort(),
    [ctx.iosAch, ctx.apiAch, ctx.streakAch, ctx.comboAch].sort(),
    "users.achievements(ACH_USER): metric, api, streak and composite",
  );
  for (const x of mine) {
    check(isDate(x.achievedAt), `users.achievements ${x.name}: achievedAt ${show(x.achievedAt)}`);
    check(x.completions >= 1, `users.achievements ${x.name}: completions ${x.completions}`);
    checkStats(x, `users.achievements ${x.name}`);
  }

  step("users.achievements includeIncomplete");
  eq(
    (await sdk(client.users.achievements(OTHER_USER))).map((x) => x.id),
    [],
    "users.achievements(OTHER_USER): none completed",
  );
  const incomplete = await strict(
    "UserAchievementWithStatsResponse[]",
    await sdk(client.users.achievements(OTHER_USER, { includeIncomplete: "true" })),
  );
  // The api achievement needs `plan: pro`, so it is not offered to OTHER_USER.
  eq(
    incomplete.map((x) => [x.id, x.achievedAt]).sort(),
    [ctx.iosAch, ctx.fiveAch, ctx.streakAch, ctx.comboAch].map((id) => [id, undefined]).sort(),
    "users.achievements(OTHER_USER, includeIncomplete): (id, achievedAt)",
  );

  step("achievements.all");
  const all = await strict("AchievementWithStatsResponse[]", await sdk(client.achievements.all()));
  eq(all.map((x) => x.id), ctx.allAchievements, "achievements.all: ids (creation order)");
  const stats = Object.fromEntries(all.map((x) => [x.id, x]));
  for (const x of all) checkStats(x, `achievements.all ${x.name}`);
  eq(
    [ctx.iosAch, ctx.fiveAch, ctx.apiAch, ctx.streakAch, ctx.comboAch].map((id) => stats[id].completions),
    // The one-day streak: USER, STREAK_USER and ACH_USER; everything else only one user.
    [1, 1, 1, 3, 1],
    "achievements.all: completions (First iOS lesson, Five lessons, Onboarded, One-day streak, Overachiever)",
  );
  eq(
    [stats[ctx.apiAch].key, stats[ctx.streakAch].streakLength, stats[ctx.iosAch].metricName, stats[ctx.iosAch].eventAttribute],
    [API_ACHIEVEMENT_KEY, 1, "Lessons", { key: "device", value: "ios" }],
    "achievements.all: trigger fields",
  );
  const filtered = await sdk(client.achievements.all({ userAttributes: "plan:free" }));
  eq(
    filtered.map((x) => x.id),
    ctx.allAchievements.filter((id) => id !== ctx.apiAch),
    "achievements.all(userAttributes=plan:free) hides the plan:pro achievement",
  );
}

async function errors(client, url) {
  step("users.get unknown user -> 404");
  await expectApiError(404, "users.get(no-such-user)", () => client.users.get(NO_USER));

  step("users.* unknown user -> NotFoundError");
  await expectApiError(
    404,
    "users.singleMetric(no-such-user)",
    () => client.users.singleMetric(NO_USER, METRIC_KEY),
    TrophyApi.NotFoundError,
  );
  await expectApiError(404, "users.allMetrics(no-such-user)", () => client.users.allMetrics(NO_USER), TrophyApi.NotFoundError);
  await expectApiError(
    404,
    "users.metricEventSummary(no-such-user)",
    () =>
      client.users.metricEventSummary(NO_USER, METRIC_KEY, {
        aggregation: TrophyApi.UsersMetricEventSummaryRequestAggregation.Daily,
        startDate: ymd(addDays(utcToday(), -1)),
        endDate: ymd(utcToday()),
      }),
    TrophyApi.NotFoundError,
  );
  await expectApiError(
    404,
    "users.update(no-such-user)",
    () => client.users.update(NO_USER, { name: "Nobody" }),
    TrophyApi.NotFoundError,
  );
  await expectApiError(
    404,
    "users.achievements(no-such-user)",
    () => client.users.achievements(NO_USER),
    TrophyApi.NotFoundError,
  );

  step("metrics.event unknown metric key -> 404");
  await expectApiError(404, "metrics.event(no-such-metric)", () =>
    client.metrics.event("no-such-metric", { user: { id: USER }, value: 1 }),
  );

  step("wrong API key -> 401 UnauthorizedError");
  const bad = new TrophyApiClient({ apiKey: WRONG_KEY, environment: { api: `${url}/v1`, admin: `${url}/admin/v1` } });
  const U = TrophyApi.UnauthorizedError;
  await expectApiError(401, "users.get with wrong key", () => bad.users.get(USER), U);
  await expectApiError(401, "metrics.event with wrong key", () => bad.metrics.event(METRIC_KEY, { user: { id: USER }, value: 1 }), U);
  await expectApiError(401, "users.singleMetric with wrong key", () => bad.users.singleMetric(USER, METRIC_KEY), U);
  await expectApiError(401, "streaks.list with wrong key", () => bad.streaks.list({ userIds: [USER] }), U);
  await expectApiError(401, "achievements.all with wrong key", () => bad.achievements.all(), U);
  await expectApiError(
    401,
    "admin.streaks.freezes.create with wrong key",
    () => bad.admin.streaks.freezes.create({ freezes: [{ userId: USER }] }),
    U,
  );
  eq((await sdk(client.users.singleMetric(USER, METRIC_KEY))).current, ctx.userTotal, "total unchanged by rejected events");
}

// Admin streak responses that carry issues: the Node SDK's `BulkInsertIssue` requires
// `{userId, level, reason}`. These run last, each in its own section, so the rest of the
// report stays independent of them.

async function freezeIssues(client) {
  step("admin.streaks.freezes.create with issues (unknown user, over maxCount)");
  const frozen = await strict(
    "CreateStreakFreezesResponse",
    await sdk(client.admin.streaks.freezes.create({ freezes: [{ userId: STREAK_USER }, { userId: NO_USER }] })),
  );
  eq(
    frozen.issues.map((i) => [i.userId, i.level, typeof i.reason]).sort(),
    [
      [NO_USER, "error", "string"],
      [STREAK_USER, "warning", "string"],
    ],
    "freezes.create: issues (userId, level, reason)",
  );

}

async function restoreIssues(client) {
  step("admin.streaks.restore with issues (unknown user, nothing to restore)");
  const restored = await strict(
    "RestoreStreaksResponse",
    await sdk(client.admin.streaks.restore({ users: [{ id: STREAK_USER }, { id: NO_USER }] })),
  );
  eq(restored.restoredUsers, [], "restore: restoredUsers");
  eq(
    restored.issues.map((i) => [i.userId, i.level, typeof i.reason]).sort(),
    [
      [NO_USER, "error", "string"],
      [STREAK_USER, "warning", "string"],
    ],
    "restore: issues (userId, level, reason)",
  );
}

// ---- points ---------------------------------------------------------------------------
// Own users, metric, achievement and points system, after every other section. The Node SDK
// has no admin points client, so the catalog is created with `fetch`; it has points.system,
// points.summary, users.points and users.pointsEventSummary (no boosts, levels or level
// summary reads), and the `points` of event and completion responses.

/** `[trigger id, awarded, total, sorted boost ids]` of each award; checks the award's shape. */
function awardTuples(awards) {
  return awards.map((a) => {
    check(typeof a.id === "string" && a.id, `award without an id: ${show(a)}`);
    check(typeof a.date === "string" && !Number.isNaN(Date.parse(a.date)), `award date: ${show(a.date)}`);
    check(a.trigger && Array.isArray(a.boosts), `award trigger/boosts: ${show(a)}`);
    return [a.trigger.id, a.awarded, a.total, a.boosts.map((b) => b.id).sort()];
  });
}

async function points(client) {
  const today = utcToday();
  const day = (n) => ymd(addDays(today, n));

  step("points: users.create (target of a user-specific boost, before any points system)");
  await strict("User", await sdk(client.users.create({ id: POINTS_BOOST_USER, name: "Boosted User", tz: "UTC" })));
  knownUsers.add(POINTS_BOOST_USER);

  step("points admin (fetch): metric, achievement, system with nested levels, triggers and boosts");
  const metric = await admin("POST", "/metrics", [{ name: "Quizzes", key: POINTS_METRIC_KEY }], [201]);
  eq(metric.issues, [], "create quizzes metric: issues");
  const quizId = metric.created[0].id;
  const ach = await admin(
    "POST",
    "/achievements",
    [{ name: "Points champion", trigger: "api", status: "active", key: POINTS_ACHIEVEMENT_KEY }],
    [201],
  );
  eq(ach.issues, [], "create points achievement: issues");
  const championId = ach.created[0].id;
  const xpBadge = "https://example.com/node-xp.png";
  const systems = await admin(
    "POST",
    "/points",
    [
      {
        name: "Node XP",
        key: POINTS_KEY,
        description: "Points for the Node SDK check",
        badge: { url: xpBadge },
        maxPoints: 1000,
        levels: [
          { name: "Bronze", key: "bronze", points: 10 },
          { name: "Silver", key: "silver", points: 50 },
        ],
        triggers: [
          { type: "user_creation", points: 10, status: "active" },
          {
            type: "metric",
            points: 5,
            status: "active",
            metricId: quizId,
            metricThreshold: 2,
            eventAttributes: [{ attributeId: ctx.deviceId, attributeValue: "web" }],
          },
        ],
        boosts: [{ name: "Launch", start: day(-2), multiplier: 1.5, rounding: "up" }],
      },
    ],
    [201],
  );
  eq(systems.issues, [], "create points system: issues");
  const xp = systems.created[0];
  eq(
    [xp.levels.map((l) => l.key), xp.triggers.map((t) => t.type), xp.boosts.map((b) => [b.name, b.status])],
    [["bronze", "silver"], ["user_creation", "metric"], [["Launch", "active"]]],
    "created system: nested levels, triggers and boosts",
  );
  const [bronze, silver] = xp.levels;
  const [ucTrigger, metricTrigger] = xp.triggers;
  const launch = xp.boosts[0];

  step("points admin (fetch): triggers, a user-specific boost, maxPoints");
  const triggers = await admin(
    "POST",
    `/points/${xp.id}/triggers`,
    [
      { type: "streak", points: 20, status: "active", streakLength: 1 },
      { type: "achievement", points: 25, status: "active", achievementId: championId },
      { type: "time", points: 1, status: "active", timeUnit: "hours", timeInterval: 1 },
      { type: "metric", points: 0, metricId: quizId, metricThreshold: 1 },
    ],
    [201],
  );
  eq(
    triggers.issues.map((i) => [i.index, i.severity, i.message]),
    [[3, "error", "Points must not be zero"]],
    "create triggers: issues",
  );
  const [streakTrigger, achTrigger, timeTrigger] = triggers.created;
  const boosts = await admin(
    "POST",
    `/points/${xp.id}/boosts`,
    [{ name: "VIP", userId: POINTS_BOOST_USER, start: day(-2), multiplier: 1.25, rounding: "down" }],
    [201],
  );
  eq(boosts.issues, [], "create user-specific boost: issues");
  const vip = boosts.created[0];
  eq([vip.userId, vip.status], [POINTS_BOOST_USER, "active"], "user-specific boost (userId, status)");
  const patched = await admin("PATCH", "/points", [{ id: xp.id, maxPoints: 100 }]);
  eq([patched.issues, patched.updated.map((s) => s.maxPoints)], [[], [100]], "update maxPoints");

  const launchOnly = [launch.id];
  const systemFields = (p, where) =>
    eq(
      [p.id, p.key, p.name, p.description, p.badgeUrl, p.maxPoints],
      [xp.id, POINTS_KEY, "Node XP", "Points for the Node SDK check", xpBadge, 100],
      `${where}: points system fields`,
    );
  const quiz = async (user, value, device) =>
    strict("EventResponse", await sdk(client.metrics.event(POINTS_METRIC_KEY, { user, value, attributes: { device } })));

  step("metrics.event creating a user: user_creation and metric awards, level reached");
  let ev = await quiz({ id: POINTS_USER, attributes: { plan: "pro" } }, 3, "web");
  knownUsers.add(POINTS_USER);
  eq(Object.keys(ev.points), [POINTS_KEY], "points event #1: systems in points");
  let p = ev.points[POINTS_KEY];
  systemFields(p, "points event #1");
  // user_creation 10 x1.5 = 15; metric 3 / 2 -> 1 multiple of 5 x1.5 = 7.5 -> up 8.
  eq(
    [p.total, p.added, awardTuples(p.awards)],
    [23, 23, [[ucTrigger.id, 15, 15, launchOnly], [metricTrigger.id, 8, 23, launchOnly]]],
    "points event #1: (total, added, awards)",
  );
  eq([p.level?.id, p.level?.key, p.level?.points], [bronze.id, "bronze", 10], "points event #1: level");
  const t = p.awards[1].trigger;
  eq(
    [t.type, t.points, t.metricName, t.metricThreshold],
    ["metric", 5, "Quizzes", 2],
    "points event #1: metric award's trigger (type, points, metricName, metricThreshold)",
  );
  eq(
    p.awards[0].boosts.map((b) => [b.name, b.status, b.start, b.multiplier, b.rounding]),
    [["Launch", "active", day(-2), 1.5, "up"]],
    "points event #1: award boosts",
  );

  step("metrics.event not matching the trigger's event attributes: no points");
  ev = await quiz({ id: POINTS_USER }, 2, "ios");
  eq(ev.points, {}, "points event (device ios): points");

  step("metrics.event extending a streak: streak award, level changed");
  ev = await strict("EventResponse", await sdk(client.metrics.event(METRIC_KEY, { user: { id: POINTS_USER }, value: 1 })));
  // The one-day streak achievement completes too (it is not a points trigger).
  eq(
    [ev.currentStreak.length, ev.achievements.map((a) => a.id)],
    [1, [ctx.streakAch]],
    "streak points event: (streak length, achievements)",
  );
  p = ev.points[POINTS_KEY];
  eq(
    [p.total, p.added, awardTuples(p.awards), p.level?.key],
    [53, 30, [[streakTrigger.id, 30, 53, launchOnly]], "silver"],
    "streak points event: (total, added, awards, level)",
  );
  eq(
    [p.awards[0].trigger.type, p.awards[0].trigger.streakLengthThreshold],
    ["streak", 1],
    "streak award's trigger",
  );

  step("achievements.complete: achievement award in points");
  const completion = await strict(
    "AchievementCompletionResponse",
    await sdk(client.achievements.complete(POINTS_ACHIEVEMENT_KEY, { user: { id: POINTS_USER } })),
  );
  p = completion.points[POINTS_KEY];
  systemFields(p, "completion");
  // 25 x1.5 = 37.5 -> up 38.
  eq(
    [p.total, p.added, awardTuples(p.awards), "level" in p],
    [91, 38, [[achTrigger.id, 38, 91, launchOnly]], false],
    "completion: (total, added, awards, level present)",
  );
  eq(
    [p.awards[0].trigger.type, p.awards[0].trigger.achievementName],
    ["achievement", "Points champion"],
    "completion: award trigger",
  );

  step("metrics.event at maxPoints: the award is clamped");
  p = (await quiz({ id: POINTS_USER }, 3, "web")).points[POINTS_KEY];
  // progress 6 -> 2 more multiples: 10 x1.5 = 15, but only 9 fit under maxPoints 100.
  eq(
    [p.total, p.added, awardTuples(p.awards), "level" in p],
    [100, 9, [[metricTrigger.id, 9, 100, launchOnly]], false],
    "clamped event: (total, added, awards, level present)",
  );

  step("metrics.event with a global and a user-specific boost");
  p = (await quiz({ id: POINTS_BOOST_USER }, 2, "web")).points[POINTS_KEY];
  // 5 x1.5 x1.25 = 9.375; "up" and "down" disagree -> down 9.
  eq(
    [p.total, p.added, awardTuples(p.awards), "level" in p],
    [9, 9, [[metricTrigger.id, 9, 9, [launch.id, vip.id].sort()]], false],
    "boosted event: (total, added, awards, level present)",
  );

  step("points.system");
  const system = await strict("PointsSystemResponse", await sdk(client.points.system(POINTS_KEY)));
  eq(
    [system.id, system.name, system.description, system.badgeUrl, system.maxPoints],
    [xp.id, "Node XP", "Points for the Node SDK check", xpBadge, 100],
    "points.system (id, name, description, badgeUrl, maxPoints)",
  );
  eq(
    system.triggers.map((x) => [x.id, x.type, x.points, x.status]),
    [
      [ucTrigger.id, "user_creation", 10, "active"],
      [metricTrigger.id, "metric", 5, "active"],
      [streakTrigger.id, "streak", 20, "active"],
      [achTrigger.id, "achievement", 25, "active"],
      [timeTrigger.id, "time", 1, "active"],
    ],
    "points.system triggers (id, type, points, status)",
  );
  const byId = Object.fromEntries(system.triggers.map((x) => [x.id, x]));
  eq(
    [byId[timeTrigger.id].timeUnit, byId[timeTrigger.id].timeInterval, byId[streakTrigger.id].streakLengthThreshold],
    ["hour", 1, 1],
    "points.system (time unit and interval, streakLengthThreshold)",
  );
  eq(
    [byId[metricTrigger.id].metricName, byId[metricTrigger.id].metricThreshold, byId[metricTrigger.id].eventAttribute],
    ["Quizzes", 2, { key: "device", value: "web" }],
    "points.system metric trigger",
  );
  for (const x of system.triggers) check(isDate(x.created) && isDate(x.updated), `trigger ${x.id}: created/updated`);

  step("points.summary");
  const n = knownUsers.size;
  const ranges = (summary) => summary.map((r) => [r.from, r.to, r.users]);
  // Highest total 100 -> ranges of 10 up to 100; users without points count at 0.
  const tens = (zero, counts) => [[0, 0, zero], ...[...Array(10).keys()].map((i) => [i * 10 + 1, (i + 1) * 10, counts[i] ?? 0])];
  eq(
    ranges(await strict("PointsSummaryResponse", await sdk(client.points.summary(POINTS_KEY)))),
    tens(n - 2, { 0: 1, 9: 1 }),
    `points.summary (${n} users)`,
  );
  // plan:pro: ACH_USER (no points) and POINTS_USER (100).
  eq(
    ranges(await sdk(client.points.summary(POINTS_KEY, { userAttributes: "plan:pro" }))),
    tens(1, { 9: 1 }),
    "points.summary(userAttributes=plan:pro)",
  );

  step("users.points");
  const mine = await strict("GetUserPointsResponse", await sdk(client.users.points(POINTS_USER, POINTS_KEY, { awards: 2 })));
  eq([mine.id, mine.key, mine.name, mine.total], [xp.id, POINTS_KEY, "Node XP", 100], "users.points (id, key, name, total)");
  eq([mine.level?.id, mine.level?.key], [silver.id, "silver"], "users.points: level");
  eq(
    awardTuples(mine.awards),
    [[metricTrigger.id, 9, 100, launchOnly], [achTrigger.id, 38, 91, launchOnly]],
    "users.points(awards=2): newest first",
  );
  const history = await strict("GetUserPointsResponse", await sdk(client.users.points(POINTS_USER, POINTS_KEY)));
  eq(
    history.awards.map((a) => [a.trigger.id, a.awarded, a.total]),
    [
      [metricTrigger.id, 9, 100],
      [achTrigger.id, 38, 91],
      [streakTrigger.id, 30, 53],
      [metricTrigger.id, 8, 23],
      [ucTrigger.id, 15, 15],
    ],
    "users.points: whole history newest first",
  );
  const boosted = await strict("GetUserPointsResponse", await sdk(client.users.points(POINTS_BOOST_USER, POINTS_KEY)));
  eq(
    [boosted.total, boosted.level, awardTuples(boosted.awards)],
    [9, null, [[metricTrigger.id, 9, 9, [launch.id, vip.id].sort()]]],
    "users.points(boosted user): (total, level, awards)",
  );
  const nothing = await strict("GetUserPointsResponse", await sdk(client.users.points(OTHER_USER, POINTS_KEY)));
  eq([nothing.total, nothing.level, nothing.awards], [0, null, []], "users.points(user without points)");

  step("users.pointsEventSummary (daily)");
  const rows = await strict(
    "UsersPointsEventSummaryResponseItem[]",
    await sdk(
      client.users.pointsEventSummary(POINTS_USER, POINTS_KEY, {
        aggregation: TrophyApi.UsersPointsEventSummaryRequestAggregation.Daily,
        startDate: day(-6),
        endDate: day(1),
      }),
    ),
  );
  check(rows.length >= 7, `points event summary: expected at least 7 rows, got ${show(rows)}`);
  eq([rows[0].date, rows.at(-1).date], [day(-6), day(1)], "points event summary: first and last dates");
  eq(
    [rows.at(-1).total, rows.reduce((s, r) => s + r.change, 0)],
    [100, 100],
    "points event summary: (last total, sum of changes)",
  );

  step("points errors");
  const NF = TrophyApi.NotFoundError;
  await expectApiError(404, "points.system(no-such-points)", () => client.points.system("no-such-points"), NF);
  await expectApiError(404, "points.summary(no-such-points)", () => client.points.summary("no-such-points"), NF);
  await expectApiError(404, "users.points(no-such-points)", () => client.users.points(POINTS_USER, "no-such-points"), NF);
  await expectApiError(404, "users.points(no-such-user)", () => client.users.points(NO_USER, POINTS_KEY), NF);
  await expectApiError(
    422,
    "users.points(awards=0)",
    () => client.users.points(POINTS_USER, POINTS_KEY, { awards: 0 }),
    TrophyApi.UnprocessableEntityError,
  );
}

// ---- leaderboards ---------------------------------------------------------------------

/** Every field of an admin leaderboard (plain JSON from the admin API) but its id. */
function adminLeaderboardTuple(lb) {
  return [
    lb.key, lb.name, lb.description ?? null, lb.status, lb.rankBy, lb.metricId ?? null, lb.pointsSystemId ?? null,
    lb.maxParticipants, lb.start, lb.end ?? null, lb.startTime ?? null, lb.endTime ?? null, lb.breakdownAttributes,
    lb.runUnit ?? null, lb.runInterval ?? null, lb.userAttributes, lb.tiePolicy,
  ];
}

/** Every `LeaderboardResponse` field (and `status`); absent and null both read as null. */
function appLeaderboardTuple(lb) {
  const n = (v) => v ?? null;
  return [
    lb.id, lb.key, lb.name, n(lb.description), n(lb.status), lb.rankBy, n(lb.metricKey), n(lb.metricName),
    n(lb.pointsSystemKey), n(lb.pointsSystemName), n(lb.breakdownAttribute), lb.breakdownAttributes, lb.start,
    n(lb.end), n(lb.startTime), n(lb.endTime), lb.maxParticipants, n(lb.runUnit), n(lb.runInterval),
    lb.userAttributes,
  ];
}

const rankingsTuple = (board) => board.rankings.map((r) => [r.userId, r.userName ?? null, r.rank, r.value]);

async function leaderboards(client) {
  await avoidUtcMidnight();
  const today = utcToday();
  const day = (n) => ymd(addDays(today, n));

  step("leaderboards admin (fetch): metric");
  const metric = await admin("POST", "/metrics", [{ name: "Laps", key: LB_METRIC_KEY }], [201]);
  eq(metric.issues, [], "create laps metric: issues");
  const lapsId = metric.created[0].id;

  step("leaderboards admin (fetch): create (metric, repeating, streak, breakdown, inactive; bad items)");
  const created = await admin(
    "POST",
    "/leaderboards",
    [
      {
        name: "Top two",
        key: LB_TOP,
        description: "Two places",
        status: "active",
        rankBy: "metric",
        metricId: lapsId,
        maxParticipants: 2,
        start: day(-1),
      },
      {
        name: "Weekly laps",
        key: LB_WEEKLY,
        status: "active",
        rankBy: "metric",
        metricId: lapsId,
        start: day(-8),
        startTime: "00:00",
        runUnit: "day",
        runInterval: 7,
      },
      { name: "Streakers", key: LB_STREAK, status: "active", rankBy: "streak" },
      {
        name: "Laps by plan",
        key: LB_BY_PLAN,
        status: "active",
        rankBy: "metric",
        metricId: lapsId,
        start: day(0),
        breakdownAttributes: [ctx.planId],
      },
      { name: "Draft", key: LB_DRAFT, rankBy: "metric", metricId: lapsId, end: day(30) },
      { name: "Repeating streak", key: "node-bad-streak", rankBy: "streak", runUnit: "day", runInterval: 1 },
      { name: "Backwards", key: "node-bad-times", rankBy: "metric", metricId: lapsId, startTime: "10:00", endTime: "09:30" },
    ],
    [201],
  );
  eq(
    created.issues.map((i) => [i.index, i.severity, i.message]),
    [
      [5, "error", "Streak leaderboards cannot repeat (runUnit must be null)"],
      [6, "error", "startTime must be before endTime"],
    ],
    "create leaderboards: issues (streak board with runUnit, startTime >= endTime)",
  );
  const [top, weekly, streak, byPlan, draft] = created.created;
  const expectedAdmin = {
    [LB_TOP]: [LB_TOP, "Top two", "Two places", "active", "metric", lapsId, null, 2, day(-1), null, null, null, [], null, null, [], "first-reached"],
    [LB_WEEKLY]: [LB_WEEKLY, "Weekly laps", null, "active", "metric", lapsId, null, 1000, day(-8), null, "00:00", null, [], "day", 7, [], "first-reached"],
    [LB_STREAK]: [LB_STREAK, "Streakers", null, "active", "streak", null, null, 1000, day(0), null, null, null, [], null, null, [], "first-reached"],
    [LB_BY_PLAN]: [LB_BY_PLAN, "Laps by plan", null, "active", "metric", lapsId, null, 1000, day(0), null, null, null, [ctx.planId], null, null, [], "first-reached"],
    [LB_DRAFT]: [LB_DRAFT, "Draft", null, "inactive", "metric", lapsId, null, 1000, day(0), day(30), null, null, [], null, null, [], "first-reached"],
  };
  eq(created.created.map(adminLeaderboardTuple), Object.values(expectedAdmin), "created leaderboards (every field)");

  step("leaderboards admin (fetch): list / get / update");
  eq(
    (await admin("GET", "/leaderboards")).map((lb) => [lb.id, ...adminLeaderboardTuple(lb)]),
    created.created.map((lb) => [lb.id, ...adminLeaderboardTuple(lb)]),
    "admin list (creation order)",
  );
  eq(adminLeaderboardTuple(await admin("GET", `/leaderboards/${weekly.id}`)), expectedAdmin[LB_WEEKLY], "admin get(weekly)");
  await admin("GET", `/leaderboards/${UNKNOWN_UUID}`, undefined, [404]);
  const updated = await admin("PATCH", "/leaderboards", [
    { id: top.id, name: "Top two (renamed)" },
    { id: UNKNOWN_UUID, name: "Nobody" },
    { id: weekly.id, runUnit: "month", runInterval: 1 },
  ]);
  expectedAdmin[LB_TOP][1] = "Top two (renamed)";
  eq(updated.updated.map((lb) => [lb.id, ...adminLeaderboardTuple(lb)]), [[top.id, ...expectedAdmin[LB_TOP]]], "admin update: updated");
  eq(
    updated.issues.map((i) => [i.id, i.severity, i.message]),
    [
      [UNKNOWN_UUID, "error", "Leaderboard not found by ID"],
      [weekly.id, "error", "runUnit can only be changed while the leaderboard is inactive"],
    ],
    "admin update: issues",
  );

  // ---- application reads before any activity ----
  const appCommon = {
    [LB_TOP]: [top.id, LB_TOP, "Top two (renamed)", "Two places", "active", "metric", LB_METRIC_KEY, "Laps", null, null, null, [], day(-1), null, null, null, 2, null, null, []],
    [LB_WEEKLY]: [weekly.id, LB_WEEKLY, "Weekly laps", null, "active", "metric", LB_METRIC_KEY, "Laps", null, null, null, [], day(-8), null, "00:00", null, 1000, "day", 7, []],
    [LB_STREAK]: [streak.id, LB_STREAK, "Streakers", null, "active", "streak", null, null, null, null, null, [], day(0), null, null, null, 1000, null, null, []],
    [LB_BY_PLAN]: [byPlan.id, LB_BY_PLAN, "Laps by plan", null, "active", "metric", LB_METRIC_KEY, "Laps", null, null, "plan", ["plan"], day(0), null, null, null, 1000, null, null, []],
  };

  step("leaderboards.all (inactive boards are left out)");
  const boards = await strict("LeaderboardsAllResponseItem[]", await sdk(client.leaderboards.all()));
  eq(boards.map(appLeaderboardTuple), Object.values(appCommon), "leaderboards.all (every field, creation order)");

  step("leaderboards.get before any activity");
  const empty = await strict("LeaderboardResponseWithRankings", await sdk(client.leaderboards.get(LB_TOP)));
  eq([appLeaderboardTuple(empty), empty.rankings], [appCommon[LB_TOP], []], "leaderboards.get(top) with nobody ranked");

  // ---- events: SPEC §7.8 eviction on the two-place board ----
  const people = { [LB_ALICE]: ["Alice", "pro"], [LB_BOB]: ["Bob", "pro"], [LB_CAROL]: ["Carol", "free"] };
  const event = async (userId, value, where) => {
    const [name, plan] = people[userId];
    const ev = await strict(
      "EventResponse",
      await sdk(client.metrics.event(LB_METRIC_KEY, { user: { id: userId, name, tz: "UTC", attributes: { plan } }, value })),
    );
    knownUsers.add(userId);
    const out = {};
    for (const [key, e] of Object.entries(ev.leaderboards)) {
      eq(e.key, key, `${where}: leaderboards[${key}].key`);
      const c = appCommon[key];
      // The entry is a LeaderboardResponse without status, with the run's dates.
      eq(
        [e.id, e.name, e.description ?? null, e.rankBy, e.metricKey ?? null, e.metricName ?? null, e.breakdownAttribute ?? null,
          e.breakdownAttributes, e.startTime ?? null, e.endTime ?? null, e.maxParticipants, e.runUnit ?? null,
          e.runInterval ?? null, e.userAttributes],
        [c[0], c[2], c[3], c[5], c[6], c[7], c[10], c[11], c[14], c[15], c[16], c[17], c[18], c[19]],
        `${where}: leaderboards[${key}] configuration fields`,
      );
      out[key] = [e.rank ?? null, e.previousRank ?? null, e.threshold, e.start, e.end ?? null,
        e.breakdownAttributeValue ?? null, e.breakdownAttributeValues ?? null];
    }
    return out;
  };
  // Perpetual boards report their configured dates; the weekly board's run 1 is
  // day(-1)..day(5) (run 0 was day(-8)..day(-2)).
  const week = [day(-1), day(5)];
  const pro = ["pro", [{ key: "plan", value: "pro" }]];
  const free = ["free", [{ key: "plan", value: "free" }]];
  const plain = [null, null];

  step("metrics.event #1 (Alice 10): rank 1 everywhere, threshold 0");
  eq(
    await event(LB_ALICE, 10, "leaderboard event #1"),
    {
      [LB_TOP]: [1, null, 0, day(-1), null, ...plain],
      [LB_WEEKLY]: [1, null, 0, ...week, ...plain],
      [LB_BY_PLAN]: [1, null, 0, day(0), null, ...pro],
    },
    "leaderboard event #1: (rank, previousRank, threshold, start, end, breakdown)",
  );

  step("metrics.event #2 (Bob 5): the two-place board is full, threshold 5");
  eq(
    await event(LB_BOB, 5, "leaderboard event #2"),
    {
      [LB_TOP]: [2, null, 5, day(-1), null, ...plain],
      [LB_WEEKLY]: [2, null, 0, ...week, ...plain],
      [LB_BY_PLAN]: [2, null, 0, day(0), null, ...pro],
    },
    "leaderboard event #2",
  );

  step("metrics.event #3 (Carol 5 = threshold): not ranked on the full board");
  eq(
    await event(LB_CAROL, 5, "leaderboard event #3"),
    {
      [LB_TOP]: [null, null, 5, day(-1), null, ...plain],
      [LB_WEEKLY]: [3, null, 0, ...week, ...plain],
      [LB_BY_PLAN]: [1, null, 0, day(0), null, ...free],
    },
    "leaderboard event #3: equal to the threshold is not enough; ties keep who was first",
  );

  step("metrics.event #4 (Carol +1 = 6 > 5): enters rank 2, Bob is evicted");
  eq(
    await event(LB_CAROL, 1, "leaderboard event #4"),
    {
      [LB_TOP]: [2, null, 6, day(-1), null, ...plain],
      [LB_WEEKLY]: [2, 3, 0, ...week, ...plain],
      [LB_BY_PLAN]: [1, 1, 0, day(0), null, ...free],
    },
    "leaderboard event #4",
  );

  /** `rankings` of `leaderboards.get(key, params)` once they equal `expected` (other users'
   * reads see rankings applied asynchronously). */
  const settled = async (key, expected, what, params) => {
    const deadline = Date.now() + 5000;
    let board;
    for (;;) {
      board = await strict("LeaderboardResponseWithRankings", await sdk(client.leaderboards.get(key, params)));
      if (isDeepStrictEqual(rankingsTuple(board), expected) || Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    eq(rankingsTuple(board), expected, `${what}: rankings (userId, userName, rank, value)`);
    return board;
  };

  step("leaderboards.get after the eviction");
  let board = await settled(LB_TOP, [[LB_ALICE, "Alice", 1, 10], [LB_CAROL, "Carol", 2, 6]], "leaderboards.get(top)");
  eq(appLeaderboardTuple(board), appCommon[LB_TOP], "leaderboards.get(top): fields");
  await settled(LB_TOP, [], "leaderboards.get(top, userId=evicted Bob)", { userId: LB_BOB });

  step("metrics.event #5 (Bob +2 = 7 > 6): Bob re-enters at rank 2, Carol is evicted");
  eq(
    await event(LB_BOB, 2, "leaderboard event #5"),
    {
      [LB_TOP]: [2, null, 7, day(-1), null, ...plain],
      [LB_WEEKLY]: [2, 3, 0, ...week, ...plain],
      [LB_BY_PLAN]: [2, 2, 0, day(0), null, ...pro],
    },
    "leaderboard event #5",
  );

  step("leaderboards.get (rankings, limit, offset, userId, run, userAttributes)");
  const alice = [LB_ALICE, "Alice", 1, 10];
  const bob = [LB_BOB, "Bob", 2, 7];
  const carol = [LB_CAROL, "Carol", 3, 6];
  await settled(LB_TOP, [alice, bob], "leaderboards.get(top) after re-entry");
  await settled(LB_TOP, [bob], "leaderboards.get(top, limit=1, offset=1)", { limit: 1, offset: 1 });
  await settled(LB_TOP, [], "leaderboards.get(top, userId=evicted Carol)", { userId: LB_CAROL });
  board = await settled(LB_WEEKLY, [alice, bob, carol], "leaderboards.get(weekly)");
  eq(appLeaderboardTuple(board), appCommon[LB_WEEKLY], "leaderboards.get(weekly): fields");
  await settled(LB_WEEKLY, [bob, carol], "leaderboards.get(weekly, userId=Carol, offset=-1, limit=2)", {
    userId: LB_CAROL,
    offset: -1,
    limit: 2,
  });
  await settled(LB_WEEKLY, [alice, bob, carol], "leaderboards.get(weekly, run=today)", { run: day(0) });
  await settled(LB_WEEKLY, [], "leaderboards.get(weekly, run=run 0)", { run: day(-8) });
  board = await settled(LB_BY_PLAN, [alice, bob], "leaderboards.get(by-plan, userAttributes=plan:pro)", {
    userAttributes: "plan:pro",
  });
  eq(appLeaderboardTuple(board), appCommon[LB_BY_PLAN], "leaderboards.get(by-plan): fields");
  await settled(LB_BY_PLAN, [[LB_CAROL, "Carol", 1, 6]], "leaderboards.get(by-plan, userAttributes=plan:free)", {
    userAttributes: "plan:free",
  });
  // Users whose streak was running when the board was activated are on it from the start
  // (SPEC 7.5.3), ties in the order they were placed.
  const streakSeeded = [
    [USER, "Node User Renamed", 1, 1],
    [ACH_USER, null, 2, 1],
    [POINTS_USER, null, 3, 1],
    [STREAK_USER, null, 4, 1],
  ];
  await settled(LB_STREAK, streakSeeded, "leaderboards.get(streak) (current streaks placed at activation)");

  step("metrics.event on the streak metric: the streak board ranks the streak length");
  const sev = await strict("EventResponse", await sdk(client.metrics.event(METRIC_KEY, { user: { id: LB_ALICE }, value: 1 })));
  eq(sev.currentStreak.length, 1, "streak leaderboard event: currentStreak.length");
  eq(Object.keys(sev.leaderboards), [LB_STREAK], "streak leaderboard event: boards");
  const se = sev.leaderboards[LB_STREAK];
  eq(
    [se.rank, se.previousRank ?? null, se.threshold, se.start, se.end ?? null, se.breakdownAttributeValues ?? null],
    [5, null, 0, day(0), null, null],
    "streak leaderboard event: (rank, previousRank, threshold, start, end, breakdown)",
  );
  eq(
    [se.id, se.name, se.rankBy, se.metricKey ?? null, se.breakdownAttributes, se.maxParticipants, se.runUnit ?? null],
    [streak.id, "Streakers", "streak", null, [], 1000, null],
    "streak leaderboard event: configuration fields",
  );
  const streakAlice = [...streakSeeded, [LB_ALICE, "Alice", 5, 1]];
  await settled(LB_STREAK, streakAlice, "leaderboards.get(streak)");

  step("leaderboards.get errors");
  const NF = TrophyApi.NotFoundError;
  const UE = TrophyApi.UnprocessableEntityError;
  await expectApiError(404, "leaderboards.get(unknown key)", () => client.leaderboards.get("no-such-board"), NF);
  await expectApiError(404, "leaderboards.get(inactive board)", () => client.leaderboards.get(LB_DRAFT), NF);
  await expectApiError(422, "leaderboards.get(top, limit=3 > maxParticipants 2)", () => client.leaderboards.get(LB_TOP, { limit: 3 }), UE);
  await expectApiError(422, "leaderboards.get(weekly, offset=-1 without userId)", () => client.leaderboards.get(LB_WEEKLY, { offset: -1 }), UE);
  await expectApiError(
    422,
    "leaderboards.get(weekly, userAttributes on a board without breakdowns)",
    () => client.leaderboards.get(LB_WEEKLY, { userAttributes: "plan:pro" }),
    UE,
  );
  await expectApiError(422, "leaderboards.get(by-plan without userAttributes)", () => client.leaderboards.get(LB_BY_PLAN), UE);
  await expectApiError(422, "leaderboards.get(weekly, run before the start)", () => client.leaderboards.get(LB_WEEKLY, { run: day(-9) }), UE);

  // ---- finishing and deleting ----
  step("leaderboards admin (fetch): finish the streak board; leaderboards.all leaves it out");
  const finishedUpdate = await admin("PATCH", "/leaderboards", [{ id: streak.id, status: "finished" }]);
  eq(finishedUpdate.issues, [], "finish streak board: issues");
  const finishedAdmin = [...expectedAdmin[LB_STREAK]];
  finishedAdmin[3] = "finished";
  finishedAdmin[9] = day(0);
  eq(finishedUpdate.updated.map(adminLeaderboardTuple), [finishedAdmin], "finish streak board: (status finished, end today)");
  const finished = [...appCommon[LB_STREAK]];
  finished[4] = "finished";
  finished[13] = day(0);
  eq(
    (await strict("LeaderboardsAllResponseItem[]", await sdk(client.leaderboards.all()))).map((lb) => lb.key),
    [LB_TOP, LB_WEEKLY, LB_BY_PLAN],
    "leaderboards.all leaves finished boards out",
  );
  board = await strict("LeaderboardResponseWithRankings", await sdk(client.leaderboards.get(LB_STREAK)));
  eq([appLeaderboardTuple(board), rankingsTuple(board)], [finished, streakAlice], "leaderboards.get(finished streak board): its last run");

  step("leaderboards admin (fetch): delete");
  const deleted = await admin("DELETE", `/leaderboards?ids=${streak.id}&ids=${draft.id}&ids=${UNKNOWN_UUID}`);
  eq(deleted.deleted, [{ id: streak.id }, { id: draft.id }], "delete leaderboards: deleted");
  eq(deleted.issues.map((i) => [i.id, i.severity]), [[UNKNOWN_UUID, "error"]], "delete leaderboards: issues");
  await expectApiError(404, "leaderboards.get(deleted board)", () => client.leaderboards.get(LB_STREAK), NF);
  eq(
    (await sdk(client.leaderboards.all())).map((lb) => lb.key),
    [LB_TOP, LB_WEEKLY, LB_BY_PLAN],
    "leaderboards.all after delete",
  );
  await settled(LB_TOP, [alice, bob], "rankings unaffected by deleting other boards");
}

async function main() {
  const url = (process.env.KUDOS_URL ?? "").replace(/\/+$/, "");
  const apiKey = process.env.KUDOS_API_KEY ?? "";
  if (!url || !apiKey) {
    console.error("NODE SDK CHECK FAILED: set KUDOS_URL and KUDOS_API_KEY");
    return 2;
  }
  if (typeof realFetch !== "function") {
    console.error(`NODE SDK CHECK FAILED: Node ${process.version} has no global fetch (Node >= 18 needed)`);
    return 2;
  }
  KUDOS_URL = url;
  API_KEY = apiKey;
  const installed = require("@trophyso/node/package.json").version;
  if (installed !== SDK_VERSION) {
    console.error(`NODE SDK CHECK FAILED: @trophyso/node ${installed} installed, ${SDK_VERSION} expected`);
    return 2;
  }
  console.log(`@trophyso/node ${installed} against ${url}`);
  const client = new TrophyApiClient({ apiKey, environment: { api: `${url}/v1`, admin: `${url}/admin/v1` } });

  // Sections run in order and share state; a failure ends its section, is recorded, and the
  // next section still runs (a later failure may then be a consequence of an earlier one).
  const sections = [
    ["setup", setup, true],
    ["users", users],
    ["events", events],
    ["metric reads", metricReads],
    ["streaks", streaks],
    ["admin streaks", adminStreaks],
    ["preferences", preferences],
    ["achievements", achievements],
    ["errors", errors],
    ["admin freeze issues", freezeIssues],
    ["admin restore issues", restoreIssues],
    ["points", points],
    ["leaderboards", leaderboards],
    ["wrapped", wrapped],
    ["application keys", applicationKeys],
    ["tenants", tenants],
  ];
  const failures = [];
  for (const [name, fn, required] of sections) {
    try {
      await fn(client, url);
    } catch (err) {
      let message;
      if (err instanceof CheckFailed) message = err.message;
      else if (err instanceof ParseError) message = incompatibility(err).message;
      else if (err instanceof TrophyApiError) {
        message = `${err.constructor.name} (statusCode ${err.statusCode}): ${err.message}\n    exchange: ${describeExchange()}`;
      } else message = err?.stack ?? String(err);
      failures.push(`[${name}] step '${currentStep}': ${message}`);
      console.log(`!! section '${name}' failed at step '${currentStep}'`);
      if (required) break;
    }
  }
  if (failures.length) {
    console.error(`NODE SDK CHECK FAILED (${failures.length} section(s)):`);
    for (const f of failures) console.error(`- ${f}`);
    return 1;
  }
  console.log("NODE SDK CHECK OK");
  return 0;
}

process.exitCode = await main();
