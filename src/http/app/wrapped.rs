//! `GET /v1/users/{id}/wrapped?year=` (SPEC §9.3): the user's year in review, from the
//! aggregates their actor keeps, the scope's distribution counters and the leaderboards'
//! history rows (never a scan of events).

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{Datelike, NaiveDate};
use kudos_actors::catalog::Catalog;
use kudos_actors::leaderboard::standings::{self, HistoryRow};
use kudos_actors::rules::streak::local_date;
use kudos_actors::user::wrapped::{percentile_in, PeriodFigures, WrappedQuery};
use kudos_actors::user::ProfileQuery;
use serde_json::{json, Map, Value};

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::QueryPairs;
use crate::http::scope::Scoped;
use crate::wire::achievements::{user_achievement, with_stats};
use crate::wire::leaderboards::app_leaderboard;
use crate::wire::users::User;
use crate::wire::wrapped::{wrapped_response, PeriodExtras};
use crate::AppState;

const YEAR_MESSAGE: &str = "year must be an integer between 1 and the current year";

async fn wrapped(state: Scoped, Path(id): Path<String>, q: QueryPairs) -> ApiResult<Json<Value>> {
    let asked = match q.get("year") {
        None => None,
        Some(raw) => Some(
            raw.parse::<i32>()
                .map_err(|_| ApiError::unprocessable(YEAR_MESSAGE))?,
        ),
    };
    let profile = state
        .users
        .query(&id, ProfileQuery)
        .await?
        .ok_or_else(|| ApiError::not_found("User not found"))?;
    let now = state.clock.now();
    // The current year is the user's own: on January 1st in Tokyo, UTC is still in the
    // old year.
    let current = local_date(now, profile.time_zone()).year();
    let year = asked.unwrap_or(current);
    if !(1..=current).contains(&year) {
        return Err(ApiError::unprocessable(YEAR_MESSAGE));
    }
    let figures = state
        .users
        .query(&id, WrappedQuery { year })
        .await?
        .ok_or_else(|| ApiError::not_found("User not found"))?
        .ok_or_else(|| ApiError::unprocessable(YEAR_MESSAGE))?;
    let catalog = state.catalog.get();
    let standings = year_standings(&state, &catalog, &id, year).await?;
    let users = state
        .store
        .indexes()
        .counter(state.scope, kudos_actors::user::USERS_COUNTER)?;
    let mut extras = Vec::with_capacity(4);
    for p in [
        &figures.day,
        &figures.week,
        &figures.month_period,
        &figures.year,
    ] {
        extras.push(period_extras(&state, &catalog, p, &standings, users)?);
    }
    let extras: [PeriodExtras; 4] = extras
        .try_into()
        .map_err(|_| ApiError::internal("four Wrapped periods"))?;
    let user = serde_json::to_value(User::from_profile(&profile, &catalog))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(wrapped_response(user, &figures, &catalog, extras)))
}

/// One history row of the user on a board: the run's dates, the day, the standing.
struct Standing {
    run_start: NaiveDate,
    run_end: Option<NaiveDate>,
    date: NaiveDate,
    row: HistoryRow,
}

/// Every history row of the user in the year, per board (in catalog order).
async fn year_standings(
    state: &Scoped,
    catalog: &Catalog,
    user: &str,
    year: i32,
) -> ApiResult<Vec<(uuid::Uuid, Vec<Standing>)>> {
    let (Some(first), Some(last)) = (
        NaiveDate::from_ymd_opt(year, 1, 1),
        NaiveDate::from_ymd_opt(year, 12, 31),
    ) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for l in catalog.leaderboards() {
        if l.start > last || l.end.is_some_and(|e| e < first) {
            continue;
        }
        // History is read from disk: write what requests applied in memory first.
        state.boards.flush(l.id).await?;
        let schedule = l.schedule();
        let mut rows = Vec::new();
        let mut run = schedule.run_at(first.max(l.start));
        while let Some(r) = run.filter(|r| r.start <= last) {
            for (date, row) in standings::history(&state.store, l.id, r.index, user, usize::MAX)? {
                rows.push(Standing {
                    run_start: r.start,
                    run_end: r.end,
                    date,
                    row,
                });
            }
            run = if r.end.is_none() || l.every.is_none() {
                None
            } else {
                schedule.run(r.index + 1)
            };
        }
        if !rows.is_empty() {
            out.push((l.id, rows));
        }
    }
    Ok(out)
}

fn period_extras(
    state: &Scoped,
    catalog: &Catalog,
    p: &PeriodFigures,
    standings: &[(uuid::Uuid, Vec<Standing>)],
    users: u64,
) -> ApiResult<PeriodExtras> {
    let mut extras = PeriodExtras::default();
    let (indexes, scope) = (state.store.indexes(), state.scope);
    if let Some(kind) = p.kind {
        for s in p.metrics.iter().chain(&p.points) {
            let share = percentile_in(&indexes, scope, (s.id, kind, p.start), s.position, users)?;
            extras.percentiles.insert(s.id, share);
        }
    }
    let users = usize::try_from(users).unwrap_or(usize::MAX);
    for (id, at) in &p.achievements {
        let Some(a) = catalog.achievement(*id) else {
            continue;
        };
        let completions = indexes.counter(scope, &kudos_actors::user::completions_counter(*id))?;
        extras.achievements.push(with_stats(
            user_achievement(a, catalog, Some(*at)),
            completions,
            users,
        ));
    }
    let now = state.clock.now();
    for (board_id, rows) in standings {
        let Some(l) = catalog.leaderboard(*board_id) else {
            continue;
        };
        // The best rank of the period; the earliest on a tie.
        let best = rows
            .iter()
            .filter(|s| s.date >= p.start && s.date <= p.end)
            .filter_map(|s| s.row.rank.map(|rank| (rank, s)))
            .min_by_key(|(rank, s)| (*rank, s.date));
        let Some((rank, s)) = best else {
            continue;
        };
        let mut body: Map<String, Value> = app_leaderboard(l, catalog, now);
        body.remove("status");
        body.insert("start".into(), json!(s.run_start.to_string()));
        body.insert("end".into(), json!(s.run_end.map(|e| e.to_string())));
        body.insert("rank".into(), json!(rank));
        body.insert("value".into(), json!(s.row.value.floor() as i64));
        extras
            .leaderboards
            .insert(l.key.clone(), Value::Object(body));
    }
    Ok(extras)
}

pub fn router() -> Router<AppState> {
    Router::new().route("/users/{id}/wrapped", get(wrapped))
}
