//! Decide/apply tests of the user module, with the replay-equals-live property.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::*;
use crate::achievements::AchievementStatus;
use crate::catalog::{AttributeKind, Catalog};
use crate::catalog::{NewAttribute, NewMetric, StreakSettings, UnitType};
use crate::rules::profile::Patch;
use crate::rules::profile::ProfileError;
use crate::rules::profile::UserWrite;
use crate::rules::streak::{Mode, StreakEvent};
use chrono::TimeZone;
use kudos_snapshots::Recoverable;
use proptest::prelude::*;

fn catalog() -> (Catalog, Uuid) {
    let mut cat = Catalog::default();
    let (metrics, _) = cat.create_metrics(
        vec![Ok(NewMetric {
            key: "lessons".into(),
            name: "Lessons".into(),
            unit_type: UnitType::Number,
            units: None,
        })],
        Utc.timestamp_opt(0, 0).single().expect("valid"),
    );
    cat.create_attributes(vec![Ok(NewAttribute {
        key: "device".into(),
        name: "Device".into(),
        kind: AttributeKind::Event,
    })]);
    cat.streak = StreakSettings {
        metrics: vec![(metrics[0].id, 1.0)],
        ..StreakSettings::default()
    };
    (cat, metrics[0].id)
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_735_689_600 + secs, 0)
        .single()
        .expect("valid")
}

fn ctx<'a>(cat: &'a Catalog, now: DateTime<Utc>, seen: &'a SeenKeys) -> Context<'a> {
    Context {
        user_id: "u1",
        catalog: cat,
        now,
        new_id: Uuid::new_v4(),
        control: false,
        seen,
    }
}

fn event(metric_id: Uuid, value: f64, key: Option<&str>) -> Command {
    Command::RecordEvent(NewEvent {
        metric_id,
        value,
        user: UserWrite::default(),
        attributes: BTreeMap::new(),
        idempotency_key: key.map(str::to_string),
    })
}

/// What [`run`] did: journaled an entry, or answered without a change.
#[derive(Debug)]
// A test helper's return value, consumed at once; boxing would only add noise.
#[allow(clippy::large_enum_variant)]
enum Ran {
    Journaled(Journaled),
    Answer(Outcome),
}

/// Decides and applies like the actor does.
fn run(
    state: &mut UserState,
    cat: &Catalog,
    cmd: &Command,
    now: DateTime<Utc>,
) -> Result<Ran, UserError> {
    run_keyed(state, &mut SeenKeys::new(), cat, cmd, now)
}

/// [`run`], remembering idempotency keys in `seen` as the actor's index does.
fn run_keyed(
    state: &mut UserState,
    seen: &mut SeenKeys,
    cat: &Catalog,
    cmd: &Command,
    now: DateTime<Utc>,
) -> Result<Ran, UserError> {
    Ok(match decide(state, cmd, &ctx(cat, now, seen))? {
        Decision::Record(record) => {
            let effects = state.apply_collect(&record, Apply::Live(cat));
            if let (
                UserRecord::Event(ev),
                Command::RecordEvent(NewEvent {
                    idempotency_key: Some(k),
                    ..
                }),
            ) = (&record, cmd)
            {
                seen.insert((ev.metric_id, k.clone()), ev.event_id);
            }
            Ran::Journaled(Journaled {
                record,
                effects,
                due: None,
            })
        }
        Decision::Answer(outcome) => Ran::Answer(outcome),
    })
}

#[test]
fn first_event_creates_the_user_starts_the_streak_and_adds_the_value() {
    let (cat, metric) = catalog();
    let mut state = UserState::default();
    let Ok(Ran::Journaled(Journaled {
        record, effects, ..
    })) = run(&mut state, &cat, &event(metric, 2.5, None), t(0))
    else {
        panic!("expected a record");
    };
    let UserRecord::Event(ev) = &record else {
        panic!("event record")
    };
    assert!(ev.user_created);
    assert_eq!(ev.tz, "UTC");
    assert!(matches!(effects[0], Effect::UserCreated { .. }));
    assert!(matches!(effects[1], Effect::MetricTotalChanged { total, .. } if total == 2.5));
    assert!(matches!(
        effects[2],
        Effect::Streak {
            event: StreakEvent::Started { length: 1 },
            ..
        }
    ));
    assert_eq!(state.total(metric), 2.5);
    assert_eq!(state.streak_view(&cat, t(0)).length, 1);
}

#[test]
fn idempotent_replay_changes_nothing_and_returns_the_original_id() {
    let (cat, metric) = catalog();
    let mut state = UserState::default();
    let mut seen = SeenKeys::new();
    let Ok(Ran::Journaled(Journaled {
        record: UserRecord::Event(first),
        ..
    })) = run_keyed(
        &mut state,
        &mut seen,
        &cat,
        &event(metric, 1.0, Some("k")),
        t(0),
    )
    else {
        panic!("expected a record");
    };
    let before = state.clone();
    let again = run_keyed(
        &mut state,
        &mut seen,
        &cat,
        &event(metric, 5.0, Some("k")),
        t(10),
    )
    .expect("replay");
    let Ran::Answer(Outcome::Event(EventOutcome::Replayed {
        event_id,
        total,
        streak,
    })) = again
    else {
        panic!("expected a replay");
    };
    assert_eq!((event_id, total, streak.length), (first.event_id, 1.0, 1));
    assert_eq!(state, before);
}

#[test]
fn invalid_events_are_rejected_without_change() {
    let (cat, metric) = catalog();
    let state = UserState::default();
    let mut ev = NewEvent {
        metric_id: metric,
        value: 1.0,
        user: UserWrite::default(),
        attributes: BTreeMap::new(),
        idempotency_key: None,
    };
    ev.attributes.insert("nope".into(), "x".into());
    assert_eq!(
        decide(
            &state,
            &Command::RecordEvent(ev.clone()),
            &ctx(&cat, t(0), &SeenKeys::new())
        )
        .err(),
        Some(UserError::InvalidEventAttributes(vec!["nope".into()]))
    );
    ev.attributes.clear();
    ev.user.tz = Patch::Set("Not/AZone".into());
    assert!(matches!(
        decide(
            &state,
            &Command::RecordEvent(ev),
            &ctx(&cat, t(0), &SeenKeys::new())
        ),
        Err(UserError::Profile(ProfileError::InvalidTz(_)))
    ));
}

#[test]
fn overflow_and_profile_only_when_changed_and_batch_dry_run() {
    let (cat, metric) = catalog();
    let mut state = UserState::default();
    run(&mut state, &cat, &event(metric, 1e308, None), t(0)).expect("first");
    assert_eq!(
        decide(
            &state,
            &event(metric, 1e308, None),
            &ctx(&cat, t(1), &SeenKeys::new())
        )
        .err(),
        Some(UserError::TotalOutOfRange)
    );
    let Ok(Decision::Record(UserRecord::Event(ev))) = decide(
        &state,
        &event(metric, -1.0, None),
        &ctx(&cat, t(2), &SeenKeys::new()),
    ) else {
        panic!("expected a record");
    };
    assert!(
        ev.profile.is_none(),
        "an id-only user object changes nothing"
    );
    let Command::RecordEvent(a) = event(metric, 1.0, Some("a")) else {
        unreachable!()
    };
    let Command::RecordEvent(b) = event(metric, 1e308, None) else {
        unreachable!()
    };
    assert_eq!(
        decide(
            &state,
            &Command::CheckEvents(vec![a.clone(), b]),
            &ctx(&cat, t(3), &SeenKeys::new())
        )
        .err(),
        Some(UserError::TotalOutOfRange)
    );
    assert!(matches!(
        decide(
            &state,
            &Command::CheckEvents(vec![a]),
            &ctx(&cat, t(3), &SeenKeys::new())
        ),
        Ok(Decision::Answer(Outcome::Checked))
    ));
}

#[test]
fn profile_modes() {
    let (cat, _) = catalog();
    let mut state = UserState::default();
    let write = |mode| Command::WriteProfile {
        mode,
        write: UserWrite::default(),
    };
    assert_eq!(
        run(&mut state, &cat, &write(WriteMode::Update), t(0)).err(),
        Some(UserError::NotFound)
    );
    run(&mut state, &cat, &write(WriteMode::Create), t(0)).expect("create");
    assert_eq!(
        run(&mut state, &cat, &write(WriteMode::Create), t(1)).err(),
        Some(UserError::AlreadyExists)
    );
    assert!(run(&mut state, &cat, &write(WriteMode::Identify), t(1)).is_ok());
}

#[test]
fn preferences_need_customization_except_enabled() {
    let (mut cat, _) = catalog();
    let mut state = UserState::default();
    run(&mut state, &cat, &event(catalog().1, 0.0, None), t(0)).ok();
    run(
        &mut state,
        &cat,
        &Command::WriteProfile {
            mode: WriteMode::Identify,
            write: UserWrite::default(),
        },
        t(0),
    )
    .expect("user");
    let custom = Command::SetPreferences(PreferencesWrite {
        streak_mode: Some(Mode::And),
        ..Default::default()
    });
    assert_eq!(
        run(&mut state, &cat, &custom, t(1)).err(),
        Some(UserError::CustomizationDisabled)
    );
    let off = Command::SetPreferences(PreferencesWrite {
        streak_enabled: Some(false),
        ..Default::default()
    });
    run(&mut state, &cat, &off, t(1)).expect("enabled is always allowed");
    assert!(!effective_streak(&cat, &state.preferences).enabled);
    cat.streak.customization_enabled = true;
    run(&mut state, &cat, &custom, t(2)).expect("customization on");
    assert_eq!(effective_streak(&cat, &state.preferences).mode, Mode::And);
    let bad = Command::SetPreferences(PreferencesWrite {
        streak_metrics: Some(vec![("nope".into(), 1.0)]),
        ..Default::default()
    });
    assert!(matches!(
        run(&mut state, &cat, &bad, t(3)),
        Err(UserError::Invalid(_))
    ));
    cat.streak.customization_enabled = false;
    assert_eq!(
        effective_streak(&cat, &state.preferences).mode,
        Mode::Or,
        "overrides are dormant"
    );
}

fn achievement(
    cat: &mut Catalog,
    fields: crate::achievements::TriggerFields,
    status: AchievementStatus,
) -> Uuid {
    let out = cat.create_achievements(vec![Ok(crate::achievements::NewAchievement {
        name: "A".into(),
        status: Some(status),
        fields,
        ..Default::default()
    })]);
    assert!(out.issues.is_empty(), "{:?}", out.issues);
    out.changed[0].id
}

fn completions(ran: &Ran) -> Vec<(Uuid, bool)> {
    let Ran::Journaled(entry) = ran else {
        return vec![];
    };
    entry
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::AchievementCompleted {
                achievement_id,
                silent,
                ..
            } => Some((*achievement_id, *silent)),
            _ => None,
        })
        .collect()
}

#[test]
fn metric_streak_and_composite_achievements_complete_in_order() {
    use crate::achievements::TriggerFields;
    let (mut cat, metric) = catalog();
    let m2 = achievement(
        &mut cat,
        TriggerFields {
            trigger: Some("metric".into()),
            metric_id: Some(metric.to_string()),
            metric_value: Some(2.0),
            ..Default::default()
        },
        AchievementStatus::Active,
    );
    let s1 = achievement(
        &mut cat,
        TriggerFields {
            trigger: Some("streak".into()),
            streak_length: Some(1),
            ..Default::default()
        },
        AchievementStatus::Active,
    );
    let both = achievement(
        &mut cat,
        TriggerFields {
            trigger: Some("achievement".into()),
            achievement_ids: Some(vec![m2.to_string(), s1.to_string()]),
            ..Default::default()
        },
        AchievementStatus::Active,
    );
    let inactive = achievement(
        &mut cat,
        TriggerFields {
            trigger: Some("metric".into()),
            metric_id: Some(metric.to_string()),
            metric_value: Some(1.0),
            ..Default::default()
        },
        AchievementStatus::Inactive,
    );
    let mut state = UserState::default();
    let first = run(&mut state, &cat, &event(metric, 1.0, None), t(0)).expect("event");
    assert_eq!(
        completions(&first),
        vec![(s1, false)],
        "streak of 1; metric total still 1"
    );
    let second = run(&mut state, &cat, &event(metric, 1.0, None), t(60)).expect("event");
    assert_eq!(completions(&second), vec![(m2, false), (both, false)]);
    assert!(!state.completed.contains_key(&inactive));
    // Completions are permanent: a negative event does not undo them.
    run(&mut state, &cat, &event(metric, -5.0, None), t(120)).expect("event");
    assert!(state.completed.contains_key(&m2));

    // Activating the inactive one: a backfill completes it silently.
    cat.update_achievements(vec![Ok(crate::achievements::AchievementPatch {
        id: inactive.to_string(),
        status: Some(AchievementStatus::Active),
        ..Default::default()
    })]);
    let back = run(
        &mut state,
        &cat,
        &Command::Backfill {
            achievement_id: inactive,
        },
        t(180),
    )
    .expect("backfill");
    assert!(
        matches!(back, Ran::Answer(_)),
        "total is -3 now: not qualified"
    );
    run(&mut state, &cat, &event(metric, 10.0, None), t(200)).expect("event");
    assert!(
        state.completed.contains_key(&inactive),
        "completes on the next event instead"
    );
}

#[test]
fn event_filters_user_filters_api_and_replay() {
    use crate::achievements::TriggerFields;
    use crate::catalog::NewAttribute;
    let (mut cat, metric) = catalog();
    let (attrs, _) = cat.create_attributes(vec![Ok(NewAttribute {
        key: "plan".into(),
        name: "Plan".into(),
        kind: AttributeKind::User,
    })]);
    let device = cat
        .attribute(AttributeKind::Event, "device")
        .expect("device")
        .id;
    let ios = cat
        .create_achievements(vec![Ok(crate::achievements::NewAchievement {
            name: "iOS".into(),
            status: Some(AchievementStatus::Active),
            user_filters: vec![(attrs[0].id.to_string(), "pro".into())],
            fields: TriggerFields {
                trigger: Some("metric".into()),
                metric_id: Some(metric.to_string()),
                metric_value: Some(2.0),
                event_filters: Some(Some(vec![(device.to_string(), "ios".into())])),
                ..Default::default()
            },
            ..Default::default()
        })])
        .changed[0]
        .id;
    let api = achievement(
        &mut cat,
        TriggerFields {
            trigger: Some("api".into()),
            key: Some("beta".into()),
            ..Default::default()
        },
        AchievementStatus::Active,
    );
    let send = |device: &str, plan: Option<&str>| {
        let mut user = UserWrite::default();
        if let Some(p) = plan {
            user.attributes.insert("plan".into(), p.into());
        }
        Command::RecordEvent(NewEvent {
            metric_id: metric,
            value: 1.0,
            user,
            attributes: [("device".to_string(), device.to_string())].into(),
            idempotency_key: None,
        })
    };
    let mut state = UserState::default();
    let mut journal = Vec::new();
    let mut step = |state: &mut UserState, cmd: &Command, secs| {
        let d = run(state, &cat, cmd, t(secs)).expect("ok");
        if let Ran::Journaled(entry) = &d {
            journal.push(kudos_snapshots::codec::encode(entry).expect("encode"));
        }
        d
    };
    step(&mut state, &send("ios", Some("free")), 0);
    step(&mut state, &send("web", None), 1);
    let third = step(&mut state, &send("ios", None), 2);
    assert!(
        completions(&third).is_empty(),
        "2 ios events but the user is not on the pro plan"
    );
    // Becoming "pro" on an event of the metric completes it: 2 ios events so far.
    let fourth = step(&mut state, &send("web", Some("pro")), 3);
    assert_eq!(completions(&fourth), vec![(ios, false)]);
    let fifth = step(&mut state, &send("ios", None), 4);
    assert!(completions(&fifth).is_empty(), "completed once");

    let complete = Command::CompleteAchievement {
        key: "beta".into(),
        user: UserWrite::default(),
    };
    let done = step(&mut state, &complete, 5);
    assert_eq!(completions(&done), vec![(api, false)]);
    assert!(state.completed.contains_key(&api));
    let again = run(&mut state, &cat, &complete, t(6)).expect("idempotent");
    assert!(matches!(again, Ran::Answer(Outcome::Completed { .. })));
    let missing = Command::CompleteAchievement {
        key: "nope".into(),
        user: UserWrite::default(),
    };
    assert_eq!(
        run(&mut state, &cat, &missing, t(7)).err(),
        Some(UserError::AchievementNotFound)
    );

    // Replay restores completions from the journal, whatever the catalog says now.
    let mut replayed = UserState::default();
    for bytes in &journal {
        replayed.apply(
            &kudos_snapshots::codec::decode::<Journaled>(bytes, String::new).expect("decode"),
        );
    }
    assert_eq!(replayed, state);
}

#[test]
fn anniversaries_complete_when_due() {
    use crate::achievements::TriggerFields;
    let (mut cat, _) = catalog();
    let one_year = achievement(
        &mut cat,
        TriggerFields {
            trigger: Some("anniversary".into()),
            anniversary_years: Some(1),
            ..Default::default()
        },
        AchievementStatus::Active,
    );
    let mut state = UserState::default();
    let write = Command::WriteProfile {
        mode: WriteMode::Identify,
        write: UserWrite {
            sign_up_date: crate::rules::profile::Patch::Set("2024-01-01".into()),
            ..Default::default()
        },
    };
    let created = run(&mut state, &cat, &write, t(0)).expect("create"); // 2025-01-01
    assert_eq!(completions(&created), vec![(one_year, false)]);

    let mut later = UserState::default();
    let write = Command::WriteProfile {
        mode: WriteMode::Identify,
        write: UserWrite {
            sign_up_date: crate::rules::profile::Patch::Set("2024-06-01".into()),
            ..Default::default()
        },
    };
    run(&mut later, &cat, &write, t(0)).expect("create");
    assert!(later.completed.is_empty());
    let due = later.next_due(&cat, t(0)).expect("the anniversary is due");
    assert_eq!(due.date_naive().to_string(), "2025-06-01");
    let advanced = run(&mut later, &cat, &Command::Advance { at: None }, due).expect("advance");
    assert_eq!(completions(&advanced), vec![(one_year, false)]);
}

proptest! {
    /// Replaying the journal (records serialized and read back) gives the same state as
    /// live processing, and the total is the sum of the non-replayed values.
    #[test]
    fn replay_equals_live(events in proptest::collection::vec((-1000i32..1000, 0i64..1_000_000, proptest::option::of(0u8..5)), 1..40)) {
        let (cat, metric) = catalog();
        let mut live = UserState::default();
        let mut journal = Vec::new();
        let mut expected = 0.0;
        let mut seen = std::collections::HashSet::new();
        let mut keys = SeenKeys::new();
        let mut sorted = events.clone();
        sorted.sort_by_key(|e| e.1);
        for (value, secs, key) in &sorted {
            let key = key.map(|k| format!("key-{k}"));
            let cmd = event(metric, f64::from(*value) / 4.0, key.as_deref());
            if let Ran::Journaled(entry) = run_keyed(&mut live, &mut keys, &cat, &cmd, t(*secs)).expect("valid") {
                journal.push(kudos_snapshots::codec::encode(&entry).expect("encode"));
            }
            if key.as_ref().is_none_or(|k| seen.insert(k.clone())) {
                expected += f64::from(*value) / 4.0;
            }
        }
        let mut replayed = UserState::default();
        for bytes in &journal {
            let entry: Journaled = kudos_snapshots::codec::decode(bytes, String::new).expect("decode");
            replayed.apply(&entry);
        }
        // The snapshot round-trips through the binary encoding too.
        let snap: UserState = kudos_snapshots::codec::decode(&kudos_snapshots::codec::encode(&live).expect("encode"), String::new).expect("decode");
        prop_assert_eq!(&snap, &live);
        prop_assert_eq!(&replayed, &live);
        prop_assert!((live.total(metric) - expected).abs() < 1e-9);
    }
}

/// One step of [`replay_equals_live_with_catalog_changes`].
#[derive(Debug, Clone)]
enum Step {
    Event(i32),
    MetricTrigger {
        points: i64,
        threshold: u64,
        block: bool,
    },
    StreakTrigger(u32),
    MetricAchievement(u32),
    Boost(u8),
    /// Deactivates the oldest trigger.
    DeactivateTrigger,
    /// An active time trigger every N hours.
    TimeTrigger(u32),
    /// The scheduler advances the user to now.
    Advance,
    /// The org's streak threshold on the metric changes (or streaks go weekly).
    StreakSettings {
        threshold: u8,
        weekly: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (-40i32..80).prop_map(Step::Event),
        1 => (-30i64..30, 1u64..6, any::<bool>()).prop_filter("non-zero", |(p, _, _)| *p != 0)
            .prop_map(|(points, threshold, block)| Step::MetricTrigger { points, threshold, block }),
        1 => (1u32..4).prop_map(Step::StreakTrigger),
        1 => (1u32..100).prop_map(Step::MetricAchievement),
        1 => (0u8..3).prop_map(Step::Boost),
        1 => Just(Step::DeactivateTrigger),
        1 => (1u32..4).prop_map(Step::TimeTrigger),
        2 => Just(Step::Advance),
        1 => (1u8..4, any::<bool>()).prop_map(|(threshold, weekly)| Step::StreakSettings { threshold, weekly }),
    ]
}

proptest! {
    /// With the catalog changing between commands (points triggers of every kind,
    /// achievements, boosts, deactivations, streak settings), replaying the journal gives the live state: every decision is
    /// recorded, none is re-evaluated. The total is the sum of the recorded awards and stays
    /// within [0, maxPoints].
    #[test]
    fn replay_equals_live_with_catalog_changes(steps in proptest::collection::vec(step(), 1..50), max in proptest::option::of(50i64..400)) {
        use crate::catalog::points::{NewBoost, NewPointsSystem, TriggerFields, TriggerPatch};
        let (mut cat, metric) = catalog();
        let created = cat.create_points_systems(
            vec![Ok(NewPointsSystem { name: "XP".into(), key: "xp".into(), max_points: max, ..Default::default() })],
            t(0),
            &|_| false,
        );
        let system = created.out[0].system.id;
        let mut live = UserState::default();
        let mut journal = Vec::new();
        let mut awarded = 0i64;
        for (i, s) in steps.iter().enumerate() {
            let now = t(i64::try_from(i).expect("small") * 3_600);
            match s {
                Step::Event(_) | Step::Advance => {
                    let cmd = match s {
                        Step::Event(v) => event(metric, f64::from(*v) / 2.0, None),
                        _ => Command::Advance { at: None },
                    };
                    match run(&mut live, &cat, &cmd, now) {
                        Ok(Ran::Journaled(entry)) => {
                            for e in &entry.effects {
                                if let Effect::PointsAwarded { award, .. } = e {
                                    awarded += award.awarded;
                                }
                            }
                            journal.push(kudos_snapshots::codec::encode(&entry).expect("encode"));
                        }
                        Ok(Ran::Answer(_)) => {}
                        Err(UserError::InsufficientPoints | UserError::NotFound) => {}
                        Err(e) => prop_assert!(false, "unexpected {e:?}"),
                    }
                }
                Step::MetricTrigger { points, threshold, block } => {
                    let fields = TriggerFields {
                        kind: Some("metric".into()),
                        points: Some(*points),
                        active: Some(true),
                        metric_id: Some(metric.to_string()),
                        metric_threshold: Some(i64::try_from(*threshold).expect("small")),
                        block_if_out_of_points: Some(*block),
                        ..Default::default()
                    };
                    let r = cat.create_points_triggers(system, vec![Ok(fields)], now);
                    prop_assert!(r.issues.is_empty());
                }
                Step::TimeTrigger(h) => {
                    let fields = TriggerFields {
                        kind: Some("time".into()),
                        points: Some(2),
                        active: Some(true),
                        time_unit: Some("hours".into()),
                        time_interval: Some(i64::from(*h)),
                        ..Default::default()
                    };
                    prop_assert!(cat.create_points_triggers(system, vec![Ok(fields)], now).issues.is_empty());
                }
                Step::StreakSettings { threshold, weekly } => {
                    let patch = crate::catalog::StreakSettingsPatch {
                        frequency: Some(if *weekly {
                            crate::rules::streak::Frequency::Weekly
                        } else {
                            crate::rules::streak::Frequency::Daily
                        }),
                        metrics: Some(vec![("lessons".into(), f64::from(*threshold))]),
                        ..Default::default()
                    };
                    prop_assert!(cat.update_streak_settings(patch).is_ok());
                }
                Step::StreakTrigger(n) => {
                    let fields = TriggerFields {
                        kind: Some("streak".into()),
                        points: Some(7),
                        active: Some(true),
                        streak_length: Some(i64::from(*n)),
                        ..Default::default()
                    };
                    prop_assert!(cat.create_points_triggers(system, vec![Ok(fields)], now).issues.is_empty());
                }
                Step::MetricAchievement(v) => {
                    achievement(
                        &mut cat,
                        crate::achievements::TriggerFields {
                            trigger: Some("metric".into()),
                            metric_id: Some(metric.to_string()),
                            metric_value: Some(f64::from(*v)),
                            ..Default::default()
                        },
                        AchievementStatus::Active,
                    );
                }
                Step::Boost(k) => {
                    let boost = NewBoost {
                        name: "B".into(),
                        user_id: None,
                        user_filters: None,
                        start: t(0).date_naive(),
                        end: None,
                        multiplier: [1.5, 2.0, 0.5][usize::from(*k)],
                        rounding: None,
                    };
                    prop_assert!(cat.create_points_boosts(system, vec![Ok(boost)], now, &|_| false).issues.is_empty());
                }
                Step::DeactivateTrigger => {
                    let first = cat.points_triggers(system).find(|t| t.active).map(|t| t.id);
                    if let Some(first) = first {
                        let patch = TriggerPatch {
                            id: first.to_string(),
                            fields: TriggerFields { active: Some(false), ..Default::default() },
                        };
                        cat.update_points_triggers(system, vec![Ok(patch)], now);
                    }
                }
            }
            let total = live.balance(system).map_or(0, |b| b.total);
            prop_assert!(total >= 0);
            if let Some(m) = max { prop_assert!(total <= m); }
            prop_assert_eq!(total, awarded, "total = sum of recorded awards");
        }
        let mut replayed = UserState::default();
        for bytes in &journal {
            let entry: Journaled = kudos_snapshots::codec::decode(bytes, String::new).expect("decode");
            replayed.apply(&entry);
        }
        prop_assert_eq!(&replayed, &live);
    }
}

#[test]
fn version_one_snapshots_still_load() {
    let (cat, metric) = catalog();
    let mut live = UserState::default();
    run(&mut live, &cat, &event(metric, 3.0, None), t(0)).expect("event");
    // Version 1 wrote the same fields without `points` (postcard encodes a struct as the
    // tuple of its fields).
    let v1 = postcard::to_allocvec(&(
        &live.profile,
        &live.metrics,
        &live.streak,
        &live.preferences,
        &live.completed,
        &live.attr_totals,
        &live.filed_due,
    ))
    .expect("encode");
    let old = <UserState as Recoverable>::decode_legacy(1, &v1).expect("decode v1");
    let mut expected = live.clone();
    expected.notices = Default::default();
    // Wrapped bookkeeping is implied from the history: the event's quarter-hour, but no
    // distribution positions.
    expected.wrapped = super::wrapped::WrappedLog::from_history(
        live.metrics.values().map(|m| &m.buckets),
        &live.streak,
    );
    assert_eq!(old.wrapped.events, live.wrapped.events);
    assert!(old.wrapped.periods.is_empty() && !live.wrapped.periods.is_empty());
    assert_eq!(old, expected);
    assert!(<UserState as Recoverable>::decode_legacy(9, &v1).is_err());
}

#[test]
fn version_two_snapshots_still_load() {
    let (cat, metric) = catalog();
    let mut live = UserState::default();
    run(&mut live, &cat, &event(metric, 3.0, None), t(0)).expect("event");
    // Version 2 wrote every field but `notices`.
    let v2 = postcard::to_allocvec(&(
        &live.profile,
        &live.metrics,
        &live.streak,
        &live.preferences,
        &live.completed,
        &live.attr_totals,
        &live.filed_due,
        &live.points,
    ))
    .expect("encode");
    let old = <UserState as Recoverable>::decode_legacy(2, &v2).expect("decode v2");
    assert_eq!(old.points, live.points);
    assert_eq!(old.profile, live.profile);
    assert_eq!(old.notices, Default::default());
}

#[test]
fn version_three_snapshots_still_load() {
    let (cat, metric) = catalog();
    let mut live = UserState::default();
    run(&mut live, &cat, &event(metric, 3.0, None), t(0)).expect("event");
    // Version 3 wrote every field but `wrapped`.
    let v3 = postcard::to_allocvec(&(
        &live.profile,
        &live.metrics,
        &live.streak,
        &live.preferences,
        &live.completed,
        &live.attr_totals,
        &live.filed_due,
        &live.points,
        &live.notices,
    ))
    .expect("encode");
    let old = <UserState as Recoverable>::decode_legacy(3, &v3).expect("decode v3");
    assert_eq!(old.notices, live.notices);
    assert_eq!(old.metrics, live.metrics);
    assert_eq!(old.wrapped.events, live.wrapped.events);
    // The current streak chain carries over (the event started one).
    assert_eq!(old.wrapped.streaks, live.wrapped.streaks);
}

#[test]
fn records_of_an_older_kudos_leave_distribution_positions_uncounted() {
    let (cat, metric) = catalog();
    let mut live = UserState::default();
    let Ran::Journaled(entry) =
        run(&mut live, &cat, &event(metric, 3.0, None), t(0)).expect("event")
    else {
        panic!("an event is journaled");
    };
    assert!(!live.wrapped.periods.is_empty());
    // The same entry, as an older Kudos wrote it (no counter moved with it).
    let mut replayed = UserState::default();
    <UserState as Recoverable>::apply_legacy(&mut replayed, 3, &entry);
    assert!(
        replayed.wrapped.periods.is_empty(),
        "{:?}",
        replayed.wrapped.periods
    );
    assert_eq!(replayed.wrapped.events, live.wrapped.events);
    assert_eq!(replayed.metrics, live.metrics);
    // An entry of version 4 or later (older than the running one after a future codec bump)
    // moved its counters: its positions count.
    let mut later = UserState::default();
    <UserState as Recoverable>::apply_legacy(&mut later, super::wrapped::COUNTED_SINCE, &entry);
    assert_eq!(later.wrapped.periods, live.wrapped.periods);
}

/// The notices an `Advanced` record at `at` made due, with whether each is suppressed.
fn notices_at(state: &mut UserState, cat: &Catalog, at: DateTime<Utc>) -> Vec<(String, bool)> {
    let Ran::Journaled(entry) =
        run(state, cat, &Command::Advance { at: None }, at).expect("advance")
    else {
        panic!("an advance is journaled");
    };
    entry
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::NoticeDue {
                notice, suppressed, ..
            } => Some((notice.webhook_type().to_string(), *suppressed)),
            _ => None,
        })
        .collect()
}

#[test]
fn notices_come_due_once_and_are_suppressed_for_control_users_and_when_stale() {
    let (cat, metric) = catalog();
    let ada_at = |s: &str| s.parse::<DateTime<Utc>>().expect("instant");
    let mut ada = UserState::default();
    // 2024-12-31 19:00 in New York (no zone given: notices use New York).
    run(&mut ada, &cat, &event(metric, 1.0, None), t(0)).expect("event");
    let mut control = ada.clone();
    if let Some(p) = control.profile.as_mut() {
        p.control = true;
    }
    // Three quiet days (Jan 1–3): Jan 4 at 09:00 New York, 14:00 UTC; an hour late is on time.
    let first = ada_at("2025-01-04T15:00:00Z");
    assert_eq!(
        notices_at(&mut ada, &cat, first),
        vec![("emails.reactivation_due".to_string(), false)]
    );
    assert_eq!(
        notices_at(&mut control, &cat, first),
        vec![("emails.reactivation_due".to_string(), true)]
    );
    // Not again.
    assert_eq!(notices_at(&mut ada, &cat, first), vec![]);
    // Two months later: the recap and messages 2–5 are recorded, but too late to send.
    let late = notices_at(&mut ada, &cat, ada_at("2025-03-01T00:00:00Z"));
    assert_eq!(late.len(), 5, "{late:?}");
    assert!(late.iter().all(|(_, suppressed)| *suppressed), "{late:?}");
    assert_eq!(
        late.iter().filter(|(t, _)| t == "emails.recap_due").count(),
        1
    );
}
