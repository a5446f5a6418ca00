//! The root supervisor. User actors are spawned linked to it; when one fails (a panic or a
//! storage error) it is logged here and the actor is not restarted eagerly: the next message
//! for that user spawns a fresh actor from snapshot + journal (see `UserShards::call`), which
//! is exactly the "restart: reload from snapshot + journal" policy with no wasted work for
//! users who never come back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

pub struct RootSupervisor;

/// Counters the ops endpoints read.
#[derive(Default)]
pub struct SupervisorStats {
    pub failures: AtomicU64,
}

/// Messages of [`RootSupervisor`]: it only reacts to supervision events.
pub enum SupervisorMsg {}

impl Actor for RootSupervisor {
    type Msg = SupervisorMsg;
    type State = Arc<SupervisorStats>;
    type Arguments = Arc<SupervisorStats>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        stats: Arc<SupervisorStats>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(stats)
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        stats: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = event {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(actor = %cell.get_id(), error = %err, "actor failed; it will be reloaded from snapshot + journal on its next message");
        }
        Ok(())
    }
}
