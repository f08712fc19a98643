//! What operators, players' pages and monitoring see of a node (claims 4
//! and 19): [`admin`], how admin actions are authenticated; [`api`], the HTTP API (the cluster as this node sees it, the
//! event stream, a guarded leave, the overview); [`metrics`], the Prometheus
//! exposition; [`dashboard`], the live web page; [`overview`], the whole
//! tree of clusters walked from any machine; [`drain`], taking a node out
//! of service with no gap for any player.

pub mod admin;
pub mod api;
pub mod dashboard;
pub mod drain;
pub mod metrics;
pub mod overview;
