//! What a node sends: notifications and status on their schedule
//! (claims 6 and 10), join and leave messages, and capacity announcements.

use super::*;

impl Node {
    // ----- sending -----

    /// Sends what the last input made due. A change is notified at once,
    /// but prompt notifications go at most once per quarter notification
    /// interval (`Timer::Prompt` sends the held-back one): a cold start of
    /// 1,024 nodes is 1,024 joins in a few notification intervals, and one
    /// notification per join, each carrying the changes still repeated and
    /// delivered to every member, made the bus carry O(N²) rows. The first
    /// notification of a reign and the periodic ones are never held back.
    pub(super) fn flush(&mut self, now: Instant) {
        self.evaluate_disks_after_map_change();
        if self.notify_now && self.role == Role::Supervisor {
            self.follow_ring(now);
            let soonest = self
                .notified_at
                .map(|at| at + self.cfg.timing.notify_interval / 4);
            match soonest {
                Some(at) if now < at && !self.notify_periodic => {
                    if !self.timers.is_set(Timer::Prompt) {
                        self.timers.set(Timer::Prompt, at);
                    }
                }
                _ => {
                    self.send_notify();
                    self.notified_at = Some(now);
                    self.timers.clear(Timer::Prompt);
                    self.timers
                        .set(Timer::Notify, now + self.cfg.timing.notify_interval);
                }
            }
        }
        self.notify_now = false;
        self.notify_periodic = false;
    }

    /// Claim 13: a node that failed or left no longer counts for the disks
    /// it reached, so the supervisor re-decides every disk once per map
    /// change (statuses re-decide only the disks they report).
    fn evaluate_disks_after_map_change(&mut self) {
        if self.role != Role::Supervisor {
            return;
        }
        let Some(view) = self.view.as_mut() else {
            return;
        };
        let at = (view.map.epoch, view.map.version);
        if self.disks_evaluated_at == Some(at) {
            return;
        }
        self.disks_evaluated_at = Some(at);
        let changes = view.tables.evaluate_disks(self.cfg.timing.disk_quorum);
        if !changes.is_empty() {
            self.notify_now = true;
        }
        self.events.extend(changes.into_iter().map(Event::Disk));
    }

    pub(super) fn send_status(&mut self) {
        if !matches!(self.role, Role::Member | Role::Supervisor) || !self.joined {
            return;
        }
        let Some(view) = self.view.as_ref() else {
            return;
        };
        let Some(down) = self.ring.downstream() else {
            return;
        };
        let Some(addr) = view.map.member(down).map(|m| m.addrs.ring) else {
            return;
        };
        let epoch = view.map.epoch;
        let (load, disks) = (
            self.reports.published_load(),
            self.reports.published_disks(),
        );
        let budget = crate::sizes::part_budget(self.sealer.mtu());
        let (out, own_changed) =
            self.ring
                .emit(self.cfg.node, self.incarnation, load, disks, budget);
        if self.role == Role::Supervisor && own_changed {
            // The supervisor's own entry is read directly.
            if let (Some(view), Some(own)) = (self.view.as_mut(), self.ring.entry(self.cfg.node)) {
                view.tables.record_load(own.node, own.load);
                let mut changes: Vec<_> = own
                    .disks
                    .iter()
                    .filter_map(|r| view.tables.record_disk_report(own.node, r))
                    .collect();
                let reported: Vec<DiskId> = own.disks.iter().map(|r| r.disk).collect();
                changes.extend(
                    view.tables
                        .evaluate_disks_of(self.cfg.timing.disk_quorum, &reported),
                );
                if !changes.is_empty() {
                    self.notify_now = true;
                }
                self.events.extend(changes.into_iter().map(Event::Disk));
            }
        }
        for out in out {
            self.send(
                Destination::Node { id: down, addr },
                Message::Status(Status {
                    epoch,
                    entries: out.entries,
                    reset: out.reset,
                    told: out.told,
                }),
            );
        }
    }

    /// Claims 8-9 at any ring length: a member that has just declared its
    /// upstream failed also hands its entry straight to the supervisor, so
    /// the declaration takes one hop instead of riding up to a lap of the
    /// ring (at 1,024 nodes, hundreds of hops). The ring still carries it
    /// (claim 8: appended to this node's status); the supervisor merges the
    /// entry as it merges any status from a node other than its upstream
    /// (heard, not checked against the link's digest) and, finding it new,
    /// applies it at once. The copy that arrives round the ring later is
    /// no longer news.
    pub(super) fn send_own_entry_to_supervisor(&mut self) {
        if self.role != Role::Member || !self.joined {
            return;
        }
        let Some(view) = self.view.as_ref() else {
            return;
        };
        let sup = view.map.supervisor;
        if sup == self.cfg.node || self.ring.downstream() == Some(sup) {
            return;
        }
        let Some(addr) = view
            .map
            .member(sup)
            .filter(|m| m.status == MemberStatus::Up)
            .map(|m| m.addrs.ring)
        else {
            return;
        };
        let Some(own) = self.ring.entry(self.cfg.node).cloned() else {
            return;
        };
        let epoch = view.map.epoch;
        self.send(
            Destination::Node { id: sup, addr },
            Message::Status(Status {
                epoch,
                entries: vec![own],
                reset: false,
                told: [0; 8],
            }),
        );
    }

    /// Claim 5: a new streaming capacity, into the tables at once as
    /// supervisor, else announced to the supervisor by a join request.
    pub(super) fn set_capacity(&mut self, capacity: Capacity) {
        if self.cfg.capacity == capacity {
            return;
        }
        self.cfg.capacity = capacity;
        let me = self.cfg.node;
        if self.role == Role::Supervisor {
            if let Some(view) = self.view.as_mut() {
                if view.tables.record_capacity(me, capacity) {
                    self.notify_now = true;
                }
            }
        } else if self.joined {
            self.send_join();
        }
    }

    /// Claim 5: whether the tables the supervisor last sent show another
    /// capacity for this node than it has now (its announcement was lost).
    pub(super) fn capacity_unannounced(&self) -> bool {
        self.tables()
            .and_then(|t| t.usage(self.cfg.node))
            .is_some_and(|u| u.capacity != self.cfg.capacity)
    }

    pub(super) fn send_join(&mut self) {
        let join = JoinRequest {
            node: self.cfg.node,
            incarnation: self.incarnation,
            addrs: self.cfg.addrs,
            disks: self.cfg.disks.iter().map(|d| d.id).collect(),
            capacity: self.cfg.capacity,
            load: self.reports.actual_load(),
        };
        self.send(Destination::Bus, Message::Join(join));
    }

    pub(super) fn send_leave(&mut self) {
        let leave = Leave {
            node: self.cfg.node,
            incarnation: self.incarnation,
            addrs: self.cfg.addrs,
        };
        self.send(Destination::Bus, Message::Leave(leave));
    }

    pub(super) fn send(&mut self, destination: Destination, message: Message) {
        let kind = message.kind();
        debug_assert_eq!(
            matches!(destination, Destination::Bus),
            kind.channel() == crate::message::Channel::Bus,
            "{kind:?} travels its own channel"
        );
        let body = message.encode();
        match self.sealer.seal(&self.keyring, &body) {
            Ok(datagrams) => {
                self.unsent.remove(&kind);
                for payload in datagrams {
                    self.stats.count_sent(kind, payload.len());
                    self.transmits.push_back(Transmit {
                        destination,
                        payload,
                        kind,
                    });
                }
            }
            Err(e) => {
                // Claims 7 and 11 at their limit: said loudly, once until
                // the kind fits again (a notification is retried every
                // interval).
                if self.unsent.insert(kind) {
                    self.events.push_back(Event::Unsent {
                        kind,
                        bytes: body.len(),
                        mtu: self.sealer.mtu(),
                    });
                }
                self.reject_outgoing(e)
            }
        }
    }

    pub(super) fn reject_outgoing(&mut self, e: FrameError) {
        self.stats.count_rejected(e.reason());
    }

    pub(super) fn reject(&mut self, reason: &'static str) {
        self.stats.count_rejected(reason);
        self.events.push_back(Event::Rejected { reason });
    }
}
