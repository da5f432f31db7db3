//! dropfix: remove `MountFlags=` from docker.service the way systemd reads it, preview the
//! override as a diff, write it atomically, reload and restart over D-Bus, verify, revert.
//!
//! The pipeline, one module a stage:
//! [`discover`] (root + unit name -> fragment and drop-ins) -> [`effective`] (systemd's merge
//! rules) -> [`plan`] (files to write for this systemd version) -> [`render`] (diffs, text,
//! JSON) -> [`apply`] (atomic writes) with [`state`] (what to restore on revert).
#![deny(missing_docs)]

pub mod ansible;
pub mod app;
pub mod apply;
pub mod cli;
pub mod directives;
pub mod discover;
pub mod docker;
pub mod doctor;
pub mod effective;
pub mod error;
pub mod ignition;
pub mod inspect;
pub mod lock;
pub mod manager;
pub mod manual;
pub mod metrics;
pub mod netns;
pub mod plan;
pub mod render;
pub mod rollout;
pub mod root;
pub mod scan;
pub mod settings;
pub mod state;
pub mod syntax;
pub mod unitname;
pub mod update;
pub mod verify;
pub mod version;
pub mod why;
