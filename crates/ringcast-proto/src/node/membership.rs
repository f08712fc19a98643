//! Claims 14-15 and 19-21: a node's join requests and leaves, as the
//! supervisor handles them and as a leaving node sends them.

use super::*;

impl Node {
    // ----- join and leave -----

    pub(super) fn on_join(&mut self, from: NodeId, j: JoinRequest) {
        if j.node != from {
            return self.reject("inconsistent_join");
        }
        if self.role != Role::Supervisor {
            return;
        }
        let Some(view) = self.view.as_mut() else {
            return;
        };
        match view.apply_join(&j, &self.cfg.priority) {
            JoinOutcome::Added => {
                self.events.push_back(Event::NodeJoined { node: j.node });
                self.notify_now = true;
            }
            JoinOutcome::AlreadyListed => self.notify_now = true,
            JoinOutcome::Stale => {}
        }
    }

    pub(super) fn on_leave(&mut self, now: Instant, from: NodeId, l: Leave) {
        if l.node != from {
            return self.reject("inconsistent_leave");
        }
        match self.role {
            Role::Supervisor => {
                let Some(view) = self.view.as_mut() else {
                    return;
                };
                if view.apply_leave(&l, &self.cfg.priority) {
                    self.events.push_back(Event::NodeLeft { node: l.node });
                }
                self.notify_now = true;
                self.follow_ring(now);
            }
            Role::Member if !self.leaving && self.supervisor() == Some(l.node) => {
                // Claim 21: the supervisor leaves; the next in the priority
                // list takes over at once.
                let first = self
                    .map()
                    .map(|m| election::successor_position(m, &self.cfg.priority, self.cfg.node))
                    == Some(0);
                if first && self.joined {
                    let epoch = self.highest_epoch.next();
                    self.become_supervisor(now, Reason::Handover, epoch);
                }
            }
            _ => {}
        }
    }

    /// Claim 19: start posting leave messages.
    pub(super) fn start_leaving(&mut self, now: Instant) {
        if self.leaving || self.role == Role::Left {
            return;
        }
        self.leaving = true;
        match self.role {
            Role::Listening => self.finish_leaving(),
            Role::Supervisor if self.map().is_none_or(|m| m.ring.len() <= 1) => {
                self.finish_leaving()
            }
            Role::Supervisor => {
                // Claim 21: stop notifying; the next in priority takes over on
                // hearing the leave. Until a notification without this node
                // arrives, keep posting it.
                self.role = Role::Member;
                self.stop_announcing();
                self.timers.clear(Timer::Notify);
                self.arm_supervisor_silence(now);
                self.timers.set(Timer::Leave, now);
            }
            Role::Member if !self.joined => self.finish_leaving(),
            Role::Member => self.timers.set(Timer::Leave, now),
            Role::Left => {}
        }
    }

    /// Claim 20: the leave was acknowledged (or nobody is left to acknowledge it).
    pub(super) fn finish_leaving(&mut self) {
        self.role = Role::Left;
        self.joined = false;
        self.timers.clear_all();
        self.ring.reset();
        self.events.push_back(Event::Left);
    }
}
