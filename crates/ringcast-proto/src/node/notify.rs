//! Claims 10-11 and 22: the supervisor's notifications as deltas with
//! repair (`docs/protocol.md`, "Deltas with repair"). The supervisor
//! announces the changes since a version it names with the digest of the
//! whole; a member that holds that version (or its digest) applies them, and
//! any other node pulls the whole state by unicast, in parts.

use super::*;
use crate::announce::{
    self, Announcement, Announcer, Assembly, Head, Held, Precedence, MAX_STATE_PARTS,
};
use crate::message::{Pull, StatePart};

/// The most frames a notification's changes take: a larger change (a
/// cluster forming, a whole sub-cluster failing) reaches the bus as its
/// head only, and the members that need it pull it once each, instead of
/// every member hearing it on every repeat.
const NOTIFY_FRAMES: usize = 4;

/// A pull's answer waits 1/8 of a notification interval for the pulls of
/// other nodes that heard the same notification (they arrive within the
/// network's jitter of each other; the wait stays well under the interval
/// after which an asker asks again).
const ANSWER_GATHER: u32 = 8;

/// How many askers make the supervisor answer on the bus: two, or one
/// sixteenth of the members if more. On a multicast bus one answer then
/// serves them all for the cost of one; where the bus is unicast fan-out
/// it costs at most sixteen times the unicast answers, and spares the
/// supervisor a burst of one copy per asker when the whole cluster asks.
fn broadcast_threshold(members: usize) -> usize {
    (members / 16).max(2)
}

impl Node {
    /// The head of the state the supervisor last announced.
    fn announced_head(&self) -> Option<Head> {
        let a = self.announcer.as_ref()?;
        Some(Head {
            supervisor: self.cfg.node,
            supervisor_rank: self.cfg.rank(),
            epoch: a.map().epoch,
            life: self.incarnation,
            map_version: a.map().version,
            version: a.version(),
            digest: a.digest(),
        })
    }

    /// Where the state this node holds stands (a supervisor: the one it
    /// announced).
    fn held_precedence(&self) -> Option<Precedence> {
        if let Some(head) = self.announced_head() {
            return Some(head.precedence());
        }
        let map = self.map()?;
        Some((
            map.epoch,
            core::cmp::Reverse(map.supervisor_rank),
            self.held.life,
            self.held.version,
        ))
    }

    /// Whether the view is of the same reign as `head`.
    fn holds_reign_of(&self, head: &Head) -> bool {
        self.map().is_some_and(|m| {
            (m.supervisor, m.epoch, self.held.life) == (head.supervisor, head.epoch, head.life)
        })
    }

    /// The supervisor starts announcing: from the state it held before its
    /// reign, which its members most likely hold too, so its first
    /// notification is a delta they can apply.
    pub(super) fn start_announcing(&mut self, before: &View) {
        self.announcer = Some(Announcer::new(before.map.clone(), before.tables.clone()));
        self.assembly = None;
        self.notified_at = None;
    }

    /// Stops announcing (the node yields or leaves): what it holds is its
    /// own view, whole, of its own last reign.
    pub(super) fn stop_announcing(&mut self) {
        if let (Some(a), Some(view)) = (self.announcer.take(), self.view.as_ref()) {
            self.held = Held {
                life: self.incarnation,
                version: a.version(),
                digest: announce::digest(&view.map, &view.tables),
                whole: true,
            };
        }
    }

    /// Claims 10-11: the periodic (or prompt) notification: the changes
    /// since the oldest one still repeated, or fewer if they do not fit.
    pub(super) fn send_notify(&mut self) {
        let Some(view) = self.view.as_ref() else {
            return;
        };
        let Some(a) = self.announcer.as_mut() else {
            return;
        };
        a.update(&view.map, &view.tables);
        let addrs = view.supervisor_addrs;
        let limit = crate::sizes::part_budget(self.sealer.mtu()) * NOTIFY_FRAMES;
        let fits =
            |an: &Announcement| Message::Notify(notify_of(addrs, None, an)).encode().len() <= limit;
        let announcement = a.next(fits, self.notify_periodic);
        let head = self.announced_head();
        self.send(
            Destination::Bus,
            Message::Notify(notify_of(addrs, head, &announcement)),
        );
    }

    pub(super) fn on_notify(
        &mut self,
        now: Instant,
        from: NodeId,
        life: Incarnation,
        config_version: u32,
        n: Notify,
    ) {
        let head = n.head;
        let ranked = self.rank_agrees(from, head.supervisor_rank, config_version);
        let consistent = head.supervisor == from && head.life == life && ranked;
        if !consistent {
            return self.reject("inconsistent_notify");
        }
        self.highest_epoch = self.highest_epoch.max(head.epoch);
        match self.role {
            Role::Left => {}
            Role::Supervisor => {
                let me = self.cfg.rank();
                let held = self.map().map_or(Epoch(0), |m| m.epoch);
                if election::yields_to(me, head.supervisor_rank) && head.epoch < held {
                    // It outranks us but has not seen our epoch yet: let it
                    // hear us, so it catches up and our members follow it.
                    self.answer_rival(now);
                } else if election::yields_to(me, head.supervisor_rank) {
                    self.role = Role::Member;
                    self.joined = false;
                    // Claim 18: remember a preemptor (it started a newer
                    // epoch over ours), to resume if it falls silent.
                    self.preempted_by = (head.epoch > held).then_some(from);
                    self.events
                        .push_back(Event::StoppedSupervising { successor: from });
                    self.timers.clear(Timer::Notify);
                    self.stop_announcing();
                    self.member_notify(now, n);
                } else if let Some(view) = self.view.as_mut() {
                    self.events.push_back(Event::RivalSupervisor {
                        rival: from,
                        epoch: head.epoch,
                    });
                    // A lower-priority supervisor: make sure our notification
                    // wins over its members (claim 22, partitions healing).
                    if head.epoch > view.map.epoch {
                        view.map.epoch = head.epoch;
                        view.map.version = view.map.version.saturating_add(1);
                    }
                    self.answer_rival(now);
                }
            }
            Role::Listening => {
                // A supervisor is there: get its state instead of forming a
                // cluster (the listen deadline restarts while it is heard).
                self.timers
                    .set(Timer::Listen, now + self.cfg.timing.notification_time);
                self.pull(now, head, n.addrs);
            }
            Role::Member => self.member_notify(now, n),
        }
    }

    /// Claim 22: a supervisor that hears a rival notifies at once, but at
    /// most once per quarter notification interval: with many rivals (a
    /// partition of many parts healing) each answer would otherwise make
    /// every other rival answer again, without end. The periodic
    /// notification carries the rest.
    fn answer_rival(&mut self, now: Instant) {
        let quiet = self.cfg.timing.notify_interval / 4;
        if self.rival_answered.is_some_and(|at| now < at + quiet) {
            return;
        }
        self.rival_answered = Some(now);
        self.notify_now = true;
    }

    /// A member's notification: applied when it completes the state held,
    /// else the state is pulled; either way a supervisor at least as recent
    /// as the one followed is alive.
    fn member_notify(&mut self, now: Instant, n: Notify) {
        let head = n.head;
        let held = self.held_precedence();
        if held.is_some_and(|h| head.precedence() < h) {
            return;
        }
        let applicable = self.held.whole
            && (self.held.digest == n.base_digest
                || (self.holds_reign_of(&head)
                    && n.base <= self.held.version
                    && self.held.version <= head.version));
        let Some(view) = self.view.as_mut().filter(|_| applicable) else {
            self.arm_supervisor_silence(now);
            return self.pull(now, head, n.addrs);
        };
        let previous = view.map.supervisor;
        let d = announce::apply(&mut view.map, &mut view.tables, &n.changes);
        head.write_into(&mut view.map);
        view.supervisor_addrs = n.addrs;
        self.held = Held {
            life: head.life,
            version: head.version,
            digest: self.held.digest ^ d,
            whole: true,
        };
        if self.held.digest != head.digest {
            // Claim 11: never act on a state that is not the announced one.
            self.held.whole = false;
            self.reject("notify_digest");
            self.arm_supervisor_silence(now);
            return self.pull(now, head, n.addrs);
        }
        if self
            .assembly
            .as_ref()
            .is_some_and(|a| a.head().precedence() <= head.precedence())
        {
            self.assembly = None;
        }
        self.followed(now, Some(previous));
    }

    /// Claim 11: asks the supervisor of `head` for its whole state, at most
    /// once per notification interval and reign (a lost answer is asked
    /// again by the next notification that cannot be applied; a node that
    /// hears a newer reign asks it at once).
    fn pull(&mut self, now: Instant, head: Head, addrs: NodeAddrs) {
        let holdoff = self.cfg.timing.notify_interval;
        let reign = (head.supervisor, head.epoch, head.life);
        if self
            .pull_asked
            .is_some_and(|(at, asked)| asked == reign && now < at + holdoff)
        {
            return;
        }
        self.pull_asked = Some((now, reign));
        let pull = Pull {
            node: self.cfg.node,
            addrs: self.cfg.addrs,
        };
        self.send(
            Destination::Node {
                id: head.supervisor,
                addr: addrs.ring,
            },
            Message::Pull(pull),
        );
    }

    /// Claim 11: the supervisor answers a pull with every row of the state
    /// it announced, in parts of about one frame, at most once per asker
    /// per half notification interval. The answer waits [`ANSWER_GATHER`]
    /// of an interval for the other pulls one notification caused (a
    /// cluster forming, a change too large to notify): when enough nodes
    /// asked, the parts go once on the bus instead of once to each.
    pub(super) fn on_pull(&mut self, now: Instant, from: NodeId, p: Pull) {
        if p.node != from {
            return self.reject("inconsistent_pull");
        }
        if self.role != Role::Supervisor {
            return;
        }
        let Some(head) = self.announced_head() else {
            return;
        };
        // Half an interval: a member asks again after one, when the answer
        // (or its ask) was lost; a newer state is answered at once.
        let interval = self.cfg.timing.notify_interval / 2;
        let answered = head.precedence();
        if self
            .pulls_answered
            .get(&from)
            .is_some_and(|(at, was)| now < *at + interval && *was >= answered)
        {
            return;
        }
        self.pulls_answered.insert(from, (now, answered));
        self.pulls_pending.insert(from, p.addrs);
        if !self.timers.is_set(Timer::Answer) {
            let gather = self.cfg.timing.notify_interval / ANSWER_GATHER;
            self.timers.set(Timer::Answer, now + gather);
        }
    }

    /// Claim 11: sends the state announced now to the askers gathered: by
    /// unicast to each of a few, on the bus when they are many (a
    /// receiver that holds it already drops the parts unread).
    pub(super) fn answer_pulls(&mut self) {
        let askers = core::mem::take(&mut self.pulls_pending);
        if self.role != Role::Supervisor || askers.is_empty() {
            return;
        }
        let (Some(head), Some(a)) = (self.announced_head(), self.announcer.as_ref()) else {
            return;
        };
        let parts = announce::cut(a.rows(), crate::sizes::part_budget(self.sealer.mtu()));
        let count = match u16::try_from(parts.len()) {
            Ok(count) if count <= MAX_STATE_PARTS => count,
            _ => return self.reject_outgoing(FrameError::MessageTooLong { len: usize::MAX }),
        };
        let members = a.map().members.len();
        let broadcast = askers.len() >= broadcast_threshold(members);
        let parts: Vec<StatePart> = parts
            .into_iter()
            .enumerate()
            .map(|(i, rows)| StatePart {
                addrs: self.cfg.addrs,
                head,
                part: i as u16,
                parts: count,
                rows,
            })
            .collect();
        if broadcast {
            for part in parts {
                self.send(Destination::Bus, Message::Repair(part));
            }
            return;
        }
        for (id, addrs) in askers {
            let to = Destination::Node {
                id,
                addr: addrs.ring,
            };
            for part in &parts {
                self.send(to, Message::State(part.clone()));
            }
        }
    }

    /// Claim 11: a part of a pulled state; once every part of one version
    /// is in and its rows' digest is the announced one, it is adopted.
    pub(super) fn on_state(
        &mut self,
        now: Instant,
        from: NodeId,
        life: Incarnation,
        config_version: u32,
        s: StatePart,
    ) {
        let head = s.head;
        let consistent = head.supervisor == from
            && head.life == life
            && self.rank_agrees(from, head.supervisor_rank, config_version)
            && s.parts > 0
            && s.parts <= MAX_STATE_PARTS
            && s.part < s.parts;
        if !consistent {
            return self.reject("inconsistent_state");
        }
        // A later epoch heard in any frame raises the next one this node
        // would start (a state may be newer than the notification that
        // made this node pull it).
        self.highest_epoch = self.highest_epoch.max(head.epoch);
        if !matches!(self.role, Role::Listening | Role::Member) {
            return;
        }
        let held = self.held_precedence();
        let stale = held
            .is_some_and(|h| head.precedence() < h || (head.precedence() == h && self.held.whole));
        if stale {
            return;
        }
        let fresh = self
            .assembly
            .as_ref()
            .is_none_or(|a| a.head() != &head && a.head().precedence() <= head.precedence());
        if fresh {
            self.assembly = Some(Assembly::new(head, s.parts));
        }
        let Some(assembly) = self.assembly.as_mut().filter(|a| a.head() == &head) else {
            return;
        };
        if assembly.len() != usize::from(s.parts) {
            return self.reject("inconsistent_state");
        }
        let Some(rows) = assembly.add(s.part, s.rows) else {
            return;
        };
        self.assembly = None;
        let mut map = ClusterMap {
            supervisor: head.supervisor,
            epoch: head.epoch,
            supervisor_rank: head.supervisor_rank,
            version: head.map_version,
            servers: Vec::new(),
            members: Vec::new(),
            ring: Vec::new(),
        };
        let mut tables = Tables::default();
        announce::from_rows(rows, &mut map, &mut tables);
        if announce::digest(&map, &tables) != head.digest {
            return self.reject("state_digest");
        }
        let previous = self.supervisor();
        self.view = Some(View {
            map,
            tables,
            supervisor_addrs: s.addrs,
        });
        self.held = Held {
            life: head.life,
            version: head.version,
            digest: head.digest,
            whole: true,
        };
        if self.role == Role::Listening {
            self.role = Role::Member;
            self.timers.clear(Timer::Listen);
        }
        self.followed(now, previous);
    }

    /// After a member's view became the announced state: reports a new
    /// supervisor, keeps it alive, and checks this node's own place in it.
    fn followed(&mut self, now: Instant, previous: Option<NodeId>) {
        let Some((supervisor, epoch)) = self.map().map(|m| (m.supervisor, m.epoch)) else {
            return;
        };
        if previous != Some(supervisor) {
            self.stats.supervisor_changes += 1;
            self.events
                .push_back(Event::SupervisorChanged { supervisor, epoch });
        }
        self.arm_supervisor_silence(now);
        self.check_own_entry(now);
        if self.role != Role::Member {
            return;
        }
        if !self.timers.is_set(Timer::Status) {
            let phase = self.jitter(self.cfg.timing.status_interval);
            self.timers.set(Timer::Status, now + phase);
        }
        self.follow_ring(now);
        let outranks = self
            .map()
            .is_some_and(|m| election::preempts(&self.cfg.timing, self.cfg.rank(), m));
        if outranks && !self.leaving {
            if !self.timers.is_set(Timer::Preempt) {
                let wait = election::preempt_wait(&self.cfg.timing, self.cfg.rank());
                self.timers.set(Timer::Preempt, now + wait);
            }
        } else {
            self.timers.clear(Timer::Preempt);
        }
    }
}

impl Node {
    /// Whether `from` may announce itself at `rank`: the rank this node's
    /// priority list gives it, or, while a priority list changes live
    /// (sender and receiver run different configuration versions), any
    /// rank of a node the list names: one of the two lists is about to be
    /// replaced, and the supervisor's announcement is what keeps every
    /// member on one ring until both run the same one.
    fn rank_agrees(&self, from: NodeId, rank: Rank, config_version: u32) -> bool {
        match self.ranks.get(&from) {
            Some(r) if *r == rank => true,
            Some(_) => config_version != self.cfg.config_version,
            None => false,
        }
    }
}

/// A notification of `announcement` (with a placeholder head when only its
/// size matters).
fn notify_of(addrs: NodeAddrs, head: Option<Head>, announcement: &Announcement) -> Notify {
    let head = head.unwrap_or(Head {
        supervisor: NodeId(u32::MAX),
        supervisor_rank: Rank(u16::MAX),
        epoch: Epoch(u64::MAX),
        life: Incarnation(u64::MAX),
        map_version: u64::MAX,
        version: u64::MAX,
        digest: u64::MAX,
    });
    Notify {
        addrs,
        head,
        base: announcement.base,
        base_digest: announcement.base_digest,
        changes: announcement.changes.clone(),
    }
}
