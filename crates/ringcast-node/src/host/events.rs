//! The cluster's event stream as people and the API read it: one
//! [`ClusterEvent`] per protocol event or map change, with a sentence.

use std::time::{SystemTime, UNIX_EPOCH};

use ringcast_proto::event::Event;
use ringcast_proto::map::MapChange;
use ringcast_proto::NodeId;
use serde::Serialize;

/// One line of the cluster's event stream.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ClusterEvent {
    /// Unix time in milliseconds, as the observing node saw it.
    pub at_ms: u64,
    /// The node that observed it.
    pub observer: NodeId,
    /// What happened: `supervisor`, `joined`, `failed`, `left`, or a local
    /// event of the observer (`became_supervisor`, `declared`, `refuted`, ...).
    pub kind: &'static str,
    /// The node it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeId>,
    /// The epoch, for supervisor events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// The configuration version, for `config_outdated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// A readable sentence.
    pub text: String,
    /// Claim 5: the cluster it happened in: the observer's own, or, for an
    /// event of a seat the machine holds, the parent cluster's.
    pub cluster: u32,
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn event(
    observer: NodeId,
    kind: &'static str,
    node: Option<NodeId>,
    epoch: Option<u64>,
    text: String,
) -> ClusterEvent {
    ClusterEvent {
        at_ms: unix_ms(),
        observer,
        kind,
        node,
        epoch,
        version: None,
        text,
        cluster: 0,
    }
}

pub(crate) fn map_event(observer: NodeId, c: &MapChange) -> ClusterEvent {
    match c {
        MapChange::Supervisor { node, epoch } => event(
            observer,
            "supervisor",
            Some(*node),
            Some(epoch.0),
            format!("{node} supervises (epoch {})", epoch.0),
        ),
        MapChange::Joined { node, incarnation } => event(
            observer,
            "joined",
            Some(*node),
            None,
            format!("{node} is up ({incarnation})"),
        ),
        MapChange::Failed { node } => event(
            observer,
            "failed",
            Some(*node),
            None,
            format!("{node} failed"),
        ),
        MapChange::Left { node } => {
            event(observer, "left", Some(*node), None, format!("{node} left"))
        }
    }
}

fn disk_event(me: NodeId, change: &ringcast_proto::tables::DiskChange) -> ClusterEvent {
    use ringcast_proto::tables::DiskChange;
    match *change {
        DiskChange::Failed(d) => event(
            me,
            "disk_failed",
            None,
            None,
            format!("disk {d} declared failed"),
        ),
        DiskChange::Recovered(d) => event(
            me,
            "disk_recovered",
            None,
            None,
            format!("disk {d} works again"),
        ),
        DiskChange::PathBroken { node, disk } => event(
            me,
            "path_broken",
            Some(node),
            None,
            format!("{node}'s path to disk {disk} is broken"),
        ),
        DiskChange::PathRestored { node, disk } => event(
            me,
            "path_restored",
            Some(node),
            None,
            format!("{node}'s path to disk {disk} works again"),
        ),
    }
}

pub(crate) fn local_event(me: NodeId, e: &Event) -> ClusterEvent {
    match e {
        Event::BecameSupervisor { epoch, reason } => event(
            me,
            "became_supervisor",
            Some(me),
            Some(epoch.0),
            format!("{me} became supervisor ({reason:?}, epoch {})", epoch.0),
        ),
        Event::StoppedSupervising { successor } => event(
            me,
            "stopped_supervising",
            Some(*successor),
            None,
            format!("{me} stopped supervising in favour of {successor}"),
        ),
        Event::SupervisorChanged { supervisor, epoch } => event(
            me,
            "follows",
            Some(*supervisor),
            Some(epoch.0),
            format!("{me} follows {supervisor} (epoch {})", epoch.0),
        ),
        Event::Joined { supervisor } => event(
            me,
            "joined_cluster",
            Some(*supervisor),
            None,
            format!("{me} joined, supervisor {supervisor}"),
        ),
        Event::Left => event(
            me,
            "left_cluster",
            Some(me),
            None,
            format!("{me} left the cluster"),
        ),
        Event::NodeJoined { node } => event(
            me,
            "admitted",
            Some(*node),
            None,
            format!("{me} admitted {node}"),
        ),
        Event::NodeLeft { node } => event(
            me,
            "released",
            Some(*node),
            None,
            format!("{me} saw {node} leave"),
        ),
        Event::NodeFailed { node, declared_by } => event(
            me,
            "marked_failed",
            Some(*node),
            None,
            format!("{me} marked {node} failed (declared by {declared_by})"),
        ),
        Event::UpstreamDeclared { node } => event(
            me,
            "declared",
            Some(*node),
            None,
            format!("{me} declared its upstream {node} failed"),
        ),
        Event::Refuted { incarnation } => event(
            me,
            "refuted",
            Some(me),
            None,
            format!("{me} refuted a failure declaration with {incarnation}"),
        ),
        Event::ClockSlipped { gap } => event(
            me,
            "clock_slipped",
            Some(me),
            None,
            format!("{me}'s timers ran {} ms late", gap.as_millis()),
        ),
        Event::Disk(change) => disk_event(me, change),
        Event::RivalSupervisor { rival, epoch } => event(
            me,
            "rival_supervisor",
            Some(*rival),
            Some(epoch.0),
            format!("{me} hears rival supervisor {rival} (epoch {})", epoch.0),
        ),
        Event::OwnIdHeard { incarnation } => event(
            me,
            "own_id_heard",
            Some(me),
            None,
            format!("another process runs {me} with a newer life ({incarnation})"),
        ),
        Event::Rejected { reason } => event(
            me,
            "rejected",
            None,
            None,
            format!("{me} refused a datagram ({reason})"),
        ),
        Event::Unsent { kind, bytes, mtu } => event(
            me,
            "message_unsent",
            Some(me),
            None,
            format!(
                "{me} cannot send its {kind:?}: {bytes} bytes need more than {} frames at MTU \
                 {mtu} (the cluster outgrew what the protocol carries; see `config check`)",
                ringcast_proto::frame::MAX_PARTS
            ),
        ),
        Event::ConfigOutdated { version } => ClusterEvent {
            version: Some(*version),
            ..event(
                me,
                "config_outdated",
                Some(me),
                None,
                format!("{me} saw configuration version {version}"),
            )
        },
    }
}
