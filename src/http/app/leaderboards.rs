//! Application leaderboard reads (SPEC §7.6): the list, and one board's rankings by run,
//! group, offset (absolute or around a user) and limit.

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use kudos_actors::catalog::leaderboards::{Leaderboard, LeaderboardStatus};
use kudos_actors::catalog::Catalog;
use kudos_actors::leaderboard::actor::PageStart;
use kudos_actors::rules::runs::Run;
use serde_json::{json, Value};

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::QueryPairs;
use crate::http::scope::Scoped;
use crate::wire::leaderboards::app_leaderboard;
use crate::AppState;

/// The largest page of rankings one read returns (Trophy's whole cap).
const MAX_PAGE: usize = 1_000;

/// `GET /leaderboards?includeFinished=`: every board that is not inactive (SPEC §7.6.1).
async fn list(state: Scoped, q: QueryPairs) -> ApiResult<Json<Vec<Value>>> {
    let include_finished = match q.get("includeFinished") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::unprocessable(
                "includeFinished must be true or false",
            ))
        }
    };
    let catalog = state.catalog.get();
    let now = state.clock.now();
    Ok(Json(
        catalog
            .leaderboards()
            .filter(|l| match l.status_at(now) {
                LeaderboardStatus::Inactive => false,
                LeaderboardStatus::Finished => include_finished,
                _ => true,
            })
            .map(|l| Value::Object(app_leaderboard(l, &catalog, now)))
            .collect(),
    ))
}

/// The run a read addresses (SPEC §7.2.4): `run=YYYY-MM-DD` selects the run containing
/// that date; without it, the run containing today (UTC), or the last one once finished.
pub(crate) fn selected_run(
    l: &Leaderboard,
    q: &QueryPairs,
    today: NaiveDate,
) -> ApiResult<Option<Run>> {
    let schedule = l.schedule();
    let current = current_run(l, today);
    let Some(raw) = q.get("run") else {
        return Ok(current);
    };
    let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| ApiError::unprocessable("run must be a date (YYYY-MM-DD)"))?;
    let run = schedule
        .run_at(date)
        .filter(|r| current.is_some_and(|c| r.index <= c.index))
        .ok_or_else(|| ApiError::unprocessable("run does not match any run of this leaderboard"))?;
    Ok(Some(run))
}

/// The run shown when none is asked for: today's, or the last one of a board that ended.
pub(crate) fn current_run(l: &Leaderboard, today: NaiveDate) -> Option<Run> {
    let schedule = l.schedule();
    schedule.run_at(today).or_else(|| {
        l.end
            .filter(|e| *e < today)
            .and_then(|e| schedule.run_at(e))
    })
}

/// The group `userAttributes=k:v,…` names: required on boards with breakdowns (a value for
/// every breakdown attribute), refused on the others (SPEC §7.6.2).
pub(crate) fn selected_group(
    l: &Leaderboard,
    catalog: &Catalog,
    q: &QueryPairs,
) -> ApiResult<Vec<String>> {
    let raw = q.get("userAttributes").filter(|s| !s.is_empty());
    if l.breakdown.is_empty() {
        if raw.is_some() {
            return Err(ApiError::unprocessable(
                "userAttributes is only valid for leaderboards with breakdown attributes",
            ));
        }
        return Ok(Vec::new());
    }
    let raw = raw.ok_or_else(|| {
        ApiError::unprocessable("userAttributes must give a value for every breakdown attribute")
    })?;
    let pairs: Vec<(&str, &str)> = raw
        .split(',')
        .map(|p| p.split_once(':').ok_or(()))
        .collect::<Result<_, _>>()
        .map_err(|_| ApiError::unprocessable("userAttributes must be key:value pairs"))?;
    l.breakdown
        .iter()
        .map(|id| {
            let key = catalog.attribute_key(*id).unwrap_or_default();
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_string())
                .ok_or_else(|| {
                    ApiError::unprocessable(format!(
                        "userAttributes must give a value for the breakdown attribute {key}"
                    ))
                })
        })
        .collect()
}

fn int(q: &QueryPairs, name: &str, default: i64) -> ApiResult<i64> {
    match q.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<i64>()
            .map_err(|_| ApiError::unprocessable(format!("{name} must be an integer"))),
    }
}

/// `GET /leaderboards/{key}`: `LeaderboardResponseWithRankings`.
async fn get_one(state: Scoped, Path(key): Path<String>, q: QueryPairs) -> ApiResult<Json<Value>> {
    let catalog = state.catalog.get();
    let now = state.clock.now();
    let l = catalog
        .leaderboard_by_key(&key)
        .filter(|l| l.status_at(now) != LeaderboardStatus::Inactive)
        .ok_or_else(|| ApiError::not_found("Leaderboard not found"))?;
    let max = usize::try_from(l.max_participants).unwrap_or(usize::MAX);
    // The default page is 10, or the whole board when it is smaller.
    let limit = int(&q, "limit", i64::try_from(max.min(10)).unwrap_or(10))?;
    let limit = usize::try_from(limit)
        .map_err(|_| ApiError::unprocessable("limit must be a non-negative integer"))?;
    // Pages are bounded whatever the board's size: one read never holds the standings for
    // a million rows.
    if limit > MAX_PAGE {
        return Err(ApiError::unprocessable(format!(
            "limit must be at most {MAX_PAGE}"
        )));
    }
    if limit > max {
        return Err(ApiError::unprocessable(
            "limit must not exceed the leaderboard's maxParticipants",
        ));
    }
    let offset = int(&q, "offset", 0)?;
    let user = q.get("userId");
    if offset < 0 && user.is_none() {
        return Err(ApiError::unprocessable(
            "offset may be negative only with userId",
        ));
    }
    let run = selected_run(l, &q, now.date_naive())?;
    let group = selected_group(l, &catalog, &q)?;
    let mut body = app_leaderboard(l, &catalog, now);
    let start = match user {
        None => PageStart::Offset(usize::try_from(offset).unwrap_or(0)),
        Some(u) => PageStart::AroundUser {
            user: u.to_string(),
            offset,
        },
    };
    let rankings = rankings(&state, l, now, run, group, start, limit).await?;
    body.insert("rankings".into(), Value::Array(rankings));
    Ok(Json(Value::Object(body)))
}

/// A page of `LeaderboardRanking`s of a run's group (none before the board starts).
pub(crate) async fn rankings(
    state: &Scoped,
    l: &Leaderboard,
    now: chrono::DateTime<chrono::Utc>,
    run: Option<Run>,
    group: Vec<String>,
    start: PageStart,
    limit: usize,
) -> ApiResult<Vec<Value>> {
    Ok(match (l.status_at(now), run) {
        (LeaderboardStatus::Scheduled, _) | (_, None) => Vec::new(),
        (_, Some(run)) => state
            .boards
            .page(l.id, (run.index, group), start, limit)
            .await?
            .into_iter()
            .map(|s| {
                json!({
                    "userId": s.user_id,
                    "userName": s.user_name,
                    "rank": s.rank,
                    "value": s.value.floor() as i64,
                })
            })
            .collect(),
    })
}

/// `GET /users/{id}/leaderboards/{key}?run=&numEvents=`: the user's rank and value in the
/// run, and their daily history (SPEC §7.6.3).
async fn user_standing(
    state: Scoped,
    Path((id, key)): Path<(String, String)>,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    let catalog = state.catalog.get();
    let now = state.clock.now();
    let l = catalog
        .leaderboard_by_key(&key)
        .filter(|l| l.status_at(now) != LeaderboardStatus::Inactive)
        .ok_or_else(|| ApiError::not_found("Leaderboard not found"))?;
    if !state.users.known(&id)? {
        return Err(ApiError::not_found("User not found"));
    }
    let num_events = usize::try_from(int(&q, "numEvents", 10)?)
        .ok()
        .filter(|n| *n <= 100)
        .ok_or_else(|| ApiError::unprocessable("numEvents must be an integer between 0 and 100"))?;
    let run = selected_run(l, &q, now.date_naive())?;
    let (rank, value) = match run {
        None => (None, None),
        Some(run) => state.boards.standing(l.id, run.index, &id).await?,
    };
    // History is read from disk: write what requests applied in memory first.
    if num_events > 0 {
        state.boards.flush(l.id).await?;
    }
    let rows = match run {
        Some(run) if num_events > 0 => kudos_actors::leaderboard::standings::history(
            &state.store,
            l.id,
            run.index,
            &id,
            num_events,
        )?,
        _ => Vec::new(),
    };
    let mut previous: Option<kudos_actors::leaderboard::standings::HistoryRow> = None;
    let history: Vec<Value> = rows
        .iter()
        .map(|(date, row)| {
            let v = json!({
                "date": date.to_string(),
                "timestamp": format!("{date}T00:00:00.000Z"),
                "previousRank": previous.and_then(|p| p.rank),
                "rank": row.rank,
                "previousValue": previous.map(|p| p.value.floor() as i64),
                "value": row.value.floor() as i64,
            });
            previous = Some(*row);
            v
        })
        .collect();
    let mut body = app_leaderboard(l, &catalog, now);
    body.remove("status");
    body.insert("rank".into(), json!(rank));
    body.insert("value".into(), json!(value.map(|v| v.floor() as i64)));
    body.insert("history".into(), Value::Array(history));
    Ok(Json(Value::Object(body)))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/leaderboards", get(list))
        .route("/leaderboards/{key}", get(get_one))
        .route("/users/{id}/leaderboards/{key}", get(user_standing))
}
