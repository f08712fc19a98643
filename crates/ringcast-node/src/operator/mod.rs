//! What operators, players' pages and monitoring see of a node (claims 4
//! and 19): [`api`], the HTTP API (the cluster as this node sees it, the
//! event stream, a guarded leave, the overview); [`metrics`], the Prometheus
//! exposition; [`dashboard`], the live web page; [`overview`], the whole
//! tree of clusters walked from any machine.

pub mod api;
pub mod dashboard;
pub mod metrics;
pub mod overview;
